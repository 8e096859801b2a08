"""Each rule of SEMANTICS.md at its boundary, beyond the literal shared cases: the whole kind of
fault behind each case (off-by-one at gap/cut-off/close, merges, ties, keys, optional rules)."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sessionize.engine import EngineConfig, Event, MetricsConfig, Reason, SessionEngine
from sessionize.errors import ConfigError

G = 10_000  # gap used throughout: 10 s


def ev(key: str | None, ts: int, eid: str = "", **kw) -> Event:
    return Event(key=key, ts=ts, type=kw.pop("type", "click"), event_id=eid or f"{key}@{ts}", **kw)


def finals_of(engine: SessionEngine, events: list[Event]) -> tuple[list[dict], list]:
    ch = engine.process(events)
    end = engine.flush()
    return ch.finals + end.finals, ch.rejections + end.rejections


def spans(finals: list[dict]) -> list[tuple]:
    return sorted((s["key"], s["start"], s["end"], s["event_count"]) for s in finals)


# ---------------------------------------------------------------- §2 gap boundary

@pytest.mark.parametrize("delta,sessions", [(G - 1, 1), (G, 1), (G + 1, 2)])
def test_gap_is_inclusive_in_both_arrival_orders(delta, sessions):
    for order in ([0, delta], [delta, 0]):
        engine = SessionEngine(EngineConfig(gap_ms=G, grace_ms=None))
        finals, _ = finals_of(engine, [ev("u", t) for t in order])
        assert len(finals) == sessions


def test_identical_timestamps_are_one_session_with_arrival_order_ties():
    engine = SessionEngine(EngineConfig(gap_ms=G, grace_ms=0, track_event_ids=True))
    finals, _ = finals_of(engine, [ev("u", 5, "b"), ev("u", 5, "a"), ev("u", 5, "c")])
    assert [s["event_ids"] for s in finals] == [["b", "a", "c"]]


# ---------------------------------------------------------------- §3 lateness on the merged session

@pytest.mark.parametrize("grace", [0, 3_000])
def test_late_boundary_is_judged_on_merged_expiry(grace):
    # T = 100 s. An event whose own interval ends exactly at the cut-off is kept, 1 ms before: late.
    T = 100_000
    cutoff = T - grace
    engine = SessionEngine(EngineConfig(gap_ms=G, grace_ms=grace))
    engine.process([ev("other", T)])
    kept = engine.process([ev("u", cutoff - G)])
    late = engine.process([ev("v", cutoff - G - 1)])
    assert kept.rejections == [] and kept.counted == 1
    assert [r.reason for r in late.rejections] == [Reason.LATE]


def test_old_event_inside_open_session_is_accepted_even_if_its_own_time_is_old():
    engine = SessionEngine(EngineConfig(gap_ms=G, grace_ms=0))
    engine.process([ev("u", t) for t in range(0, 50_001, 9_000)])  # one long session
    ch = engine.process([ev("u", 1_000)])  # raw ts far behind T - grace, but inside the session
    assert ch.rejections == [] and ch.counted == 1


def test_stream_time_is_per_engine_and_never_goes_back():
    engine = SessionEngine(EngineConfig(gap_ms=G, grace_ms=0))
    engine.process([ev("u", 50_000), ev("u", 10_000)])
    assert engine.stream_time == 50_000


# ---------------------------------------------------------------- §3 closing: the exact millisecond

@pytest.mark.parametrize("grace", [0, 5_000])
def test_session_closes_exactly_when_expires_plus_gap_is_before_cutoff(grace):
    engine = SessionEngine(EngineConfig(gap_ms=G, grace_ms=grace))
    engine.process([ev("u", 0)])  # expires at G; closes once G + G < T - grace
    boundary = 2 * G + grace
    assert engine.process([ev("x", boundary)]).finals == []
    ch = engine.process([ev("y", boundary + 1)])
    assert [f["key"] for f in ch.finals] == ["u"]
    assert ch.finals[0]["status"] == "closed"


def test_nothing_closes_before_a_late_event_could_still_reach_it():
    """Kafka Streams closes one gap earlier; then an accepted late event could sit within a gap
    of an emitted final session. Here the event is accepted and merges into the still-open one."""
    engine = SessionEngine(EngineConfig(gap_ms=G, grace_ms=0))
    engine.process([ev("u", 0), ev("x", 2 * G)])  # KS would have closed u's session at T=2G
    ch = engine.process([ev("u", G + 1)])  # within a gap of u's session end? 10_001 > G: no...
    # ...it starts its own session, expiring at 2G+1 >= cut-off 2G: accepted
    assert ch.counted == 1
    ch = engine.process([ev("u", G)])  # bridges both: M=[0, 2G+1], accepted, merges, retracts
    assert ch.counted == 1 and len(ch.retractions) == 1
    finals, _ = finals_of(engine, [])
    assert spans([f for f in finals if f["key"] == "u"]) == [("u", 0, G + 1, 3)]


def test_inactive_status_once_expired_but_not_closed():
    engine = SessionEngine(EngineConfig(gap_ms=G, grace_ms=60_000))
    engine.process([ev("u", 0)])
    ch = engine.process([ev("u", 1), ev("x", G + 5)])
    statuses = {u["key"]: u["status"] for u in ch.upserts}
    assert statuses == {"u": "inactive", "x": "open"}


def test_end_of_input_closes_everything():
    engine = SessionEngine(EngineConfig(gap_ms=G, grace_ms=None))
    engine.process([ev("u", 0), ev("v", 5)])
    assert engine.open_count == 2
    assert len(engine.flush().finals) == 2
    assert engine.open_count == 0


# ---------------------------------------------------------------- §5 identity and retraction

def test_merge_keeps_id_of_earliest_start_and_retracts_the_others():
    engine = SessionEngine(EngineConfig(gap_ms=G, grace_ms=None))
    a = engine.process([ev("u", 2 * G)]).upserts[0]["session_id"]
    b = engine.process([ev("u", 0)]).upserts[0]["session_id"]
    c = engine.process([ev("u", G)])  # touches both, inclusively
    assert c.retractions == [a]
    assert [u["session_id"] for u in c.upserts] == [b]
    assert c.upserts[0]["start"] == 0 and c.upserts[0]["end"] == 2 * G


def test_session_created_and_merged_in_one_batch_is_never_retracted():
    engine = SessionEngine(EngineConfig(gap_ms=G, grace_ms=None))
    ch = engine.process([ev("u", 2 * G), ev("u", 0), ev("u", G)])
    assert ch.retractions == [] and len(ch.upserts) == 1


def test_session_ids_differ_by_key_and_partition():
    ids = set()
    for partition, key in itertools.product([0, 1], ["u", "v"]):
        engine = SessionEngine(EngineConfig(gap_ms=G), partition)
        ids.add(engine.process([ev(key, 0)]).upserts[0]["session_id"])
    assert len(ids) == 4


# ---------------------------------------------------------------- §4 rejections

@pytest.mark.parametrize("key", [None, ""])
def test_no_key_is_rejected_and_does_not_move_stream_time(key):
    engine = SessionEngine(EngineConfig(gap_ms=G, grace_ms=0))
    engine.process([ev("u", 0)])
    ch = engine.process([ev(key, 10 * G)])
    assert [r.reason for r in ch.rejections] == [Reason.NO_KEY]
    assert engine.stream_time == 0


def test_future_guard_boundary_and_stream_time():
    engine = SessionEngine(EngineConfig(gap_ms=G, grace_ms=0, max_future_ms=1_000))
    ok = engine.process([ev("u", 2_000, received_at=1_000)])
    bad = engine.process([ev("u", 99_000, received_at=1_000)])
    assert ok.counted == 1 and [r.reason for r in bad.rejections] == [Reason.FUTURE]
    assert engine.stream_time == 2_000


def test_every_rejection_is_counted_by_reason():
    engine = SessionEngine(EngineConfig(gap_by_type={"a": G}, grace_ms=0, dedup=True))
    engine.process([
        ev("u", 100_000, "x", type="a"), ev("u", 100_000, "x", type="a"),  # duplicate
        ev(None, 5, type="a"), ev("u", 7, type="zzz"), ev("u", 0, type="a"),  # no_key, no_gap, late
    ])
    assert {k: v for k, v in engine.counters.items() if v} == {
        "received": 5, "counted": 1, "duplicate": 1, "no_key": 1, "no_gap": 1, "late": 1}


# ---------------------------------------------------------------- §6 dedup

def test_dedup_only_within_open_sessions_and_only_when_on():
    on = SessionEngine(EngineConfig(gap_ms=G, grace_ms=0, dedup=True))
    on.process([ev("u", 0, "e1"), ev("x", 100 * G)])  # u's session closes
    after_close = on.process([ev("u", 0, "e1")])
    assert [r.reason for r in after_close.rejections] == [Reason.LATE]
    off = SessionEngine(EngineConfig(gap_ms=G, grace_ms=0))
    assert off.process([ev("u", 0, "e1"), ev("u", 0, "e1")]).counted == 2


def test_dedup_is_per_key():
    engine = SessionEngine(EngineConfig(gap_ms=G, grace_ms=0, dedup=True))
    assert engine.process([ev("u", 0, "same"), ev("v", 0, "same")]).counted == 2


# ---------------------------------------------------------------- §6 gap by event type

def test_gap_by_type_uses_each_events_own_gap_and_the_fallback():
    cfg = EngineConfig(gap_by_type={"browse": 30 * G, "checkout": G, "*": 2 * G}, grace_ms=None)
    finals, rejected = finals_of(SessionEngine(cfg), [
        ev("u", 0, type="checkout"), ev("u", G + 1, type="browse"),  # checkout's gap is short
        ev("u", 40 * G, type="other"), ev("u", 41 * G, type="checkout"),  # browse reaches 31G+1
    ])
    assert spans(finals) == [("u", 0, 0, 1), ("u", G + 1, G + 1, 1), ("u", 40 * G, 41 * G, 2)]
    assert rejected == []
    assert cfg.max_gap_ms == 30 * G


# ---------------------------------------------------------------- §6 max duration

def test_max_duration_splits_in_order_and_late_events_never_bridge_beyond_it():
    cfg = EngineConfig(gap_ms=5 * G, grace_ms=None, max_duration_ms=10 * G)
    in_order = [ev("u", t * G) for t in range(0, 25, 3)]
    finals, _ = finals_of(SessionEngine(cfg), in_order)
    assert all(s["end"] - s["start"] <= 10 * G for s in finals)
    assert sum(s["event_count"] for s in finals) == len(in_order)
    # two sessions 8 gaps long each, 4 gaps apart; a late event between them joins the first only
    engine = SessionEngine(cfg)
    engine.process([ev("u", 0), ev("u", 4 * G), ev("u", 8 * G), ev("u", 14 * G), ev("u", 18 * G),
                    ev("u", 22 * G)])
    finals, _ = finals_of(engine, [ev("u", 10 * G)])
    assert all(s["end"] - s["start"] <= 10 * G for s in finals)
    assert sum(s["event_count"] for s in finals) == 7


# ---------------------------------------------------------------- §6 split at midnight

def _ms(text: str) -> int:
    return int(datetime.fromisoformat(text).astimezone(UTC).timestamp() * 1000)


@pytest.mark.parametrize("midnight", [
    "2026-03-29T00:00:00+01:00",  # Berlin, the day the clocks spring forward (23 h day follows)
    "2026-03-30T00:00:00+02:00",  # the midnight after that short day
    "2026-10-25T00:00:00+02:00",  # before the 25 h day
    "2026-10-26T00:00:00+01:00",
])
def test_midnight_split_in_zone_including_dst_days(midnight):
    m = _ms(midnight)
    cfg = EngineConfig(gap_ms=30 * 60_000, grace_ms=None, midnight_tz="Europe/Berlin")
    arrival = [ev("u", m + 60_000), ev("u", m - 60_000), ev("u", m - 1), ev("u", m)]
    finals, _ = finals_of(SessionEngine(cfg), arrival)
    assert spans(finals) == [("u", m - 60_000, m - 1, 2), ("u", m, m + 60_000, 2)]


def test_midnight_split_off_keeps_the_session_whole():
    m = _ms("2026-01-16T00:00:00+01:00")
    finals, _ = finals_of(SessionEngine(EngineConfig(gap_ms=30 * 60_000, grace_ms=None)),
                          [ev("u", m - 60_000), ev("u", m + 60_000)])
    assert len(finals) == 1


# ---------------------------------------------------------------- §6 campaign change

def test_campaign_change_starts_a_new_session_and_events_without_one_stay():
    cfg = EngineConfig(gap_ms=G, grace_ms=None, campaign_split=True)
    finals, _ = finals_of(SessionEngine(cfg), [
        ev("u", 0), ev("u", 1_000, campaign="google/cpc/x"), ev("u", 2_000),
        ev("u", 3_000, campaign="google/cpc/x"), ev("u", 4_000, campaign="mail/newsletter/y"),
        ev("u", 5_000),
    ])
    assert spans(finals) == [("u", 0, 0, 1), ("u", 1_000, 3_000, 3), ("u", 4_000, 5_000, 2)]
    assert [s["campaign"] for s in sorted(finals, key=lambda s: s["start"])] == [
        None, "google/cpc/x", "mail/newsletter/y"]


# ---------------------------------------------------------------- §3 idle close

def test_idle_close_only_when_configured_and_past_timeout():
    off = SessionEngine(EngineConfig(gap_ms=G, grace_ms=0))
    off.process([ev("u", 0)])
    assert off.advance_idle(10**9).finals == []
    on = SessionEngine(EngineConfig(gap_ms=G, grace_ms=0, idle_timeout_ms=60_000))
    on.process([ev("u", 0)])
    assert on.advance_idle(59_999).finals == []
    assert [f["key"] for f in on.advance_idle(60_000).finals] == ["u"]


# ---------------------------------------------------------------- §7 metrics merge exactly

METRICS = MetricsConfig(path_cap=3)


@st.composite
def web_events(draw):
    n = draw(st.integers(1, 12))
    times = draw(st.lists(st.integers(0, 50_000), min_size=n, max_size=n, unique=True))
    out = []
    for i, t in enumerate(times):
        out.append(Event(
            key="u", ts=t, event_id=f"e{i}",
            type=draw(st.sampled_from(["page_view", "click", "purchase"])),
            page=draw(st.sampled_from([None, "/", "/a", "/b"])),
            referrer=draw(st.sampled_from([None, "https://r1", "https://r2"])),
            campaign=draw(st.sampled_from([None, "g/cpc/x"])),
            revenue=draw(st.sampled_from([None, 1.5, 10.0])),
        ))
    return out, draw(st.permutations(range(n)))


@settings(max_examples=300, deadline=None)
@given(web_events())
def test_metrics_of_any_arrival_order_equal_the_in_order_metrics(data):
    events, perm = data
    cfg = EngineConfig(gap_ms=60_000, grace_ms=None, metrics=METRICS, track_event_ids=True)
    ordered = sorted(events, key=lambda e: e.ts)
    want = finals_of(SessionEngine(cfg), ordered)[0]
    got = finals_of(SessionEngine(cfg), [events[i] for i in perm])[0]
    drop = {"session_id"}
    assert [{k: v for k, v in s.items() if k not in drop} for s in got] == \
           [{k: v for k, v in s.items() if k not in drop} for s in want]


def test_metric_values_of_one_session():
    cfg = EngineConfig(gap_ms=60_000, grace_ms=None, metrics=MetricsConfig(path_cap=2))
    finals, _ = finals_of(SessionEngine(cfg), [
        Event("u", 12_000, "purchase", page="/thanks", revenue=9.5),
        Event("u", 0, "page_view", page="/home", referrer="https://search", user_agent="UA"),
        Event("u", 5_000, "page_view", page="/product", campaign="g/cpc/x"),
    ])
    s = finals[0]
    assert (s["entry_page"], s["exit_page"], s["referrer"], s["campaign"], s["user_agent"]) == (
        "/home", "/thanks", "https://search", "g/cpc/x", "UA")
    assert (s["page_views"], s["conversions"], s["revenue"], s["duration_ms"]) == (2, 1, 9.5, 12_000)
    assert (s["bounce"], s["engaged"], s["path"], s["path_truncated"]) == (
        False, True, ["page_view", "page_view"], True)


def test_bounce_and_engaged_thresholds():
    cfg = EngineConfig(gap_ms=60_000, grace_ms=None)
    one = finals_of(SessionEngine(cfg), [Event("u", 0, "click")])[0][0]
    short = finals_of(SessionEngine(cfg), [Event("u", 0, "click"), Event("u", 9_999, "click")])[0][0]
    long = finals_of(SessionEngine(cfg), [Event("u", 0, "click"), Event("u", 10_000, "click")])[0][0]
    assert (one["bounce"], one["engaged"]) == (True, False)
    assert (short["bounce"], short["engaged"]) == (False, False)
    assert long["engaged"] is True


# ---------------------------------------------------------------- configuration errors

@pytest.mark.parametrize("kwargs,words", [
    ({"gap_ms": 0}, "gap must be greater than 0"),
    ({"gap_ms": -5}, "gap must be greater than 0"),
    ({"grace_ms": -1}, "grace"),
    ({"midnight_tz": "Mars/Olympus"}, "unknown time zone"),
    ({"gap_by_type": {"a": 0}}, "gap_by_type"),
    ({"gap_by_type": {}}, "gap_by_type is empty"),
    ({"max_duration_ms": 0}, "max_duration"),
])
def test_bad_configuration_is_refused_with_a_useful_message(kwargs, words):
    with pytest.raises(ConfigError, match=words):
        EngineConfig(**kwargs)


# ---------------------------------------------------------------- sealing closed sessions

def test_an_event_reaching_a_final_session_through_a_later_open_one_is_late():
    """Found by property test (d): A=[0] closes at T=72 (grace 51); a new session B=[18] is
    opened; an event at 10 touches both A (final) and B (open, so M.expires >= cut-off). Were it
    accepted, B would become [10, 18], within a gap of the final A. It is late instead."""
    engine = SessionEngine(EngineConfig(gap_ms=10, grace_ms=51))
    ch = engine.process([ev("a", 0), ev("a", 72)])
    assert [f["start"] for f in ch.finals] == [0]
    ch = engine.process([ev("a", 18), ev("a", 10), ev("a", 11)])
    assert ch.counted == 2  # 18 opens B; 11 touches only B and joins it
    assert [(r.event_id, r.reason) for r in ch.rejections] == [("a@10", Reason.LATE)]
    assert "already closed" in ch.rejections[0].detail
    finals, _ = finals_of(engine, [])
    assert spans(finals) == [("a", 11, 18, 2), ("a", 72, 72, 1)]


def test_seals_are_forgotten_after_their_retention_for_keys_with_nothing_open():
    engine = SessionEngine(EngineConfig(gap_ms=10, grace_ms=0, seal_retention_ms=100))
    engine.process([ev("a", 0), ev("x", 50)])
    assert set(engine._sealed) == {"a"}
    engine.process([ev("x", 95)])  # a's seal: expires 10 + 100 = 110, not yet before cut-off
    assert "a" in engine._sealed
    engine.process([ev("x", 111)])
    assert "a" not in engine._sealed
    assert "x" in engine._sealed  # x's newer seal stays


def test_dedup_with_events_that_have_no_event_id():
    engine = SessionEngine(EngineConfig(gap_ms=1, grace_ms=0, dedup=True))
    ch = engine.process([Event("u", 0), Event("u", 100), Event("u", 100)])
    assert ch.counted == 3 and [f["event_count"] for f in ch.finals] == [1]


def test_restored_engine_forgets_seals_exactly_when_the_live_one_does():
    import json
    cfg = EngineConfig(gap_ms=10, grace_ms=0, seal_retention_ms=30)
    live = SessionEngine(cfg, track_state=True)
    live.process([ev("a", 0), ev("b", 50)])
    restored = SessionEngine.restore(cfg, json.loads(json.dumps(live.snapshot())),
                                     track_state=True)
    for t in (60, 75, 90, 200):
        a, b = live.process([ev("c", t)]), restored.process([ev("c", t)])
        assert a.state.unsealed == b.state.unsealed and set(live._sealed) == set(restored._sealed)
