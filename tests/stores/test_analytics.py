"""The analytics queries, once per store (SqliteStore, PostgresStore), on a store filled by the
real engine from the real REES46 events, checked against independent computations over the
final records the engine emitted (plain Python over lists: no store or analytics code).

The REES46 head has no pages, referrers or campaigns as such; to exercise every dimension the
events carry product_id as the page, the brand as the campaign and the category code as the
referrer (stand-ins with the real data's skew and gaps).
"""

from __future__ import annotations

import itertools
import sqlite3
import statistics
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from contextlib import closing
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import psycopg
import pytest

from sessionize.engine import ChangeSet, EngineConfig, Event, Reason, Rejection, SessionEngine
from sessionize.stores import analytics as an
from sessionize.stores.columnar import ColumnarAnalytics
from sessionize.stores.postgres import MIGRATIONS as PG_MIGRATIONS
from sessionize.stores.postgres import PostgresStore
from sessionize.stores.sqlite import MIGRATIONS as SQLITE_MIGRATIONS
from sessionize.stores.sqlite import SqliteStore
from tests.realrun import GAP_MS, RealRun, parse_utc, read_rees46, run_into

T0 = parse_utc("2019-10-01 00:00:00 UTC")
MIN = 60_000
HOUR = 60 * MIN


def rees46_events() -> list[Event]:
    return [
        Event(key=r["user_id"], ts=parse_utc(r["event_time"]), type=r["event_type"],
              page=r["product_id"], campaign=r["brand"] or None,
              referrer=r["category_code"] or None, revenue=float(r["price"]), offset=i, raw=r)
        for i, r in enumerate(read_rees46())
    ]


Reader = Callable[[Any], Any]


@pytest.fixture(scope="module", params=["sql", "columnar"])
def read(request: pytest.FixtureRequest) -> Reader:
    """How the analytics are read: the store's own SQL, or the columnar copy
    (``ColumnarAnalytics``, refreshed from the store just before) that ``serve`` answers from.
    Every analytics test runs with both, against the same independent computation."""
    if request.param == "sql":
        return lambda store: store

    def columnar(store: Any) -> ColumnarAnalytics:
        reader = ColumnarAnalytics(store)
        assert reader.refresh() and reader.ready
        return reader

    return columnar


def new_store(kind: str, request: pytest.FixtureRequest, name: str) -> Any:
    if kind == "sqlite":
        return SqliteStore(request.getfixturevalue("tmp_path_factory").mktemp(name) / "s.db")
    return PostgresStore(request.getfixturevalue("pg_schema")())


@pytest.fixture(scope="module")
def shop(kind: str, request: pytest.FixtureRequest) -> Iterator[RealRun]:
    """The rees46 head with pages, campaigns and referrers, run to the end (all final)."""
    store = new_store(kind, request, "shop")
    run = run_into(store, rees46_events(), EngineConfig(gap_ms=GAP_MS))
    yield run
    store.close()


def in_range(finals: list[dict[str, Any]], lo: int | None, hi: int | None) -> list[dict[str, Any]]:
    return [f for f in finals if (lo is None or f["start"] >= lo) and (hi is None or f["start"] < hi)]


# ---------------------------------------------------------------------- funnels


def naive_funnel(finals: list[dict[str, Any]], steps: list[str]
                 ) -> tuple[list[int], list[float | None]]:
    """Sessions reaching each step and median ms between steps, the obvious way."""
    reached = [0] * len(steps)
    gaps: list[list[int]] = [[] for _ in steps]
    for f in finals:
        times, pos = [], 0
        for step in steps:
            try:
                pos = f["path"].index(step, pos)
            except ValueError:
                break
            times.append(f["path_ms"][pos])
            pos += 1
        for k in range(len(times)):
            reached[k] += 1
            if k:
                gaps[k].append(times[k] - times[k - 1])
    return reached, [statistics.median(g) if g else None for g in gaps]


@pytest.mark.parametrize("steps", [["view", "cart", "purchase"], ["cart", "purchase"],
                                   ["view", "purchase"], ["purchase", "view"],
                                   ["view", "view", "view", "cart"], ["view", "nothing"]])
def test_funnel_matches_a_direct_computation(read: Reader, shop: RealRun, steps: list[str]) -> None:
    for lo, hi in ((None, None), (T0 + 30 * MIN, T0 + 120 * MIN)):
        chosen = in_range(shop.finals, lo, hi)
        reached, medians = naive_funnel(chosen, steps)
        got = read(shop.store).funnel(steps, lo, hi)
        assert got["sessions"] == len(chosen)
        assert [s["sessions"] for s in got["steps"]] == reached
        assert [s["type"] for s in got["steps"]] == steps
        assert [s["median_ms_from_previous"] for s in got["steps"]] == medians
        for k, s in enumerate(got["steps"]):
            prev = reached[k - 1] if k else None
            assert s["conversion_from_previous"] == (reached[k] / prev if prev else None)
            assert s["conversion_from_first"] == (reached[k] / reached[0] if reached[0] else None)
        assert got["truncated_paths"] == sum(f["path_truncated"] for f in chosen)
    full = read(shop.store).funnel(["view", "cart", "purchase"], None, None)
    assert [s["sessions"] for s in full["steps"]][:1] == [1753]  # every session has a view
    assert full["steps"][2]["sessions"] > 0  # and some reach a purchase through the cart


def test_funnel_times_come_from_a_uniform_sample_past_the_limit(
        shop: RealRun, monkeypatch: pytest.MonkeyPatch) -> None:
    """The SQL path medians a sample past TIMING_SAMPLE sessions; the columnar copy never
    samples (every session, exactly)."""
    steps = ["view", "view"]
    full = shop.store.funnel(steps, None, None)
    assert full["timing"] == {"sessions": full["steps"][1]["sessions"], "sampled": False}
    monkeypatch.setattr(an, "TIMING_SAMPLE", 200)
    sampled = shop.store.funnel(steps, None, None)
    assert [s["sessions"] for s in sampled["steps"]] == [s["sessions"] for s in full["steps"]]
    assert sampled["timing"]["sampled"] is True
    assert 100 < sampled["timing"]["sessions"] < 400  # ids are hashes: about 200 of ~990
    ratio = sampled["steps"][1]["median_ms_from_previous"] / full["steps"][1][
        "median_ms_from_previous"]
    assert 0.6 < ratio < 1.6
    columnar = ColumnarAnalytics(shop.store)
    columnar.refresh()
    assert columnar.funnel(steps, None, None) == full  # exact, whatever the sample size


def test_funnel_steps_are_whole_types_whatever_their_characters(read: Reader, store: Any) -> None:
    """Types holding GLOB, regex, LIKE and JSON specials match only themselves."""
    odd = ['a*b', 'x"view', "[v]", ".+", "50%_", "back\\slash", "view", "ünï", "a,b"]
    paths = {"s1": ["x\"view", "a*b", "[v]"], "s2": ["view", "aXb", "v"], "s3": [".+", "50%_"],
             "s4": ["ab", "50%x"], "s5": ["back\\slash", "ünï", "a,b"], "s6": ["a", "b"]}
    engine = SessionEngine(EngineConfig(gap_ms=10 * MIN))
    events = [Event(key=key, ts=T0 + i * 1000, type=t)
              for key, path in paths.items() for i, t in enumerate(path)]
    store.apply(1, 0, engine.process(events))
    store.apply(1, 0, engine.flush())
    for t in odd:
        want = sum(t in p for p in paths.values())
        assert read(store).funnel([t, t], None, None)["steps"][0]["sessions"] == want, t
    assert [s["sessions"] for s in read(store).funnel(["x\"view", "a*b", "[v]"], None, None)["steps"]] \
        == [1, 1, 1]
    assert [s["sessions"] for s in read(store).funnel(["view", "a*b"], None, None)["steps"]] == [1, 0]
    assert [s["sessions"] for s in read(store).funnel([".+", "50%_"], None, None)["steps"]] == [1, 1]
    assert [s["sessions"] for s in read(store).funnel(["back\\slash", "ünï", "a,b"], None, None)
            ["steps"]] == [1, 1, 1]
    assert [s["sessions"] for s in read(store).funnel(["a", "b"], None, None)["steps"]] == [1, 1]
    assert read(store).funnel(["a*b", "[v]"], None, None)["steps"][1]["median_ms_from_previous"] == 1000


def test_funnel_time_is_between_the_earliest_matching_events(read: Reader, store: Any) -> None:
    engine = SessionEngine(EngineConfig(gap_ms=10 * MIN))
    # view@0 view@1m cart@3m view@4m purchase@6m   and   view@0 cart@1m purchase@2m
    events = [Event("u", T0 + m * MIN, t) for m, t in
              ((0, "view"), (1, "view"), (3, "cart"), (4, "view"), (6, "purchase"))]
    events += [Event("w", T0 + m * MIN, t) for m, t in ((0, "view"), (1, "cart"), (2, "purchase"))]
    store.apply(1, 0, engine.process(events))
    store.apply(1, 0, engine.flush())
    got = read(store).funnel(["view", "cart", "purchase"], None, None)["steps"]
    assert [s["median_ms_from_previous"] for s in got] == [None, (3 + 1) / 2 * MIN,
                                                           (3 + 1) / 2 * MIN]


# ---------------------------------------------------------------------- time series


def naive_buckets(finals: list[dict[str, Any]], tz: str, interval: str
                  ) -> dict[str, tuple[int, int, int]]:
    """Local bucket label -> (sessions, users, events), by converting each start to the zone."""
    zone = ZoneInfo(tz)
    sessions: Counter[str] = Counter()
    users: dict[str, set[str]] = defaultdict(set)
    events: Counter[str] = Counter()
    for f in finals:
        local = datetime.fromtimestamp(f["start"] / 1000, UTC).astimezone(zone)
        if interval == "day":
            start = datetime(local.year, local.month, local.day, tzinfo=zone)
        else:
            start = local.replace(minute=0, second=0, microsecond=0)
        label = start.isoformat()
        label = label.replace("+00:00", "Z") if tz == "UTC" else label
        sessions[label] += 1
        users[label].add(f["key"])
        events[label] += f["event_count"]
    return {k: (sessions[k], len(users[k]), events[k]) for k in sessions}


@pytest.mark.parametrize(("tz", "interval"), [("UTC", "hour"), ("UTC", "day"),
                                              ("Europe/Berlin", "hour"), ("Asia/Kolkata", "hour"),
                                              ("Asia/Kathmandu", "hour"),
                                              ("America/Los_Angeles", "day")])
def test_timeseries_matches_local_buckets(read: Reader, shop: RealRun, tz: str, interval: str) -> None:
    got = read(shop.store).timeseries(interval, tz, None, None)
    assert got["tz"] == tz and got["interval"] == interval
    expected = naive_buckets(shop.finals, tz, interval)
    nonzero = {b["start"]: (b["sessions"], b["users"], b["events"])
               for b in got["buckets"] if b["sessions"]}
    assert nonzero == expected
    assert sum(b["sessions"] for b in got["buckets"]) == 1753
    starts = [b["start_ms"] for b in got["buckets"]]
    assert starts == sorted(starts)
    if interval == "hour":  # every hour of the data's span, empty ones included
        assert all(b - a == HOUR for a, b in itertools.pairwise(starts))


def test_timeseries_rates_per_bucket(read: Reader, shop: RealRun) -> None:
    for b in read(shop.store).timeseries("hour", "UTC", None, None)["buckets"]:
        lo = b["start_ms"]
        chosen = in_range(shop.finals, lo, lo + HOUR)
        assert b["sessions"] == len(chosen)
        if chosen:
            assert b["bounce_rate"] == pytest.approx(sum(f["bounce"] for f in chosen) / len(chosen))
            assert b["conversion_rate"] == pytest.approx(
                sum(f["conversions"] > 0 for f in chosen) / len(chosen))
            assert b["revenue"] == pytest.approx(sum(f["revenue"] for f in chosen))
        else:
            assert b["bounce_rate"] is None


def test_timeseries_with_a_range_has_every_bucket_even_empty(read: Reader, shop: RealRun) -> None:
    got = read(shop.store).timeseries("hour", "UTC", T0 - 2 * HOUR, T0 + 6 * HOUR)["buckets"]
    assert [b["start"][11:16] for b in got] == ["22:00", "23:00", "00:00", "01:00", "02:00",
                                                "03:00", "04:00", "05:00"]
    assert [b["sessions"] for b in got][:2] == [0, 0] and got[-1]["sessions"] == 0


def _utc(*args: int) -> int:
    return int(datetime(*args, tzinfo=UTC).timestamp() * 1000)


def test_timeseries_across_dst_in_berlin(read: Reader, store: Any) -> None:
    """Clocks fall back on 2019-10-27 (03:00 CEST -> 02:00 CET) and spring forward on
    2019-03-31 (02:00 CET -> 03:00 CEST): one session in each real hour around both."""
    engine = SessionEngine(EngineConfig(gap_ms=10 * MIN))
    fall = [_utc(2019, 10, 26, 22) + h * HOUR + 5 * MIN for h in range(8)]  # 00:05 .. 06:05 local
    spring = [_utc(2019, 3, 30, 23) + h * HOUR + 5 * MIN for h in range(6)]
    events = [Event(f"k{i}", ts, "view") for i, ts in enumerate(fall + spring)]
    store.apply(1, 0, engine.process(sorted(events, key=lambda e: e.ts)))
    store.apply(1, 0, engine.flush())

    hours = read(store).timeseries("hour", "Europe/Berlin", _utc(2019, 10, 26, 22),
                             _utc(2019, 10, 27, 6))["buckets"]
    assert [b["start"] for b in hours] == [
        "2019-10-27T00:00:00+02:00", "2019-10-27T01:00:00+02:00", "2019-10-27T02:00:00+02:00",
        "2019-10-27T02:00:00+01:00", "2019-10-27T03:00:00+01:00", "2019-10-27T04:00:00+01:00",
        "2019-10-27T05:00:00+01:00", "2019-10-27T06:00:00+01:00"]
    assert [b["sessions"] for b in hours] == [1] * 8  # the repeated hour is two buckets

    days = read(store).timeseries("day", "Europe/Berlin", _utc(2019, 3, 29), _utc(2019, 10, 30)
                            )["buckets"]
    by_day = {b["start"]: b["sessions"] for b in days}
    assert by_day["2019-10-27T00:00:00+02:00"] == 8  # 00:05 CEST .. 06:05 CET
    assert by_day["2019-10-26T00:00:00+02:00"] == 0
    assert by_day["2019-03-31T00:00:00+01:00"] == 6
    assert len(days) == 216  # 2019-03-29 .. 2019-10-30 (local), the empty days included
    day_starts = [b["start_ms"] for b in days]
    lengths = {b["start"]: (b2 - b1) // HOUR
               for b, b1, b2 in zip(days, day_starts, day_starts[1:], strict=False)}
    assert lengths["2019-10-27T00:00:00+02:00"] == 25
    assert lengths["2019-03-31T00:00:00+01:00"] == 23
    assert lengths["2019-06-01T00:00:00+02:00"] == 24

    spring_hours = read(store).timeseries("hour", "Europe/Berlin", _utc(2019, 3, 30, 23),
                                    _utc(2019, 3, 31, 5))["buckets"]
    assert [b["start"][11:16] for b in spring_hours] == ["00:00", "01:00", "03:00", "04:00",
                                                         "05:00", "06:00"]


def test_timeseries_refuses_too_many_buckets_and_unknown_zones(read: Reader, store: Any) -> None:
    with pytest.raises(ValueError, match="too many"):
        read(store).timeseries("hour", "UTC", 0, 10 * 365 * 86_400_000)
    with pytest.raises(ValueError, match="Europe/Berlin"):
        read(store).timeseries("day", "Europe/Berln", None, None)
    assert read(store).timeseries("day", "UTC", None, None)["buckets"] == []  # empty store


# ---------------------------------------------------------------------- histograms


@pytest.mark.parametrize(("metric", "field", "edges"), [
    ("duration", "duration_ms", None), ("events", "event_count", None),
    ("duration", "duration_ms", [60_000, 300_000]), ("events", "event_count", [2, 10])])
def test_histogram_matches_a_direct_count(read: Reader, shop: RealRun, metric: str, field: str,
                                          edges: list[int] | None) -> None:
    got = read(shop.store).histogram(metric, None, None, edges)
    bins = got["bins"]
    assert bins[0]["lo"] == 0 and bins[-1]["hi"] is None
    if edges:
        assert [b["hi"] for b in bins[:-1]] == edges
    for b in bins:
        want = sum(1 for f in shop.finals
                   if f[field] >= b["lo"] and (b["hi"] is None or f[field] < b["hi"]))
        assert b["sessions"] == want, b
    assert got["sessions"] == 1753


# ---------------------------------------------------------------------- ranked lists


def walk_ranked(call: Any) -> list[dict[str, Any]]:
    out, cursor = [], None
    while True:
        page = call(cursor)
        out += page["rows"]
        cursor = page["next_cursor"]
        if cursor is None:
            return out


def ranked(finals: list[dict[str, Any]], field: str) -> list[tuple[str, int]]:
    counts = Counter(f[field] for f in finals if f[field] is not None)
    return sorted(counts.items(), key=lambda kv: (-kv[1], kv[0].encode()))


@pytest.mark.parametrize(("kind_", "field"), [("entry", "entry_page"), ("exit", "exit_page")])
def test_top_pages_in_order_and_paged(read: Reader, shop: RealRun, kind_: str, field: str) -> None:
    expected = ranked(shop.finals, field)
    first = read(shop.store).top_pages(kind_, None, None, 10, None)
    assert [(r["page"], r["sessions"]) for r in first["rows"]] == expected[:10]
    everything = walk_ranked(lambda c: read(shop.store).top_pages(kind_, None, None, 97, c))
    assert [(r["page"], r["sessions"]) for r in everything] == expected
    top = first["rows"][0]
    mine = [f for f in shop.finals if f[field] == top["page"]]
    assert top["bounce_rate"] == pytest.approx(sum(f["bounce"] for f in mine) / len(mine))
    assert top["share"] == pytest.approx(len(mine) / 1753)
    assert first["sessions"] == 1753 and first["without_value"]["sessions"] == 0


def test_conversion_by_campaign_and_referrer(read: Reader, shop: RealRun) -> None:
    for dim in ("campaign", "referrer", "entry_page"):
        rows = walk_ranked(lambda c, dim=dim: read(shop.store).conversion_by(dim, None, None, 50, c))
        assert [(r["value"], r["sessions"]) for r in rows] == ranked(shop.finals, dim)
        for r in rows[:20]:
            mine = [f for f in shop.finals if f[dim] == r["value"]]
            assert r["converted"] == sum(f["conversions"] > 0 for f in mine)
            assert r["conversion_rate"] == pytest.approx(r["converted"] / len(mine))
            assert r["revenue"] == pytest.approx(sum(f["revenue"] for f in mine))
        none = [f for f in shop.finals if f[dim] is None]
        got = read(shop.store).conversion_by(dim, None, None, 5, None)["without_value"]
        assert got["sessions"] == len(none)
        assert got["converted"] == sum(f["conversions"] > 0 for f in none)
    assert any(r["converted"] for r in walk_ranked(
        lambda c: read(shop.store).conversion_by("campaign", None, None, 50, c)))


def test_ranked_lists_respect_the_range(read: Reader, shop: RealRun) -> None:
    lo, hi = T0 + 30 * MIN, T0 + 60 * MIN
    got = walk_ranked(lambda c: read(shop.store).top_pages("entry", lo, hi, 25, c))
    assert [(r["page"], r["sessions"]) for r in got] == ranked(in_range(shop.finals, lo, hi),
                                                             "entry_page")


@pytest.mark.parametrize("cursor", ["garbage!", "W10", "WyJ4IiwxXQ"])
def test_a_bad_ranked_cursor_is_a_value_error(read: Reader, shop: RealRun, cursor: str) -> None:
    with pytest.raises(ValueError, match="cursor"):
        read(shop.store).top_pages("entry", None, None, 5, cursor)


# ---------------------------------------------------------------------- live


def test_live_counts_statuses_and_counters(unflushed_run: RealRun) -> None:
    live = unflushed_run.store.live()
    statuses = Counter(r["status"] for r in unflushed_run.open_records)
    assert live["sessions"]["open"] == live["active_sessions"] == statuses["open"]
    assert live["sessions"]["inactive"] == statuses["inactive"]
    assert live["sessions"]["total"] == unflushed_run.store.health()["sessions"]
    assert live["counted"] == len(unflushed_run.rows)
    assert set(live["rejected"]) == {r.value for r in Reason}
    (p,) = live["partitions"]
    assert p["partition"] == 0 and p["stream_time_ms"] == unflushed_run.stream_time
    assert p["lag_ms"] >= 0
    assert live["last_start_ms"] == max(r["start"] for r in unflushed_run.open_records)


def test_live_counters_add_up_over_batches(store: Any) -> None:
    engine = SessionEngine(EngineConfig(gap_ms=10 * MIN, grace_ms=0))
    store.apply(1, 0, engine.process([Event("u", T0, "view"), Event("v", T0 + 20 * MIN, "view")]))
    engine.reject([Rejection(Reason.MALFORMED, "x,y", "bad")])
    store.apply(1, 0, engine.process([Event("u", T0 + MIN, "view"), Event(None, T0, "view")]))
    store.apply(1, 2, ChangeSet(counted=5, stream_time=T0))
    live = store.live()
    assert live["counted"] == 2 + 5
    assert {k: v for k, v in live["rejected"].items() if v} == {"late": 1, "no_key": 1,
                                                               "malformed": 1}
    assert [p["partition"] for p in live["partitions"]] == [0, 2]


# ---------------------------------------------------------------------- schema


def test_a_store_of_the_first_schema_is_migrated_with_empty_path_ms(read: Reader,
        kind: str, request: pytest.FixtureRequest, tmp_path: Path) -> None:
    """Rows written before path_ms existed read back with ``path_ms == []``."""
    engine = SessionEngine(EngineConfig(gap_ms=10 * MIN))
    changes = engine.process([Event("u", T0, "view"), Event("u", T0 + MIN, "cart")])
    (rec,) = changes.upserts
    old_cols = ("session_id", '"key"', '"partition"', "start_ms", "end_ms", "expires_ms",
                "duration_ms", "event_count", "status", "page_views", "conversions", "revenue",
                "bounce", "engaged", "is_bot", "path", "path_truncated", "updated_at_ms")
    values = (rec["session_id"], "u", 0, rec["start"], rec["end"], rec["expires"],
              rec["duration_ms"], 2, "open", 1, 0, 0.0, False, True, False, '["view","cart"]',
              False, 0)
    insert = f"INSERT INTO sessions ({', '.join(old_cols)}) VALUES ({', '.join(['?'] * 18)})"
    if kind == "sqlite":
        path = tmp_path / "old.db"
        with closing(sqlite3.connect(path)) as db:
            for statement in SQLITE_MIGRATIONS[0]:
                db.execute(statement)
            db.execute("PRAGMA user_version = 1")
            db.execute(insert, values)
            db.commit()
        store: Any = SqliteStore(path)
        assert store.schema_version() == len(SQLITE_MIGRATIONS) == 3
    else:
        dsn = request.getfixturevalue("pg_schema")()
        with psycopg.connect(dsn, autocommit=True) as db:
            for statement in PG_MIGRATIONS[0]:
                db.execute(statement)  # type: ignore[arg-type]
            db.execute("CREATE TABLE schema_migrations (version integer PRIMARY KEY, "
                       "applied_at_ms bigint NOT NULL)")
            db.execute("INSERT INTO schema_migrations VALUES (1, 0)")
            db.execute(insert.replace("?", "%s"), values)  # type: ignore[arg-type]
            # a worker's engine state as version 1 kept it (jsonb): read back the same after
            db.execute("INSERT INTO engine_partitions VALUES ('k', 0, 5, 9, 5, '{}', 9)")
            db.execute("INSERT INTO engine_sessions VALUES ('k', 0, 's1', %s::jsonb)",
                       ('{"sid": "s1", "path": [[1, 2, "view"]]}',))
            db.execute("INSERT INTO engine_sealed VALUES ('k', 0, 'u', %s::jsonb)",
                       ('{"sid": "s0", "key": "u", "expires": 3}',))
        store = PostgresStore(dsn)
        assert store.schema_version() == len(PG_MIGRATIONS) == 4
        state, offset = store.load_partition("k", 0)
        assert offset is None and state is not None
        assert state["sessions"] == [{"sid": "s1", "path": [[1, 2, "view"]]}]
        assert state["sealed"] == [{"sid": "s0", "key": "u", "expires": 3}]
    try:
        got = store.session(rec["session_id"])
        assert got["path"] == ["view", "cart"] and got["path_ms"] == []
        # counted by the funnel, left out of its times
        steps = read(store).funnel(["view", "cart"], None, None)["steps"]
        assert [s["sessions"] for s in steps] == [1, 1]
        assert steps[1]["median_ms_from_previous"] is None
        store.apply(1, 0, changes)  # written again by this version: path_ms is there
        assert store.session(rec["session_id"])["path_ms"] == [0, MIN]
    finally:
        store.close()


def test_path_ms_is_stored_and_returned(shop: RealRun) -> None:
    longest = max(shop.finals, key=lambda f: len(f["path"]))
    got = shop.store.session(longest["session_id"])
    assert got["path_ms"] == longest["path_ms"]
    assert got["path_ms"][0] == 0 and got["path_ms"][-1] <= got["duration_ms"]
    assert got["path_ms"] == sorted(got["path_ms"])
    assert len(got["path_ms"]) == len(got["path"]) > 5
