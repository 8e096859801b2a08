"""The store contract, once per store (SqliteStore, PostgresStore): filled by the real engine
over real events, checked against independent sums; raw rows read past the store.

Every test here runs for each ``kind`` (tests/stores/conftest.py); store-specific behaviour
(files, servers, schema bookkeeping) is in test_sqlite.py and test_postgres.py.
"""

from __future__ import annotations

import sqlite3
import statistics
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from contextlib import closing
from typing import Any

import orjson
import psycopg
import pytest

from sessionize.engine import ChangeSet, EngineConfig, Event, Reason, Rejection, SessionEngine
from sessionize.errors import StoreError
from sessionize.stores.base import RunInfo
from sessionize.stores.records import encode_cursor
from sessionize.stores.sqlite import SqliteStore
from tests.realrun import RealRun, expected_sessions, parse_utc

T0 = parse_utc("2019-10-01 00:00:00 UTC")
MIN = 60_000
SMALL = EngineConfig(gap_ms=10 * MIN, grace_ms=60 * MIN, track_event_ids=True)
TABLES = ("sessions", "rejected_events", "runs", "partitions", "source_offsets",
          "ingest_counters")
PG_TABLES = (*TABLES, "engine_partitions", "engine_sessions", "engine_sealed",
             "schema_migrations")


def ev(key: str | None, minute: float, event_id: str | None = None, **kw: Any) -> Event:
    return Event(key=key, ts=T0 + int(minute * MIN), type="view", event_id=event_id, **kw)


def sql_rows(store: Any, query: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """A query (``?`` parameters) on the store's own database, past the store."""
    if isinstance(store, SqliteStore):
        with closing(sqlite3.connect(store.path)) as db:
            return db.execute(query, params).fetchall()
    with psycopg.connect(store.dsn) as db:
        return db.execute(query.replace("?", "%s"), params).fetchall()  # type: ignore[arg-type]


def dump(store: Any) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every table, read past the store: what "unchanged" means."""
    tables = TABLES if isinstance(store, SqliteStore) else PG_TABLES
    return {t: sql_rows(store, f"SELECT * FROM {t} ORDER BY 1, 2") for t in tables}


def as_json(value: Any) -> Any:
    """A JSON column as read raw: text in SQLite, already decoded jsonb in PostgreSQL."""
    return orjson.loads(value) if isinstance(value, str) else value


def walk(store: Any, key: str, limit: int) -> list[dict[str, Any]]:
    """Every page of ``user_sessions``, following next_cursor to the end."""
    out, cursor = [], None
    while True:
        page, cursor = store.user_sessions(key, None, None, limit, cursor)
        out += page
        if cursor is None:
            return out


# ---------------------------------------------------------------------- the real run


def test_store_holds_exactly_the_finals_the_engine_emitted(real_run: RealRun) -> None:
    ids = [f["session_id"] for f in real_run.finals]
    assert len(ids) == len(set(ids)) == real_run.store.health()["sessions"]
    for final in real_run.finals:
        assert real_run.store.session(final["session_id"]) == final


def test_sessions_match_an_independent_gaps_and_islands(real_run: RealRun) -> None:
    expected = expected_sessions(real_run.rows)
    # 1,747 users (SOURCE.md) and six same-user gaps over 30 min (3,596 s to 8,175 s).
    # SOURCE.md's table says 1,752 at 30 min, which is the 60 min count: its 3,596 s gap does
    # split at 30 min; a plain per-user split gives 1,753.
    assert len(expected) == 1747
    assert sum(map(len, expected.values())) == len(real_run.finals) == 1753
    busiest, n_events = Counter(r["user_id"] for r in real_run.rows).most_common(1)[0]
    stored = real_run.store.user_sessions(busiest, None, None, 1000, None)[0]
    got = [(s["start"], s["end"], s["event_count"]) for s in reversed(stored)]
    assert got == expected[busiest]
    assert sum(s["event_count"] for s in stored) == n_events


def test_user_sessions_range_is_overlap_of_half_open_range(real_run: RealRun) -> None:
    expected = expected_sessions(real_run.rows)
    user = next(u for u, ss in expected.items() if len(ss) >= 2)
    (s1, e1, _), (s2, _, _) = expected[user][:2]

    def starts(lo: int, hi: int) -> list[int]:
        return [s["start"] for s in real_run.store.user_sessions(user, lo, hi, 10, None)[0]]

    assert starts(e1, s2) == [s1]  # ends at `from`: overlaps; starts at `to`: outside
    assert starts(e1 + 1, s2 + 1) == [s2]


def test_pagination_walks_every_session_once_newest_first(real_run: RealRun) -> None:
    expected = expected_sessions(real_run.rows)
    several = [u for u, sessions in expected.items() if len(sessions) > 1]
    assert len(several) == 6
    for user in several:
        for limit in (1, 2):
            pages = walk(real_run.store, user, limit)
            assert [s["start"] for s in pages] == [s for s, _, _ in reversed(expected[user])]
            assert len({s["session_id"] for s in pages}) == len(pages)


def test_summary_matches_a_direct_computation_over_the_finals(real_run: RealRun) -> None:
    lo, hi = T0 + 30 * MIN, T0 + 90 * MIN
    for start, end in ((None, None), (lo, hi)):
        chosen = [f for f in real_run.finals
                  if (start is None or f["start"] >= start) and (end is None or f["start"] < end)]
        n = len(chosen)
        got = real_run.store.summary(start, end)
        assert got["sessions"] == n
        assert got["users"] == len({f["key"] for f in chosen})
        assert got["events"] == sum(f["event_count"] for f in chosen)
        assert got["median_duration_ms"] == statistics.median(f["duration_ms"] for f in chosen)
        assert got["mean_duration_ms"] == pytest.approx(
            statistics.mean(f["duration_ms"] for f in chosen))
        assert got["bounce_rate"] == pytest.approx(sum(f["bounce"] for f in chosen) / n)
        assert got["engaged_rate"] == pytest.approx(sum(f["engaged"] for f in chosen) / n)
        assert got["conversion_rate"] == pytest.approx(
            sum(f["conversions"] > 0 for f in chosen) / n)
        assert got["events_per_session"] == pytest.approx(got["events"] / n)
        assert got["revenue"] == pytest.approx(sum(f["revenue"] for f in chosen))
    assert real_run.store.summary(None, None)["conversion_rate"] > 0  # the head has purchases


def test_summary_of_an_empty_range_has_no_rates(real_run: RealRun) -> None:
    got = real_run.store.summary(T0 - 10 * MIN, T0)
    assert got["sessions"] == got["users"] == 0
    for name in ("median_duration_ms", "mean_duration_ms", "bounce_rate", "engaged_rate",
                 "conversion_rate", "events_per_session"):
        assert got[name] is None


def test_summary_values_have_the_same_types_in_every_store(real_run: RealRun) -> None:
    got = real_run.store.summary(None, None)
    assert {k: type(v) for k, v in got.items()} == {
        "sessions": int, "users": int, "events": int, "median_duration_ms": float,
        "mean_duration_ms": float, "bounce_rate": float, "engaged_rate": float,
        "conversion_rate": float, "events_per_session": float, "revenue": float,
    }


def test_median_is_exact_for_odd_and_even_counts(store: Any) -> None:
    engine = SessionEngine(SMALL)
    # three users: sessions of 0, 2 and 9 minutes; then a fourth of 4 minutes
    for key, minutes in (("a", (0,)), ("b", (0, 2)), ("c", (0, 5, 9)), ("d", (100, 104))):
        store.apply(1, 0, engine.process(ev(key, m) for m in minutes))
        if key == "c":
            assert store.summary(None, None)["median_duration_ms"] == 2 * MIN
    store.apply(1, 0, engine.flush())
    assert store.summary(None, None)["median_duration_ms"] == 3 * MIN  # (2 + 4) / 2


def test_median_of_two_odd_durations_is_their_exact_mean(store: Any) -> None:
    engine = SessionEngine(EngineConfig(gap_ms=10 * MIN))
    store.apply(1, 0, engine.process([ev("a", 0), Event("a", T0 + 1, "view"),
                                      ev("b", 0), Event("b", T0 + 4, "view")]))
    assert store.summary(None, None)["median_duration_ms"] == 2.5  # (1 + 4) / 2, not 1 or 4


def test_runs_and_offsets_are_recorded(real_run: RealRun) -> None:
    assert real_run.store.offsets("rees46") == {0: len(real_run.rows)}
    assert real_run.store.stream_times() == {0: real_run.stream_time}
    (counters,), = sql_rows(real_run.store, "SELECT counters FROM runs WHERE run_id = ?",
                            (real_run.run_id,))
    assert as_json(counters)["counted"] == len(real_run.rows)
    (run,) = real_run.store.runs()
    assert (run["run_id"], run["source"], run["counters"]["counted"]) == (
        real_run.run_id, "rees46", len(real_run.rows))


def test_top_keys_are_the_keys_with_most_events(real_run: RealRun) -> None:
    events = Counter(r["user_id"] for r in real_run.rows)
    sessions = Counter(f["key"] for f in real_run.finals)
    top = real_run.store.top_keys(5)
    expected = sorted(events.items(), key=lambda kv: (-kv[1], kv[0]))[:5]
    assert top == [{"key": k, "sessions": sessions[k], "events": n} for k, n in expected]


# ---------------------------------------------------------------------- derived status


def test_open_sessions_past_stream_time_read_as_inactive(unflushed_run: RealRun) -> None:
    store, T = unflushed_run.store, unflushed_run.stream_time
    stored = Counter(s for (s,) in sql_rows(store, "SELECT status FROM sessions"))
    (stale,), = sql_rows(store, "SELECT COUNT(*) FROM sessions WHERE status = 'open' "
                                "AND expires_ms < ?", (T,))
    assert stale > 0  # rows the engine wrote as open and never touched again
    assert "closed" not in stored
    engine_view = {r["session_id"]: r for r in unflushed_run.open_records}
    assert {r["status"] for r in engine_view.values()} == {"open", "inactive"}
    for sid, record in engine_view.items():
        assert store.session(sid) == record  # status included: derived as the engine sees it


def test_active_sessions_are_the_engines_open_sessions(unflushed_run: RealRun,
                                                       real_run: RealRun) -> None:
    by_key: dict[str, list[dict[str, Any]]] = {}
    for r in unflushed_run.open_records:
        by_key.setdefault(r["key"], []).append(r)
    for key, records in by_key.items():
        records.sort(key=lambda r: (r["start"], r["session_id"]), reverse=True)
        assert unflushed_run.store.active_sessions(key) == records
    some_key = unflushed_run.open_records[0]["key"]
    assert real_run.store.active_sessions(some_key) == []  # all closed after the flush


def test_stream_time_never_moves_back(store: Any) -> None:
    store.apply(1, 0, ChangeSet(stream_time=T0 + 50 * MIN))
    store.apply(1, 0, ChangeSet(stream_time=T0 + 10 * MIN))
    store.apply(1, 3, ChangeSet(stream_time=T0))
    assert store.stream_times() == {0: T0 + 50 * MIN, 3: T0}


# ---------------------------------------------------------------------- retractions, rejections


def test_a_late_bridging_event_deletes_the_absorbed_session(store: Any) -> None:
    engine = SessionEngine(SMALL)
    first = engine.process([ev("u", 0, "a")])
    second = engine.process([ev("u", 15, "b")])
    store.apply(1, 0, first)
    store.apply(1, 0, second)
    survivor, absorbed = first.upserts[0]["session_id"], second.upserts[0]["session_id"]
    assert len(store.user_sessions("u", None, None, 10, None)[0]) == 2

    bridge = engine.process([ev("u", 7, "c")])  # [7, 17] touches [0, 10] and [15, 25]
    assert bridge.retractions == [absorbed]
    store.apply(1, 0, bridge)
    assert store.session(absorbed) is None
    (only,) = store.user_sessions("u", None, None, 10, None)[0]
    assert only["session_id"] == survivor
    assert (only["event_count"], only["event_ids"]) == (3, ["a", "c", "b"])
    assert (only["start"], only["end"]) == (T0, T0 + 15 * MIN)


def test_rejections_are_stored_with_reason_raw_and_event_time(store: Any) -> None:
    engine = SessionEngine(EngineConfig(gap_ms=10 * MIN, grace_ms=0))
    engine.reject([Rejection(Reason.MALFORMED, "not,a,row", "bad time", offset=3)])
    late_raw = {"user_id": "u", "ts": "2019-10-01T00:05:00Z"}
    changes = engine.process([
        ev("u", 0), ev("v", 100), ev("u", 5, raw=late_raw, offset=4), ev(None, 50),
    ])
    store.apply(1, 0, changes)
    zeros = {r.value: 0 for r in Reason}
    assert store.rejected_counts(None, None) == zeros | {"late": 1, "no_key": 1, "malformed": 1}
    # ranged: placed at the event's ts, or at the stream time (100 min) when it has none
    assert store.rejected_counts(T0, T0 + 60 * MIN) == zeros | {"late": 1, "no_key": 1}
    assert store.rejected_counts(T0 + 100 * MIN, None) == zeros | {"malformed": 1}
    raws = dict(sql_rows(store, "SELECT reason, raw FROM rejected_events"))
    assert orjson.loads(raws["late"]) == late_raw
    assert raws["malformed"] == "not,a,row"


# ---------------------------------------------------------------------- atomicity


def _bad_status(rec: dict[str, Any]) -> dict[str, Any]:
    return rec | {"status": "bogus"}  # refused by the CHECK constraint, mid-transaction


def _no_key(rec: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in rec.items() if k != "key"}  # refused while building the rows


@pytest.mark.parametrize("spoil", [_bad_status, _no_key])
def test_a_failing_batch_leaves_the_store_unchanged(store: Any, spoil: Any) -> None:
    run_id = store.begin_run(RunInfo("test", {}, 0))
    engine = SessionEngine(SMALL)
    good = engine.process([ev("u", 0, "a"), ev("v", 1, "b")])
    store.apply(run_id, 0, good, {0: 2})
    before = dump(store)

    u, v = good.upserts
    bad = ChangeSet(
        retractions=[u["session_id"]],
        upserts=[v | {"event_count": 99}],
        finals=[spoil(u | {"session_id": "new"})],
        rejections=[Rejection(Reason.LATE, {"x": 1}, "late")],
        stream_time=T0 + 500 * MIN,
    )
    with pytest.raises(StoreError, match="rolled back"):
        store.apply(run_id, 0, bad, {0: 99})
    assert dump(store) == before

    store.apply(run_id, 0, engine.flush(), {0: 3})  # still usable afterwards
    assert store.offsets("test") == {0: 3}


def test_offsets_need_a_begun_run(store: Any) -> None:
    with pytest.raises(StoreError, match="begin_run"):
        store.apply(42, 0, ChangeSet(stream_time=T0), {0: 1})
    assert store.stream_times() == {}


# ---------------------------------------------------------------------- paging details


def test_pages_break_ties_on_start_by_session_id(real_run: RealRun, store: Any) -> None:
    template = real_run.finals[0]
    records = [template | {"key": "k", "session_id": f"s{i:02d}", "start": T0 + (i % 3)}
               for i in range(20)]
    store.apply(1, 0, ChangeSet(finals=records))
    pages = walk(store, "k", 3)
    assert [(r["start"], r["session_id"]) for r in pages] == sorted(
        ((r["start"], r["session_id"]) for r in records), reverse=True)


def test_ids_and_keys_compare_bytewise(store: Any, real_run: RealRun) -> None:
    """Upper and lower case, digits and non-ASCII order as bytes in every store (PostgreSQL
    columns are COLLATE "C", whatever the database locale): cursors stay consistent."""
    template = real_run.finals[0]
    ids = ["a", "B", "b", "A", "é", "1", "Z", "z"]
    store.apply(1, 0, ChangeSet(finals=[template | {"key": "k", "session_id": sid, "start": T0}
                                        for sid in ids]))
    expected = sorted(ids, key=lambda s: s.encode(), reverse=True)
    assert [r["session_id"] for r in walk(store, "k", 3)] == expected


@pytest.mark.parametrize("cursor", ["garbage!", "", "W10", encode_cursor(1, "x")[:-2], "bnVsbA"])
def test_a_malformed_cursor_is_a_value_error(store: Any, cursor: str) -> None:
    if not cursor:  # an empty cursor means "first page"
        assert store.user_sessions("k", None, None, 5, cursor) == ([], None)
        return
    with pytest.raises(ValueError, match="cursor"):
        store.user_sessions("k", None, None, 5, cursor)


# ---------------------------------------------------------------------- threads, runs


def test_reads_from_many_threads(real_run: RealRun) -> None:
    ids = [f["session_id"] for f in real_run.finals[:200]]
    with ThreadPoolExecutor(8) as pool:
        got = list(pool.map(real_run.store.session, ids))
    assert [g["session_id"] for g in got] == ids  # type: ignore[index]


def test_run_config_with_sets_is_stored_as_json(store: Any) -> None:
    run_id = store.begin_run(RunInfo("f.csv", {"types": frozenset({"b", "a"})}, 5))
    store.finish_run(run_id, RunInfo("f.csv", {"types": frozenset({"b", "a"})}, 5, 9, {"n": 1}))
    (row,) = sql_rows(store, "SELECT source, config, started_at_ms, finished_at_ms, counters "
                             "FROM runs")
    assert (row[0], as_json(row[1]), row[2], row[3], as_json(row[4])) == (
        "f.csv", {"types": ["a", "b"]}, 5, 9, {"n": 1})
    assert store.runs() == [{"run_id": run_id, "source": "f.csv", "config": {"types": ["a", "b"]},
                             "started_at_ms": 5, "finished_at_ms": 9, "counters": {"n": 1}}]
