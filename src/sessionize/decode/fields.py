"""Field mapping: a decoded record (JSON object or CSV row) to an Event, or a Rejection.

Real data names its fields in every possible way (``user_id``, ``ip``, ``visitor``; one time
column or a date and a time column), so every name is configurable and the defaults follow the
JSON Lines convention of the README (``user_id``, ``ts``, ``type``, ``event_id``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from math import isfinite
from typing import Any

from sessionize.decode.timestamps import BadTimestamp, make_parser
from sessionize.engine.event import Event, Reason, Rejection

# Event time lies in [-2^47, 2^47) ms, about years -2489 to 6429: the compiled engine packs
# timestamps into 48 bits, and a stamp ages beyond that are input errors, not events (one would
# move stream time millennia ahead and make every later event late).
TS_LIMIT_MS = 1 << 47


@dataclass(frozen=True)
class FieldMap:
    """Where each engine field lives in the input record. ``None`` means "not in this input"."""

    key: tuple[str, ...] = ("user_id",)
    ts: tuple[str, ...] = ("ts",)
    ts_format: str = "iso"
    input_tz: str = "UTC"
    type: str | None = "type"
    default_type: str | None = None
    event_id: str | None = "event_id"
    page: str | None = "page"
    referrer: str | None = "referrer"
    campaign: tuple[str, ...] = ("utm_source", "utm_medium", "utm_campaign")
    user_agent: str | None = "user_agent"
    revenue: str | None = "revenue"
    received_at: str | None = "received_at"

    def named_fields(self) -> list[str]:
        """Every input field this mapping reads (to check a CSV header against it)."""
        single = [self.type, self.event_id, self.page, self.referrer, self.user_agent, self.revenue]
        return [*self.key, *self.ts, *(f for f in single if f)]


class RecordDecoder:
    """Turns mapping-like records into Events; anything unreadable becomes a ``malformed``
    Rejection that says which field and why, with the raw input kept for the dead letter."""

    def __init__(self, fields: FieldMap) -> None:
        self.fields = fields
        self._parse_ts = make_parser(fields.ts_format, fields.input_tz)
        self._parse_received = make_parser("iso", "UTC")
        # the names read for every record, looked up once (decode is per record, hot)
        self._key1 = fields.key[0] if len(fields.key) == 1 else None
        self._ts1 = fields.ts[0] if len(fields.ts) == 1 else None
        self._ts_name = "+".join(fields.ts)
        self._texts = tuple(name or None for name in (
            fields.type, fields.event_id, fields.page, fields.referrer, fields.user_agent))

    def decode(self, rec: Mapping[str, Any], offset: int | None, raw: Any) -> Event | Rejection:
        f = self.fields
        get = rec.get
        if self._key1 is not None:
            key = get(self._key1)
            if key.__class__ is not str:
                key = _text(key)
            elif not key:
                key = None
        else:
            key = _joined(rec, f.key)
        if key is not None and "\x00" in key:
            return Rejection(Reason.MALFORMED, raw, "the key contains a NUL character", offset)
        if self._ts1 is not None:
            ts_value = get(self._ts1)
        else:
            parts = [get(name) for name in f.ts]
            ts_value = None if any(p in (None, "") for p in parts) else " ".join(map(str, parts))
        if ts_value is None or ts_value == "":
            return Rejection(Reason.MALFORMED, raw, f"missing timestamp field {self._ts_name!r}",
                             offset, key)
        try:
            ts = self._parse_ts(ts_value)
        except BadTimestamp as exc:
            return Rejection(Reason.MALFORMED, raw, f"field {self._ts_name!r}: {exc}", offset, key)
        if not -TS_LIMIT_MS <= ts < TS_LIMIT_MS:
            return Rejection(Reason.MALFORMED, raw, f"field {self._ts_name!r}: {ts_value!r} is "
                             "out of the supported range (years -2489 to 6429)", offset, key)
        # type, event_id, page, referrer, user_agent as _text() reads them, unrolled (hot)
        tn, en, pn, rn, un = self._texts
        v = get(tn) if tn is not None else None
        etype = None if v is None or v == "" else v if v.__class__ is str else str(v)
        v = get(en) if en is not None else None
        event_id = None if v is None or v == "" else v if v.__class__ is str else str(v)
        v = get(pn) if pn is not None else None
        page = None if v is None or v == "" else v if v.__class__ is str else str(v)
        v = get(rn) if rn is not None else None
        referrer = None if v is None or v == "" else v if v.__class__ is str else str(v)
        v = get(un) if un is not None else None
        user_agent = None if v is None or v == "" else v if v.__class__ is str else str(v)
        if etype is None:
            etype = f.default_type
        revenue = None
        if f.revenue:
            value = get(f.revenue)
            if value is not None and value != "":
                if value.__class__ is float:
                    revenue = value
                else:
                    try:
                        revenue = float(value)
                    except (TypeError, ValueError):
                        return Rejection(Reason.MALFORMED, raw,
                                         f"field {f.revenue!r}: not a number: {value!r}", offset,
                                         key)
                    if not isfinite(revenue):  # "nan", "inf": would poison every sum
                        return Rejection(Reason.MALFORMED, raw,
                                         f"field {f.revenue!r}: not a finite number: {value!r}",
                                         offset, key)
        received_at = None
        if f.received_at:
            value = get(f.received_at)
            if value is not None and value != "":
                try:
                    received_at = self._parse_received(value)
                except BadTimestamp as exc:
                    return Rejection(Reason.MALFORMED, raw, f"field {f.received_at!r}: {exc}",
                                     offset, key)
        campaign = None
        if f.campaign:
            for name in f.campaign:
                value = get(name)
                if value is not None and value != "":  # else all absent: no campaign
                    campaign = _joined(rec, f.campaign, sep="/", partial=True)
                    break
        # positional, in the order of Event's fields (much cheaper than keywords)
        return Event(key, ts, etype, event_id, page, referrer, campaign, user_agent, revenue,
                     False, received_at, offset, raw)


def _text(value: Any) -> str | None:
    if value is None or value == "":
        return None
    return value if isinstance(value, str) else str(value)


def _joined(rec: Mapping[str, Any], names: tuple[str, ...], sep: str = "|",
            partial: bool = False) -> str | None:
    """The values of ``names`` joined; None when any is missing (or, if ``partial``, all are)."""
    if len(names) == 1:
        return _text(rec.get(names[0]))
    values = [_text(rec.get(n)) for n in names]
    if partial:
        return sep.join(v or "" for v in values) if any(values) else None
    return None if any(v is None for v in values) else sep.join(values)  # type: ignore[arg-type]
