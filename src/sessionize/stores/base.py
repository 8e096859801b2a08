"""The store interface: where sessions, dead letters and run metadata live.

Two sides. ``SessionSink`` is what the pipeline writes through: one ``apply`` per batch, in one
transaction, so a batch's effect (session changes, rejected events, stream time, source offsets)
lands whole or not at all. ``SessionQueries`` is what the API reads. Implementations: SQLite
(embedded default) and PostgreSQL.

Session records are the flat dicts of ``Session.to_record`` (times in epoch ms, UTC).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

from sessionize.engine.engine import ChangeSet


@dataclass
class RunInfo:
    """What a run was given and what it counted; the store keeps one row per run."""

    source: str
    config: dict[str, Any]
    started_at_ms: int
    finished_at_ms: int | None = None
    counters: dict[str, int] = field(default_factory=dict)


class SessionSink(Protocol):
    def begin_run(self, info: RunInfo) -> int:
        """Record the start of a run; returns its id."""

    def apply(self, run_id: int, partition: int, changes: ChangeSet,
              offsets: dict[int, int] | None = None) -> None:
        """Apply one batch atomically: delete ``retractions``, upsert ``upserts`` and ``finals``,
        insert ``rejections`` (reason, detail, raw, offset), store ``stream_time`` for the
        partition and the source ``offsets`` (partition -> next offset), all in one transaction."""

    def finish_run(self, run_id: int, info: RunInfo) -> None:
        """Record the end of a run with its counters."""

    def close(self) -> None: ...


class SessionQueries(Protocol):
    def active_sessions(self, key: str) -> list[dict[str, Any]]:
        """The key's sessions whose status is open or inactive, newest first."""

    def user_sessions(self, key: str, start_ms: int | None, end_ms: int | None, limit: int,
                      cursor: str | None) -> tuple[list[dict[str, Any]], str | None]:
        """The key's sessions overlapping [start_ms, end_ms), newest first, paged by cursor."""

    def session(self, session_id: str) -> dict[str, Any] | None: ...

    def summary(self, start_ms: int | None, end_ms: int | None) -> dict[str, Any]:
        """Sessions starting in [start_ms, end_ms): sessions, users, median and mean duration,
        bounce rate, conversion rate, events per session."""

    def rejected_counts(self, start_ms: int | None, end_ms: int | None) -> dict[str, int]:
        """Rejected events by reason."""

    def health(self) -> dict[str, Any]: ...

    # analytics (shared logic in ``stores.analytics.Analytics``; ranges are over session starts)

    def timeseries(self, interval: str, tz: str, start_ms: int | None, end_ms: int | None
                   ) -> dict[str, Any]:
        """Sessions, users, events and rates per local ``hour`` or ``day`` of the IANA zone
        ``tz``, DST-correct, every bucket of the range present."""

    def funnel(self, steps: list[str], start_ms: int | None, end_ms: int | None
               ) -> dict[str, Any]:
        """Sessions entering each step (ordered subsequence of the path), conversion between
        steps, median time between steps."""

    def histogram(self, metric: str, start_ms: int | None, end_ms: int | None,
                  edges: list[int] | None = None) -> dict[str, Any]:
        """Sessions per bin of ``duration`` (ms) or ``events`` per session."""

    def top_pages(self, kind: str, start_ms: int | None, end_ms: int | None, limit: int,
                  cursor: str | None) -> dict[str, Any]:
        """Top ``entry`` or ``exit`` pages by sessions, paged."""

    def conversion_by(self, dimension: str, start_ms: int | None, end_ms: int | None,
                      limit: int, cursor: str | None) -> dict[str, Any]:
        """Conversion rate and revenue per entry page, campaign, referrer or exit page, paged."""

    def live(self) -> dict[str, Any]:
        """Sessions by status now, stream time per partition, cumulative ingest counters."""
