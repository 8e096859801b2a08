"""The compiled engine (FastEngine, rust/) against the pure-Python reference (SessionEngine):
identical ChangeSets, batch for batch, on random disordered streams with random metrics fields,
random grace (unbounded too), random batch sizes; plus the shared cases it supports.

Skipped only when the core is not built (the reason is printed); with SESSIONIZE_REQUIRE_CORE=1
(CI builds it) a missing core fails instead.
"""

from __future__ import annotations

import json
import os
import random
from datetime import datetime

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sessionize.decode.fields import FieldMap, RecordDecoder
from sessionize.decode.timestamps import format_ms
from sessionize.engine import EngineConfig, Event, MetricsConfig, Reason, Rejection, SessionEngine, fast
from sessionize.errors import ConfigError
from tests.conftest import SHARED
from tests.engine.test_properties import DeltaStore

WHY = fast.unavailable_reason() or ""
needs_core = pytest.mark.skipif(not fast.available(), reason=WHY)


def test_core_is_built_when_required() -> None:
    """CI builds the core: there a missing core is a failure, not a skip."""
    if os.environ.get("SESSIONIZE_REQUIRE_CORE") == "1":
        assert fast.available(), WHY
    elif not fast.available():
        pytest.skip(WHY)


def test_missing_core_says_what_to_do(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(fast, "_core", None)
    monkeypatch.setattr(fast, "_IMPORT_ERROR", "ModuleNotFoundError: No module named 'sessionize_core'")
    assert not fast.available()
    with pytest.raises(ImportError, match=r"make setup.*SessionEngine"):
        fast.FastEngine(EngineConfig())
    assert isinstance(fast.engine_for(EngineConfig()), SessionEngine)


@needs_core
@pytest.mark.parametrize("change", [
    {"gap_by_type": {"*": 1000}}, {"max_duration_ms": 1000}, {"midnight_tz": "UTC"},
    {"campaign_split": True}, {"dedup": True}, {"max_future_ms": 1000}, {"idle_timeout_ms": 1000},
])
def test_unsupported_rules_raise_config_error_and_fall_back(change: dict) -> None:
    cfg = EngineConfig(**change)
    with pytest.raises(ConfigError, match="does not implement"):
        fast.FastEngine(cfg)
    assert isinstance(fast.engine_for(cfg), SessionEngine)


@needs_core
def test_engine_for_picks_the_core_when_it_can() -> None:
    assert isinstance(fast.engine_for(EngineConfig(grace_ms=None)), fast.FastEngine)
    assert isinstance(fast.engine_for(EngineConfig(), track_state=True), fast.FastEngine)


# ---------------------------------------------------------------------------- random streams

TYPES = [None, "", "page_view", "view", "purchase", "order", "click", "scroll"]
PAGES = [None, "", "/", "/a", "/b", "/cart"]
REFERRERS = [None, "", "google", "news"]
CAMPAIGNS = [None, "", "spring", "fall"]
AGENTS = [None, "", "firefox", "bot/1.0"]
REVENUES = [None, 0.1, 0.2, 2.5, 1e-7, 19.99, -3.0, 7]
KEYS = ["a", "b", "c", "d", "e", "ü", "", None]


@st.composite
def streams(draw, max_events: int = 80) -> list[Event]:
    """Events of several keys (some without one) on a small time axis, with every metrics field,
    in an arrival order that is the time order disturbed by random local and long-range moves."""
    n = draw(st.integers(0, max_events))
    span = draw(st.sampled_from([40, 400, 2000]))
    times = sorted(draw(st.lists(st.integers(0, span), min_size=n, max_size=n)))
    fields = draw(st.lists(st.tuples(
        st.sampled_from(KEYS[:-2]) | st.sampled_from(KEYS),  # mostly keyed
        st.sampled_from(TYPES), st.sampled_from(PAGES), st.sampled_from(REFERRERS),
        st.sampled_from(CAMPAIGNS), st.sampled_from(AGENTS), st.sampled_from(REVENUES),
        st.integers(0, 9).map(lambda x: x == 0), st.sampled_from([None, "x"]),
    ), min_size=n, max_size=n))
    events = []
    for i, (t, (k, ty, pg, ref, camp, ua, rev, bot, eid)) in enumerate(zip(times, fields, strict=True)):
        events.append(Event(key=k, ts=t, type=ty, event_id=f"e{i}" if eid else None, page=pg,
                            referrer=ref, campaign=camp, user_agent=ua, revenue=rev, is_bot=bot,
                            offset=i if i % 3 else None, raw={"i": i}))
    swaps = draw(st.lists(st.tuples(st.integers(0, max(n - 1, 0)), st.integers(-40, 40)), max_size=n))
    for i, d in swaps:
        j = min(max(i + d, 0), n - 1)
        if n:
            events[i], events[j] = events[j], events[i]
    return events


@st.composite
def configs(draw) -> EngineConfig:
    return EngineConfig(
        gap_ms=draw(st.sampled_from([1, 10, 10, 37])),
        grace_ms=draw(st.none() | st.integers(0, 80)),
        seal_retention_ms=draw(st.sampled_from([0, 15, 100, 7 * 86_400_000])),
        track_event_ids=draw(st.booleans()),
        metrics=MetricsConfig(
            path_cap=draw(st.sampled_from([0, 1, 3, 50])),
            engaged_min_duration_ms=draw(st.sampled_from([0, 5, 10_000])),
            engaged_min_page_views=draw(st.sampled_from([1, 2, 3])),
            page_view_types=frozenset(draw(st.sampled_from([("page_view", "view"), ("", "page_view")]))),
        ),
    )


def batches(events: list, sizes: list[int]):
    i, it = 0, iter(sizes)
    while i < len(events):
        n = next(it, len(events))
        yield events[i:i + n]
        i += n


def malformed(i: int) -> Rejection:
    return Rejection(Reason.MALFORMED, {"bad": i}, "not JSON", i)


SETTINGS = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@needs_core
@SETTINGS
@given(streams(), configs(), st.lists(st.integers(1, 12), min_size=1, max_size=30),
       st.sampled_from([0, 3, 17]), st.sets(st.integers(0, 12), max_size=3))
def test_same_changesets_as_the_python_engine(events, cfg, sizes, partition, bad_before):
    ref, fst = SessionEngine(cfg, partition), fast.FastEngine(cfg, partition)
    for n, batch in enumerate(batches(events, sizes)):
        if n in bad_before:  # malformed records refused before the engine, in the same stream
            ref.reject([malformed(n)])
            fst.reject([malformed(n)])
        want, got = ref.process(batch), fst.process(batch)
        assert got == want
        assert fst.stream_time == ref.stream_time
        assert fst.open_count == ref.open_count
        assert fst.counters == ref.counters
    assert sorted(fst.open_sessions(), key=lambda r: r["session_id"]) == \
        sorted(ref.open_sessions(), key=lambda r: r["session_id"])
    assert fst.flush() == ref.flush()
    assert fst.counters == ref.counters
    assert fst.open_count == 0
    # after the end of input the seals stay: later events that touch them are late in both
    tail = [Event(key=e.key, ts=e.ts, type=e.type, event_id="again") for e in events[:5]]
    assert fst.process(tail) == ref.process(tail)


@needs_core
@SETTINGS
@given(streams(), configs(), st.lists(st.integers(1, 20), min_size=1, max_size=20))
def test_columns_give_the_same_changes(events, cfg, sizes):
    """The fast path: codes in, columns out; to_changeset() without the Events gives the same
    records, ids and retractions, and rejections with the same reason, key, ts and detail."""
    ref, fst = SessionEngine(cfg), fast.FastEngine(cfg)
    for batch in batches(events, sizes):
        want = ref.process(batch)
        cols = fst.process_columns(
            fst.keys.encode(e.key for e in batch), [e.ts for e in batch],
            fst.types.encode(e.type for e in batch), fst.pages.encode(e.page for e in batch),
            fst.referrers.encode(e.referrer for e in batch), fst.campaigns.encode(e.campaign for e in batch),
            fst.user_agents.encode(e.user_agent for e in batch),
            [float("nan") if e.revenue is None else e.revenue for e in batch],
            [e.is_bot for e in batch],
            fst.event_ids.encode(fast._event_ref(e) for e in batch) if cfg.track_event_ids else None,
        )
        got = cols.to_changeset()
        assert bool(cols) == bool(want)
        assert cols.counted == want.counted
        assert got.upserts == want.upserts
        assert got.finals == want.finals
        assert got.retractions == want.retractions
        assert got.retracted_keys == want.retracted_keys
        # a key of "" and None are both code -1: the columns cannot tell them apart
        assert [(r.reason, r.key, r.ts, r.detail) for r in got.rejections] == \
               [(r.reason, r.key or None, r.ts, r.detail) for r in want.rejections]
        assert [batch[i] for i in cols.rejected_index.tolist()] == \
               [e for e in batch if any(r.raw is e.raw for r in want.rejections)]
        assert [s.decode() for s in cols.finals.session_ids_array()] == [f["session_id"] for f in want.finals]
    assert fst.flush_columns().to_changeset().finals == ref.flush().finals


@needs_core
@pytest.mark.parametrize("grace", [None, 0, 600, 30_000])
@pytest.mark.parametrize("path_cap", [0, 7, 50, 300])
def test_long_random_stream(grace, path_cap):
    """Thousands of events of a few hundred keys, long sessions (paths through every size
    class), slots and seals reused: the same changes, batch by batch."""
    rng = random.Random(f"{grace}-{path_cap}")
    events, t = [], 0
    for i in range(30_000):
        t += rng.choice([0, 1, 2, 5, 20])
        key = f"u{int(rng.paretovariate(1.2)) % 300}"
        ts = t + (rng.randint(-3000, 0) if rng.random() < 0.1 else 0)
        events.append(Event(key=key if rng.random() > 0.001 else None, ts=ts, type=rng.choice(TYPES),
                            page=rng.choice(PAGES), referrer=rng.choice(REFERRERS),
                            revenue=rng.choice(REVENUES),
                            campaign=rng.choice(CAMPAIGNS), user_agent=rng.choice(AGENTS),
                            is_bot=rng.random() < 0.001, event_id=f"e{i}"))
    cfg = EngineConfig(gap_ms=200, grace_ms=grace, seal_retention_ms=5_000, track_event_ids=path_cap == 7,
                       metrics=MetricsConfig(path_cap=path_cap))
    ref, fst = SessionEngine(cfg, 5), fast.FastEngine(cfg, 5)
    sizes = [rng.choice([1, 10, 100, 1000, 5000]) for _ in range(200)]
    for batch in batches(events, sizes):
        assert fst.process(batch) == ref.process(batch)
    assert fst.flush() == ref.flush()
    assert fst.counters == ref.counters


# ---------------------------------------------------------------------------- state (workers)


def _normal(state: dict) -> dict:
    """A store's state as JSON would hold it, event ids in order (their order in a session's
    state is arrival order in one engine and time order in the other; only the set is read)."""
    state = json.loads(json.dumps(state))
    for session in state["sessions"]:
        if session["event_ids"] is not None:
            session["event_ids"].sort()
    state["sessions"].sort(key=lambda s: s["sid"])
    state["sealed"].sort(key=lambda seal: seal["key"] or "")
    return state


@needs_core
@SETTINGS
@given(streams(), configs(), st.lists(st.integers(1, 12), min_size=1, max_size=30))
def test_state_deltas_are_the_python_engines(events, cfg, sizes):
    """With track_state, every batch's StateDelta leaves a store in exactly the state the
    reference engine's deltas leave it in: the persisted format does not depend on the engine."""
    ref, fst = SessionEngine(cfg, 2, track_state=True), fast.FastEngine(cfg, 2, track_state=True)
    ref_store, fst_store = DeltaStore(2), DeltaStore(2)
    for batch in [*batches(events, sizes), None]:
        want = ref.process(batch) if batch is not None else ref.flush()
        got = fst.process(batch) if batch is not None else fst.flush()
        assert got.upserts == want.upserts and got.finals == want.finals
        ref_store.apply(want.state)
        fst_store.apply(got.state)
        assert _normal(fst_store.state()) == _normal(ref_store.state())


@needs_core
@SETTINGS
@given(streams(), configs(), st.lists(st.integers(1, 9), min_size=1, max_size=20),
       st.lists(st.sampled_from(["fast", "python", None]), min_size=1, max_size=20),
       st.sampled_from(["fast", "python"]))
def test_a_worker_restored_by_either_engine_continues_exactly(events, cfg, sizes, crashes, first):
    """A worker that persists only StateDeltas, killed after any batches (``crashes[i]``: the
    engine that takes over after batch i, None: no crash) and restored from them by the same or
    the other engine, emits exactly what an uninterrupted engine emits."""
    kinds = {"fast": fast.FastEngine, "python": SessionEngine}
    whole = SessionEngine(cfg, 3)
    want_finals, want_rejected = [], []
    for batch in batches(events, sizes):
        ch = whole.process(batch)
        want_finals += ch.finals
        want_rejected += ch.rejections
    end = whole.flush()
    want_finals += end.finals
    store = DeltaStore(3)
    engine = kinds[first](cfg, 3, track_state=True)
    finals, rejected = [], []
    for n_batch, batch in enumerate(batches(events, sizes)):
        ch = engine.process(batch)
        store.apply(ch.state)
        finals += ch.finals
        rejected += ch.rejections
        after = crashes[n_batch % len(crashes)]
        if after is not None:  # crash: everything in memory is lost
            engine = kinds[after].restore(cfg, store.state(), track_state=True)
    end = engine.flush()
    assert finals + end.finals == want_finals
    assert [(r.reason, r.ts, r.detail) for r in rejected] == \
        [(r.reason, r.ts, r.detail) for r in want_rejected]
    assert engine.counters == whole.counters


@needs_core
def test_restore_refuses_bad_state():
    cfg = EngineConfig(gap_ms=10, grace_ms=5)
    with pytest.raises(ValueError, match="version"):
        fast.FastEngine.restore(cfg, {"version": 99})
    state = SessionEngine(cfg).snapshot()
    state["sessions"] = [{"sid": "x", "key": "a", "created": 7, "start": 1, "end": 1, "count": 1,
                          "page_views": 0, "conversions": 0, "revenue": 0.0, "bot": False,
                          "path": [], "event_ids": None}]
    with pytest.raises(ValueError, match="arrival number"):  # created 7 >= seq 0
        fast.FastEngine.restore(cfg, state)


@needs_core
def test_bad_columns_are_refused_without_changing_state():
    fst = fast.FastEngine(EngineConfig(gap_ms=10, grace_ms=None))
    k = fst.keys.encode(["a"])
    with pytest.raises(ValueError, match="key string"):
        fst.process_columns([5], [1])
    with pytest.raises(ValueError, match="range"):
        fst.process_columns(k, [1 << 50])
    with pytest.raises(ValueError, match="same length"):
        fst.process_columns(k, [1, 2])
    assert fst.counters["received"] == 0 and fst.stream_time is None
    out = fst.process_columns(k, [7])
    assert len(out.upserts) == 1 and out.upserts.session_ids()[0] == \
        SessionEngine(fst.config).process([Event(key="a", ts=7)]).upserts[0]["session_id"]


@needs_core
def test_key_dictionary_in_the_core():
    """The key dictionary lives in the core (bytes + offsets + a table of codes): dense codes in
    first-seen order through its growth, None and "" are -1, any UTF-8, strings back by code."""
    fst = fast.FastEngine(EngineConfig(gap_ms=10, grace_ms=None))
    keys = [f"k{i}" for i in range(5000)] + ["ü", "日本", "a\x00b", "k1"]
    codes = fst.keys.encode(iter([*keys, None, ""]))
    assert codes.dtype.name == "int32"
    assert codes.tolist() == [*range(5003), 1, -1, -1]
    assert len(fst.keys) == len(fst.keys.strings) == 5003
    assert [fst.keys.strings[c] for c in range(5003)] == keys[:-1]
    assert fst.keys.strings[-1] == "a\x00b"
    assert fst.keys.code("k4999") == 4999 and fst.keys.code("new") == 5003
    assert fst.keys.decode(5001) == "日本" and fst.keys.decode(-1) is None
    with pytest.raises(TypeError, match="str"):
        fst.keys.encode(["x", 5])
    assert fst.keys.code("x") == 5004  # coded before the refusal, kept
    out = fst.process_columns(fst.keys.encode(["日本", "k7"]), [1, 2]).to_changeset()
    ref = SessionEngine(fst.config).process([Event(key="日本", ts=1), Event(key="k7", ts=2)])
    assert out.upserts == ref.upserts


# ---------------------------------------------------------------------------- shared cases

CASES = [json.loads(line) for line in (SHARED / "cases" / "semantics.jsonl").read_text().splitlines()
         if line.strip()]
OPTIONAL = ("gap_by_type", "max_duration_ms", "midnight_tz", "dedup", "campaign_split", "max_future_ms")
SUPPORTED = [c for c in CASES if "config_error" not in c["expect"]
             and not any(c["config"].get(name) for name in OPTIONAL)]


def _iso_ms(text: str) -> int:
    return int(datetime.fromisoformat(text).timestamp() * 1000)


def run_case(case: dict, engine) -> tuple[list[dict], list[Rejection], list]:
    cfg = case["config"]
    decoder = RecordDecoder(FieldMap(input_tz=cfg.get("input_tz", "UTC")))
    items = [decoder.decode(rec, i, rec) for i, rec in enumerate(case["events_in_arrival_order"])]
    if "process_in_time_chunks" in cfg:
        batches_ = []
        for chunk in cfg["process_in_time_chunks"]:
            lo, hi = (_iso_ms(x) for x in chunk.split("/"))
            batches_.append([it for it in items if isinstance(it, Event) and lo <= it.ts < hi])
    else:
        batches_ = [items]
    finals, rejected, changes = [], [], []
    for batch in batches_:
        engine.reject(it for it in batch if not isinstance(it, Event))
        ch = engine.process([it for it in batch if isinstance(it, Event)])
        changes.append(ch)
        finals += ch.finals
        rejected += ch.rejections
    ch = engine.flush()
    changes.append(ch)
    return finals + ch.finals, rejected + ch.rejections, changes


@needs_core
@pytest.mark.parametrize("case", SUPPORTED, ids=[c["id"] for c in SUPPORTED])
def test_shared_case(case: dict) -> None:
    cfg = case["config"]
    config = EngineConfig(gap_ms=cfg["gap_ms"], grace_ms=cfg.get("grace_ms"), track_event_ids=True)
    finals, rejected, changes = run_case(case, fast.FastEngine(config))
    sessions = sorted(
        ({"user_id": s["key"], "start": format_ms(s["start"]), "end": format_ms(s["end"]),
          "event_count": s["event_count"], "event_ids": s["event_ids"]} for s in finals),
        key=lambda s: (s["user_id"], s["start"]))
    want = sorted(
        (dict(s, start=format_ms(_iso_ms(s["start"])), end=format_ms(_iso_ms(s["end"])))
         for s in case["expect"]["sessions"]),
        key=lambda s: (s["user_id"], s["start"]))
    assert sessions == want, case["about"]
    assert [{"event_id": r.event_id or r.raw.get("event_id"), "reason": r.reason.value} for r in rejected] \
        == case["expect"]["rejected"], case["about"]
    # and every ChangeSet on the way equals the reference engine's
    assert changes == run_case(case, SessionEngine(config))[2]


def test_the_shared_cases_the_core_cannot_run_are_the_optional_rules() -> None:
    skipped = {c["id"] for c in CASES} - {c["id"] for c in SUPPORTED}
    for c in CASES:
        if c["id"] in skipped:
            assert "config_error" in c["expect"] or any(c["config"].get(n) for n in OPTIONAL)
    assert len(SUPPORTED) >= 10


@needs_core
def test_a_state_the_core_cannot_hold_continues_on_the_python_engine(caplog):
    """Found in review: state stored before the decoder refused times beyond the core's range
    made the compiled engine's restore raise, and the worker died on every restart. Such a
    partition continues on SessionEngine, which takes the same batches (columns included)."""
    from tests.decode.test_columnar import decode

    cfg = EngineConfig(gap_ms=10, grace_ms=None)
    old = SessionEngine(cfg, 4, track_state=True)
    old.process([Event(key="a", ts=10**16), Event(key="b", ts=5)])
    engine = fast.restored_engine_for(cfg, json.loads(json.dumps(old.snapshot())), True)
    assert isinstance(engine, SessionEngine) and "Python engine" in caplog.text
    cols, rejected = decode(FieldMap(), [b'{"user_id": "b", "ts": 9}', b'{"user_id": "c", "ts": 7}'])
    assert not rejected
    changes = engine.process_event_columns(cols)
    assert sorted((r["key"], r["event_count"]) for r in changes.upserts) == [("b", 2), ("c", 1)]
    ok = SessionEngine(cfg, 4, track_state=True)
    ok.process([Event(key="b", ts=5)])
    assert isinstance(fast.restored_engine_for(cfg, ok.snapshot(), True), fast.FastEngine)
