"""Property tests on random streams with random arrival disorder (issue: engine properties a-e),
plus a naive reference model of SEMANTICS.md §2-§3 that the engine must match event for event."""

from __future__ import annotations

import itertools
import json
from collections import defaultdict

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sessionize.engine import EngineConfig, Event, SessionEngine

GAP = 10


@st.composite
def streams(draw, max_events: int = 60) -> list[Event]:
    """Events of a few keys on a small time axis (so gaps, ties and merges are frequent), in an
    arrival order that is the time order disturbed by random local and long-range moves."""
    n = draw(st.integers(0, max_events))
    keys = draw(st.lists(st.sampled_from(["a", "b", "c", "d"]), min_size=n, max_size=n))
    times = sorted(draw(st.lists(st.integers(0, 400), min_size=n, max_size=n)))
    events = [Event(key=k, ts=t, type="click", event_id=f"e{i}") for i, (k, t) in
              enumerate(zip(keys, times, strict=True))]
    swaps = draw(st.lists(st.tuples(st.integers(0, max(n - 1, 0)), st.integers(-30, 30)),
                          max_size=n))
    for i, d in swaps:
        j = min(max(i + d, 0), n - 1)
        if n:
            events[i], events[j] = events[j], events[i]
    return events


def run(engine: SessionEngine, events: list[Event], batch_sizes: list[int] | None = None):
    """All finals and rejections, feeding ``events`` in batches of the given sizes."""
    finals, rejected, i = [], [], 0
    sizes = iter(batch_sizes or [len(events) or 1])
    while i < len(events):
        size = next(sizes, len(events))
        changes = engine.process(events[i:i + size])
        finals += changes.finals
        rejected += changes.rejections
        i += size
    changes = engine.flush()
    return finals + changes.finals, rejected + changes.rejections


def shape(finals: list[dict]) -> list[tuple]:
    return sorted((s["key"], s["start"], s["end"], s["event_count"], tuple(s["event_ids"]))
                  for s in finals)


def _with_keys(by_key, gap):
    """Plain batch sessionization: sort each key's events (ties in arrival order), split > gap."""
    for key, evs in by_key.items():
        evs = sorted(evs)
        current = [evs[0]]
        for ev in evs[1:]:
            if ev[0] - current[-1][0] > gap:
                yield key, current
                current = []
            current.append(ev)
        yield key, current


def naive_reference(events: list[Event], gap: int, grace: int):
    """SEMANTICS.md §2-§3 literally, with a full scan at every step: no heap, no laziness, and
    no forgetting: an event that touches any final session of its key is late."""
    T = None
    open_sessions: list[dict] = []
    finals, late = [], []

    def close_due():
        for s in list(open_sessions):
            if T is not None and s["expires"] + gap < T - grace:
                open_sessions.remove(s)
                finals.append(s)

    for seq, e in enumerate(events):
        def touches(s, e=e):
            return s["key"] == e.key and s["start"] <= e.ts + gap and e.ts <= s["expires"]

        cands = [s for s in open_sessions if touches(s)]
        if any(touches(s) for s in finals):  # a final session is immutable: touching it is late
            late.append(e.event_id)
            continue
        m_expires = max([e.ts + gap] + [s["expires"] for s in cands])
        if T is not None and m_expires < T - grace:
            late.append(e.event_id)
            continue
        merged = {"key": e.key, "start": e.ts, "expires": e.ts + gap, "events": [(e.ts, seq, e.event_id)]}
        for s in cands:
            open_sessions.remove(s)
            merged["start"] = min(merged["start"], s["start"])
            merged["expires"] = max(merged["expires"], s["expires"])
            merged["events"] += s["events"]
        open_sessions.append(merged)
        T = e.ts if T is None else max(T, e.ts)
        close_due()
    finals += open_sessions
    out = []
    for s in finals:
        evs = sorted(s["events"])
        out.append((s["key"], evs[0][0], evs[-1][0], len(evs), tuple(x[2] for x in evs)))
    return sorted(out), late


SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@SETTINGS
@given(streams())
def test_a_unbounded_grace_equals_gaps_and_islands(events):
    cfg = EngineConfig(gap_ms=GAP, grace_ms=None, track_event_ids=True)
    finals, rejected = run(SessionEngine(cfg), events)
    assert rejected == []
    assert shape(finals) == sorted(_with_keys_shape(events))


def _with_keys_shape(events):
    by_key: dict[str, list] = defaultdict(list)
    for seq, e in enumerate(events):
        by_key[e.key].append((e.ts, seq, e.event_id))
    return [(k, s[0][0], s[-1][0], len(s), tuple(x[2] for x in s)) for k, s in _with_keys(by_key, GAP)]


@SETTINGS
@given(streams(), st.integers(0, 60), st.lists(st.integers(1, 7), min_size=1, max_size=30))
def test_b_batch_sizes_do_not_matter(events, grace, sizes):
    cfg = EngineConfig(gap_ms=GAP, grace_ms=grace, track_event_ids=True)
    one_pass = run(SessionEngine(cfg), events)
    batched = run(SessionEngine(cfg), events, sizes)
    assert [s["session_id"] for s in batched[0]] == [s["session_id"] for s in one_pass[0]]
    assert batched[0] == one_pass[0]
    assert [(r.event_id, r.reason) for r in batched[1]] == [(r.event_id, r.reason) for r in one_pass[1]]


@SETTINGS
@given(streams(), st.integers(0, 60), st.booleans())
def test_c_counted_plus_rejected_is_received(events, grace, dedup):
    events = events + events[: len(events) // 3]  # redelivered duplicates
    engine = SessionEngine(EngineConfig(gap_ms=GAP, grace_ms=grace, dedup=dedup))
    finals, rejected = run(engine, events)
    counted = sum(s["event_count"] for s in finals)
    assert counted + len(rejected) == len(events)
    assert engine.counters["received"] == len(events)
    assert engine.counters["counted"] == counted


@SETTINGS
@given(streams(), st.integers(0, 60))
def test_d_no_two_final_sessions_of_a_key_within_a_gap(events, grace):
    finals, _ = run(SessionEngine(EngineConfig(gap_ms=GAP, grace_ms=grace)), events)
    by_key: dict[str, list[dict]] = defaultdict(list)
    for s in finals:
        by_key[s["key"]].append(s)
    for sessions in by_key.values():
        sessions.sort(key=lambda s: s["start"])
        for a, b in itertools.pairwise(sessions):
            assert b["start"] - a["end"] > GAP


@SETTINGS
@given(streams(), st.integers(0, 60), st.lists(st.integers(1, 9), min_size=1, max_size=20))
def test_e_replay_gives_the_same_session_ids(events, grace, sizes):
    cfg = EngineConfig(gap_ms=GAP, grace_ms=grace)
    first = run(SessionEngine(cfg), events)[0]
    again = run(SessionEngine(cfg), events, sizes)[0]
    assert {(s["session_id"], s["start"], s["end"]) for s in first} == \
           {(s["session_id"], s["start"], s["end"]) for s in again}


@SETTINGS
@given(streams(), st.integers(0, 60))
def test_engine_matches_naive_reference_model(events, grace):
    finals, rejected = run(SessionEngine(EngineConfig(gap_ms=GAP, grace_ms=grace,
                                                      track_event_ids=True)), events)
    want_sessions, want_late = naive_reference(events, GAP, grace)
    assert shape(finals) == want_sessions
    assert [r.event_id for r in rejected] == want_late


@SETTINGS
@given(streams(), st.integers(0, 60), st.lists(st.integers(1, 9), min_size=1, max_size=20))
def test_a_final_session_is_never_revised(events, grace, sizes):
    """Once a session is emitted as final, no later change mentions its id again (§3)."""
    engine = SessionEngine(EngineConfig(gap_ms=GAP, grace_ms=grace))
    final_ids: set[str] = set()
    i, it = 0, iter(sizes)
    while i < len(events):
        n = next(it, len(events))
        ch = engine.process(events[i:i + n])
        i += n
        touched = set(ch.retractions) | {u["session_id"] for u in ch.upserts}
        assert not touched & final_ids
        final_ids |= {f["session_id"] for f in ch.finals}


@SETTINGS
@given(streams(), st.integers(0, 60), st.integers(0, 60))
def test_snapshot_restore_anywhere_continues_exactly(events, grace, cut):
    cfg = EngineConfig(gap_ms=GAP, grace_ms=grace, track_event_ids=True, dedup=True)
    whole = run(SessionEngine(cfg), events)
    engine = SessionEngine(cfg)
    first = engine.process(events[:cut])
    restored = SessionEngine.restore(cfg, json.loads(json.dumps(engine.snapshot())))
    rest = run(restored, events[cut:])
    assert first.finals + rest[0] == whole[0]
    assert [r.event_id for r in first.rejections + rest[1]] == [r.event_id for r in whole[1]]


class DeltaStore:
    """What a store does with StateDelta: tables of session states, seals and scalars."""

    def __init__(self, partition: int) -> None:
        self.partition = partition
        self.sessions: dict[str, dict] = {}
        self.sealed: dict[str, dict] = {}
        self.scalars: dict = {"stream_time": None, "seq": 0, "idle_base": None, "counters": {}}

    def apply(self, delta) -> None:
        for sid in delta.removed:
            self.sessions.pop(sid, None)
        for state in delta.sessions:
            self.sessions[state["sid"]] = json.loads(json.dumps(state))
        for key in delta.unsealed:
            self.sealed.pop(key, None)
        for state in delta.sealed:
            self.sealed[state["key"]] = json.loads(json.dumps(state))
        self.scalars = json.loads(json.dumps(delta.partition))

    def state(self) -> dict:
        return {"version": 1, "partition": self.partition, **self.scalars,
                "sessions": list(self.sessions.values()), "sealed": list(self.sealed.values())}


@SETTINGS
@given(streams(), st.integers(0, 60), st.lists(st.integers(1, 9), min_size=1, max_size=20),
       st.integers(0, 20))
def test_state_deltas_restore_a_worker_exactly(events, grace, sizes, crash_after):
    """A worker persisting only StateDeltas, killed after any batch and restored from them,
    emits exactly what an uninterrupted engine emits (ids, records, rejections)."""
    cfg = EngineConfig(gap_ms=GAP, grace_ms=grace, dedup=True, seal_retention_ms=15)
    whole = run(SessionEngine(cfg, 3), events, sizes)
    store = DeltaStore(3)
    engine = SessionEngine(cfg, 3, track_state=True)
    finals, rejected, i, it = [], [], 0, iter(sizes)
    for n_batch in range(10_000):
        if i >= len(events):
            break
        n = next(it, len(events))
        ch = engine.process(events[i:i + n])
        store.apply(ch.state)
        finals += ch.finals
        rejected += ch.rejections
        i += n
        if n_batch == crash_after:  # crash: everything in memory is lost
            engine = SessionEngine.restore(cfg, store.state(), track_state=True)
    end = engine.flush()
    assert finals + end.finals == whole[0]
    assert [r.event_id for r in rejected + end.rejections] == [r.event_id for r in whole[1]]


RULES = {
    "midnight": {"midnight_tz": "UTC"},
    "campaign": {"campaign_split": True},
    "max_duration": {"max_duration_ms": 25},
    "dedup": {"dedup": True},
    "gap_by_type": {"gap_by_type": {"click": GAP, "buy": 3, "*": GAP}},
}


@SETTINGS
@given(streams(), st.integers(0, 60), st.lists(st.integers(1, 9), min_size=1, max_size=20),
       st.lists(st.booleans(), min_size=1, max_size=20), st.sampled_from(sorted(RULES)),
       st.lists(st.sampled_from([None, "x", "y"]), min_size=60, max_size=60))
def test_state_deltas_restore_exactly_under_every_rule(events, grace, sizes, crashes, rule,
                                                       labels):
    """The same, restoring after any batches, under each optional rule that reads the state
    of sessions and seals (local day, campaign, span, ids, per-type gaps). The time axis
    crosses a UTC midnight; events carry campaigns and two types."""
    shift = 86_400_000 - 200  # midnight 200 ms into the axis
    events = [Event(key=e.key, ts=e.ts + shift, type="buy" if labels[i] == "y" else e.type,
                    event_id=e.event_id, campaign=labels[(i * 7) % 60])
              for i, e in enumerate(events)]
    cfg = EngineConfig(gap_ms=GAP, grace_ms=grace, seal_retention_ms=15, **RULES[rule])
    whole = run(SessionEngine(cfg, 3), events, sizes)
    store = DeltaStore(3)
    engine = SessionEngine(cfg, 3, track_state=True)
    finals, rejected, i, it = [], [], 0, iter(sizes)
    for n_batch in range(10_000):
        if i >= len(events):
            break
        n = next(it, len(events))
        ch = engine.process(events[i:i + n])
        store.apply(ch.state)
        finals += ch.finals
        rejected += ch.rejections
        i += n
        if crashes[n_batch % len(crashes)]:  # crash: everything in memory is lost
            engine = SessionEngine.restore(cfg, store.state(), track_state=True)
    end = engine.flush()
    assert finals + end.finals == whole[0]
    assert [(r.event_id, r.reason) for r in rejected + end.rejections] == \
        [(r.event_id, r.reason) for r in whole[1]]


@pytest.mark.parametrize("rule", ["midnight", "campaign", "max_duration"])
def test_a_restored_seal_keeps_what_the_rules_read(rule):
    """Found in review: a seal persisted without its day, campaign or end let a late event
    through after a restore. Key a's first session is sealed; the late event at 10 touches it
    and bridges to a's open session: late in the engine that kept running and in one restored
    from its snapshot (and from its deltas)."""
    cfg = EngineConfig(gap_ms=10, grace_ms=0, **(RULES[rule] if rule != "max_duration"
                                                  else {"max_duration_ms": 100}))
    first = [Event("a", 0, campaign="x"), Event("a", 20, campaign="x"), Event("b", 21)]
    running = SessionEngine(cfg, 0, track_state=True)
    store = DeltaStore(0)
    store.apply(running.process(first).state)
    from_snapshot = SessionEngine.restore(cfg, json.loads(json.dumps(running.snapshot())))
    from_deltas = SessionEngine.restore(cfg, store.state())
    late = [Event("a", 10, campaign="x", event_id="late")]
    for engine in (running, from_snapshot, from_deltas):
        ch = engine.process(late)
        assert [(r.event_id, r.reason.value) for r in ch.rejections] == [("late", "late")]
        assert not ch.upserts
