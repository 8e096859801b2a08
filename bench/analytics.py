"""How fast the analytics endpoints answer on a store of 1M sessions, SQLite and PostgreSQL.

    .venv/bin/python -m bench.analytics                       # 1M sessions, both stores
    .venv/bin/python -m bench.analytics --sessions 200000 --stores sqlite
    .venv/bin/python -m bench.analytics --keep /tmp/bench-1m  # reuse the SQLite file next time

Fills each store with synthetic sessions through ``store.apply`` (final session records in
batches, as a pipeline writes them), then times every analytics endpoint through the real HTTP
app (FastAPI in-process: routing, validation, the query, JSON) over three ranges: the last day,
the last 7 days and everything (30 days), answered as ``sessionize serve`` answers them (from
the ``ColumnarAnalytics`` copy of the store) and, as the baseline, by the store's own SQL
(``--sql`` here). Prints one table per store and path: the median of ``--repeat`` calls after
one warm-up call, in milliseconds.

The sessions: 1M over 30 days with a diurnal rhythm, 300k users (heavy-tailed), paths from a
view/cart/purchase chain capped at 50 steps (with ``path_ms``), 5,000 products as pages (Zipf),
a third of the sessions from 12 campaigns, the last hour's sessions still open. PostgreSQL needs
``SESSIONIZE_TEST_PG`` (``eval "$(scripts/services.sh env)"``); it works in a fresh schema of the
bench's own database (``sessionize_bench``), dropped at the end unless ``--keep-schema NAME``.

``python -m bench --only analytics`` runs the same as the figure set "analytics" (``figures``):
per store, the slowest endpoint's median against the target of 200 ms on 1M sessions, every
endpoint's median, p95 and max in the JSON.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import os
import secrets
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from bench.common import Figure, percentiles
from sessionize.engine.engine import ChangeSet
from sessionize.stores.base import RunInfo

DAY = 86_400_000
HOUR = 3_600_000
T_END = 1_700_000_000_000 - 1_700_000_000_000 % DAY  # a midnight UTC
DAYS = 30
BATCH = 20_000
FULL_SESSIONS = 1_000_000
QUICK_SESSIONS = 20_000
TARGET_MS = 200
TARGET = "< 200 ms on 1M sessions"


def synthetic_sessions(n: int, seed: int = 1) -> Iterator[list[dict[str, Any]]]:
    """``n`` session records (``Session.to_record`` shape) in batches, deterministic by seed."""
    rng = np.random.default_rng(seed)
    users = max(1, int(n * 0.3))
    weights = rng.lognormal(0, 1.2, users)
    weights /= weights.sum()
    products = [f"/product/{i}" for i in range(5000)]
    zipf = 1 / np.arange(1, 5001) ** 1.1
    zipf /= zipf.sum()
    campaigns = [f"spring-sale-{i}" for i in range(12)]
    referrers = [None, "https://www.google.com/", "https://www.bing.com/",
                 "https://www.facebook.com/", "https://t.co/"]
    # session starts over DAYS days with a diurnal rhythm, written in time order as a stream is
    day = rng.integers(0, DAYS, n)
    hour = rng.choice(24, n, p=_DIURNAL)
    starts = np.sort(T_END - DAYS * DAY + day * DAY + hour * HOUR + rng.integers(0, HOUR, n))
    done = 0
    while done < n:
        m = min(BATCH, n - done)
        start = starts[done:done + m].astype(np.int64)
        user = rng.choice(users, m, p=weights)
        length = np.minimum(1 + rng.lognormal(0.9, 1.0, m).astype(np.int64), 400)
        page = rng.choice(5000, m, p=zipf)
        exit_page = rng.choice(5000, m, p=zipf)
        camp = rng.integers(0, 36, m)
        ref = rng.integers(0, len(referrers), m)
        steps = rng.random((m, 50))
        gaps = rng.lognormal(10.3, 1.0, (m, 50)).astype(np.int64)  # median ~30 s
        batch = []
        for i in range(m):
            count = int(length[i])
            cap = min(count, 50)
            path, t, at = [], [], 0
            state = "view"
            for j in range(cap):
                path.append(state)
                t.append(at)
                at += int(min(gaps[i, j], 1_700_000))
                r = steps[i, j]
                state = ("cart" if r < 0.08 else "view") if state == "view" else (
                    "purchase" if state == "cart" and r < 0.35 else "view")
            duration = t[-1] + (int(gaps[i, -1]) if count > cap else 0)
            s = int(start[i])
            conversions = path.count("purchase")
            sid = hashlib.blake2b(f"{seed}:{done + i}".encode(), digest_size=16).hexdigest()
            open_ = s + duration > T_END - HOUR
            batch.append({
                "session_id": sid, "key": f"u{int(user[i])}", "partition": int(user[i]) % 4,
                "start": s, "end": s + duration, "expires": s + duration + 1_800_000,
                "duration_ms": duration, "event_count": count,
                "status": "open" if open_ else "closed", "page_views": path.count("view"),
                "conversions": conversions, "revenue": round(conversions * 49.9, 6),
                "bounce": count == 1,
                "engaged": duration >= 10_000 or path.count("view") >= 2 or conversions > 0,
                "entry_page": products[int(page[i])],
                "exit_page": products[int(exit_page[i])],
                "referrer": referrers[int(ref[i])],
                "campaign": campaigns[int(camp[i])] if camp[i] < 12 else None,
                "user_agent": "Mozilla/5.0", "is_bot": False, "path": path, "path_ms": t,
                "path_truncated": count > cap,
            })
        done += m
        yield batch


_DIURNAL = np.array([2, 1, 1, 1, 1, 2, 3, 5, 6, 7, 7, 7, 7, 7, 7, 6, 6, 6, 6, 6, 5, 4, 3, 2],
                    dtype=float)
_DIURNAL /= _DIURNAL.sum()


def fill(store: Any, n: int) -> float:
    """Write ``n`` sessions through ``store.apply``; seconds taken."""
    started = time.perf_counter()
    run_id = store.begin_run(RunInfo("bench-analytics", {}, 0))
    written = 0
    for batch in synthetic_sessions(n):
        by_partition: dict[int, list[dict[str, Any]]] = {}
        for rec in batch:
            by_partition.setdefault(rec["partition"], []).append(rec)
        for p, recs in by_partition.items():
            store.apply(run_id, p, ChangeSet(finals=[r for r in recs if r["status"] == "closed"],
                                             upserts=[r for r in recs if r["status"] == "open"],
                                             counted=sum(r["event_count"] for r in recs),
                                             stream_time=max(r["end"] for r in recs)))
        written += len(batch)
        print(f"\r  {written:,} sessions written", end="", file=sys.stderr)
    print(file=sys.stderr)
    return time.perf_counter() - started


def endpoints(last_key: str) -> list[tuple[str, str]]:
    return [
        ("summary", "/stats/summary"),
        ("timeseries hour UTC", "/analytics/timeseries?interval=hour&tz=UTC"),
        ("timeseries day Berlin", "/analytics/timeseries?interval=day&tz=Europe/Berlin"),
        ("funnel view>cart>purchase", "/analytics/funnel?steps=view>cart>purchase"),
        ("histogram duration", "/analytics/histogram?metric=duration"),
        ("histogram events", "/analytics/histogram?metric=events"),
        ("top entry pages (20)", "/analytics/top-pages?kind=entry&limit=20"),
        ("top exit pages (20)", "/analytics/top-pages?kind=exit&limit=20"),
        ("conversion by entry page", "/analytics/conversion?by=entry_page&limit=20"),
        ("conversion by campaign", "/analytics/conversion?by=campaign&limit=20"),
        ("live", "/live"),
        ("user's sessions", f"/users/{last_key}/sessions?limit=50"),
    ]


RANGES = {"1 day": T_END - DAY, "7 days": T_END - 7 * DAY, "30 days (all)": None}


def time_endpoints(reads: Any, repeat: int) -> list[tuple[str, dict[str, dict[str, float]]]]:
    """Every endpoint over every range: median, p95 and max ms of ``repeat`` calls (after one
    warm-up call each). ``reads``: a store (its SQL) or a ``ColumnarAnalytics`` over one."""
    from fastapi.testclient import TestClient

    from sessionize.api import create_app

    client = TestClient(create_app(reads))
    out = []
    for name, url in endpoints("u0"):
        row: dict[str, dict[str, float]] = {}
        for label, lo in RANGES.items():
            if name in ("live", "user's sessions") and lo is not None:
                continue
            sep = "&" if "?" in url else "?"
            full = url if lo is None else f"{url}{sep}from={lo}&to={T_END}"
            row[label] = _stats_ms(lambda full=full: _get(client, full), repeat)
        out.append((name, row))
    return out


def _get(client: Any, url: str) -> None:
    r = client.get(url)
    if r.status_code != 200:
        raise RuntimeError(f"{url}: {r.status_code} {r.text[:300]}")


def _stats_ms(call: Callable[[], None], repeat: int) -> dict[str, float]:
    call()  # warm-up: caches, connections, query plans
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        call()
        times.append((time.perf_counter() - t) * 1000)
    p95 = percentiles(times, (95,))["p95"]
    return {"median": round(statistics.median(times), 2), "p95": round(p95, 2),
            "max": round(max(times), 2), "calls": repeat}


def slowest(rows: list[tuple[str, dict[str, dict[str, float]]]]) -> tuple[str, str, dict[str, float]]:
    """The endpoint and range with the highest median: ``(endpoint, range, stats)``."""
    return max(((name, label, st) for name, row in rows for label, st in row.items()),
               key=lambda x: x[2]["median"])


def print_table(title: str, rows: list[tuple[str, dict[str, dict[str, float]]]],
                target: float) -> None:
    from rich.console import Console
    from rich.table import Table

    t = Table(title=title, title_justify="left")
    t.add_column("endpoint")
    for label in RANGES:
        t.add_column(f"{label} (ms)", justify="right")
    for name, row in rows:
        cells = []
        for label in RANGES:
            st = row.get(label)
            v = None if st is None else st["median"]
            cells.append("" if v is None else (f"{v:,.1f}" if v < target else f"[red]{v:,.1f}[/]"))
        t.add_row(name, *cells)
    Console(stderr=True).print(t)


# ---------------------------------------------------------------------- the stores


@contextmanager
def sqlite_store(n: int, keep: str | None = None) -> Iterator[tuple[Any, float | None]]:
    """A SQLite store of ``n`` sessions and the seconds its filling took (None: reused from
    ``keep``); deleted afterwards unless kept."""
    from sessionize.stores.sqlite import SqliteStore

    folder = Path(keep or tempfile.mkdtemp(prefix="bench-analytics-"))
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"sessions-{n}.db"
    fresh = not path.exists()
    store = SqliteStore(path)
    try:
        yield store, (fill(store, n) if fresh else None)
    finally:
        store.close()
        if not keep:
            for suffix in ("", "-wal", "-shm"):
                Path(f"{path}{suffix}").unlink(missing_ok=True)
            with contextlib.suppress(OSError):
                folder.rmdir()


@contextmanager
def postgres_store(dsn: str, n: int, keep: str | None = None
                   ) -> Iterator[tuple[Any, float | None]]:
    """A PostgreSQL store of ``n`` sessions in a fresh schema of ``dsn``'s database (dropped
    afterwards), or in schema ``keep`` (filled when missing, kept)."""
    import psycopg
    from psycopg import sql
    from psycopg.conninfo import make_conninfo

    from sessionize.stores.postgres import PostgresStore

    schema = keep or f"bench_{secrets.token_hex(4)}"
    with psycopg.connect(dsn, autocommit=True) as db:
        fresh = not db.execute("SELECT 1 FROM pg_namespace WHERE nspname = %s",
                               (schema,)).fetchone()
        if fresh:
            db.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
    in_schema = make_conninfo(dsn, options=f"-c search_path={schema}")
    store = None
    try:
        store = PostgresStore(in_schema)
        secs = None
        if fresh:
            secs = fill(store, n)
            with psycopg.connect(in_schema, autocommit=True) as db:
                db.execute("VACUUM ANALYZE sessions")
        yield store, secs
    finally:
        if store is not None:
            store.close()
        if not keep:
            with psycopg.connect(dsn, autocommit=True) as db:
                db.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(schema)))


# ---------------------------------------------------------------------- the figure set


def figures(quick: bool, services: Any, n: int | None = None, repeat: int | None = None,
            stores: tuple[str, ...] = ("sqlite", "postgres")) -> list[Figure]:
    """Per store, the slowest endpoint (over every range) against the 200 ms target; every
    endpoint's median, p95 and max in ``details``. PostgreSQL runs in a schema of the bench's
    own database (``services.pg``)."""
    n = n or (QUICK_SESSIONS if quick else FULL_SESSIONS)
    repeat = repeat or (3 if quick else 5)
    out = []
    for kind in stores:
        label = {"sqlite": "SQLite", "postgres": "PostgreSQL"}[kind]
        name = f"analytics slowest endpoint, {label}, {n:,} sessions (median ms)"
        try:
            if kind == "sqlite":
                ctx = sqlite_store(n)
            else:
                if not getattr(services, "pg", None):
                    problems = "; ".join(getattr(services, "problems", [])) or "no PostgreSQL"
                    raise RuntimeError(f"PostgreSQL not available: {problems}")
                ctx = postgres_store(services.pg, n)
            with ctx as (store, fill_seconds):
                from sessionize.stores.columnar import ColumnarAnalytics

                reads = ColumnarAnalytics(store)  # what `sessionize serve` answers from
                t = time.perf_counter()
                reads.refresh()
                load_seconds = time.perf_counter() - t
                rows = time_endpoints(reads, repeat)
                # the baseline: the store's own SQL (slow at 1M: one timed call per point)
                sql_rows = time_endpoints(store, 1 if n >= FULL_SESSIONS else repeat)
                stored = store.health()["sessions"]
            print_table(f"{label}, {stored:,} sessions, columnar", rows, TARGET_MS)
            print_table(f"{label}, {stored:,} sessions, SQL", sql_rows, TARGET_MS)
        except Exception as exc:
            out.append(Figure(name=name, value=None, unit="ms", target=TARGET, met=False,
                              note=f"failed: {type(exc).__name__}: {exc}"[:500]))
            continue
        endpoint, span, st = slowest(rows)
        sql_endpoint, sql_span, sql_st = slowest(sql_rows)
        misses = sorted({e for e, row in rows for s in row.values() if s["median"] >= TARGET_MS})
        judged = n >= FULL_SESSIONS
        note = (f"{endpoint} over {span}: median {st['median']:,.1f} ms, p95 {st['p95']:,.1f} ms, "
                f"max {st['max']:,.1f} ms of {st['calls']} calls")
        note += (f"; {len(misses)} of {len(rows)} endpoints at or over {TARGET_MS} ms"
                 if misses else f"; every endpoint under {TARGET_MS} ms")
        note += (f"; columnar copy loaded in {load_seconds:.1f} s; the store's SQL: slowest "
                 f"{sql_endpoint} over {sql_span} at {sql_st['median']:,.1f} ms")
        if not judged:
            note += f"; target judged at {FULL_SESSIONS:,} sessions only"
        out.append(Figure(
            name=name, value=st["median"], unit="ms", target=TARGET,
            baseline="the store's SQL (slowest endpoint)", baseline_value=sql_st["median"],
            ratio=st["median"] / sql_st["median"] if sql_st["median"] else None,
            met=(st["median"] < TARGET_MS) if judged else None, note=note,
            details={"store": kind, "sessions": stored, "fill_seconds": fill_seconds,
                     "columnar_load_seconds": round(load_seconds, 3),
                     "calls_per_point": repeat, "ranges": list(RANGES),
                     "slowest": {"endpoint": endpoint, "range": span, **st},
                     "over_target": misses,
                     "endpoints": {e: row for e, row in rows},
                     "sql": {"slowest": {"endpoint": sql_endpoint, "range": sql_span, **sql_st},
                             "endpoints": {e: row for e, row in sql_rows}}}))
    return out


# ---------------------------------------------------------------------- command line


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.analytics", description=__doc__.split("\n")[0])
    p.add_argument("--sessions", type=int, default=FULL_SESSIONS)
    p.add_argument("--stores", default="sqlite,postgres")
    p.add_argument("--repeat", type=int, default=5)
    p.add_argument("--sql", action="store_true", help="also time the store's own SQL")
    p.add_argument("--keep", metavar="DIR", help="keep (and reuse) the SQLite store in DIR")
    p.add_argument("--keep-schema", metavar="NAME",
                   help="keep (and reuse) the PostgreSQL store in schema NAME")
    args = p.parse_args(argv)
    for kind in args.stores.split(","):
        if kind == "sqlite":
            ctx = sqlite_store(args.sessions, args.keep)
        elif kind == "postgres":
            dsn = os.environ.get("SESSIONIZE_TEST_PG")
            if not dsn:
                raise SystemExit('SESSIONIZE_TEST_PG is not set: eval "$(scripts/services.sh env)"')
            from bench.services import bench_database

            ctx = postgres_store(bench_database(dsn), args.sessions, args.keep_schema)
        else:
            raise SystemExit(f"unknown store {kind!r}: sqlite or postgres")
        with ctx as (store, secs):
            if secs is not None:
                print(f"{kind}: {args.sessions:,} sessions written in {secs:.0f} s")
            from sessionize.stores.columnar import ColumnarAnalytics

            reads = ColumnarAnalytics(store)
            t = time.perf_counter()
            reads.refresh()
            print(f"{kind}: columnar copy loaded in {time.perf_counter() - t:.1f} s")
            n = store.health()["sessions"]
            print_table(f"{kind}, {n:,} sessions, columnar",
                        time_endpoints(reads, args.repeat), TARGET_MS)
            if args.sql:
                print_table(f"{kind}, {n:,} sessions, SQL",
                            time_endpoints(store, args.repeat), TARGET_MS)
    return 0


if __name__ == "__main__":
    sys.exit(main())
