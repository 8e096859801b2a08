"""A batch of JSON records to event columns in one call, for the compiled engine.

Decoding one record at a time into an ``Event`` costs more than everything the compiled engine
does with it. ``ColumnDecoder`` hands a whole batch to the compiled decoder
(``sessionize_core.JsonDecoder``), which decodes the records whose shapes are certain (text
fields that are strings, a number or a strict ISO-8601 timestamp, a numeric revenue) and leaves
every other record to ``RecordDecoder``, the reference, one at a time. So every record decodes
exactly as the reference decodes it (the tests compare the two on the real datasets and on
random records), and a malformed one is rejected in the reference's words.

The result is an ``EventColumns`` (``sessionize.engine.columns``), which ``FastEngine``
sessionizes without making an Event per record.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from sessionize.decode.fields import FieldMap
from sessionize.engine.columns import TEXT_FIELDS, EventColumns, Text
from sessionize.engine.event import Event, Rejection

try:
    from sessionize_core import JsonDecoder as _JsonDecoder
except ImportError:  # the core is not built: records are decoded one by one
    _JsonDecoder = None



def unsupported_reason(fields: FieldMap) -> str | None:
    """Why ``fields`` cannot be decoded in columns (None when they can)."""
    if _JsonDecoder is None:
        return "the compiled core is not built"
    if len(fields.ts) != 1:
        return "a timestamp spread over several fields"
    if fields.ts_format not in ("iso", "epoch_s", "epoch_ms", "epoch_us"):
        return f"timestamp format {fields.ts_format!r}"
    return None


class ColumnDecoder:
    """Decodes batches of JSON records (bytes) for ``fields`` (check ``unsupported_reason``)."""

    def __init__(self, fields: FieldMap) -> None:
        reason = unsupported_reason(fields)
        if reason is not None:
            raise ValueError(f"cannot decode in columns: {reason}")
        f = fields
        self._core = _JsonDecoder(
            list(f.key), f.ts[0], f.ts_format, f.input_tz == "UTC", f.type, f.default_type,
            f.event_id, f.page, f.referrer, f.user_agent, list(f.campaign), f.revenue,
            f.received_at)

    def decode(self, values: list[bytes | None], offsets: Sequence[int | None],
               fallback: Callable[[int], Event | Rejection]
               ) -> tuple[EventColumns, list[Rejection]]:
        """The events of ``values`` as columns, and the records rejected as malformed.
        ``fallback(i)`` decodes record ``i`` with the reference, as the source does (it names
        the record's place, its partition and offset or its line, in a rejection)."""
        out = self._core.decode(values)
        status = out["status"]
        texts = {name: (out[f"{name}_codes"], out[f"{name}_values"]) for name in TEXT_FIELDS}
        ts, revenue = out["ts"], out["revenue"]
        rejected: list[Rejection] = []
        slow = np.flatnonzero(status).tolist()
        keep = None
        if slow:
            keep = np.ones(len(values), dtype=bool)
            for i in slow:
                item = fallback(i)
                if item.__class__ is Rejection:
                    rejected.append(item)  # type: ignore[arg-type]
                    keep[i] = False
                else:
                    _put(texts, ts, revenue, i, item)  # type: ignore[arg-type]
        cols = EventColumns(texts, ts, revenue, list(offsets), values)
        if keep is not None and not keep.all():
            cols = _select(cols, keep)
        return cols, rejected


def _put(texts: dict[str, Text], ts: Any, revenue: Any, i: int, ev: Event) -> None:
    """Write an Event decoded by the reference into row ``i`` of the columns (a text the
    reference decoded as "" stays "": a ``default_type`` may be "")."""
    ts[i] = ev.ts
    revenue[i] = np.nan if ev.revenue is None else ev.revenue
    for name, value in (("key", ev.key), ("type", ev.type), ("event_id", ev.event_id),
                        ("page", ev.page), ("referrer", ev.referrer),
                        ("campaign", ev.campaign), ("user_agent", ev.user_agent)):
        codes, values = texts[name]
        if value is None:
            codes[i] = -1
        else:
            codes[i] = len(values)
            values.append(value)


def _select(cols: EventColumns, keep: Any) -> EventColumns:
    texts = {name: (codes[keep], values) for name, (codes, values) in cols.texts.items()}
    rows = np.flatnonzero(keep).tolist()
    return EventColumns(texts, cols.ts[keep], cols.revenue[keep],
                        [cols.offsets[i] for i in rows], [cols.raw[i] for i in rows])
