"""Figure a: engine throughput (events/s, one core) on in-order, mildly and heavily disordered
input, events decoded beforehand; memory per open session at many open sessions.

The pure-Python ``SessionEngine`` is the baseline; ``FastEngine`` (the compiled core, when built)
is measured on the same events, fed as the integer columns its ``process_columns`` takes.
"""

from __future__ import annotations

import json
import math
from dataclasses import replace
from typing import Any

import numpy as np
import polars as pl

from bench.common import Figure, Timer, ratio, run_json
from bench.generate import HOUR, MINUTE, Spec, generate
from sessionize.engine import EngineConfig, Event, SessionEngine

CONFIG = EngineConfig()  # 30 min gap, 24 h grace: the streaming defaults
BATCH = 10_000
SCENARIOS = {
    "in_order": dict(disorder=0.0, late=0.0, duplicates=0.0),
    "mild": dict(),  # the generator's defaults: 5 % within 10 min, 0.5 % hours late
    "heavy": dict(disorder=0.5, disorder_ms=60 * MINUTE, late=0.05, late_ms=(HOUR, 12 * HOUR)),
}
TARGET_EPS = 1_000_000
TARGET_BYTES = 300


def with_campaign(frame: pl.DataFrame) -> pl.DataFrame:
    parts = [pl.col(c) for c in ("utm_source", "utm_medium", "utm_campaign")]
    return frame.with_columns(
        pl.when(pl.any_horizontal([p.is_not_null() for p in parts]))
        .then(pl.concat_str([p.fill_null("") for p in parts], separator="/")).alias("campaign"))


def to_events(frame: pl.DataFrame) -> list[Event]:
    """The frame as decoded Events (what the sources would hand the engine)."""
    cols = ["user_id", "ts", "type", "event_id", "page", "referrer", "campaign", "user_agent",
            "revenue"]
    rows = with_campaign(frame).select(cols).iter_rows()
    return [Event(key=k, ts=t, type=ty, event_id=e, page=p, referrer=r, campaign=c,
                  user_agent=ua, revenue=rev, offset=i)
            for i, (k, t, ty, e, p, r, c, ua, rev) in enumerate(rows, 1)]


def run_python(events: list[Event], config: EngineConfig = CONFIG) -> dict[str, Any]:
    engine = SessionEngine(config)
    finals = 0
    with Timer() as t:
        for i in range(0, len(events), BATCH):
            finals += len(engine.process(events[i:i + BATCH]).finals)
        finals += len(engine.flush().finals)
    return {"seconds": t.wall, "cpu": t.cpu, "events_per_s": len(events) / t.wall,
            "sessions": finals, "counted": engine.counters["counted"]}


def fast_engine_status() -> tuple[bool, str]:
    try:
        from sessionize.engine import fast
    except ImportError as exc:
        return False, f"not built (sessionize.engine.fast missing: {exc})"
    if not hasattr(fast, "FastEngine") or not fast.available():
        reason = getattr(fast, "unavailable_reason", lambda: "core not importable")()
        return False, f"not built ({reason})"
    return True, ""


def encode(engine: Any, frame: pl.DataFrame) -> dict[str, Any]:
    """The frame as FastEngine columns (codes from the engine's own vocabularies)."""
    f = with_campaign(frame)
    return {
        "key_codes": engine.keys.encode(f["user_id"].to_list()),
        "ts": f["ts"].to_numpy(),
        "type_codes": engine.types.encode(f["type"].to_list()),
        "page_codes": engine.pages.encode(f["page"].to_list()),
        "referrer_codes": engine.referrers.encode(f["referrer"].to_list()),
        "campaign_codes": engine.campaigns.encode(f["campaign"].to_list()),
        "ua_codes": engine.user_agents.encode(f["user_agent"].to_list()),
        "revenue": f["revenue"].fill_null(np.nan).to_numpy(),
    }


def run_fast(frame: pl.DataFrame, config: EngineConfig = CONFIG) -> dict[str, Any]:
    from sessionize.engine.fast import FastEngine

    engine = FastEngine(config)
    cols = encode(engine, frame)
    n = len(frame)
    finals = 0
    with Timer() as t:
        for i in range(0, n, BATCH):
            out = engine.process_columns(**{k: v[i:i + BATCH] for k, v in cols.items()})
            finals += _finals(out)
        finals += _finals(engine.flush_columns())
    return {"seconds": t.wall, "cpu": t.cpu, "events_per_s": n / t.wall, "sessions": finals,
            "counted": engine.counters["counted"]}


def _finals(changes: Any) -> int:
    finals = getattr(changes, "finals", None)
    if finals is None:
        return 0
    return len(finals)


MEMORY_CODE = """
import gc, json
import numpy as np
from bench.common import rss_bytes
from sessionize.engine import EngineConfig, Event, SessionEngine
n, which = {n}, {which!r}
config = EngineConfig(grace_ms=None)
keys = [f"u{{i:09d}}" for i in range(n)]
t0 = 1_709_251_200_000
ts = t0 + (np.arange(2 * n) % n) * 997 + (np.arange(2 * n) // n) * 60_000
types = ["view", "cart"] * n
key_list = keys + keys
if which == "python":
    events = [Event(key=key_list[i], ts=int(ts[i]), type="view", page="/p/1",
                    referrer=None, user_agent="Mozilla/5.0", offset=i) for i in range(2 * n)]
    gc.collect(); before = rss_bytes()
    engine = SessionEngine(config)
    for i in range(0, 2 * n, 10_000):
        engine.process(events[i:i + 10_000])
    gc.collect(); after = rss_bytes()
    open_count = engine.open_count
else:
    from sessionize.engine.fast import FastEngine
    gc.collect(); before = rss_bytes()
    engine = FastEngine(config)
    codes = engine.keys.encode(key_list)
    page = engine.pages.encode(["/p/1"])[0]
    ua = engine.user_agents.encode(["Mozilla/5.0"])[0]
    view = engine.types.encode(["view"])[0]
    for i in range(0, 2 * n, 10_000):
        k = codes[i:i + 10_000]
        m = len(k)
        engine.process_columns(k, ts[i:i + 10_000], np.full(m, view, np.int32),
                               np.full(m, page, np.int32), None, None,
                               np.full(m, ua, np.int32), None)
    gc.collect(); after = rss_bytes()
    open_count = engine.open_count
print(json.dumps({{"before": before, "after": after, "open": open_count}}))
"""


def memory_per_session(n: int, which: str) -> dict[str, Any]:
    """RSS growth per open session, in a fresh interpreter: ``n`` keys with two events each,
    unbounded grace so nothing closes. For the Python engine the events exist before the
    measurement; for FastEngine the key vocabulary (part of the engine) is inside it."""
    out = run_json(MEMORY_CODE.format(n=n, which=which))
    out["bytes_per_session"] = (out["after"] - out["before"]) / max(out["open"], 1)
    return out


def figures(quick: bool, n: int | None = None, n_mem: int | None = None) -> list[Figure]:
    n = n or (40_000 if quick else 1_000_000)
    n_mem = n_mem or (50_000 if quick else 1_000_000)
    fast_ok, fast_note = fast_engine_status()
    out: list[Figure] = []
    for name, overrides in SCENARIOS.items():
        frame = generate(replace(Spec(events=n, seed=7), **overrides))
        events = to_events(frame)
        py = run_python(events)
        del events
        fig = Figure(
            name=f"engine throughput, {name.replace('_', '-')} (events/s, 1 core)",
            value=None, unit="events/s", baseline="SessionEngine (pure Python)",
            baseline_value=py["events_per_s"], target=f">= {TARGET_EPS:,} events/s"
            if name == "mild" else "", details={"events": n, "python": py})
        if fast_ok:
            fast = run_fast(frame)
            fig.value = fast["events_per_s"]
            fig.ratio = ratio(fast["events_per_s"], py["events_per_s"])
            fig.details["fast"] = fast
            fig.note = "FastEngine (compiled core) vs SessionEngine"
            if fast["counted"] != py["counted"]:
                fig.note += f"; counted differ: {fast['counted']} vs {py['counted']}"
        else:
            fig.value = py["events_per_s"]
            fig.note = f"FastEngine {fast_note}: the number is SessionEngine's"
        if name == "mild":
            fig.met = fig.value is not None and fig.value >= TARGET_EPS
        out.append(fig)

    py_mem = memory_per_session(n_mem, "python")
    mem = Figure(name=f"memory per open session at {n_mem:,} open (bytes, RSS delta)",
                 value=py_mem["bytes_per_session"], unit="B/session",
                 baseline="SessionEngine (pure Python)",
                 baseline_value=py_mem["bytes_per_session"], target=f"<= {TARGET_BYTES} B",
                 details={"python": py_mem})
    if fast_ok:
        try:
            fast_mem = memory_per_session(n_mem, "fast")
        except RuntimeError as exc:
            mem.note = f"FastEngine memory run failed: {str(exc)[-300:]}"
        else:
            mem.value = fast_mem["bytes_per_session"]
            mem.ratio = ratio(mem.value, py_mem["bytes_per_session"])
            mem.details["fast"] = fast_mem
            mem.note = "FastEngine vs SessionEngine"
    else:
        mem.note = f"FastEngine {fast_note}: the number is SessionEngine's"
    mem.met = mem.value is not None and not math.isnan(mem.value) and mem.value <= TARGET_BYTES
    out.append(mem)
    return out


if __name__ == "__main__":  # pragma: no cover
    print(json.dumps([f.as_dict() for f in figures(quick=True)], indent=1, default=str))
