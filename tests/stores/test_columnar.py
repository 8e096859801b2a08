"""ColumnarAnalytics kept up to date from a store that is being written, in both stores.

The analytics tests (test_analytics.py) check each query of the columnar copy against an
independent computation on a finished run. Here the copy lives through a run: a disordered
stream with late events that merge sessions (retractions), batch after batch, the copy refreshed
incrementally in between; after every refresh it must answer exactly what the store's SQL
answers at that moment, and what a copy built from scratch answers. Then the cases that break
an incremental copy: a session written again under the same id (a re-run into the same store),
a closed session written again as open, nothing written at all.
"""

from __future__ import annotations

import random
from typing import Any

import pytest

from sessionize.engine import ChangeSet, EngineConfig, Event, SessionEngine
from sessionize.stores.base import RunInfo
from sessionize.stores.columnar import ColumnarAnalytics
from tests.realrun import RealRun, parse_utc

T0 = parse_utc("2019-10-01 00:00:00 UTC")
MIN = 60_000
HOUR = 60 * MIN
CONFIG = EngineConfig(gap_ms=10 * MIN, grace_ms=2 * HOUR)
TYPES = ("view", "view", "view", "cart", "purchase")
PAGES = ("/", "/a", "/b", "/c", None)
CAMPAIGNS = ("spring", "summer", None, None)


def disordered_events(n: int, seed: int) -> list[Event]:
    """``n`` events of 60 users over ~8 hours, 10 % displaced by up to 40 minutes (late
    events that land between sessions merge them), with pages, campaigns and revenue."""
    rng = random.Random(seed)
    events = []
    for i in range(n):
        ts = T0 + int(i * 8 * HOUR / n) + rng.randrange(60_000)
        if rng.random() < 0.1:
            ts -= rng.randrange(40 * MIN)
        etype = rng.choice(TYPES)
        events.append(Event(
            key=f"u{rng.randrange(60)}", ts=ts, type=etype, page=rng.choice(PAGES),
            campaign=rng.choice(CAMPAIGNS), referrer=rng.choice(PAGES),
            revenue=round(rng.uniform(1, 90), 2) if etype == "purchase" else None, offset=i))
    return events


def answers(reads: Any) -> dict[str, Any]:
    """Every columnar query, over the whole store and over a window."""
    lo, hi = T0 + 2 * HOUR, T0 + 5 * HOUR
    out: dict[str, Any] = {}
    for name, (a, b) in {"all": (None, None), "window": (lo, hi)}.items():
        out[name] = {
            "summary": reads.summary(a, b),
            "hours": reads.timeseries("hour", "Asia/Kolkata", a, b),
            "days": reads.timeseries("day", "America/New_York", a, b),
            "funnel": reads.funnel(["view", "cart", "purchase"], a, b),
            "histogram": reads.histogram("duration", a, b, [MIN, 5 * MIN, 20 * MIN]),
            "events": reads.histogram("events", a, b, None),
            "entry": reads.top_pages("entry", a, b, 3, None),
            "exit": reads.top_pages("exit", a, b, 10, None),
            "campaign": reads.conversion_by("campaign", a, b, 10, None),
            "referrer": reads.conversion_by("referrer", a, b, 2, None),
        }
    return out


def rounded(value: Any) -> Any:
    """Floats to 6 places, all the way down: sums of revenue differ in their last bits with the
    order of the additions; everything else must be equal as it is."""
    if isinstance(value, float):
        return round(value, 6)
    if isinstance(value, dict):
        return {k: rounded(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [rounded(v) for v in value]
    return value


def same(got: dict[str, Any], want: dict[str, Any]) -> None:
    for range_name, queries in want.items():
        for query, value in queries.items():
            assert rounded(got[range_name][query]) == rounded(value), (range_name, query)


@pytest.mark.parametrize("seed", [1, 2])
def test_an_incremental_copy_answers_as_the_store_after_every_batch(store: Any,
                                                                    seed: int) -> None:
    engine = SessionEngine(CONFIG)
    run_id = store.begin_run(RunInfo("random", {}, 0))
    events = disordered_events(3000, seed)
    copy = ColumnarAnalytics(store)
    retracted = 0
    for i in range(0, len(events), 250):
        changes = engine.process(events[i:i + 250])
        retracted += len(changes.retractions)
        store.apply(run_id, 0, changes)
        assert copy.refresh()
        same(answers(copy), answers(store))
    store.apply(run_id, 0, engine.flush())
    copy.refresh()
    want = answers(store)
    same(answers(copy), want)
    fresh = ColumnarAnalytics(store)
    fresh.refresh()
    same(answers(fresh), want)
    assert retracted > 10  # late events did bridge sessions
    assert want["all"]["summary"]["sessions"] == len(engine_finals(events))
    assert not copy.refresh()  # nothing written since: nothing to do


def engine_finals(events: list[Event]) -> list[dict[str, Any]]:
    engine = SessionEngine(CONFIG)
    out: list[dict[str, Any]] = []
    for i in range(0, len(events), 250):
        out += engine.process(events[i:i + 250]).finals
    return out + engine.flush().finals


def test_writing_the_same_sessions_again_does_not_count_them_twice(store: Any) -> None:
    """A second run of the same input into the same store upserts the same ids: once closed
    (replacing the closed rows), once left open (a closed row written again as open)."""
    events = disordered_events(600, 3)
    copy = ColumnarAnalytics(store)
    for flush in (True, True, False):
        engine = SessionEngine(CONFIG)
        run_id = store.begin_run(RunInfo("again", {}, 0))
        store.apply(run_id, 0, engine.process(events))
        if flush:
            store.apply(run_id, 0, engine.flush())
        copy.refresh()
        same(answers(copy), answers(store))
    assert copy.summary(None, None)["sessions"] == store.summary(None, None)["sessions"] > 50


def test_answers_come_from_the_store_until_the_first_copy(real_run: RealRun) -> None:
    copy = ColumnarAnalytics(real_run.store)
    assert not copy.ready and copy.health()["analytics"]["columnar"] is False
    assert copy.summary(None, None) == real_run.store.summary(None, None)
    assert copy.funnel(["view", "cart"], None, None) == real_run.store.funnel(
        ["view", "cart"], None, None)
    copy.refresh()
    assert copy.ready and copy.health()["analytics"]["sessions"] == len(real_run.finals)


def test_summary_of_the_real_run_is_the_store_summary(real_run: RealRun) -> None:
    copy = ColumnarAnalytics(real_run.store)
    copy.refresh()
    for lo, hi in ((None, None), (T0 + 30 * MIN, T0 + 90 * MIN), (T0 - HOUR, T0)):
        got, want = copy.summary(lo, hi), real_run.store.summary(lo, hi)
        assert rounded(got) == rounded(want)
        assert {k: type(v) for k, v in got.items()} == {k: type(v) for k, v in want.items()}


def test_the_background_refresh_picks_up_new_writes(store: Any) -> None:
    import time

    copy = ColumnarAnalytics(store, refresh_s=0.05)
    copy.start()
    try:
        engine = SessionEngine(CONFIG)
        store.apply(1, 0, engine.process([Event("u", T0, "view"), Event("u", T0 + MIN, "cart")]))
        store.apply(1, 0, engine.flush())
        deadline = time.monotonic() + 10
        while copy.summary(None, None)["sessions"] != 1 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert copy.summary(None, None)["sessions"] == 1
        assert copy.funnel(["view", "cart"], None, None)["steps"][1][
            "median_ms_from_previous"] == MIN
    finally:
        copy.stop()


def test_change_seqs_number_every_write_per_partition(store: Any) -> None:
    engine0, engine1 = SessionEngine(CONFIG, 0), SessionEngine(CONFIG, 1)
    first = store.session_changes(None)
    assert first.seqs == {} and first.closed == [] and first.unclosed == []
    store.apply(1, 0, engine0.process([Event("a", T0, "view")]))
    store.apply(1, 1, engine1.process([Event("b", T0, "view")]))
    store.apply(1, 1, engine1.flush())
    store.apply(1, 1, ChangeSet(stream_time=T0 + HOUR))  # no session written: no number
    changes = store.session_changes({})
    assert changes.seqs == {0: 1, 1: 2}
    assert [r[1] for r in changes.closed] == ["b"] and [r[1] for r in changes.unclosed] == ["a"]
    assert store.session_changes({0: 1, 1: 2}).unclosed is None  # nothing new
    assert store.session_changes({0: 1, 1: 1}).closed == changes.closed  # b closed at seq 2
