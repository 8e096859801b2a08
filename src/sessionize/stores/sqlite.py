"""SqliteStore: the embedded default store, one file, no server (stdlib ``sqlite3``).

Why it looks the way it does:

- **One transaction per batch.** ``apply`` writes a ChangeSet (retractions, upserts, finals,
  rejections, stream time, source offsets) with ``executemany`` inside one ``BEGIN IMMEDIATE``,
  so a crash or a bad row leaves the store exactly as it was before the batch.
- **WAL mode** with ``synchronous=NORMAL``: readers never block the writer and the writer never
  blocks readers. The API reads through one connection per thread; the pipeline writes through
  one connection guarded by a lock.
- **Status is derived at read time.** A session stored as ``open`` whose ``expires`` lies before
  its partition's stream time is reported ``inactive`` (SEMANTICS.md §3), so the store need not
  rewrite every open row each time stream time moves.
- **Versioned migrations** (``PRAGMA user_version``): ``MIGRATIONS`` only grows; opening a file
  applies the steps it has not seen yet, and refuses a file written by a newer version.

Every statement is a constant with ``?`` parameters: no SQL is ever built from user text.
"""

from __future__ import annotations

import os
import sqlite3
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import orjson

from sessionize.engine.engine import ChangeSet
from sessionize.engine.event import Reason
from sessionize.errors import StoreError
from sessionize.stores import analytics as an
from sessionize.stores.analytics import HISTOGRAM_COLUMNS, MAX_EDGES, RANKED_COLUMNS, case_sql
from sessionize.stores.base import RunInfo
from sessionize.stores.records import (
    ANALYTICS_COLUMNS,
    FIRST_PAGE,
    SESSION_COLUMNS,
    SessionChanges,
    decode_cursor,
    encode_cursor,
    fetch_yielding,
    ingest_counts,
)
from sessionize.stores.records import bounds as _bounds
from sessionize.stores.records import json_text as _json
from sessionize.stores.records import now_ms as _now_ms
from sessionize.stores.records import rejection_row as _rejection_row
from sessionize.stores.records import session_record as _record
from sessionize.stores.records import session_row as _session_row

__all__ = ["MIGRATIONS", "SqliteStore", "decode_cursor", "encode_cursor"]

# Each step is a list of statements run in one transaction; append new steps, never edit old ones.
MIGRATIONS: list[list[str]] = [
    [
        """CREATE TABLE sessions (
            session_id TEXT PRIMARY KEY,
            "key" TEXT NOT NULL,
            "partition" INTEGER NOT NULL,
            start_ms INTEGER NOT NULL,
            end_ms INTEGER NOT NULL,
            expires_ms INTEGER NOT NULL,
            duration_ms INTEGER NOT NULL,
            event_count INTEGER NOT NULL,
            status TEXT NOT NULL CHECK (status IN ('open', 'inactive', 'closed')),
            page_views INTEGER NOT NULL,
            conversions INTEGER NOT NULL,
            revenue REAL NOT NULL,
            bounce INTEGER NOT NULL,
            engaged INTEGER NOT NULL,
            entry_page TEXT,
            exit_page TEXT,
            referrer TEXT,
            campaign TEXT,
            user_agent TEXT,
            is_bot INTEGER NOT NULL,
            path TEXT NOT NULL,
            path_truncated INTEGER NOT NULL,
            event_ids TEXT,
            run_id INTEGER,
            updated_at_ms INTEGER NOT NULL
        )""",
        'CREATE INDEX sessions_key_start ON sessions ("key", start_ms, session_id)',
        "CREATE INDEX sessions_start ON sessions (start_ms)",
        "CREATE INDEX sessions_unclosed ON sessions (status) WHERE status <> 'closed'",
        """CREATE TABLE rejected_events (
            id INTEGER PRIMARY KEY,
            run_id INTEGER,
            "partition" INTEGER NOT NULL,
            "offset" INTEGER,
            reason TEXT NOT NULL,
            detail TEXT NOT NULL,
            "key" TEXT,
            event_id TEXT,
            ts_ms INTEGER,
            at_ms INTEGER,
            raw TEXT
        )""",
        # at_ms: the event's ts, or the partition's stream time for records without one
        # (malformed input), so that ranged counts place every rejection somewhere in event time.
        "CREATE INDEX rejected_at ON rejected_events (at_ms)",
        """CREATE TABLE runs (
            run_id INTEGER PRIMARY KEY AUTOINCREMENT,
            source TEXT NOT NULL,
            config TEXT NOT NULL,
            started_at_ms INTEGER NOT NULL,
            finished_at_ms INTEGER,
            counters TEXT NOT NULL
        )""",
        """CREATE TABLE partitions (
            "partition" INTEGER PRIMARY KEY,
            stream_time_ms INTEGER NOT NULL,
            updated_at_ms INTEGER NOT NULL
        )""",
        """CREATE TABLE source_offsets (
            source TEXT NOT NULL,
            "partition" INTEGER NOT NULL,
            next_offset INTEGER NOT NULL,
            PRIMARY KEY (source, "partition")
        )""",
    ],
    [
        # ms since the session's start of each path step: the funnel's times between steps
        "ALTER TABLE sessions ADD COLUMN path_ms TEXT NOT NULL DEFAULT '[]'",
        # events counted and rejected (by reason) per partition, summed over every batch: what
        # the live view turns into rates (cumulative, so two readings give events per second)
        """CREATE TABLE ingest_counters (
            "partition" INTEGER NOT NULL,
            name TEXT NOT NULL,
            n INTEGER NOT NULL,
            PRIMARY KEY ("partition", name)
        )""",
    ],
    [
        # every session write is numbered per partition (change_seqs), so that a reader can
        # take what was written since it last looked (records.SessionChanges)
        "ALTER TABLE sessions ADD COLUMN change_seq INTEGER NOT NULL DEFAULT 0",
        'CREATE TABLE change_seqs ("partition" INTEGER PRIMARY KEY, seq INTEGER NOT NULL)',
        'CREATE INDEX sessions_closed_seq ON sessions ("partition", change_seq) '
        "WHERE status = 'closed'",
    ],
]

_COLUMNS = SESSION_COLUMNS
_UPSERT_SESSION = (
    f"INSERT INTO sessions ({', '.join(_COLUMNS)}) VALUES ({', '.join('?' * len(_COLUMNS))}) "
    "ON CONFLICT (session_id) DO UPDATE SET "
    + ", ".join(f"{c} = excluded.{c}" for c in _COLUMNS[1:])
)
_DELETE_SESSION = "DELETE FROM sessions WHERE session_id = ?"
_NEXT_SEQ = (
    'INSERT INTO change_seqs ("partition", seq) VALUES (?, 1) '
    'ON CONFLICT ("partition") DO UPDATE SET seq = seq + 1 RETURNING seq'
)
_ANALYTICS = f"SELECT {', '.join(ANALYTICS_COLUMNS)} FROM sessions "
_CLOSED_SINCE = _ANALYTICS + "WHERE \"partition\" = ? AND status = 'closed' AND change_seq > ?"
_INSERT_REJECTED = (
    'INSERT INTO rejected_events (run_id, "partition", "offset", reason, detail, "key", '
    "event_id, ts_ms, at_ms, raw) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
_UPSERT_PARTITION = (
    'INSERT INTO partitions ("partition", stream_time_ms, updated_at_ms) VALUES (?, ?, ?) '
    'ON CONFLICT ("partition") DO UPDATE SET '
    "stream_time_ms = max(stream_time_ms, excluded.stream_time_ms), "
    "updated_at_ms = excluded.updated_at_ms"
)
_ADD_COUNTER = (
    'INSERT INTO ingest_counters ("partition", name, n) VALUES (?, ?, ?) '
    'ON CONFLICT ("partition", name) DO UPDATE SET n = n + excluded.n'
)
_UPSERT_OFFSET = (
    'INSERT INTO source_offsets (source, "partition", next_offset) VALUES (?, ?, ?) '
    'ON CONFLICT (source, "partition") DO UPDATE SET next_offset = excluded.next_offset'
)

# Every read goes through this: the stored columns plus the status as of the partition's
# stream time (SEMANTICS.md §3: inactive once expires < T).
_SELECT_SESSIONS = """
SELECT s.session_id, s."key", s."partition", s.start_ms, s.end_ms, s.expires_ms, s.duration_ms,
       s.event_count,
       CASE WHEN s.status = 'open' AND s.expires_ms < p.stream_time_ms THEN 'inactive'
            ELSE s.status END,
       s.page_views, s.conversions, s.revenue, s.bounce, s.engaged, s.entry_page, s.exit_page,
       s.referrer, s.campaign, s.user_agent, s.is_bot, s.path, s.path_ms, s.path_truncated,
       s.event_ids
FROM sessions AS s LEFT JOIN partitions AS p ON p."partition" = s."partition"
"""
_ACTIVE = (
    _SELECT_SESSIONS + "WHERE s.\"key\" = ? AND s.status <> 'closed' "
    "ORDER BY s.start_ms DESC, s.session_id DESC"
)
_ONE = _SELECT_SESSIONS + "WHERE s.session_id = ?"
_PAGE = (
    _SELECT_SESSIONS + 'WHERE s."key" = ? AND s.start_ms < ? AND s.end_ms >= ? '
    "AND (s.start_ms, s.session_id) < (?, ?) "
    "ORDER BY s.start_ms DESC, s.session_id DESC LIMIT ?"
)
_SUMMARY = """
SELECT COUNT(*), COUNT(DISTINCT "key"), AVG(duration_ms), AVG(bounce), AVG(engaged),
       AVG(conversions > 0), AVG(event_count), TOTAL(event_count), TOTAL(revenue)
FROM sessions WHERE start_ms >= ? AND start_ms < ?
"""
# Exact median in SQL: the one (odd count) or two (even count) middle durations, averaged.
_MEDIAN = """
WITH d AS (SELECT duration_ms FROM sessions WHERE start_ms >= ?1 AND start_ms < ?2),
     n AS (SELECT COUNT(*) AS c FROM d)
SELECT AVG(duration_ms) FROM (
    SELECT duration_ms FROM d ORDER BY duration_ms
    LIMIT 2 - (SELECT c FROM n) % 2 OFFSET ((SELECT c FROM n) - 1) / 2
)
"""
_REJECTED_ALL = "SELECT reason, COUNT(*) FROM rejected_events GROUP BY reason"
_REJECTED_RANGE = (
    "SELECT reason, COUNT(*) FROM rejected_events WHERE at_ms >= ? AND at_ms < ? GROUP BY reason"
)


# ---------------------------------------------------------------------- analytics statements
# Constants too: the user's choices (zone, steps, edges, page) arrive as parameters only.

# floor((x) / size) for negative x too (SQLite's integer division truncates toward zero)
_BUCKET = "((s.start_ms + z.off) - (((s.start_ms + z.off) % ?2) + ?2) % ?2) / ?2"
# ?1: the offset spans as JSON [[lo, hi, offset_ms], ...]; ?2: bucket size; ?3: group by offset
# too (hours).
_TIMESERIES = f"""
WITH z AS MATERIALIZED (
    SELECT json_extract(value, '$[0]') AS lo, json_extract(value, '$[1]') AS hi,
           json_extract(value, '$[2]') AS off
    FROM json_each(?1)
)
SELECT {_BUCKET} AS b, CASE WHEN ?3 THEN z.off ELSE 0 END AS o, COUNT(*),
       COUNT(DISTINCT s."key"), SUM(s.event_count), SUM(s.bounce), SUM(s.engaged),
       SUM(s.conversions > 0), TOTAL(s.revenue)
FROM z CROSS JOIN sessions AS s ON s.start_ms >= z.lo AND s.start_ms < z.hi
GROUP BY b, o
"""
_RANGE_OF_STARTS = "SELECT MIN(start_ms), MAX(start_ms) FROM sessions"
# ?3 .. ?12: the GLOB of steps 1..k for each k (NULL past the last step: never counted)
_FUNNEL_COUNTS = f"""
SELECT COUNT(*), TOTAL(path_truncated),
       {", ".join(f"TOTAL(path GLOB ?{i})" for i in range(3, 3 + an.MAX_STEPS))}
FROM sessions WHERE start_ms >= ?1 AND start_ms < ?2
"""
_FUNNEL_ROWS = """
SELECT path, path_ms FROM sessions
WHERE start_ms >= ?1 AND start_ms < ?2 AND path GLOB ?3 AND session_id < ?4
"""
_HISTOGRAM = {
    metric: f"""
SELECT {case_sql(column, "?{i}")} AS bin, COUNT(*) FROM sessions
WHERE start_ms >= ?{MAX_EDGES + 1} AND start_ms < ?{MAX_EDGES + 2} GROUP BY bin
"""
    for metric, column in HISTOGRAM_COLUMNS.items()
}
# ?1, ?2: range; ?3, ?4: the previous page's last (count, value); ?5: limit
_RANKED = {
    column: f"""
SELECT {column}, COUNT(*) AS n, SUM(bounce), SUM(conversions > 0), TOTAL(revenue)
FROM sessions WHERE start_ms >= ?1 AND start_ms < ?2 AND {column} IS NOT NULL
GROUP BY {column} HAVING n < ?3 OR (n = ?3 AND {column} > ?4)
ORDER BY n DESC, {column} LIMIT ?5
"""
    for column in RANKED_COLUMNS
}
_RANKED_NONE = {
    column: f"""
SELECT COUNT(*), TOTAL({column} IS NULL), TOTAL({column} IS NULL AND bounce),
       TOTAL({column} IS NULL AND conversions > 0), TOTAL(CASE WHEN {column} IS NULL THEN revenue END)
FROM sessions WHERE start_ms >= ?1 AND start_ms < ?2
"""
    for column in RANKED_COLUMNS
}
_LIVE_UNCLOSED = """
SELECT CASE WHEN s.status = 'open' AND s.expires_ms < p.stream_time_ms THEN 'inactive'
            ELSE s.status END AS st, COUNT(*)
FROM sessions AS s LEFT JOIN partitions AS p ON p."partition" = s."partition"
WHERE s.status <> 'closed' GROUP BY st
"""
_LIVE_PARTITIONS = (
    'SELECT "partition", stream_time_ms, updated_at_ms FROM partitions ORDER BY "partition"'
)
_LIVE_COUNTERS = "SELECT name, SUM(n) FROM ingest_counters GROUP BY name"


class SqliteStore(an.StoreAnalytics):
    """Sessions, dead letters, runs, stream times and source offsets in one SQLite file.

    Implements both ``SessionSink`` (the pipeline writes) and ``SessionQueries`` (the API reads).
    Safe to share between threads: writes are serialised by a lock, reads use one connection
    per thread so they run beside a write (WAL).
    """

    def __init__(self, path: str | Path) -> None:
        self.path = _checked_path(Path(path))
        self._lock = threading.Lock()
        self._local = threading.local()
        self._readers: list[sqlite3.Connection] = []
        self._sources: dict[int, str] = {}
        self._closed = False
        db = None
        try:
            db = self._db = self._connect()
            db.execute("PRAGMA journal_mode=WAL")
            self._migrate()
        except (sqlite3.Error, StoreError) as exc:
            if db is not None:
                db.close()
            if isinstance(exc, StoreError):
                raise
            raise StoreError(
                f"cannot open {self.path} as a sessionize SQLite store: {exc}. If the file is not "
                "a sessionize database, give another path; a new file is created on first use."
            ) from None

    # ------------------------------------------------------------------ opening

    def _connect(self) -> sqlite3.Connection:
        """A connection in explicit-transaction mode (we issue BEGIN/COMMIT ourselves)."""
        db = sqlite3.connect(self.path, timeout=30, isolation_level=None, check_same_thread=False)
        db.execute("PRAGMA synchronous=NORMAL")
        return db

    def _migrate(self) -> None:
        """Apply the migration steps this file has not seen, each in its own transaction."""
        current = self._db.execute("PRAGMA user_version").fetchone()[0]
        if current > len(MIGRATIONS):
            raise StoreError(
                f"{self.path} has schema version {current}, but this sessionize knows only up to "
                f"{len(MIGRATIONS)}: it was written by a newer sessionize. Upgrade sessionize."
            )
        for version in range(current + 1, len(MIGRATIONS) + 1):
            with self._transaction(f"migrating {self.path} to schema version {version}") as cur:
                for statement in MIGRATIONS[version - 1]:
                    cur.execute(statement)
                cur.execute(f"PRAGMA user_version = {int(version)}")

    def schema_version(self) -> int:
        return int(self._query("PRAGMA user_version")[0][0])

    def close(self) -> None:
        """Close every connection this store opened (the writer and all per-thread readers)."""
        with self._lock:
            self._closed = True
            for db in [*self._readers, self._db]:
                db.close()
            self._readers.clear()

    # ------------------------------------------------------------------ writing (SessionSink)

    @contextmanager
    def _transaction(self, what: str) -> Iterator[sqlite3.Cursor]:
        """One write transaction: committed whole, or rolled back and reported as StoreError."""
        with self._lock:
            if self._closed:
                raise StoreError(f"the store {self.path} is closed")
            cur = self._db.cursor()
            try:
                cur.execute("BEGIN IMMEDIATE")
                yield cur
                cur.execute("COMMIT")
            except Exception as exc:
                if self._db.in_transaction:
                    self._db.execute("ROLLBACK")
                if isinstance(exc, StoreError):
                    raise
                raise StoreError(
                    f"{what} failed and was rolled back, nothing of it was written to "
                    f"{self.path}: {type(exc).__name__}: {exc}"
                ) from exc

    def begin_run(self, info: RunInfo) -> int:
        with self._transaction("recording the start of a run") as cur:
            cur.execute(
                "INSERT INTO runs (source, config, started_at_ms, finished_at_ms, counters) "
                "VALUES (?, ?, ?, ?, ?)",
                (info.source, _json(info.config), info.started_at_ms, info.finished_at_ms,
                 _json(info.counters)),
            )
            run_id = int(cur.lastrowid or 0)
        self._sources[run_id] = info.source
        return run_id

    def finish_run(self, run_id: int, info: RunInfo) -> None:
        with self._transaction(f"recording the end of run {run_id}") as cur:
            cur.execute(
                "UPDATE runs SET finished_at_ms = ?, counters = ?, config = ? WHERE run_id = ?",
                (info.finished_at_ms, _json(info.counters), _json(info.config), run_id),
            )

    def apply(self, run_id: int, partition: int, changes: ChangeSet,
              offsets: dict[int, int] | None = None) -> None:
        """Write one batch in one transaction (see ``SessionSink.apply``)."""
        now = _now_ms()
        what = f"applying a batch of run {run_id}, partition {partition}"
        with self._transaction(what) as cur:
            cur.executemany(_DELETE_SESSION, ((sid,) for sid in changes.retractions))
            sessions = [*changes.upserts, *changes.finals]
            seqs: dict[int, int] = {}
            if sessions or changes.retractions:
                for p in sorted({partition, *(r["partition"] for r in sessions)}):
                    seqs[p] = cur.execute(_NEXT_SEQ, (p,)).fetchone()[0]
            cur.executemany(_UPSERT_SESSION, (_session_row(r, run_id, now, seqs[r["partition"]])
                                              for r in sessions))
            cur.executemany(
                _INSERT_REJECTED,
                (_rejection_row(r, run_id, partition, changes.stream_time)
                 for r in changes.rejections),
            )
            if changes.stream_time is not None:
                cur.execute(_UPSERT_PARTITION, (partition, changes.stream_time, now))
            cur.executemany(_ADD_COUNTER, ((partition, name, n)
                                           for name, n in ingest_counts(changes).items()))
            if offsets:
                source = self._source_of(cur, run_id)
                cur.executemany(_UPSERT_OFFSET, ((source, p, o) for p, o in offsets.items()))

    def _source_of(self, cur: sqlite3.Cursor, run_id: int) -> str:
        """The source a run reads (offsets are kept per source), from the cache or the table."""
        if run_id not in self._sources:
            row = cur.execute("SELECT source FROM runs WHERE run_id = ?", (run_id,)).fetchone()
            if row is None:
                raise StoreError(
                    f"run {run_id} is not in {self.path}: call begin_run before applying batches "
                    "with offsets"
                )
            self._sources[run_id] = row[0]
        return self._sources[run_id]

    # ------------------------------------------------------------------ reading (SessionQueries)

    def _reader(self) -> sqlite3.Connection:
        """This thread's read connection (opened on first use, read-only)."""
        db = getattr(self._local, "db", None)
        if db is None:
            with self._lock:
                if self._closed:
                    raise StoreError(f"the store {self.path} is closed")
                db = self._connect()
                db.execute("PRAGMA query_only=ON")
                # analytics scan many rows: read through a memory map, keep a bigger page cache
                db.execute("PRAGMA mmap_size=1073741824")
                db.execute("PRAGMA cache_size=-65536")
                self._readers.append(db)
            self._local.db = db
        return db

    def _query(self, sql: str, params: Iterable[Any] = ()) -> list[tuple[Any, ...]]:
        try:
            return self._reader().execute(sql, tuple(params)).fetchall()
        except sqlite3.Error as exc:
            raise StoreError(f"reading {self.path} failed: {exc}") from exc

    def active_sessions(self, key: str) -> list[dict[str, Any]]:
        return [_record(row) for row in self._query(_ACTIVE, (key,))]

    def session_changes(self, seqs: dict[int, int] | None) -> SessionChanges:
        """What was written since the watermarks ``seqs`` (None: everything), in one read
        snapshot (``records.SessionChanges``)."""
        db = self._reader()
        try:
            db.execute("BEGIN")  # one WAL snapshot for all the reads below
            try:
                now = dict(db.execute('SELECT "partition", seq FROM change_seqs').fetchall())
                if seqs is not None and now == seqs:
                    return SessionChanges(now, [], None)
                if seqs is None:
                    closed = fetch_yielding(db.execute(_ANALYTICS + "WHERE status = 'closed'"))
                else:
                    closed = []
                    for p, seq in sorted(now.items()):
                        if seq > seqs.get(p, 0):
                            closed += fetch_yielding(db.execute(_CLOSED_SINCE,
                                                                   (p, seqs.get(p, 0))))
                unclosed = fetch_yielding(db.execute(_ANALYTICS + "WHERE status <> 'closed'"))
                return SessionChanges(now, closed, unclosed)
            finally:
                db.execute("COMMIT")
        except sqlite3.Error as exc:
            raise StoreError(f"reading the session changes of {self.path} failed: {exc}") from exc

    def user_sessions(self, key: str, start_ms: int | None, end_ms: int | None, limit: int,
                      cursor: str | None) -> tuple[list[dict[str, Any]], str | None]:
        """Sessions overlapping ``[start_ms, end_ms)``, newest first, keyset-paged.

        Keyset (not OFFSET) paging: each page is an index range scan, and rows written between
        two page requests neither repeat nor shift the pages.
        """
        if limit < 1:
            raise ValueError(f"limit must be at least 1, got {limit}")
        after = decode_cursor(cursor) if cursor else FIRST_PAGE
        lo, hi = _bounds(start_ms, end_ms)
        rows = self._query(_PAGE, (key, hi, lo, *after, limit + 1))
        records = [_record(row) for row in rows[:limit]]
        if len(rows) <= limit:
            return records, None
        last = records[-1]
        return records, encode_cursor(last["start"], last["session_id"])

    def session(self, session_id: str) -> dict[str, Any] | None:
        rows = self._query(_ONE, (session_id,))
        return _record(rows[0]) if rows else None

    def summary(self, start_ms: int | None, end_ms: int | None) -> dict[str, Any]:
        lo, hi = _bounds(start_ms, end_ms)
        n, users, mean, bounce, engaged, converted, per_session, events, revenue = self._query(
            _SUMMARY, (lo, hi)
        )[0]
        median = self._query(_MEDIAN, (lo, hi))[0][0]
        return {
            "sessions": n,
            "users": users,
            "events": int(events),
            "median_duration_ms": median,
            "mean_duration_ms": mean,
            "bounce_rate": bounce,
            "engaged_rate": engaged,
            "conversion_rate": converted,
            "events_per_session": per_session,
            "revenue": revenue,
        }

    def rejected_counts(self, start_ms: int | None, end_ms: int | None) -> dict[str, int]:
        """Counts per reason (every reason present). With a range, a rejection is placed at its
        event time, or at its partition's stream time when it has none (malformed input)."""
        if start_ms is None and end_ms is None:
            rows = self._query(_REJECTED_ALL)
        else:
            rows = self._query(_REJECTED_RANGE, _bounds(start_ms, end_ms))
        return {r.value: 0 for r in Reason} | {reason: n for reason, n in rows}

    def offsets(self, source: str) -> dict[int, int]:
        """Next offset per partition stored for ``source``: where a restarted run resumes."""
        rows = self._query(
            'SELECT "partition", next_offset FROM source_offsets WHERE source = ?', (source,)
        )
        return dict(rows)

    def stream_times(self) -> dict[int, int]:
        """Stream time per partition as last stored."""
        return dict(self._query('SELECT "partition", stream_time_ms FROM partitions'))

    def runs(self) -> list[dict[str, Any]]:
        """Every run recorded in this store, oldest first, with its settings and counters."""
        rows = self._query("SELECT run_id, source, config, started_at_ms, finished_at_ms, "
                           "counters FROM runs ORDER BY run_id")
        return [{"run_id": r, "source": src, "config": orjson.loads(cfg), "started_at_ms": st,
                 "finished_at_ms": fin, "counters": orjson.loads(cnt)}
                for r, src, cfg, st, fin, cnt in rows]

    def top_keys(self, limit: int = 10) -> list[dict[str, Any]]:
        """The keys with the most counted events: a starting point for looking at users."""
        rows = self._query(
            "SELECT key, COUNT(*), SUM(event_count) FROM sessions GROUP BY key "
            "ORDER BY SUM(event_count) DESC, key LIMIT ?", (limit,))
        return [{"key": k, "sessions": n, "events": e} for k, n, e in rows]

    # ------------------------------------------------------------------ analytics (an.StoreAnalytics)

    def _an_start_range(self) -> tuple[int | None, int | None]:
        lo, hi = self._query(_RANGE_OF_STARTS)[0]
        return lo, hi

    def _an_timeseries(self, spans: list[tuple[int, int, int]], size: int, by_offset: bool
                       ) -> list[tuple[Any, ...]]:
        return self._query(_TIMESERIES, (an.spans_json(spans), size, int(by_offset)))

    def _an_pattern(self, steps: Any) -> str:
        return an.glob_pattern(steps)

    def _an_funnel_counts(self, lo: int, hi: int, patterns: list[str | None]
                          ) -> tuple[int, int, list[int]]:
        n, truncated, *counts = self._query(_FUNNEL_COUNTS, (lo, hi, *patterns))[0]
        return n, int(truncated), [int(c) for c in counts]

    def _an_funnel_rows(self, lo: int, hi: int, second: str, below: str
                        ) -> list[tuple[Any, Any]]:
        return self._query(_FUNNEL_ROWS, (lo, hi, second, below))  # type: ignore[return-value]

    def _an_histogram(self, column: str, edges: list[int], lo: int, hi: int
                      ) -> list[tuple[int, int]]:
        metric = next(m for m, c in an.HISTOGRAM_COLUMNS.items() if c == column)
        return self._query(_HISTOGRAM[metric], (*an.histogram_slots(edges), lo, hi))  # type: ignore[return-value]

    def _an_ranked(self, column: str, lo: int, hi: int, after: tuple[int, str], limit: int
                   ) -> list[tuple[Any, ...]]:
        return self._query(_RANKED[column], (lo, hi, after[0], after[1], limit))

    def _an_ranked_none(self, column: str, lo: int, hi: int) -> tuple[Any, ...]:
        return self._query(_RANKED_NONE[column], (lo, hi))[0]

    def _an_live(self) -> tuple[dict[str, int], int, list[tuple[Any, ...]], dict[str, int]]:
        unclosed = dict(self._query(_LIVE_UNCLOSED))
        total = self._query("SELECT COUNT(*) FROM sessions")[0][0]
        return (unclosed, total, self._query(_LIVE_PARTITIONS),
                dict(self._query(_LIVE_COUNTERS)))

    def health(self) -> dict[str, Any]:
        n = self._query("SELECT COUNT(*) FROM sessions")[0][0]
        return {"store": "sqlite", "path": str(self.path), "ok": True, "sessions": n}


# ---------------------------------------------------------------------- helpers


def _checked_path(path: Path) -> Path:
    """The store file, or a StoreError saying why it cannot be used and what to do."""
    path = path.expanduser()
    folder = path.parent
    where = f"cannot open the SQLite store {path}"
    if not folder.is_dir():
        raise StoreError(
            f"{where}: the folder {folder} does not exist. Create it (mkdir -p {folder}) "
            "or give a path in an existing folder."
        )
    if path.is_dir():
        raise StoreError(f"{where}: it is a folder. Give a file path, e.g. {path / 'sessions.db'}")
    if not os.access(folder, os.W_OK | os.X_OK) or (path.exists() and not os.access(path, os.W_OK)):
        raise StoreError(
            f"{where}: {folder} is not writable by this user (SQLite writes the database and its "
            "-wal and -shm files there). Fix the permissions or give a path in a writable folder."
        )
    return path
