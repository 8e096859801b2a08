"""EventColumns: a batch of decoded events as columns, what ``FastEngine`` reads without an
Event per record (``FastEngine.process_event_columns``; made by ``sessionize.decode.columnar``).

Text comes as per-batch dictionaries (codes into a list of distinct values, -1 for none), so the
engine maps each distinct value once; timestamps and revenues are arrays. Each row keeps its
offset and raw record, from which ``columns[i]`` makes the Event a rejection needs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sessionize.engine.event import Event

TEXT_FIELDS = ("key", "type", "event_id", "page", "referrer", "campaign", "user_agent")
Text = tuple[Any, list[str]]  # (int32 codes, -1 for none; the distinct values)


@dataclass
class EventColumns:
    """Decoded events of one batch, in arrival order (see the module doc)."""

    texts: dict[str, Text]
    ts: Any  # int64
    revenue: Any  # float64, NaN for none
    offsets: list[int | None]
    raw: list[Any]  # each row's record as received (bytes are read as UTF-8 when needed)

    def __len__(self) -> int:
        return len(self.offsets)

    def text(self, name: str, i: int) -> str | None:
        codes, values = self.texts[name]
        c = int(codes[i])
        return values[c] if c >= 0 else None

    def __getitem__(self, i: int) -> Event:
        """Row ``i`` as the Event the reference decoder makes of it (for rejections)."""
        revenue = float(self.revenue[i])
        t = self.text
        return Event(t("key", i), int(self.ts[i]), t("type", i), t("event_id", i), t("page", i),
                     t("referrer", i), t("campaign", i), t("user_agent", i),
                     None if revenue != revenue else revenue, False, None, self.offsets[i],
                     _text(self.raw[i]))


def _text(raw: Any) -> Any:
    return raw.decode("utf-8", "backslashreplace") if isinstance(raw, bytes) else raw


