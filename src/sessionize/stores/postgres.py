"""PostgresStore: sessions, dead letters, runs and the Kafka worker's engine state in PostgreSQL.

The same tables, queries and records as ``SqliteStore`` (both build rows and records with
``stores.records``), plus what an exactly-once Kafka worker needs:

- **One transaction per consumer batch.** ``apply_batch`` writes the ChangeSets of several
  partitions, their engine state deltas and their next offsets in one transaction: after a
  crash the store holds either all of a batch or none of it, and the offsets stored are the
  offsets of exactly the effects stored. Every write is idempotent (upserts, deletes, stream
  time as a maximum, rejections unique on ``(source, partition, offset)``), so replaying a batch
  whose commit was cut off changes nothing.
- **Engine state as tables.** ``engine_partitions`` (scalars and next offset),
  ``engine_sessions`` (one row per open session) and ``engine_sealed`` (one row per sealed key)
  receive each ``StateDelta``; ``load_partition`` reads them back as a ``snapshot()``.
- **Bulk writes.** Rows go in with ``COPY`` into temporary tables and one ``INSERT ... SELECT
  ... ON CONFLICT`` per table: a batch costs a dozen round trips however many sessions it holds
  (measured faster than pipelined ``executemany`` for 20k-session batches).
- **Status is derived at read time**, as in SQLite: ``open`` past the partition's stream time
  reads as ``inactive``.
- **Versioned migrations** in ``schema_migrations``, applied in one transaction under an
  advisory lock, so that workers starting together do not race.
- **Connections.** One writer connection (guarded by a lock, replaced when the server dropped
  it); reads take a connection from a small pool (at most ``max_readers`` at once), so the API's
  threads read beside a write. A connection found dead is replaced and the statement retried
  once, so the store recovers by itself when the server comes back.

Every statement is a constant with parameters: no SQL is ever built from user text.
"""

from __future__ import annotations

import math
import re
import threading
from collections.abc import Callable, Iterable, Sequence
from typing import Any, TypeVar

import orjson
import psycopg
from psycopg.conninfo import conninfo_to_dict
from psycopg.types.json import set_json_loads

from sessionize.engine.engine import STATE_VERSION, ChangeSet
from sessionize.engine.event import Reason
from sessionize.errors import StoreError
from sessionize.stores import analytics as an
from sessionize.stores.analytics import HISTOGRAM_COLUMNS, RANKED_COLUMNS, case_sql
from sessionize.stores.base import RunInfo
from sessionize.stores.records import (
    ANALYTICS_COLUMNS,
    FIRST_PAGE,
    MAX_MS,
    MIN_MS,
    SESSION_COLUMNS,
    SessionChanges,
    bounds,
    decode_cursor,
    encode_cursor,
    fetch_yielding,
    ingest_counts,
    json_text,
    now_ms,
    rejection_row,
    session_record,
    session_row,
)

T = TypeVar("T")

# pg_advisory_xact_lock key for migrations: any constant bigint, the same in every process.
_MIGRATION_LOCK = 0x5E55_1012_E000_0001

# Each step is a list of statements; append new steps, never edit old ones.
MIGRATIONS: list[list[str]] = [
    [
        # COLLATE "C": keys and ids compare bytewise, as in SQLite, whatever the database locale
        # (paging cursors and tie-breaks depend on it).
        """CREATE TABLE sessions (
            session_id text COLLATE "C" PRIMARY KEY,
            "key" text COLLATE "C" NOT NULL,
            "partition" integer NOT NULL,
            start_ms bigint NOT NULL,
            end_ms bigint NOT NULL,
            expires_ms bigint NOT NULL,
            duration_ms bigint NOT NULL,
            event_count bigint NOT NULL,
            status text NOT NULL CHECK (status IN ('open', 'inactive', 'closed')),
            page_views bigint NOT NULL,
            conversions bigint NOT NULL,
            revenue double precision NOT NULL,
            bounce boolean NOT NULL,
            engaged boolean NOT NULL,
            entry_page text,
            exit_page text,
            referrer text,
            campaign text,
            user_agent text,
            is_bot boolean NOT NULL,
            path jsonb NOT NULL,
            path_truncated boolean NOT NULL,
            event_ids jsonb,
            run_id bigint,
            updated_at_ms bigint NOT NULL
        )""",
        'CREATE INDEX sessions_key_start ON sessions ("key", start_ms, session_id)',
        "CREATE INDEX sessions_start ON sessions (start_ms)",
        # open and inactive rows by partition: a cache rebuild reads exactly these
        'CREATE INDEX sessions_unclosed ON sessions ("partition", status) '
        "WHERE status <> 'closed'",
        """CREATE TABLE rejected_events (
            id bigserial PRIMARY KEY,
            run_id bigint,
            source text,
            "partition" integer NOT NULL,
            "offset" bigint,
            reason text NOT NULL,
            detail text NOT NULL,
            "key" text,
            event_id text,
            ts_ms bigint,
            at_ms bigint,
            raw text
        )""",
        # a replayed batch must not insert its rejections twice
        'CREATE UNIQUE INDEX rejected_once ON rejected_events (source, "partition", "offset") '
        'WHERE "offset" IS NOT NULL',
        "CREATE INDEX rejected_at ON rejected_events (at_ms)",
        """CREATE TABLE runs (
            run_id bigserial PRIMARY KEY,
            source text NOT NULL,
            config jsonb NOT NULL,
            started_at_ms bigint NOT NULL,
            finished_at_ms bigint,
            counters jsonb NOT NULL
        )""",
        """CREATE TABLE partitions (
            "partition" integer PRIMARY KEY,
            stream_time_ms bigint NOT NULL,
            updated_at_ms bigint NOT NULL
        )""",
        """CREATE TABLE source_offsets (
            source text NOT NULL,
            "partition" integer NOT NULL,
            next_offset bigint NOT NULL,
            PRIMARY KEY (source, "partition")
        )""",
        """CREATE TABLE engine_partitions (
            source text NOT NULL,
            "partition" integer NOT NULL,
            stream_time bigint,
            seq bigint NOT NULL,
            idle_base bigint,
            counters jsonb NOT NULL,
            next_offset bigint,
            PRIMARY KEY (source, "partition")
        )""",
        """CREATE TABLE engine_sessions (
            source text NOT NULL,
            "partition" integer NOT NULL,
            session_id text COLLATE "C" NOT NULL,
            state jsonb NOT NULL,
            PRIMARY KEY (source, "partition", session_id)
        )""",
        """CREATE TABLE engine_sealed (
            source text NOT NULL,
            "partition" integer NOT NULL,
            "key" text COLLATE "C" NOT NULL,
            state jsonb NOT NULL,
            PRIMARY KEY (source, "partition", "key")
        )""",
    ],
    [
        # ms since the session's start of each path step: the funnel's times between steps
        "ALTER TABLE sessions ADD COLUMN path_ms jsonb NOT NULL DEFAULT '[]'::jsonb",
        # events counted and rejected (by reason) per partition, summed over every batch: what
        # the live view turns into rates (cumulative, so two readings give events per second)
        """CREATE TABLE ingest_counters (
            "partition" integer NOT NULL,
            name text NOT NULL,
            n bigint NOT NULL,
            PRIMARY KEY ("partition", name)
        )""",
    ],
    [
        # every session write is numbered per partition (change_seqs), so that a reader can
        # take what was written since it last looked (records.SessionChanges). Taking the
        # number locks the partition's row until commit, so numbers commit in order: a reader
        # that sees seq n of a partition sees every row written with n or less.
        "ALTER TABLE sessions ADD COLUMN change_seq bigint NOT NULL DEFAULT 0",
        'CREATE TABLE change_seqs ("partition" integer PRIMARY KEY, seq bigint NOT NULL)',
        'CREATE INDEX sessions_closed_seq ON sessions ("partition", change_seq) '
        "WHERE status = 'closed'",
    ],
    [
        # engine state is written for every session a batch touches and read only when a
        # partition is restored: plain JSON text, not jsonb (whose parsing on every write cost
        # about a tenth of a worker's commit time)
        "ALTER TABLE engine_sessions ALTER COLUMN state TYPE text USING state::text",
        "ALTER TABLE engine_sealed ALTER COLUMN state TYPE text USING state::text",
    ],
]

_REJECTED_COLUMNS = ("run_id", '"partition"', '"offset"', "reason", "detail", '"key"',
                     "event_id", "ts_ms", "at_ms", "raw", "source")


class _Bulk:
    """One table written in bulk: COPY into a temporary twin, then one INSERT ... SELECT."""

    def __init__(self, table: str, columns: Sequence[str], conflict: str, temp_ddl: str) -> None:
        self.temp = f"_in_{table}"
        self.create_temp = temp_ddl.format(temp=self.temp, table=table)
        cols = ", ".join(columns)
        self.copy = f"COPY {self.temp} ({cols}) FROM STDIN"
        self.insert = f"INSERT INTO {table} ({cols}) SELECT {cols} FROM {self.temp} {conflict}"


def _update_all(columns: Sequence[str], skip: int) -> str:
    return ", ".join(f"{c} = excluded.{c}" for c in columns[skip:])


_LIKE = "CREATE TEMP TABLE {temp} (LIKE {table}) ON COMMIT DELETE ROWS"
_SESSIONS = _Bulk("sessions", SESSION_COLUMNS,
                  "ON CONFLICT (session_id) DO UPDATE SET " + _update_all(SESSION_COLUMNS, 1),
                  _LIKE)
_REJECTED = _Bulk(
    "rejected_events", _REJECTED_COLUMNS,
    'ON CONFLICT (source, "partition", "offset") WHERE "offset" IS NOT NULL DO NOTHING',
    "CREATE TEMP TABLE {temp} (run_id bigint, \"partition\" integer, \"offset\" bigint, "
    "reason text, detail text, \"key\" text, event_id text, ts_ms bigint, at_ms bigint, "
    "raw text, source text) ON COMMIT DELETE ROWS",
)
_ENGINE_SESSIONS = _Bulk(
    "engine_sessions", ("source", '"partition"', "session_id", "state"),
    'ON CONFLICT (source, "partition", session_id) DO UPDATE SET state = excluded.state', _LIKE)
_ENGINE_SEALED = _Bulk(
    "engine_sealed", ("source", '"partition"', '"key"', "state"),
    'ON CONFLICT (source, "partition", "key") DO UPDATE SET state = excluded.state', _LIKE)
_BULKS = (_SESSIONS, _REJECTED, _ENGINE_SESSIONS, _ENGINE_SEALED)

_DELETE_SESSIONS = "DELETE FROM sessions WHERE session_id = ANY(%s)"
_NEXT_SEQS = (
    'INSERT INTO change_seqs ("partition", seq) SELECT p, 1 FROM unnest(%s::integer[]) AS p '
    'ON CONFLICT ("partition") DO UPDATE SET seq = change_seqs.seq + 1 RETURNING "partition", seq'
)
_ANALYTICS = f"SELECT {', '.join(ANALYTICS_COLUMNS)} FROM sessions "
_CLOSED_SINCE = _ANALYTICS + "WHERE \"partition\" = %s AND status = 'closed' AND change_seq > %s"
_DELETE_ENGINE_SESSIONS = (
    'DELETE FROM engine_sessions AS e USING unnest(%s::integer[], %s::text[]) AS d(p, sid) '
    'WHERE e.source = %s AND e."partition" = d.p AND e.session_id = d.sid'
)
_DELETE_ENGINE_SEALED = (
    'DELETE FROM engine_sealed AS e USING unnest(%s::integer[], %s::text[]) AS d(p, k) '
    'WHERE e.source = %s AND e."partition" = d.p AND e."key" = d.k'
)
_UPSERT_ENGINE_PARTITION = (
    'INSERT INTO engine_partitions (source, "partition", stream_time, seq, idle_base, counters, '
    "next_offset) VALUES (%s, %s, %s, %s, %s, %s::jsonb, %s) "
    'ON CONFLICT (source, "partition") DO UPDATE SET stream_time = excluded.stream_time, '
    "seq = excluded.seq, idle_base = excluded.idle_base, counters = excluded.counters, "
    "next_offset = COALESCE(excluded.next_offset, engine_partitions.next_offset)"
)
_UPSERT_PARTITION = (
    'INSERT INTO partitions ("partition", stream_time_ms, updated_at_ms) VALUES (%s, %s, %s) '
    'ON CONFLICT ("partition") DO UPDATE SET '
    "stream_time_ms = GREATEST(partitions.stream_time_ms, excluded.stream_time_ms), "
    "updated_at_ms = excluded.updated_at_ms"
)
_ADD_COUNTER = (
    'INSERT INTO ingest_counters ("partition", name, n) VALUES (%s, %s, %s) '
    'ON CONFLICT ("partition", name) DO UPDATE SET n = ingest_counters.n + excluded.n'
)
_UPSERT_OFFSET = (
    'INSERT INTO source_offsets (source, "partition", next_offset) VALUES (%s, %s, %s) '
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
    _SELECT_SESSIONS + "WHERE s.\"key\" = %s AND s.status <> 'closed' "
    "ORDER BY s.start_ms DESC, s.session_id DESC"
)
_ONE = _SELECT_SESSIONS + "WHERE s.session_id = %s"
_PAGE = (
    _SELECT_SESSIONS + 'WHERE s."key" = %s AND s.start_ms < %s AND s.end_ms >= %s '
    "AND (s.start_ms, s.session_id) < (%s, %s) "
    "ORDER BY s.start_ms DESC, s.session_id DESC LIMIT %s"
)
_OPEN_OF_PARTITION = (
    _SELECT_SESSIONS + "WHERE s.\"partition\" = %s AND s.status <> 'closed' "
    "ORDER BY s.start_ms, s.session_id"
)
# Exact median: percentile_cont(0.5) is the middle duration (odd count) or the mean of the two
# middle ones (even count), as SQLite's LIMIT/OFFSET median.
_SUMMARY = """
SELECT COUNT(*), COUNT(DISTINCT "key"), AVG(duration_ms)::float8, AVG(bounce::int)::float8,
       AVG(engaged::int)::float8, AVG((conversions > 0)::int)::float8, AVG(event_count)::float8,
       COALESCE(SUM(event_count), 0)::bigint, COALESCE(SUM(revenue), 0)::float8,
       percentile_cont(0.5) WITHIN GROUP (ORDER BY duration_ms)
FROM sessions WHERE start_ms >= %s AND start_ms < %s
"""
_REJECTED_ALL = "SELECT reason, COUNT(*) FROM rejected_events GROUP BY reason"
_REJECTED_RANGE = (
    "SELECT reason, COUNT(*) FROM rejected_events WHERE at_ms >= %s AND at_ms < %s "
    "GROUP BY reason"
)


# ---------------------------------------------------------------------- analytics statements
# Constants too: the user's choices (zone, steps, edges, page) arrive as parameters only.

# floor((x) / size) for negative x too (integer division truncates toward zero)
_BUCKET = ("((s.start_ms + z.off) - (((s.start_ms + z.off) %% %(size)s) + %(size)s) %% %(size)s)"
           " / %(size)s")
# Offset spans as three arrays; per (bucket, key) first, so users are distinct keys without a
# sort-based COUNT(DISTINCT).
_TIMESERIES = f"""
WITH z AS (
    SELECT * FROM unnest(%(lo)s::bigint[], %(hi)s::bigint[], %(off)s::bigint[]) AS z(lo, hi, off)
), per_key AS (
    SELECT {_BUCKET} AS b, CASE WHEN %(by_offset)s THEN z.off ELSE 0 END AS o, COUNT(*) AS n,
           SUM(s.event_count) AS ev, SUM(s.bounce::int) AS bo, SUM(s.engaged::int) AS en,
           SUM((s.conversions > 0)::int) AS cv, SUM(s.revenue) AS rev
    FROM z JOIN sessions AS s ON s.start_ms >= z.lo AND s.start_ms < z.hi
    GROUP BY 1, 2, s."key"
)
SELECT b, o, SUM(n)::bigint, COUNT(*), SUM(ev)::bigint, SUM(bo)::bigint, SUM(en)::bigint,
       SUM(cv)::bigint, COALESCE(SUM(rev), 0)::float8
FROM per_key GROUP BY b, o
"""
_RANGE_OF_STARTS = "SELECT MIN(start_ms), MAX(start_ms) FROM sessions"
# p1 .. p10: the regex of steps 1..k for each k (NULL past the last step: never counted)
_FUNNEL_COUNTS = f"""
SELECT COUNT(*), COUNT(*) FILTER (WHERE path_truncated),
       {", ".join(f"COUNT(*) FILTER (WHERE path::text ~ %(p{i})s)"
                  for i in range(1, an.MAX_STEPS + 1))}
FROM sessions WHERE start_ms >= %(lo)s AND start_ms < %(hi)s
"""
_FUNNEL_ROWS = """
SELECT path, path_ms FROM sessions
WHERE start_ms >= %(lo)s AND start_ms < %(hi)s AND path::text ~ %(pattern)s
  AND session_id < %(below)s
"""
_HISTOGRAM = {
    metric: f"""
SELECT {case_sql(column, "%(e{i})s")} AS bin, COUNT(*) FROM sessions
WHERE start_ms >= %(lo)s AND start_ms < %(hi)s GROUP BY bin
"""
    for metric, column in HISTOGRAM_COLUMNS.items()
}
_RANKED = {
    column: f"""
SELECT {column}, COUNT(*) AS n, SUM(bounce::int), SUM((conversions > 0)::int),
       COALESCE(SUM(revenue), 0)::float8
FROM sessions WHERE start_ms >= %(lo)s AND start_ms < %(hi)s AND {column} IS NOT NULL
GROUP BY {column}
HAVING COUNT(*) < %(n)s OR (COUNT(*) = %(n)s AND {column} COLLATE "C" > %(value)s)
ORDER BY n DESC, {column} COLLATE "C" LIMIT %(limit)s
"""
    for column in RANKED_COLUMNS
}
_RANKED_NONE = {
    column: f"""
SELECT COUNT(*), COUNT(*) FILTER (WHERE {column} IS NULL),
       COUNT(*) FILTER (WHERE {column} IS NULL AND bounce),
       COUNT(*) FILTER (WHERE {column} IS NULL AND conversions > 0),
       COALESCE(SUM(revenue) FILTER (WHERE {column} IS NULL), 0)::float8
FROM sessions WHERE start_ms >= %(lo)s AND start_ms < %(hi)s
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
# file runs add to ingest_counters; Kafka workers keep their engines' absolute counters
_LIVE_COUNTERS = """
SELECT name, SUM(n)::bigint FROM (
    SELECT name, n FROM ingest_counters
    UNION ALL
    SELECT c.key, c.value::bigint FROM engine_partitions, jsonb_each_text(counters) AS c
) AS all_counters GROUP BY name
"""


class PostgresStore(an.StoreAnalytics):
    """Sessions, dead letters, runs, stream times, source offsets and engine state in PostgreSQL.

    Implements ``SessionSink`` and ``SessionQueries`` exactly as ``SqliteStore`` does, plus
    ``apply_batch`` / ``load_partition`` for Kafka workers. Safe to share between threads.
    """

    def __init__(self, dsn: str, *, connect_timeout: float = 5, max_readers: int = 8) -> None:
        self.dsn = dsn  # may hold a password: never printed, ``where`` is what messages show
        self._timeout = connect_timeout
        self.where, given = _describe(dsn)
        self._defaults = {} if "application_name" in given else {"application_name": "sessionize"}
        self._lock = threading.Lock()  # the writer connection
        self._pool_lock = threading.Lock()
        self._idle: list[psycopg.Connection] = []
        self._reader_slots = threading.BoundedSemaphore(max_readers)
        self._sources: dict[int, str] = {}
        self._closed = False
        self._writer: psycopg.Connection | None = None
        conn = self._connect()
        try:
            self._migrate(conn)
            self._prepare_writer(conn)
        except BaseException:
            conn.close()
            raise
        self._writer = conn

    # ------------------------------------------------------------------ connections

    def _connect(self) -> psycopg.Connection:
        """A new autocommit connection with orjson for jsonb, or a StoreError saying where."""
        try:
            conn = psycopg.connect(
                self.dsn, autocommit=True, connect_timeout=max(1, math.ceil(self._timeout)),
                **self._defaults,
            )
        except psycopg.Error as exc:
            raise StoreError(
                f"cannot connect to PostgreSQL at {self.where}: {_one_line(exc)}. Is the server "
                "running, and are host, port, database and user in the DSN right? For the local "
                "development server run: scripts/services.sh up pg"
            ) from None
        set_json_loads(orjson.loads, conn)
        return conn

    def _migrate(self, conn: psycopg.Connection) -> None:
        """Apply the migration steps this database has not seen, in one transaction, under an
        advisory lock: a second process starting at the same time waits, then finds them done."""
        try:
            with conn.transaction():
                conn.execute("SELECT pg_advisory_xact_lock(%s)", (_MIGRATION_LOCK,))
                conn.execute(
                    "CREATE TABLE IF NOT EXISTS schema_migrations ("
                    "version integer PRIMARY KEY, applied_at_ms bigint NOT NULL)"
                )
                row = conn.execute("SELECT COALESCE(MAX(version), 0) FROM schema_migrations")
                current = int(row.fetchone()[0])  # type: ignore[index]
                if current > len(MIGRATIONS):
                    raise StoreError(
                        f"the PostgreSQL store at {self.where} has schema version {current}, but "
                        f"this sessionize knows only up to {len(MIGRATIONS)}: it was written by a "
                        "newer sessionize. Upgrade sessionize."
                    )
                for version in range(current + 1, len(MIGRATIONS) + 1):
                    for statement in MIGRATIONS[version - 1]:
                        conn.execute(statement)  # type: ignore[arg-type]
                    conn.execute("INSERT INTO schema_migrations (version, applied_at_ms) "
                                 "VALUES (%s, %s)", (version, now_ms()))
        except psycopg.Error as exc:
            raise StoreError(
                f"migrating the PostgreSQL store at {self.where} failed and was rolled back: "
                f"{_one_line(exc)}"
            ) from None

    def _prepare_writer(self, conn: psycopg.Connection) -> None:
        """The writer's temporary tables for COPY (per connection, emptied at every commit)."""
        with conn.transaction():
            for bulk in _BULKS:
                conn.execute(bulk.create_temp)  # type: ignore[arg-type]

    def schema_version(self) -> int:
        return int(self._query("SELECT MAX(version) FROM schema_migrations")[0][0])

    def close(self) -> None:
        """Close the writer and every pooled reader (readers in use close when returned)."""
        with self._lock, self._pool_lock:
            self._closed = True
            for conn in [*self._idle, self._writer]:
                if conn is not None:
                    conn.close()
            self._idle.clear()
            self._writer = None

    # ------------------------------------------------------------------ writing (SessionSink)

    def _write(self, what: str, work: Callable[[psycopg.Connection], T]) -> T:
        """Run ``work`` in one transaction on the writer: committed whole, or rolled back and
        reported as StoreError. A connection the server dropped since its last use is replaced
        and the work retried once (nothing of it reached the server, or it was rolled back)."""
        with self._lock:
            for attempt in (1, 2):
                if self._closed:
                    raise StoreError(f"the PostgreSQL store at {self.where} is closed")
                reused = self._writer is not None
                try:
                    conn = self._writer_connection()
                except StoreError as exc:
                    raise StoreError(f"{what} failed, nothing of it was written: {exc}") from None
                try:
                    with conn.transaction():
                        return work(conn)
                except StoreError:
                    raise
                except Exception as exc:
                    if conn.closed or conn.broken:
                        self._writer = None
                        conn.close()
                        if attempt == 1 and reused and isinstance(exc, psycopg.OperationalError):
                            continue
                        raise StoreError(
                            f"{what} failed: the connection to PostgreSQL at {self.where} was "
                            f"lost ({_one_line(exc)}). The transaction was rolled back, unless "
                            "its commit had already reached the server; replaying the same "
                            "batch is safe either way (every write is idempotent)."
                        ) from exc
                    raise StoreError(
                        f"{what} failed and was rolled back, nothing of it was written to "
                        f"PostgreSQL at {self.where}: {type(exc).__name__}: {_one_line(exc)}"
                    ) from exc
        raise AssertionError("unreachable")

    def _writer_connection(self) -> psycopg.Connection:
        conn = self._writer
        if conn is not None and not (conn.closed or conn.broken):
            return conn
        if conn is not None:
            conn.close()
        self._writer = None
        conn = self._connect()
        try:
            self._prepare_writer(conn)
        except psycopg.Error as exc:
            conn.close()
            raise StoreError(
                f"cannot prepare a connection to PostgreSQL at {self.where}: {_one_line(exc)}"
            ) from None
        self._writer = conn
        return conn

    def begin_run(self, info: RunInfo) -> int:
        def work(conn: psycopg.Connection) -> int:
            row = conn.execute(
                "INSERT INTO runs (source, config, started_at_ms, finished_at_ms, counters) "
                "VALUES (%s, %s::jsonb, %s, %s, %s::jsonb) RETURNING run_id",
                (info.source, json_text(info.config), info.started_at_ms, info.finished_at_ms,
                 json_text(info.counters)),
            ).fetchone()
            return int(row[0])  # type: ignore[index]

        run_id = self._write("recording the start of a run", work)
        self._sources[run_id] = info.source
        return run_id

    def finish_run(self, run_id: int, info: RunInfo) -> None:
        self._write(f"recording the end of run {run_id}", lambda conn: conn.execute(
            "UPDATE runs SET finished_at_ms = %s, counters = %s::jsonb, config = %s::jsonb "
            "WHERE run_id = %s",
            (info.finished_at_ms, json_text(info.counters), json_text(info.config), run_id),
        ))

    def apply(self, run_id: int, partition: int, changes: ChangeSet,
              offsets: dict[int, int] | None = None) -> None:
        """Write one batch in one transaction (see ``SessionSink.apply``); file runs."""

        def work(conn: psycopg.Connection) -> None:
            source = self._source_of(conn, run_id, required=bool(offsets))
            self._write_batch(conn, run_id, source, [(partition, changes, None)], offsets or {})

        self._write(f"applying a batch of run {run_id}, partition {partition}", work)

    def apply_batch(self, run_id: int, source: str,
                    items: list[tuple[int, ChangeSet, int | None]]) -> None:
        """Write a consumer batch covering several partitions in ONE transaction.

        ``items`` are ``(partition, changes, next_offset)`` in the order they were produced. For
        each: retractions deleted, upserts and finals upserted, rejections inserted once per
        ``(source, partition, offset)``, the engine ``changes.state`` applied, stream time kept
        as a maximum and ``next_offset`` stored. Either all of it lands or none of it does.
        """
        parts = sorted({p for p, _, _ in items})
        self._write(
            f"applying a batch of run {run_id} (source {source!r}, partitions {parts})",
            lambda conn: self._write_batch(conn, run_id, source, items, {}),
        )

    def _source_of(self, conn: psycopg.Connection, run_id: int, *, required: bool) -> str | None:
        """The source a run reads (offsets and rejections are kept per source)."""
        if run_id not in self._sources:
            row = conn.execute("SELECT source FROM runs WHERE run_id = %s", (run_id,)).fetchone()
            if row is None:
                if not required:
                    return None
                raise StoreError(
                    f"run {run_id} is not in the PostgreSQL store at {self.where}: call begin_run "
                    "before applying batches with offsets"
                )
            self._sources[run_id] = row[0]
        return self._sources[run_id]

    def _write_batch(self, conn: psycopg.Connection, run_id: int, source: str | None,
                     items: Iterable[tuple[int, ChangeSet, int | None]],
                     offsets: dict[int, int]) -> None:
        """The net effect of ``items`` applied one after the other, written in bulk."""
        now = now_ms()
        items = list(items)
        touched = sorted({p for p, ch, _ in items if ch.retractions or ch.upserts or ch.finals}
                         | {r["partition"] for _, ch, _ in items for r in (*ch.upserts, *ch.finals)})
        seqs = dict(conn.execute(_NEXT_SEQS, (touched,)).fetchall()) if touched else {}
        sessions: dict[str, tuple[Any, ...] | None] = {}  # None: deleted
        rejected: list[tuple[Any, ...]] = []
        states: dict[tuple[int, str], str | None] = {}
        sealed: dict[tuple[int, str], str | None] = {}
        scalars: dict[int, tuple[Any, ...]] = {}
        stream: dict[int, int] = {}
        next_offsets = dict(offsets)
        counts: dict[tuple[int, str], int] = {}
        for partition, changes, next_offset in items:
            if changes.state is None:
                # a worker's batch carries the engine's own (absolute, so replay-safe) counters
                # in its state; only batches without one add to the ingest counters
                for name, n in ingest_counts(changes).items():
                    counts[partition, name] = counts.get((partition, name), 0) + n
            for sid in changes.retractions:
                sessions[sid] = None
            for rec in (*changes.upserts, *changes.finals):
                sessions[rec["session_id"]] = session_row(rec, run_id, now,
                                                          seqs[rec["partition"]])
            for r in changes.rejections:
                rejected.append(
                    (*_text_safe(rejection_row(r, run_id, partition, changes.stream_time)), source)
                )
            if changes.stream_time is not None:
                stream[partition] = max(changes.stream_time, stream.get(partition, MIN_MS))
            if next_offset is not None:
                next_offsets[partition] = next_offset
            delta = changes.state
            if delta is not None:
                for sid in delta.removed:
                    states[partition, sid] = None
                for st in delta.sessions:
                    states[partition, st["sid"]] = json_text(st)
                for key in delta.unsealed:
                    sealed[partition, key] = None
                for st in delta.sealed:
                    sealed[partition, st["key"]] = json_text(st)
                p = delta.partition
                scalars[partition] = (source, partition, p["stream_time"], p["seq"],
                                      p["idle_base"], json_text(p["counters"]), next_offset)
        if (states or sealed or scalars) and source is None:
            raise StoreError("engine state needs a source: use apply_batch(run_id, source, ...)")

        cur = conn.cursor()
        gone = sorted(sid for sid, row in sessions.items() if row is None)
        if gone:
            cur.execute(_DELETE_SESSIONS, (gone,))
        _bulk_write(cur, _SESSIONS, [row for _, row in sorted(sessions.items()) if row])
        _bulk_write(cur, _REJECTED, rejected)
        _delete_pairs(cur, _DELETE_ENGINE_SESSIONS, source, states)
        _bulk_write(cur, _ENGINE_SESSIONS,
                    [(source, p, sid, st) for (p, sid), st in sorted(states.items()) if st])
        _delete_pairs(cur, _DELETE_ENGINE_SEALED, source, sealed)
        _bulk_write(cur, _ENGINE_SEALED,
                    [(source, p, key, st) for (p, key), st in sorted(sealed.items()) if st])
        if scalars:
            cur.executemany(_UPSERT_ENGINE_PARTITION, [scalars[p] for p in sorted(scalars)])
        if counts:
            cur.executemany(_ADD_COUNTER, [(p, name, n) for (p, name), n in sorted(counts.items())])
        if stream:
            cur.executemany(_UPSERT_PARTITION, [(p, t, now) for p, t in sorted(stream.items())])
        if next_offsets:
            if source is None:
                raise StoreError("offsets need a source")  # guarded by _source_of
            cur.executemany(_UPSERT_OFFSET,
                            [(source, p, o) for p, o in sorted(next_offsets.items())])

    # ------------------------------------------------------------------ engine state (workers)

    def load_partition(self, source: str, partition: int) -> tuple[dict[str, Any] | None,
                                                                   int | None]:
        """The engine state of ``partition`` as ``SessionEngine.snapshot()`` returns it (None if
        none was ever stored for ``source``), and the next offset to consume (None if none).

        Read in one REPEATABLE READ transaction: one consistent point, whatever commits meanwhile.
        """

        def read(conn: psycopg.Connection) -> tuple[dict[str, Any] | None, int | None]:
            key = (source, partition)
            conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
            try:
                scalars = conn.execute(
                    "SELECT stream_time, seq, idle_base, counters FROM engine_partitions "
                    'WHERE source = %s AND "partition" = %s', key).fetchone()
                offset = conn.execute(
                    'SELECT next_offset FROM source_offsets WHERE source = %s AND "partition" = %s',
                    key).fetchone()
                state = None
                if scalars is not None:
                    sessions = conn.execute(
                        'SELECT state FROM engine_sessions WHERE source = %s AND "partition" = %s '
                        "ORDER BY session_id", key).fetchall()
                    sealed = conn.execute(
                        'SELECT state FROM engine_sealed WHERE source = %s AND "partition" = %s '
                        'ORDER BY "key"', key).fetchall()
                    stream_time, seq, idle_base, counters = scalars
                    state = {
                        "version": STATE_VERSION, "partition": partition,
                        "stream_time": stream_time, "seq": seq, "idle_base": idle_base,
                        "counters": counters,
                        "sessions": [_json_value(s) for (s,) in sessions],
                        "sealed": [_json_value(s) for (s,) in sealed],
                    }
            finally:
                conn.execute("ROLLBACK")
            return state, None if offset is None else int(offset[0])

        return self._read(f"loading the engine state of {source!r} partition {partition}", read)

    def open_sessions_of_partition(self, partition: int) -> list[dict[str, Any]]:
        """Records of the partition's open and inactive sessions, oldest first (for a cache)."""
        return [session_record(r) for r in self._query(_OPEN_OF_PARTITION, (partition,))]

    def all_sessions(self) -> list[dict[str, Any]]:
        """Every session record (status derived as for the API): exports and tests."""
        return [session_record(r) for r in self._query(_SELECT_SESSIONS + "ORDER BY s.session_id")]

    def stream_time_of(self, partition: int) -> int | None:
        rows = self._query('SELECT stream_time_ms FROM partitions WHERE "partition" = %s',
                           (partition,))
        return rows[0][0] if rows else None

    # ------------------------------------------------------------------ reading (SessionQueries)

    def _read(self, what: str, work: Callable[[psycopg.Connection], T]) -> T:
        """Run ``work`` on a pooled reader; a connection the server dropped is replaced and the
        read retried once."""
        for attempt in (1, 2):
            with self._reader_slots:
                conn, reused = self._take_reader()
                try:
                    result = work(conn)
                except Exception as exc:
                    broken = conn.closed or conn.broken
                    self._give_back(conn)
                    if broken and attempt == 1 and reused and isinstance(
                            exc, psycopg.OperationalError):
                        continue
                    if isinstance(exc, psycopg.Error):
                        raise StoreError(
                            f"{what} from PostgreSQL at {self.where} failed: {_one_line(exc)}"
                        ) from exc
                    raise
                self._give_back(conn)
                return result
        raise AssertionError("unreachable")

    def _take_reader(self) -> tuple[psycopg.Connection, bool]:
        with self._pool_lock:
            if self._closed:
                raise StoreError(f"the PostgreSQL store at {self.where} is closed")
            while self._idle:
                conn = self._idle.pop()
                if not (conn.closed or conn.broken):
                    return conn, True
                conn.close()
        return self._connect(), False

    def _give_back(self, conn: psycopg.Connection) -> None:
        healthy = not (conn.closed or conn.broken) and (
            conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE)
        with self._pool_lock:
            if healthy and not self._closed:
                self._idle.append(conn)
                return
        conn.close()

    def _query(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        return self._read("reading", lambda conn: conn.execute(sql, params).fetchall())  # type: ignore[arg-type]

    def session_changes(self, seqs: dict[int, int] | None) -> SessionChanges:
        """What was written since the watermarks ``seqs`` (None: everything), in one
        REPEATABLE READ snapshot (``records.SessionChanges``)."""

        def read(conn: psycopg.Connection) -> SessionChanges:
            with conn.transaction():
                conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
                now = dict(conn.execute('SELECT "partition", seq FROM change_seqs').fetchall())
                if seqs is not None and now == seqs:
                    return SessionChanges(now, [], None)
                if seqs is None:
                    closed = fetch_yielding(conn.execute(_ANALYTICS + "WHERE status = 'closed'"))
                else:
                    closed = []
                    for p, seq in sorted(now.items()):
                        if seq > seqs.get(p, 0):
                            closed += fetch_yielding(conn.execute(_CLOSED_SINCE,
                                                                   (p, seqs.get(p, 0))))
                unclosed = fetch_yielding(conn.execute(_ANALYTICS + "WHERE status <> 'closed'"))
                return SessionChanges(now, closed, unclosed)

        return self._read("reading the session changes", read)

    def active_sessions(self, key: str) -> list[dict[str, Any]]:
        if "\x00" in key:  # PostgreSQL text cannot hold NUL: no stored key has one
            return []
        return [session_record(row) for row in self._query(_ACTIVE, (key,))]

    def user_sessions(self, key: str, start_ms: int | None, end_ms: int | None, limit: int,
                      cursor: str | None) -> tuple[list[dict[str, Any]], str | None]:
        """Sessions overlapping ``[start_ms, end_ms)``, newest first, keyset-paged (the cursors
        are the same as SqliteStore's)."""
        if limit < 1:
            raise ValueError(f"limit must be at least 1, got {limit}")
        after = decode_cursor(cursor) if cursor else FIRST_PAGE
        if not MIN_MS <= after[0] <= MAX_MS or "\x00" in after[1]:
            raise ValueError(
                f"cursor {cursor!r} is not one this API issued: pass next_cursor unchanged")
        if "\x00" in key:
            return [], None
        lo, hi = bounds(start_ms, end_ms)
        rows = self._query(_PAGE, (key, hi, lo, *after, limit + 1))
        records = [session_record(row) for row in rows[:limit]]
        if len(rows) <= limit:
            return records, None
        last = records[-1]
        return records, encode_cursor(last["start"], last["session_id"])

    def session(self, session_id: str) -> dict[str, Any] | None:
        if "\x00" in session_id:
            return None
        rows = self._query(_ONE, (session_id,))
        return session_record(rows[0]) if rows else None

    def summary(self, start_ms: int | None, end_ms: int | None) -> dict[str, Any]:
        (n, users, mean, bounce, engaged, converted, per_session, events, revenue,
         median) = self._query(_SUMMARY, bounds(start_ms, end_ms))[0]
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
            rows = self._query(_REJECTED_RANGE, bounds(start_ms, end_ms))
        return {r.value: 0 for r in Reason} | {reason: n for reason, n in rows}

    def offsets(self, source: str) -> dict[int, int]:
        """Next offset per partition stored for ``source``: where a restarted run resumes."""
        rows = self._query(
            'SELECT "partition", next_offset FROM source_offsets WHERE source = %s', (source,))
        return dict(rows)  # type: ignore[arg-type]

    def stream_times(self) -> dict[int, int]:
        """Stream time per partition as last stored."""
        return dict(self._query('SELECT "partition", stream_time_ms FROM partitions'))  # type: ignore[arg-type]

    def runs(self) -> list[dict[str, Any]]:
        """Every run recorded in this store, oldest first, with its settings and counters."""
        rows = self._query("SELECT run_id, source, config, started_at_ms, finished_at_ms, "
                           "counters FROM runs ORDER BY run_id")
        return [{"run_id": r, "source": src, "config": cfg, "started_at_ms": st,
                 "finished_at_ms": fin, "counters": cnt}
                for r, src, cfg, st, fin, cnt in rows]

    def top_keys(self, limit: int = 10) -> list[dict[str, Any]]:
        """The keys with the most counted events: a starting point for looking at users."""
        rows = self._query(
            'SELECT "key", COUNT(*), SUM(event_count)::bigint FROM sessions GROUP BY "key" '
            'ORDER BY SUM(event_count) DESC, "key" LIMIT %s', (limit,))
        return [{"key": k, "sessions": n, "events": e} for k, n, e in rows]

    # ------------------------------------------------------------------ analytics (an.StoreAnalytics)

    def _an_start_range(self) -> tuple[int | None, int | None]:
        lo, hi = self._query(_RANGE_OF_STARTS)[0]
        return lo, hi

    def _an_timeseries(self, spans: list[tuple[int, int, int]], size: int, by_offset: bool
                       ) -> list[tuple[Any, ...]]:
        return self._query(_TIMESERIES, {  # type: ignore[arg-type]
            "lo": [a for a, _, _ in spans], "hi": [b for _, b, _ in spans],
            "off": [o for _, _, o in spans], "size": size, "by_offset": by_offset})

    def _an_pattern(self, steps: Any) -> str:
        return an.regex_pattern(steps)

    def _an_funnel_counts(self, lo: int, hi: int, patterns: list[str | None]
                          ) -> tuple[int, int, list[int]]:
        params: dict[str, Any] = {f"p{i}": p for i, p in enumerate(patterns, 1)}
        n, truncated, *counts = self._query(_FUNNEL_COUNTS, params | {"lo": lo, "hi": hi})[0]  # type: ignore[arg-type]
        return n, truncated, list(counts)

    def _an_funnel_rows(self, lo: int, hi: int, second: str, below: str
                        ) -> list[tuple[Any, Any]]:
        return self._query(_FUNNEL_ROWS, {  # type: ignore[arg-type,return-value]
            "lo": lo, "hi": hi, "pattern": second, "below": below})

    def _an_histogram(self, column: str, edges: list[int], lo: int, hi: int
                      ) -> list[tuple[int, int]]:
        metric = next(m for m, c in an.HISTOGRAM_COLUMNS.items() if c == column)
        params: dict[str, Any] = {f"e{i}": e for i, e in enumerate(an.histogram_slots(edges), 1)}
        return self._query(_HISTOGRAM[metric], params | {"lo": lo, "hi": hi})  # type: ignore[arg-type,return-value]

    def _an_ranked(self, column: str, lo: int, hi: int, after: tuple[int, str], limit: int
                   ) -> list[tuple[Any, ...]]:
        return self._query(_RANKED[column], {  # type: ignore[arg-type]
            "lo": lo, "hi": hi, "n": after[0], "value": after[1], "limit": limit})

    def _an_ranked_none(self, column: str, lo: int, hi: int) -> tuple[Any, ...]:
        return self._query(_RANKED_NONE[column], {"lo": lo, "hi": hi})[0]  # type: ignore[arg-type]

    def _an_live(self) -> tuple[dict[str, int], int, list[tuple[Any, ...]], dict[str, int]]:
        unclosed = dict(self._query(_LIVE_UNCLOSED))
        total = self._query("SELECT COUNT(*) FROM sessions")[0][0]
        return (unclosed, total, self._query(_LIVE_PARTITIONS),  # type: ignore[return-value]
                dict(self._query(_LIVE_COUNTERS)))

    def health(self) -> dict[str, Any]:
        n = self._query("SELECT COUNT(*) FROM sessions")[0][0]
        return {"store": "postgres", "server": self.where, "ok": True, "sessions": n}


# ---------------------------------------------------------------------- helpers


def _bulk_write(cur: psycopg.Cursor, bulk: _Bulk, rows: list[tuple[Any, ...]]) -> None:
    """COPY ``rows`` into the bulk's temporary table, then move them in one statement."""
    if not rows:
        return
    with cur.copy(bulk.copy) as copy:  # type: ignore[arg-type]
        for row in rows:
            copy.write_row(row)
    cur.execute(bulk.insert)  # type: ignore[arg-type]


def _delete_pairs(cur: psycopg.Cursor, sql: str, source: str | None,
                  changes: dict[tuple[int, str], str | None]) -> None:
    gone = sorted(k for k, v in changes.items() if v is None)
    if gone:
        cur.execute(sql, ([p for p, _ in gone], [k for _, k in gone], source))  # type: ignore[arg-type]


def _json_value(value: Any) -> Any:
    """A JSON column's value: text since migration 4, already decoded before it."""
    return orjson.loads(value) if isinstance(value, str) else value


def _text_safe(row: tuple[Any, ...]) -> tuple[Any, ...]:
    """A dead letter's text without NUL characters, which PostgreSQL text cannot hold (U+FFFD
    instead): a record that could not be decoded must still be recorded, not fail the batch."""
    return tuple(v.replace("\x00", "\ufffd") if isinstance(v, str) and "\x00" in v else v
                 for v in row)


def _describe(dsn: str) -> tuple[str, dict[str, Any]]:
    """``host:port/database`` of a DSN (never its password) and its parameters, or a StoreError
    if it is no DSN."""
    try:
        params = conninfo_to_dict(dsn)
    except psycopg.ProgrammingError as exc:
        raise StoreError(
            f"{_redact(dsn)!r} is not a PostgreSQL connection string ({_one_line(exc)}); expected "
            "e.g. postgresql://postgres@127.0.0.1:55432/sessionize"
        ) from None
    host = str(params.get("host") or params.get("hostaddr") or "localhost")
    port = str(params.get("port") or "5432")
    db = params.get("dbname") or params.get("user") or ""
    return f"{host}:{port}/{db}", params


def _redact(dsn: str) -> str:
    return re.sub(r"(://[^:/@]*:)[^@]*@", r"\1***@", re.sub(r"(password=)\S*", r"\1***", dsn))


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


__all__ = ["MIGRATIONS", "PostgresStore"]
