"""Benchmarks of the compiled core (FastEngine.process_columns) against SessionEngine.

    .venv/bin/python rust/bench.py throughput [--events 5000000] [--users 500000] [--python]
    .venv/bin/python rust/bench.py memory [--sessions 1000000] [--path-cap 50]

throughput: synthetic web traffic (heavy-tailed users and sessions, every metrics field) in three
arrival orders: in order, 5% of events delayed by up to 10 minutes, and heavy disorder (every event
delayed by up to 30 minutes, 5% by up to 6 hours). One core, one partition, default rules
(gap 30 min, grace 24 h, path_cap 50). With --python, SessionEngine runs the same input.

memory: `sessions` keys with one open session each (grace unbounded: nothing closes), RSS growth
divided by open sessions.
"""

from __future__ import annotations

import argparse
import gc
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from sessionize.engine import EngineConfig, Event, MetricsConfig, SessionEngine
from sessionize.engine.fast import FastEngine

MIN = 60_000
T0 = 1_767_225_600_000  # 2026-01-01
TYPES = ["page_view", "click", "scroll", "add_to_cart", "search", "purchase", "view"]
TYPE_P = [0.55, 0.15, 0.1, 0.05, 0.07, 0.02, 0.06]


def rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def traffic(n_events: int, n_users: int, seed: int = 7) -> dict[str, np.ndarray]:
    """Event-time-sorted synthetic traffic over 3 days: user activity and session lengths are
    heavy-tailed (Pareto / lognormal), events within a session 5 s - 10 min apart."""
    rng = np.random.default_rng(seed)
    span = 3 * 24 * 60 * MIN
    mean_len = 6.0
    n_sessions = int(n_events / mean_len)
    weights = rng.pareto(1.5, n_users) + 1
    users = rng.choice(n_users, size=n_sessions, p=weights / weights.sum()).astype(np.int32)
    lengths = np.maximum(1, rng.lognormal(1.2, 1.0, n_sessions)).astype(np.int64)
    lengths = np.maximum(1, (lengths * (n_events / lengths.sum()))).astype(np.int64)
    lengths[-1] += n_events - lengths.sum()
    lengths = np.maximum(lengths, 1)
    n = int(lengths.sum())
    starts = rng.integers(0, span, n_sessions)
    sess = np.repeat(np.arange(n_sessions), lengths)
    steps = rng.exponential(60_000, n).astype(np.int64) + 5_000
    steps = np.minimum(steps, 10 * MIN)
    first = np.zeros(n, dtype=bool)
    first[np.cumsum(lengths) - lengths] = True
    steps[first] = 0
    offs = np.cumsum(steps)
    base = np.repeat(offs[np.cumsum(lengths) - lengths], lengths)
    ts = T0 + np.repeat(starts, lengths) + (offs - base)
    key = users[sess]
    typ = rng.choice(len(TYPES), n, p=TYPE_P).astype(np.int32)
    page = np.minimum(rng.zipf(1.3, n), 1000).astype(np.int32) - 1
    page[typ == TYPES.index("search")] = -1
    referrer = np.where(first & (rng.random(n) < 0.6), rng.integers(0, 50, n), -1).astype(np.int32)
    campaign = np.where(first & (rng.random(n) < 0.2), rng.integers(0, 20, n), -1).astype(np.int32)
    ua = (key % 200).astype(np.int32)
    revenue = np.where(typ == TYPES.index("purchase"), np.round(rng.gamma(2.0, 30.0, n), 2), np.nan)
    is_bot = (key % 211) == 0
    order = np.argsort(ts, kind="stable")
    cols = dict(key_codes=key, ts=ts, type_codes=typ, page_codes=page, referrer_codes=referrer,
                campaign_codes=campaign, ua_codes=ua, revenue=revenue, is_bot=is_bot)
    return {k: np.ascontiguousarray(v[order]) for k, v in cols.items()}


def arrival(cols: dict[str, np.ndarray], kind: str, seed: int = 11) -> dict[str, np.ndarray]:
    """Reorder events into arrival order: event time plus a random delay."""
    rng = np.random.default_rng(seed)
    ts = cols["ts"]
    n = len(ts)
    if kind == "in_order":
        return cols
    if kind == "disorder_5pct_10min":
        delay = np.where(rng.random(n) < 0.05, rng.integers(0, 10 * MIN, n), 0)
    elif kind == "heavy_disorder":
        delay = rng.integers(0, 30 * MIN, n)
        delay = np.where(rng.random(n) < 0.05, rng.integers(0, 360 * MIN, n), delay)
    else:
        raise ValueError(kind)
    order = np.argsort(ts + delay, kind="stable")
    return {k: np.ascontiguousarray(v[order]) for k, v in cols.items()}


def fast_engine(config: EngineConfig, n_users: int) -> FastEngine:
    eng = FastEngine(config)
    eng.keys.encode(f"user-{i:07d}" for i in range(n_users))
    eng.types.encode(TYPES)
    eng.pages.encode(f"/page/{i}" for i in range(1000))
    eng.referrers.encode(f"ref{i}.example" for i in range(50))
    eng.campaigns.encode(f"campaign-{i}" for i in range(20))
    eng.user_agents.encode(f"Mozilla/5.0 agent {i}" for i in range(200))
    return eng


def run_fast(config: EngineConfig, cols: dict, n_users: int, batch: int, ids: bool) -> dict:
    eng = fast_engine(config, n_users)
    n = len(cols["ts"])
    out = {"upserts": 0, "finals": 0, "retractions": 0, "late": 0}
    t = time.perf_counter()
    for i in range(0, n, batch):
        ch = eng.process_columns(**{k: v[i:i + batch] for k, v in cols.items()})
        out["upserts"] += len(ch.upserts)
        out["finals"] += len(ch.finals)
        out["retractions"] += len(ch.retracted_key)
        out["late"] += len(ch.rejected_index)
        if ids:
            ch.upserts.session_ids()
            ch.finals.session_ids()
    elapsed = time.perf_counter() - t
    t = time.perf_counter()
    fl = eng.flush_columns()
    if ids:
        fl.finals.session_ids()
    out["flush_s"] = round(time.perf_counter() - t, 3)
    out["finals"] += len(fl.finals)
    out["seconds"] = round(elapsed, 3)
    out["events_per_s"] = int(n / elapsed)
    out["peak_open"] = None
    return out


def run_python(config: EngineConfig, cols: dict, n_users: int, batch: int) -> dict:
    keys = [f"user-{i:07d}" for i in range(n_users)]
    pages = [f"/page/{i}" for i in range(1000)]
    refs = [f"ref{i}.example" for i in range(50)]
    camps = [f"campaign-{i}" for i in range(20)]
    uas = [f"Mozilla/5.0 agent {i}" for i in range(200)]
    c = {k: v.tolist() for k, v in cols.items()}
    events = [
        Event(key=keys[k], ts=t, type=TYPES[ty], page=pages[p] if p >= 0 else None,
              referrer=refs[r] if r >= 0 else None, campaign=camps[cm] if cm >= 0 else None,
              user_agent=uas[u], revenue=None if rv != rv else rv, is_bot=b)
        for k, t, ty, p, r, cm, u, rv, b in zip(c["key_codes"], c["ts"], c["type_codes"], c["page_codes"],
                                                c["referrer_codes"], c["campaign_codes"], c["ua_codes"],
                                                c["revenue"], c["is_bot"], strict=True)
    ]
    del c
    eng = SessionEngine(config)
    t = time.perf_counter()
    for i in range(0, len(events), batch):
        eng.process(events[i:i + batch])
    elapsed = time.perf_counter() - t
    return {"seconds": round(elapsed, 3), "events_per_s": int(len(events) / elapsed)}


def throughput(args: argparse.Namespace) -> None:
    config = EngineConfig(metrics=MetricsConfig(path_cap=args.path_cap))
    t = time.perf_counter()
    base = traffic(args.events, args.users)
    print(f"generated {len(base['ts']):,} events of {len(np.unique(base['key_codes'])):,} users "
          f"in {time.perf_counter() - t:.1f}s", flush=True)
    for kind in args.orders:
        cols = arrival(base, kind)
        late = np.sum(cols["ts"] < np.maximum.accumulate(cols["ts"]))
        print(f"\n== {kind}: {late / len(cols['ts']):.1%} of events arrive after a later one", flush=True)
        for batch in args.batches:
            r = run_fast(config, cols, args.users, batch, ids=False)
            print(f"  fast  batch={batch:>9,}  {r['events_per_s']:>11,} ev/s  ({r['seconds']}s; "
                  f"{r['upserts']:,} upserts, {r['finals']:,} finals, {r['retractions']:,} retractions, "
                  f"{r['late']:,} late; flush {r['flush_s']}s)", flush=True)
        r = run_fast(config, cols, args.users, args.batches[-1], ids=True)
        print(f"  fast  batch={args.batches[-1]:>9,}  {r['events_per_s']:>11,} ev/s  with session ids "
              f"of every upsert and final made ({r['seconds']}s)", flush=True)
        if args.python:
            p = run_python(config, cols, args.users, args.batches[-1])
            fr = run_fast(config, cols, args.users, args.batches[-1], ids=False)
            print(f"  python SessionEngine     {p['events_per_s']:>11,} ev/s  ({p['seconds']}s)  "
                  f"-> fast is {fr['events_per_s'] / p['events_per_s']:.1f}x", flush=True)


def malloc_trim() -> None:
    """Hand freed heap memory back to the OS, so that RSS counts what is live."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except OSError:
        pass


def memory(args: argparse.Namespace) -> None:
    """`sessions` keys with one open session each; events per session heavy-tailed (lognormal)."""
    rng = np.random.default_rng(3)
    n = args.sessions
    lengths = np.minimum(np.maximum(1, rng.lognormal(args.mu, 0.9, n)).astype(np.int64), 500)
    total = int(lengths.sum())
    key = np.repeat(np.arange(n, dtype=np.int32), lengths)
    key = key[rng.permutation(total)]
    # every key's events within one session: its own 20-minute window of a 6-hour span
    ts = T0 + (key.astype(np.int64) * 7919 % (6 * 3_600_000)) + rng.integers(0, 20 * MIN, total)
    order = np.argsort(ts, kind="stable")
    key, ts = key[order], ts[order]
    typ = rng.choice(len(TYPES), total, p=TYPE_P).astype(np.int32)
    page = np.minimum(rng.zipf(1.3, total), 1000).astype(np.int32) - 1
    ref = np.where(rng.random(total) < 0.2, rng.integers(0, 50, total), -1).astype(np.int32)
    camp = np.where(rng.random(total) < 0.05, rng.integers(0, 20, total), -1).astype(np.int32)
    ua = (key % 200).astype(np.int32)
    rev = np.where(typ == TYPES.index("purchase"), 10.0, np.nan)
    bot = np.zeros(total, dtype=bool)
    config = EngineConfig(grace_ms=args.grace, metrics=MetricsConfig(path_cap=args.path_cap))
    steps_held = np.minimum(lengths, args.path_cap)
    print(f"path_cap={args.path_cap} grace={args.grace}: {n:,} sessions, {total:,} events "
          f"(per session: mean {total / n:.2f}, median {int(np.median(lengths))}, max {lengths.max()}; "
          f"path steps held: mean {steps_held.mean():.2f})")
    if args.python:
        return memory_python(args, config, key, ts, typ, page, ref, camp, ua, rev, bot)
    gc.collect()
    malloc_trim()
    r0 = rss()
    eng = FastEngine(config)
    eng.keys.encode(f"user-{i:07d}" for i in range(n))  # the key dictionary (Python side)
    eng.types.encode(TYPES)
    eng.pages.encode(f"/page/{i}" for i in range(1000))
    eng.referrers.encode(f"ref{i}" for i in range(50))
    eng.campaigns.encode(f"campaign-{i}" for i in range(20))
    eng.user_agents.encode(f"agent {i}" for i in range(200))
    gc.collect()
    malloc_trim()
    r1 = rss()
    step = 100_000
    for i in range(0, total, step):
        sl = slice(i, i + step)
        ch = eng.process_columns(key[sl], ts[sl], typ[sl], page[sl], ref[sl], camp[sl], ua[sl], rev[sl],
                                 bot[sl])
        del ch
    gc.collect()
    malloc_trim()
    r2 = rss()
    opened = eng.open_count
    mem = eng.memory()
    if args.verbose:
        print("  path classes (steps, blocks, free, capacity):", eng._core.path_stats())
    print(f"  open sessions {opened:,}; RSS growth while processing (the core's whole state, incl. its "
          f"copy of the key strings): {(r2 - r1) / 1e6:.1f} MB = {(r2 - r1) / opened:.1f} B/open session")
    print(f"  the Python key dictionary (Vocab: {n:,} str objects + dict, made by the caller): "
          f"{(r1 - r0) / 1e6:.1f} MB = {(r1 - r0) / n:.1f} B/key")
    print("  core structures (capacity, B/session): "
          + ", ".join(f"{k} {v / opened:.1f}" for k, v in mem.items() if v)
          + f"  = {sum(mem.values()) / opened:.1f}")


def memory_python(args, config, key, ts, typ, page, ref, camp, ua, rev, bot) -> None:
    names = [f"user-{i:07d}" for i in range(args.sessions)]
    pages = [f"/page/{i}" for i in range(1000)]
    c = {"k": key.tolist(), "t": ts.tolist(), "y": typ.tolist(), "p": page.tolist(), "r": ref.tolist(),
         "c": camp.tolist(), "u": ua.tolist(), "v": rev.tolist()}
    gc.collect()
    malloc_trim()
    r1 = rss()
    eng = SessionEngine(config)
    step = 100_000
    for i in range(0, len(c["k"]), step):
        eng.process([
            Event(key=names[k], ts=t, type=TYPES[y], page=pages[p] if p >= 0 else None,
                  referrer=f"ref{r}" if r >= 0 else None, campaign=f"campaign-{cm}" if cm >= 0 else None,
                  user_agent=f"agent {u}", revenue=None if v != v else v)
            for k, t, y, p, r, cm, u, v in zip(*(c[x][i:i + step] for x in "ktyprcuv"), strict=True)
        ])
    gc.collect()
    malloc_trim()
    r2 = rss()
    print(f"  SessionEngine: {eng.open_count:,} open sessions, RSS growth {(r2 - r1) / 1e6:.1f} MB = "
          f"{(r2 - r1) / eng.open_count:.1f} B/open session (key strings made before, not counted)")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    t = sub.add_parser("throughput")
    t.add_argument("--events", type=int, default=5_000_000)
    t.add_argument("--users", type=int, default=500_000)
    t.add_argument("--path-cap", type=int, default=50)
    t.add_argument("--batches", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    t.add_argument("--orders", nargs="+", default=["in_order", "disorder_5pct_10min", "heavy_disorder"])
    t.add_argument("--python", action="store_true", help="also run SessionEngine on the same input")
    m = sub.add_parser("memory")
    m.add_argument("--sessions", type=int, default=1_000_000)
    m.add_argument("--path-cap", type=int, default=50)
    m.add_argument("--grace", type=int, default=None, help="ms; default unbounded")
    m.add_argument("--mu", type=float, default=0.9, help="lognormal mu of events per session")
    m.add_argument("--python", action="store_true", help="measure SessionEngine instead")
    m.add_argument("--verbose", action="store_true")
    args = p.parse_args()
    {"throughput": throughput, "memory": memory}[args.cmd](args)


if __name__ == "__main__":
    main()
