"""What the engine consumes (Event) and what it refuses (Rejection).

An Event is already decoded: its time is integer milliseconds since the epoch, UTC, and the
fields that session metrics need are pulled out of the raw record. The raw record rides along so
that a rejected event can be written to the dead-letter output exactly as it arrived.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any


class Reason(StrEnum):
    """Why an event was not counted (SEMANTICS.md §4). Every reason has its own counter."""

    LATE = "late"
    DUPLICATE = "duplicate"
    NO_KEY = "no_key"
    MALFORMED = "malformed"
    FUTURE = "future"
    NO_GAP = "no_gap"

    def __str__(self) -> str:
        return self.value


@dataclass(slots=True)
class Event:
    """One decoded activity event. ``key`` None or empty is rejected by the engine as ``no_key``."""

    key: str | None
    ts: int
    type: str | None = None
    event_id: str | None = None
    page: str | None = None
    referrer: str | None = None
    campaign: str | None = None
    user_agent: str | None = None
    revenue: float | None = None
    is_bot: bool = False
    received_at: int | None = None
    offset: int | None = None
    raw: Any = None


@dataclass(slots=True)
class Rejection:
    """An input record that was not counted, with the reason and where it came from."""

    reason: Reason
    raw: Any
    detail: str = ""
    offset: int | None = None
    key: str | None = None
    event_id: str | None = None
    ts: int | None = None
