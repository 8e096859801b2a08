"""ColumnarAnalytics: the analytics answered from an in-memory columnar copy of the sessions.

Why: a dashboard asks for a month of sessions at a time. Over the ``sessions`` table that is a
scan of a million wide rows (paths as JSON) per endpoint, seconds in either store. The same
questions over a few NumPy arrays (start, duration, events, flags, dictionary codes of the
key, pages and campaigns, and the paths as one flat array of type codes with offsets) take
milliseconds, exactly, with no rollup whose grain would limit the questions.

How it stays right: the store numbers every session write per partition (``change_seq``), and
``store.session_changes(watermarks)`` returns, in one snapshot, the closed sessions written
since the watermarks and every session that is not closed. Closed sessions are immutable and
never retracted (SEMANTICS.md §3, §5), so the copy keeps the closed rows it has seen (a row
written again under the same id replaces its old one) and takes the unclosed ones whole on
every refresh: after ``refresh()`` it holds exactly what the store holds. ``serve`` refreshes
in the background every few seconds; a reader sees the last complete copy (``as_of_ms``), and
the store's SQL answers until the first copy exists.

What it answers: ``summary`` and every ``StoreAnalytics`` query but ``live`` (which reads the
store's counters). Each one gives what the SQL of the stores gives (the tests compare them), with
one difference: funnel times between steps are medians over every session, never a sample.
Memory: about 120 bytes per session plus the dictionaries of keys and pages and the paths
(4 + 8 bytes per step).
"""

from __future__ import annotations

import bisect
import dataclasses
import functools
import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import orjson
import polars as pl

from sessionize.stores import analytics as an
from sessionize.stores.records import SessionChanges, now_ms
from sessionize.stores.records import bounds as _bounds

log = logging.getLogger(__name__)

DIMENSIONS = ("entry_page", "exit_page", "referrer", "campaign")


class Vocabulary:
    """Text -> dense int code, append-only (codes stay valid across refreshes)."""

    def __init__(self) -> None:
        self.codes: dict[str, int] = {}
        self.values: list[str] = []
        self._rank: np.ndarray | None = None
        self._sorted: list[str] = []

    def code(self, value: str | None) -> int:
        if value is None:
            return -1
        c = self.codes.get(value)
        if c is None:
            c = self.codes[value] = len(self.values)
            self.values.append(value)
        return c

    def rank(self) -> tuple[np.ndarray, list[str]]:
        """Each code's position in code point order (bytewise UTF-8, as the stores compare),
        and the values in that order; recomputed only when the vocabulary grew."""
        if self._rank is None or len(self._rank) != len(self.values):
            order = sorted(range(len(self.values)), key=self.values.__getitem__)
            rank = np.empty(len(order), dtype=np.int64)
            rank[order] = np.arange(len(order))
            self._rank, self._sorted = rank, [self.values[i] for i in order]
        return self._rank, self._sorted


@dataclass
class Columns:
    """Sessions as parallel arrays; paths as CSR (``path_off[i]:path_off[i + 1]`` in the flat
    ``path_type`` / ``path_ms``). ``alive`` is False for rows a later write replaced."""

    ids: np.ndarray
    key: np.ndarray
    start: np.ndarray
    duration: np.ndarray
    events: np.ndarray
    bounce: np.ndarray
    engaged: np.ndarray
    converted: np.ndarray
    revenue: np.ndarray
    truncated: np.ndarray
    timed: np.ndarray  # path_ms holds a time for every path step
    dims: dict[str, np.ndarray]
    path_off: np.ndarray
    path_type: np.ndarray
    path_ms: np.ndarray
    alive: np.ndarray
    _positions: dict[int, np.ndarray] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.start)

    def positions(self, code: int) -> np.ndarray:
        """Flat path positions holding type ``code``, sorted (cached: the copy is immutable)."""
        p = self._positions.get(code)
        if p is None:
            p = self._positions[code] = np.flatnonzero(self.path_type == code)
        return p

    def rows(self, lo: int, hi: int) -> np.ndarray:
        """Indexes of the live sessions starting in ``[lo, hi)``."""
        return np.flatnonzero((self.start >= lo) & (self.start < hi) & self.alive)


class ColumnBuilder:
    """Turns store rows (``records.ANALYTICS_COLUMNS``) into ``Columns``."""

    def __init__(self) -> None:
        self.keys = Vocabulary()
        self.types = Vocabulary()
        self.dims = {d: Vocabulary() for d in DIMENSIONS}

    def build(self, rows: Sequence[tuple[Any, ...]]) -> Columns:
        n = len(rows)
        ids = np.array([r[0] for r in rows], dtype=object)
        key = np.fromiter((self.keys.code(r[1]) for r in rows), np.int32, n)
        ints = np.array([r[2:5] for r in rows], dtype=np.int64).reshape(n, 3)
        flags = np.array([(*r[5:8], r[9]) for r in rows], dtype=np.int64).reshape(n, 4)
        revenue = np.fromiter((r[8] for r in rows), np.float64, n)
        dims = {d: np.fromiter((vocab.code(r[10 + i]) for r in rows), np.int32, n)
                for i, (d, vocab) in enumerate(self.dims.items())}
        lengths = np.zeros(n + 1, dtype=np.int64)
        types: list[int] = []
        times: list[int] = []
        timed = np.zeros(n, dtype=bool)
        code = self.types.code
        for i, r in enumerate(rows):
            path, path_ms = _json(r[14]), _json(r[15])
            lengths[i + 1] = len(path)
            types.extend(code(t) for t in path)
            if len(path_ms) == len(path):
                timed[i] = True
                times.extend(path_ms)
            else:  # stored without step times (an older writer): counted, never timed
                times.extend([0] * len(path))
        return Columns(
            ids=ids, key=key, start=ints[:, 0].copy(), duration=ints[:, 1].copy(),
            events=ints[:, 2].copy(), bounce=flags[:, 0] != 0, engaged=flags[:, 1] != 0,
            converted=flags[:, 2] > 0, revenue=revenue, truncated=flags[:, 3] != 0, timed=timed,
            dims=dims, path_off=np.cumsum(lengths), path_type=np.array(types, dtype=np.int32),
            path_ms=np.array(times, dtype=np.int64), alive=np.ones(n, dtype=bool),
        )


def concat(parts: Sequence[Columns]) -> Columns:
    """One ``Columns`` of several, in order (path offsets shifted)."""
    if len(parts) == 1:
        return parts[0]
    shifts = np.cumsum([0] + [len(p.path_type) for p in parts[:-1]])
    return Columns(
        ids=np.concatenate([p.ids for p in parts]),
        key=np.concatenate([p.key for p in parts]),
        start=np.concatenate([p.start for p in parts]),
        duration=np.concatenate([p.duration for p in parts]),
        events=np.concatenate([p.events for p in parts]),
        bounce=np.concatenate([p.bounce for p in parts]),
        engaged=np.concatenate([p.engaged for p in parts]),
        converted=np.concatenate([p.converted for p in parts]),
        revenue=np.concatenate([p.revenue for p in parts]),
        truncated=np.concatenate([p.truncated for p in parts]),
        timed=np.concatenate([p.timed for p in parts]),
        dims={d: np.concatenate([p.dims[d] for p in parts]) for d in DIMENSIONS},
        path_off=np.concatenate([parts[0].path_off[:1]] + [p.path_off[1:] + s
                                                            for p, s in zip(parts, shifts, strict=True)]),
        path_type=np.concatenate([p.path_type for p in parts]),
        path_ms=np.concatenate([p.path_ms for p in parts]),
        alive=np.concatenate([p.alive for p in parts]),
    )


def _columnar(method: Callable[..., Any]) -> Callable[..., Any]:
    """A query answered from the columnar copy once it exists (pinned for the whole query, so
    that a refresh in between cannot mix two copies), from the store's SQL until then."""
    name = method.__name__

    @functools.wraps(method)
    def query(self: ColumnarAnalytics, *args: Any, **kwargs: Any) -> Any:
        cols = self._cols
        if cols is None:
            return getattr(self.store, name)(*args, **kwargs)
        self._local.cols = cols
        try:
            return method(self, *args, **kwargs)
        finally:
            self._local.cols = None

    return query


class ColumnarAnalytics(an.Analytics):
    """``SessionQueries`` over ``store``: the analytics (and ``summary``) from the columnar
    copy once it exists, everything else (and the analytics until then) from the store."""

    def __init__(self, store: Any, *, refresh_s: float = 5.0) -> None:
        self.store = store
        self.refresh_s = refresh_s
        self._builder = ColumnBuilder()
        self._lock = threading.Lock()  # one refresh at a time
        self._seqs: dict[int, int] | None = None
        self._closed: Columns | None = None  # every closed session seen, replaced ones dead
        self._index: dict[str, int] = {}  # closed session id -> its row in _closed
        self._cols: Columns | None = None  # what queries read: _closed + the unclosed
        self.as_of_ms: int | None = None
        self._local = threading.local()  # the copy a query in this thread reads
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()

    # -- keeping the copy

    def refresh(self) -> bool:
        """Take what the store wrote since the last refresh; True if anything changed."""
        with self._lock:
            changes: SessionChanges = self.store.session_changes(self._seqs)
            if changes.unclosed is None and self._cols is not None:
                self.as_of_ms = now_ms()
                return False
            closed = self._add_closed(changes.closed)
            unclosed = self._builder.build(changes.unclosed or [])
            stale = [self._index.pop(s) for s in unclosed.ids if s in self._index]
            if stale:  # closed, then written again as open (a re-run): the old row is gone
                closed = self._closed = _without(closed, stale)
            self._cols = concat([closed, unclosed]) if len(unclosed) else closed
            self._seqs = changes.seqs
            self.as_of_ms = now_ms()
            return True

    def _add_closed(self, rows: list[tuple[Any, ...]]) -> Columns:
        new = self._builder.build(rows)
        base = self._closed
        offset = 0 if base is None else len(base)
        if base is not None:
            replaced = [self._index[s] for s in new.ids if s in self._index]
            if replaced:  # written again under the same id: the new row replaces the old
                base = _without(base, replaced)
        for i, sid in enumerate(new.ids):
            self._index[sid] = offset + i
        self._closed = new if base is None else concat([base, new]) if len(new) else base
        return self._closed

    def start(self) -> None:
        """Refresh now in a background thread, then every ``refresh_s`` seconds."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._loop, name="columnar-refresh",
                                            daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def _loop(self) -> None:
        while not self._stop.is_set():
            t = time.perf_counter()
            try:
                if self.refresh():
                    log.info("columnar copy refreshed: %d sessions in %.2f s",
                             int(self._cols.alive.sum()) if self._cols else 0,
                             time.perf_counter() - t)
            except Exception as exc:  # the store is down: keep the last copy, try again
                log.warning("columnar copy not refreshed: %s", exc)
            self._stop.wait(self.refresh_s)

    @property
    def ready(self) -> bool:
        return self._cols is not None

    # -- SessionQueries: the store's reads

    def active_sessions(self, key: str) -> list[dict[str, Any]]:
        return self.store.active_sessions(key)

    def user_sessions(self, key: str, start_ms: int | None, end_ms: int | None, limit: int,
                      cursor: str | None) -> tuple[list[dict[str, Any]], str | None]:
        return self.store.user_sessions(key, start_ms, end_ms, limit, cursor)

    def session(self, session_id: str) -> dict[str, Any] | None:
        return self.store.session(session_id)

    def rejected_counts(self, start_ms: int | None, end_ms: int | None) -> dict[str, int]:
        return self.store.rejected_counts(start_ms, end_ms)

    def live(self) -> dict[str, Any]:
        return self.store.live()

    def health(self) -> dict[str, Any]:
        info = dict(self.store.health())
        info["analytics"] = {"columnar": self.ready, "as_of_ms": self.as_of_ms,
                             "sessions": int(self._cols.alive.sum()) if self._cols else 0}
        return info

    def __getattr__(self, name: str) -> Any:
        # what else a store offers (runs, top_keys, stream_times, ...) for status and the CLI
        return getattr(self.store, name)

    # -- the queries

    @_columnar
    def summary(self, start_ms: int | None, end_ms: int | None) -> dict[str, Any]:
        c = self._view()
        rows = c.rows(*_bounds(start_ms, end_ms))
        n = len(rows)
        events = int(c.events[rows].sum())
        if not n:
            return {"sessions": 0, "users": 0, "events": 0, "median_duration_ms": None,
                    "mean_duration_ms": None, "bounce_rate": None, "engaged_rate": None,
                    "conversion_rate": None, "events_per_session": None, "revenue": 0.0}
        duration = c.duration[rows]
        return {
            "sessions": n,
            "users": _distinct(c.key[rows]),
            "events": events,
            "median_duration_ms": float(np.median(duration)),
            "mean_duration_ms": float(duration.mean()),
            "bounce_rate": float(c.bounce[rows].mean()),
            "engaged_rate": float(c.engaged[rows].mean()),
            "conversion_rate": float(c.converted[rows].mean()),
            "events_per_session": events / n,
            "revenue": float(c.revenue[rows].sum()),
        }

    timeseries = _columnar(an.Analytics.timeseries)
    histogram = _columnar(an.Analytics.histogram)
    top_pages = _columnar(an.Analytics.top_pages)
    conversion_by = _columnar(an.Analytics.conversion_by)

    @_columnar
    def funnel(self, steps: Sequence[str], start_ms: int | None, end_ms: int | None
               ) -> dict[str, Any]:
        """As ``Analytics.funnel``, with the greedy ordered match vectorised over the flat
        paths (per step: the first position of its type after the previous match, found by
        binary search in that type's sorted positions) and the medians over every session."""
        c = self._view()
        steps = list(steps)
        if not 2 <= len(steps) <= an.MAX_STEPS:
            raise ValueError(f"a funnel has 2 to {an.MAX_STEPS} steps, got {len(steps)}")
        rows = c.rows(*_bounds(start_ms, end_ms))
        end = c.path_off[rows + 1]
        cur = c.path_off[rows]
        alive = np.ones(len(rows), dtype=bool)
        timed = c.timed[rows]
        entered: list[int] = []
        medians: list[float | int | None] = [None]
        prev = cur
        for k, step in enumerate(steps):
            code = self._builder.types.codes.get(step)
            positions = c.positions(code) if code is not None else np.empty(0, np.int64)
            if len(positions):
                i = np.searchsorted(positions, cur)
                found = positions[np.minimum(i, len(positions) - 1)]
                alive &= (i < len(positions)) & (found < end)
            else:
                found = cur
                alive[:] = False
            entered.append(int(alive.sum()))
            if k:
                both = alive & timed
                medians.append(_median(c.path_ms[found[both]] - c.path_ms[prev[both]]))
            prev, cur = found, found + 1
        out = an.funnel_result(steps, entered, len(rows), int(c.truncated[rows].sum()),
                                medians)
        out["timing"] = {"sessions": entered[1], "sampled": False}
        return out

    # -- the primitives of Analytics, over the columns

    def _view(self) -> Columns:
        cols: Columns | None = self._local.cols
        assert cols is not None, "a columnar primitive outside a query"
        return cols

    def _an_start_range(self) -> tuple[int | None, int | None]:
        c = self._view()
        live = c.start[c.alive]
        return (int(live.min()), int(live.max())) if len(live) else (None, None)

    def _an_timeseries(self, spans: list[tuple[int, int, int]], size: int, by_offset: bool
                       ) -> list[tuple[Any, ...]]:
        c = self._view()
        parts = []
        for lo, hi, off in spans:
            rows = c.rows(lo, hi)
            parts.append((rows, (c.start[rows] + off) // size, off if by_offset else 0))
        if not parts:
            return []
        offsets = sorted({o for _, _, o in parts})
        k = len(offsets)
        rows = np.concatenate([r for r, _, _ in parts])
        if not len(rows):
            return []
        # (bucket, offset) as one integer, bucket * k + the offset's index, counted from the
        # first: the buckets of a range are few and dense, so they index arrays directly
        # (no sort: np.unique of a million took 50 ms here)
        combined = np.concatenate([b * k + offsets.index(o) for _, b, o in parts])
        first = int(combined.min())
        group = combined - first
        g = int(group.max()) + 1
        counts = {
            "n": np.bincount(group, minlength=g),
            "users": _distinct_per_group(group, c.key[rows], g),
            "events": np.bincount(group, c.events[rows], minlength=g),
            "bounce": np.bincount(group, c.bounce[rows], minlength=g),
            "engaged": np.bincount(group, c.engaged[rows], minlength=g),
            "converted": np.bincount(group, c.converted[rows], minlength=g),
            "revenue": np.bincount(group, c.revenue[rows], minlength=g),
        }
        return [((first + i) // k, offsets[(first + i) % k], int(counts["n"][i]),
                 int(counts["users"][i]), int(counts["events"][i]), int(counts["bounce"][i]),
                 int(counts["engaged"][i]), int(counts["converted"][i]),
                 float(counts["revenue"][i]))
                for i in np.flatnonzero(counts["n"]).tolist()]

    def _an_histogram(self, column: str, edges: list[int], lo: int, hi: int
                      ) -> list[tuple[int, int]]:
        c = self._view()
        values = (c.duration if column == "duration_ms" else c.events)[c.rows(lo, hi)]
        bins = np.bincount(np.searchsorted(np.asarray(edges), values, side="right"),
                           minlength=len(edges) + 1)
        return [(i, int(n)) for i, n in enumerate(bins) if n]

    def _an_ranked(self, column: str, lo: int, hi: int, after: tuple[int, str], limit: int
                   ) -> list[tuple[Any, ...]]:
        c = self._view()
        rows = c.rows(lo, hi)
        codes = c.dims[column][rows]
        has = codes >= 0
        vocab = self._builder.dims[column]
        v = len(vocab.values)
        codes, rows = codes[has], rows[has]
        n = np.bincount(codes, minlength=v)
        rank, ordered = vocab.rank()
        present = np.flatnonzero(n)
        count_after, value_after = after
        above = bisect.bisect_right(ordered, value_after)  # ranks >= this sort after it
        pn = n[present]
        keep = (pn < count_after) | ((pn == count_after) & (rank[present] >= above))
        chosen = present[keep]
        order = np.lexsort((rank[chosen], -n[chosen]))[:limit]
        chosen = chosen[order]
        bounces = np.bincount(codes, c.bounce[rows], minlength=v)
        converted = np.bincount(codes, c.converted[rows], minlength=v)
        revenue = np.bincount(codes, c.revenue[rows], minlength=v)
        return [(vocab.values[i], int(n[i]), int(bounces[i]), int(converted[i]),
                 float(revenue[i])) for i in chosen]

    def _an_ranked_none(self, column: str, lo: int, hi: int) -> tuple[Any, ...]:
        c = self._view()
        rows = c.rows(lo, hi)
        none = rows[c.dims[column][rows] < 0]
        return (len(rows), len(none), int(c.bounce[none].sum()), int(c.converted[none].sum()),
                float(c.revenue[none].sum()))


def _without(cols: Columns, rows: list[int]) -> Columns:
    """``cols`` with ``rows`` dead, as a new object: a query may be reading the old one."""
    alive = cols.alive.copy()
    alive[rows] = False
    return dataclasses.replace(cols, alive=alive, _positions=cols._positions)


def _distinct_per_group(group: np.ndarray, key: np.ndarray, groups: int) -> np.ndarray:
    """Distinct keys in each of ``groups`` groups: Polars' hash group-by, on every core.
    Sorting the million (group, key) pairs of a month took 70 ms here, NumPy's hashing
    ``np.unique`` fifty times that."""
    per = pl.DataFrame({"g": group, "k": key}).group_by("g").agg(pl.col("k").n_unique())
    out = np.zeros(groups, np.int64)
    out[per["g"].to_numpy()] = per["k"].to_numpy()
    return out


def _distinct(codes: np.ndarray) -> int:
    """Distinct non-negative codes, by a bitmap (cheaper than sorting a million of them)."""
    if not len(codes):
        return 0
    seen = np.zeros(int(codes.max()) + 1, dtype=bool)
    seen[codes] = True
    return int(seen.sum())


def _median(values: np.ndarray) -> float | int | None:
    """``statistics.median`` of integers: the middle one, or the mean of the middle two."""
    n = len(values)
    if not n:
        return None
    if n % 2:
        return int(np.partition(values, n // 2)[n // 2])
    part = np.partition(values, [n // 2 - 1, n // 2])
    return (int(part[n // 2 - 1]) + int(part[n // 2])) / 2


def _json(value: Any) -> Any:
    return orjson.loads(value) if isinstance(value, str | bytes) else value

