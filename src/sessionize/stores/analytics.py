"""What both stores' analytics share: time zones and their offset spans, bucket labels, funnel
matching, histogram edges, ranked-list cursors. Pure functions, no database.

Time buckets in a zone, DST included, the same way in SQLite and PostgreSQL: the range is cut
into *spans* of constant UTC offset (``offset_spans``, from ``zoneinfo``), and each store puts a
session into bucket ``floor((start_ms + offset) / size)`` within its span, in SQL, with the spans
passed as parameters. So a local day is the calendar day of the zone (23 or 25 hours on DST
days), and a local hour is one real hour: the hour repeated when clocks fall back is two
buckets (labelled ``02:00+02:00`` and ``02:00+01:00``), never one bucket of two hours. Offsets of
half and quarter hours (India, Nepal) and historical ones work alike. Doing the zone arithmetic
in Python rather than with PostgreSQL's ``AT TIME ZONE`` also means both stores use the same
tz database (the ``tzdata`` the package depends on) and give identical answers.

Funnels: a session *enters step k* when its path holds steps 1..k as an ordered subsequence
(not necessarily adjacent). The path is the session's first ``metrics.path_cap`` event types
(50 by default), so a step first reached after that many events is not seen: such sessions are
flagged ``path_truncated`` and counted apart. The time between two steps is taken at the
earliest matching events (the greedy match: the first step-1 event, then the first step-2 event
after it, ...), from ``path_ms``.
"""

from __future__ import annotations

import base64
import difflib
import re
import statistics
from abc import ABC, abstractmethod
from collections.abc import Iterable, Sequence
from datetime import UTC, date, datetime, timedelta
from functools import cache
from itertools import pairwise
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

import orjson

from sessionize.engine.event import Reason
from sessionize.stores.records import MAX_MS, json_text, now_ms
from sessionize.stores.records import bounds as _bounds

HOUR_MS = 3_600_000
DAY_MS = 86_400_000
INTERVALS = {"hour": HOUR_MS, "day": DAY_MS}
MAX_BUCKETS = 10_000
MAX_STEPS = 10
MAX_EDGES = 30
TIMING_SAMPLE = 20_000  # sessions whose step times the funnel medians are taken from, at most
# Every offset change is found to the millisecond by bisection between samples this far apart
# (tz database transitions are weeks apart; the closest on record are days apart).
_SAMPLE_MS = 12 * HOUR_MS

DURATION_EDGES_MS = (1, 10_000, 30_000, 60_000, 120_000, 300_000, 600_000, 900_000, 1_800_000,
                     3_600_000, 7_200_000)
EVENT_EDGES = (2, 3, 4, 5, 6, 11, 21, 51, 101)


# ---------------------------------------------------------------------- time zones


@cache
def _zone_names() -> tuple[str, ...]:
    return tuple(sorted(available_timezones()))


def zone(name: str) -> ZoneInfo:
    """The IANA zone ``name``, or a ValueError that says what would work."""
    try:
        if not name or name != name.strip() or ".." in name or name.startswith("/"):
            raise ValueError
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        pass
    close = difflib.get_close_matches(name, _zone_names(), n=3, cutoff=0.6)
    hint = f" Did you mean {' or '.join(close)}?" if close else ""
    raise ValueError(
        f"tz={name!r} is not a time zone name. Use an IANA name such as UTC, Europe/Berlin or "
        f"America/New_York.{hint}"
    )


def _offset_ms(tz: ZoneInfo, ms: int) -> int:
    dt = datetime.fromtimestamp(ms / 1000, UTC).astimezone(tz)
    off = dt.utcoffset()
    assert off is not None
    return int(off.total_seconds() * 1000)


def offset_spans(tz: ZoneInfo, lo: int, hi: int) -> list[tuple[int, int, int]]:
    """``[lo, hi)`` cut into ``(span_lo, span_hi, offset_ms)`` pieces of constant UTC offset."""
    if hi <= lo:
        return []
    spans: list[tuple[int, int, int]] = []
    start, off = lo, _offset_ms(tz, lo)
    t = lo
    while (nxt := min(t + _SAMPLE_MS, hi - 1)) > t:
        if _offset_ms(tz, nxt) == off:
            t = nxt
            continue
        a, b = t, nxt  # offset(a) == off != offset(b): bisect to the first ms of the change
        while b - a > 1:
            mid = (a + b) // 2
            if _offset_ms(tz, mid) == off:
                a = mid
            else:
                b = mid
        spans.append((start, b, off))
        start, off, t = b, _offset_ms(tz, b), b
    spans.append((start, hi, off))
    return spans


def buckets(tz: ZoneInfo, interval: str, lo: int, hi: int) -> list[tuple[tuple[int, int], int]]:
    """Every bucket of ``[lo, hi)``: ``((number, offset_key), start_ms)``, in time order.

    The key is what the stores' SQL groups by: the local bucket number ``floor((ms + offset) /
    size)``, and for hours also the offset (so a repeated hour is two buckets); days group by the
    number only (offset key 0). Raises ValueError past ``MAX_BUCKETS``."""
    size = INTERVALS[interval]
    if hi <= lo:
        return []
    estimate = (hi - lo) // size + 2
    if estimate > MAX_BUCKETS + 2:
        raise ValueError(
            f"{estimate:,} {interval} buckets is too many (at most {MAX_BUCKETS:,}): narrow the "
            f"range with from/to{' or use interval=day' if interval == 'hour' else ''}"
        )
    out: list[tuple[tuple[int, int], int]] = []
    if interval == "day":
        first = datetime.fromtimestamp(lo / 1000, UTC).astimezone(tz).date()
        last = datetime.fromtimestamp((hi - 1) / 1000, UTC).astimezone(tz).date()
        epoch = date(1970, 1, 1).toordinal()
        d = first
        while d <= last:
            midnight = datetime(d.year, d.month, d.day, tzinfo=tz)
            out.append(((d.toordinal() - epoch, 0), int(midnight.timestamp() * 1000)))
            d += timedelta(days=1)
        return out
    for s_lo, s_hi, off in offset_spans(tz, lo, hi):
        for b in range((s_lo + off) // size, (s_hi - 1 + off) // size + 1):
            start = b * size - off
            if out and start < s_lo:  # an hour cut by an offset change of less than an hour
                start = s_lo
            out.append(((b, off), start))
    return out


def iso_local(ms: int, tz: ZoneInfo) -> str:
    """``2019-10-01T02:00:00+02:00``: a bucket start as the zone's wall clock with its offset."""
    dt = datetime.fromtimestamp(ms / 1000, UTC).astimezone(tz)
    text = dt.isoformat(timespec="seconds")
    return text.replace("+00:00", "Z") if tz.key == "UTC" else text


def spans_json(spans: Sequence[tuple[int, int, int]]) -> str:
    return json_text([list(s) for s in spans])


# ---------------------------------------------------------------------- funnels


def parse_steps(values: Iterable[str]) -> list[str]:
    """Funnel steps from the query: ``view>cart>purchase`` (or one step per repeated value)."""
    raw = list(values)
    steps = [s.strip() for s in raw[0].split(">")] if len(raw) == 1 else [s.strip() for s in raw]
    if len(steps) < 2 or len(steps) > MAX_STEPS:
        raise ValueError(
            f"a funnel has 2 to {MAX_STEPS} steps, got {len(steps)}: give event types in order, "
            "e.g. steps=view>cart>purchase"
        )
    for s in steps:
        if not s:
            raise ValueError("a funnel step is empty: e.g. steps=view>cart>purchase")
        if len(s) > 200 or "\x00" in s:
            raise ValueError(f"funnel step {s[:40]!r}... is not an event type")
    return steps


def glob_pattern(steps: Sequence[str]) -> str:
    """SQLite GLOB over a path's compact JSON text that matches exactly the paths holding
    ``steps`` as an ordered subsequence. An element starts with ``"`` right after ``[`` or
    ``,``, which inside a JSON string cannot happen (a quote there is ``\\"``), and ends at the
    first unescaped quote, so ``[[,]"view"`` is one whole element equal to ``view``."""
    parts = ["[[,]" + re.sub(r"([*?\[])", r"[\1]", json_text(s)) for s in steps]
    return "*" + "*".join(parts) + "*"


def regex_pattern(steps: Sequence[str]) -> str:
    """The same for PostgreSQL's ``jsonb::text`` (elements separated by ``, ``), as a POSIX
    regular expression."""
    return "".join(r"(\[|, )" + _pg_re_escape(json_text(s)) + ".*" for s in steps)


def _pg_re_escape(text: str) -> str:
    return "".join("\\" + c if not (c.isalnum() or c == "_" or ord(c) > 127) else c
                   for c in text)


def match_steps(path: Sequence[str], steps: Sequence[str]) -> list[int]:
    """Indexes in ``path`` of the greedy ordered match of ``steps`` (as many as matched)."""
    out: list[int] = []
    i = 0
    for step in steps:
        while i < len(path) and path[i] != step:
            i += 1
        if i == len(path):
            break
        out.append(i)
        i += 1
    return out


def funnel_medians(steps: Sequence[str], rows: Iterable[tuple[Any, Any]]
                   ) -> list[float | int | None]:
    """Per step, the median time from the previous step (None for the first, and where no
    session was timed) over the ``(path, path_ms)`` rows of the sessions that reached step 2."""
    gaps: list[list[int]] = [[] for _ in steps]
    for path, path_ms in rows:
        p = _json(path)
        t = _json(path_ms)
        idx = match_steps(p, steps)
        if len(t) != len(p):
            continue  # stored without path_ms: counted, not timed
        for k in range(1, len(idx)):
            gaps[k].append(t[idx[k]] - t[idx[k - 1]])
    return [statistics.median(g) if g else None for g in gaps]


def funnel_result(steps: Sequence[str], entered: Sequence[int], total: int, truncated: int,
                  medians: Sequence[float | int | None]) -> dict[str, Any]:
    """The funnel from the sessions entering each step (1..k) and the median time from the
    previous step of each."""
    out = []
    for k, step in enumerate(steps):
        n = entered[k]
        prev = entered[k - 1] if k else None
        out.append({
            "step": k + 1,
            "type": step,
            "sessions": n,
            "conversion_from_previous": (n / prev if prev else None) if k else None,
            "conversion_from_first": n / entered[0] if entered[0] else None,
            "median_ms_from_previous": medians[k],
        })
    return {
        "steps": out,
        "sessions": total,
        "conversion": entered[-1] / entered[0] if entered[0] else None,
        "truncated_paths": truncated,
    }


def _json(value: Any) -> Any:
    return orjson.loads(value) if isinstance(value, str | bytes) else value


# ---------------------------------------------------------------------- histograms


def histogram_slots(edges: Sequence[int]) -> list[int]:
    """The edges padded to ``MAX_EDGES`` slots (unused slots never reached)."""
    return [*edges, *([MAX_MS] * (MAX_EDGES - len(edges)))]


def check_edges(edges: Sequence[int]) -> list[int]:
    out = [int(e) for e in edges]
    if not 1 <= len(out) <= MAX_EDGES:
        raise ValueError(f"give 1 to {MAX_EDGES} bin edges, got {len(out)}")
    if out[0] < 1 or any(b <= a for a, b in pairwise(out)):
        raise ValueError("bin edges must be positive and strictly increasing, e.g. 10s,1m,5m")
    return out


def case_sql(column: str, placeholder: str) -> str:
    """``CASE WHEN column < e1 THEN 0 ... ELSE n END`` over the ``MAX_EDGES`` edge parameters;
    ``placeholder(i)`` names parameter i (1-based). Built from constants only."""
    whens = " ".join(f"WHEN {column} < {placeholder.format(i=i)} THEN {i - 1}"
                     for i in range(1, MAX_EDGES + 1))
    return f"CASE {whens} ELSE {MAX_EDGES} END"


def histogram_result(edges: Sequence[int], counts: dict[int, int]) -> list[dict[str, Any]]:
    lows = [0, *edges]
    highs = [*edges, None]
    return [{"lo": lo, "hi": hi, "sessions": int(counts.get(i, 0))}
            for i, (lo, hi) in enumerate(zip(lows, highs, strict=True))]


# ---------------------------------------------------------------------- ranked lists


FIRST_RANK = (MAX_MS, "")


def encode_rank_cursor(n: int, value: str) -> str:
    """A ranked list's page cursor: ``(count, value)`` of a page's last row."""
    return base64.urlsafe_b64encode(orjson.dumps([n, value])).decode().rstrip("=")


def decode_rank_cursor(cursor: str) -> tuple[int, str]:
    try:
        value = orjson.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    except (ValueError, TypeError):
        value = None
    if (isinstance(value, list) and len(value) == 2 and type(value[0]) is int
            and 0 <= value[0] <= MAX_MS and isinstance(value[1], str) and "\x00" not in value[1]):
        return value[0], value[1]
    raise ValueError(f"cursor {cursor!r} is not one this API issued: pass next_cursor unchanged")


def ranked_page(rows: list[tuple[Any, ...]], limit: int
                ) -> tuple[list[tuple[Any, ...]], str | None]:
    """Rows fetched with ``limit + 1``: the page and the cursor of the next one (or None)."""
    if len(rows) <= limit:
        return rows, None
    page = rows[:limit]
    value, n = page[-1][0], page[-1][1]
    return page, encode_rank_cursor(int(n), value)


def _money(value: Any) -> float:
    """Sums of revenue rounded as the engine rounds a session's (6 places): the stores add
    floats in different orders, and the last bits must not make them disagree."""
    return round(float(value or 0), 6)


def rate(part: Any, whole: Any) -> float | None:
    return float(part) / whole if whole else None


# ---------------------------------------------------------------------- the queries


HISTOGRAM_COLUMNS = {"duration": "duration_ms", "events": "event_count"}
DEFAULT_EDGES = {"duration": DURATION_EDGES_MS, "events": EVENT_EDGES}
RANKED_COLUMNS = ("entry_page", "exit_page", "campaign", "referrer")
PAGE_KINDS = {"entry": "entry_page", "exit": "exit_page"}
CONVERSION_DIMENSIONS = {"entry_page": "entry_page", "campaign": "campaign",
                         "referrer": "referrer", "exit_page": "exit_page"}
MAX_LIMIT = 1000


class Analytics(ABC):
    """The analytics half of ``SessionQueries``: arguments checked and buckets assembled
    here, over the ``_an_*`` primitives each reader supplies (the stores as SQL, constant
    statements with every user choice a parameter; ``ColumnarAnalytics`` over arrays).

    Ranges are ``[start_ms, end_ms)`` over session *starts*, as in ``summary``."""

    # -- what a reader provides

    @abstractmethod
    def _an_start_range(self) -> tuple[int | None, int | None]:
        """MIN and MAX session start (None, None when empty)."""
        ...

    @abstractmethod
    def _an_timeseries(self, spans: list[tuple[int, int, int]], size: int, by_offset: bool
                       ) -> list[tuple[Any, ...]]:
        """``(bucket, offset_key, sessions, users, events, bounces, engaged, converted,
        revenue)`` per non-empty bucket."""
        ...

    @abstractmethod
    def _an_histogram(self, column: str, edges: list[int], lo: int, hi: int
                      ) -> list[tuple[int, int]]:
        ...

    @abstractmethod
    def _an_ranked(self, column: str, lo: int, hi: int, after: tuple[int, str], limit: int
                   ) -> list[tuple[Any, ...]]:
        """``(value, sessions, bounces, converted, revenue)``, most sessions first."""
        ...

    @abstractmethod
    def _an_ranked_none(self, column: str, lo: int, hi: int) -> tuple[Any, ...]:
        """``(sessions, without_value, their bounces, converted, revenue)``."""
        ...

    # -- the queries

    def timeseries(self, interval: str, tz: str, start_ms: int | None, end_ms: int | None
                   ) -> dict[str, Any]:
        """Sessions, users (distinct keys), events and rates per local hour or day of ``tz``,
        every bucket of the range present (zeros included). Without a range: the data's."""
        if interval not in INTERVALS:
            raise ValueError(f"interval={interval!r}: use hour or day")
        zi = zone(tz)
        lo, hi = start_ms, end_ms
        if lo is None or hi is None:
            first, last = self._an_start_range()
            lo = first if lo is None else lo
            hi = (last + 1 if last is not None else None) if hi is None else hi
        plan = buckets(zi, interval, lo, hi) if lo is not None and hi is not None else []
        rows = {}
        if plan:
            assert lo is not None and hi is not None
            spans = offset_spans(zi, lo, hi)
            rows = {(int(b), int(o)): r for b, o, *r in
                    self._an_timeseries(spans, INTERVALS[interval], interval == "hour")}
        out = []
        for key, start in plan:
            n, users, events, bounces, engaged, converted, revenue = rows.get(
                key, (0, 0, 0, 0, 0, 0, 0.0))
            out.append({
                "start": iso_local(start, zi), "start_ms": start, "sessions": int(n),
                "users": int(users), "events": int(events or 0),
                "bounce_rate": rate(bounces, n), "engaged_rate": rate(engaged, n),
                "conversion_rate": rate(converted, n), "revenue": _money(revenue),
            })
        return {"interval": interval, "tz": zi.key, "buckets": out}

    def histogram(self, metric: str, start_ms: int | None, end_ms: int | None,
                  edges: Sequence[int] | None = None) -> dict[str, Any]:
        """Sessions per bin of session length (``duration``, ms) or events per session
        (``events``); bins are ``[lo, hi)``, the last open-ended."""
        if metric not in HISTOGRAM_COLUMNS:
            raise ValueError(f"metric={metric!r}: use duration or events")
        chosen = check_edges(edges if edges else DEFAULT_EDGES[metric])
        lo, hi = _bounds(start_ms, end_ms)
        counts = {int(b): int(n) for b, n in
                  self._an_histogram(HISTOGRAM_COLUMNS[metric], chosen, lo, hi)}
        bins = histogram_result(chosen, counts)
        return {"metric": metric, "unit": "ms" if metric == "duration" else "events",
                "bins": bins, "sessions": sum(b["sessions"] for b in bins)}

    def top_pages(self, kind: str, start_ms: int | None, end_ms: int | None, limit: int,
                  cursor: str | None) -> dict[str, Any]:
        """Entry or exit pages by sessions, with bounce and conversion rates; paged."""
        if kind not in PAGE_KINDS:
            raise ValueError(f"kind={kind!r}: use entry or exit")
        return self._ranked(PAGE_KINDS[kind], start_ms, end_ms, limit, cursor, "page")

    def conversion_by(self, dimension: str, start_ms: int | None, end_ms: int | None,
                      limit: int, cursor: str | None) -> dict[str, Any]:
        """Conversion rate (sessions with a conversion / sessions) and revenue per entry page,
        campaign, referrer or exit page, by sessions; paged."""
        if dimension not in CONVERSION_DIMENSIONS:
            raise ValueError(f"by={dimension!r}: use one of {', '.join(CONVERSION_DIMENSIONS)}")
        return self._ranked(CONVERSION_DIMENSIONS[dimension], start_ms, end_ms, limit, cursor,
                            "value")

    def _ranked(self, column: str, start_ms: int | None, end_ms: int | None, limit: int,
                cursor: str | None, name: str) -> dict[str, Any]:
        if not 1 <= limit <= MAX_LIMIT:
            raise ValueError(f"limit must be between 1 and {MAX_LIMIT}, got {limit}")
        after = decode_rank_cursor(cursor) if cursor else FIRST_RANK
        lo, hi = _bounds(start_ms, end_ms)
        page, next_cursor = ranked_page(self._an_ranked(column, lo, hi, after, limit + 1), limit)
        total, none, none_bounces, none_converted, none_revenue = self._an_ranked_none(
            column, lo, hi)
        rows = [{name: value, "sessions": int(n), "share": rate(n, total),
                 "bounce_rate": rate(bounces, n), "converted": int(converted),
                 "conversion_rate": rate(converted, n), "revenue": _money(revenue)}
                for value, n, bounces, converted, revenue in page]
        return {"rows": rows, "next_cursor": next_cursor, "sessions": int(total),
                "without_value": {"sessions": int(none), "bounce_rate": rate(none_bounces, none),
                                  "converted": int(none_converted or 0),
                                  "conversion_rate": rate(none_converted, none),
                                  "revenue": _money(none_revenue)}}



class StoreAnalytics(Analytics):
    """The queries the stores answer in SQL and the columnar copy answers its own way (the
    funnel over flat paths, ``live`` from the store's counters)."""

    @abstractmethod
    def _an_funnel_counts(self, lo: int, hi: int, patterns: list[str | None]
                          ) -> tuple[int, int, list[int]]:
        """Sessions in range, those with a cut path, and per pattern slot (``MAX_STEPS``, None
        for unused) the sessions whose path matches it."""
        ...

    @abstractmethod
    def _an_funnel_rows(self, lo: int, hi: int, second: str, below: str
                        ) -> list[tuple[Any, Any]]:
        """``(path, path_ms)`` of the sessions in range matching the two-step pattern whose id
        sorts below ``below`` (a uniform sample of hash ids; ``"\uffff"`` for all)."""
        ...

    @abstractmethod
    def _an_pattern(self, steps: Sequence[str]) -> str:
        ...

    @abstractmethod
    def _an_live(self) -> tuple[dict[str, int], int, list[tuple[Any, ...]], dict[str, int]]:
        """Unclosed sessions by derived status, all sessions, ``(partition, stream_time,
        updated_at)`` rows, cumulative ingest counters by name."""
        ...

    # -- the queries

    def funnel(self, steps: Sequence[str], start_ms: int | None, end_ms: int | None
               ) -> dict[str, Any]:
        """Sessions entering each step (ordered subsequence of the path), conversion between
        steps and median time between them (module docstring)."""
        steps = list(steps)
        if not 2 <= len(steps) <= MAX_STEPS:
            raise ValueError(f"a funnel has 2 to {MAX_STEPS} steps, got {len(steps)}")
        lo, hi = _bounds(start_ms, end_ms)
        patterns: list[str | None] = [self._an_pattern(steps[:k + 1]) for k in range(len(steps))]
        total, truncated, counts = self._an_funnel_counts(
            lo, hi, patterns + [None] * (MAX_STEPS - len(steps)))
        entered = [int(n) for n in counts[:len(steps)]]
        # times between steps from the sessions that reached step 2: all of them, or a uniform
        # sample of about TIMING_SAMPLE when there are more (session ids are hashes)
        below, sampled = "\uffff", False
        if entered[1] > TIMING_SAMPLE:
            below, sampled = f"{TIMING_SAMPLE * 65536 // entered[1]:04x}", True
        rows = self._an_funnel_rows(lo, hi, patterns[1], below)  # type: ignore[arg-type]
        out = funnel_result(steps, entered, int(total), int(truncated),
                            funnel_medians(steps, rows))
        out["timing"] = {"sessions": len(rows), "sampled": sampled}
        return out

    def live(self) -> dict[str, Any]:
        """Now: sessions by (derived) status, stream time and its lag behind the wall clock per
        partition, and the cumulative counters that two readings turn into rates."""
        unclosed, total, partitions, counters = self._an_live()
        first, last = self._an_start_range()
        now = now_ms()
        by_status = {"open": unclosed.get("open", 0), "inactive": unclosed.get("inactive", 0)}
        by_status["closed"] = total - by_status["open"] - by_status["inactive"]
        rejected = {r: int(counters.get(r, 0)) for r in _REASONS}
        rejected |= {k: int(v) for k, v in counters.items()
                     if k not in rejected and k not in ("counted", "received")}
        return {
            "now_ms": now,
            "active_sessions": by_status["open"],
            "sessions": {**by_status, "total": total},
            "first_start_ms": first,
            "last_start_ms": last,
            "counted": int(counters.get("counted", 0)),
            "rejected": rejected,
            "partitions": [{"partition": p, "stream_time_ms": st,
                            "lag_ms": None if st is None else now - st,
                            "updated_at_ms": up} for p, st, up in partitions],
        }


_REASONS = tuple(r.value for r in Reason)
