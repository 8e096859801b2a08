"""Figure d: active-session lookup latency through the API at a steady request rate, and the raw
``RedisCache.active_sessions`` latency it is built on.

The store and the cache are filled in-process the way a worker fills them (engine ChangeSets
applied to the store and the cache, no end-of-input flush, so sessions stay open): PostgreSQL
when reachable, else SQLite, plus Redis. ``sessionize serve --store ... --cache ...`` (uvicorn)
then answers ``GET /users/{key}/sessions/active`` for real keys with open sessions, under an
open-loop load: request i is due at ``t0 + i / rate`` whatever happened before, and its latency
is counted from that due time (so a stall shows up in the tail instead of slowing the load
down). Loopback only, bounded in count and time.
"""

from __future__ import annotations

import asyncio
import gc
import json
import os
import random
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

from bench.common import ROOT, Figure, percentiles, ratio
from bench.engine import to_events
from bench.generate import Spec, generate
from bench.services import Services, reset
from sessionize.engine import EngineConfig, SessionEngine
from sessionize.stores.base import RunInfo

RATE = 2000
TARGET_P99_MS = 5.0


def fill(store: Any, cache: Any, n: int) -> list[str]:
    """Sessionize ``n`` generated events into ``store`` and ``cache`` as a worker would; the
    keys that have open sessions at the end."""
    engine = SessionEngine(EngineConfig())
    run_id = store.begin_run(RunInfo("bench", {}, int(time.time() * 1000)))
    events = to_events(generate(Spec(events=n, seed=31)))
    for i in range(0, len(events), 5_000):
        changes = engine.process(events[i:i + 5_000])
        store.apply(run_id, 0, changes, {0: i + 5_000})
        cache.apply(0, changes)
    return sorted({r["key"] for r in engine.open_sessions()})


def redis_latency(cache: Any, keys: list[str], calls: int) -> dict[str, Any]:
    rng = random.Random(5)
    lat = []
    found = 0
    for _ in range(calls):
        key = rng.choice(keys)
        t = time.perf_counter()
        found += bool(cache.active_sessions(key))
        lat.append((time.perf_counter() - t) * 1000)
    return {"calls": calls, "found": found, **percentiles(lat)}


async def _open_loop(port: int, paths: list[str], rate: float, total: int,
                     conns: int = 64, timeout: float = 2.0) -> dict[str, Any]:
    pool: asyncio.Queue = asyncio.Queue()
    for _ in range(conns):
        pool.put_nowait(await asyncio.open_connection("127.0.0.1", port))
    latencies: list[float] = []
    errors: dict[str, int] = {}
    loop = asyncio.get_running_loop()

    async def one(path: str, due: float) -> None:
        reader, writer = await pool.get()
        try:
            writer.write(f"GET {path} HTTP/1.1\r\nHost: bench\r\n\r\n".encode())
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout)
            status = head[9:12]
            length = 0
            for line in head.split(b"\r\n"):
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":")[1])
            if length:
                await asyncio.wait_for(reader.readexactly(length), timeout)
            latencies.append((loop.time() - due) * 1000)
            if status != b"200":
                errors[status.decode()] = errors.get(status.decode(), 0) + 1
            pool.put_nowait((reader, writer))
        except (TimeoutError, OSError, asyncio.IncompleteReadError) as exc:
            errors[type(exc).__name__] = errors.get(type(exc).__name__, 0) + 1
            writer.close()
            pool.put_nowait(await asyncio.open_connection("127.0.0.1", port))

    tasks = []
    start = loop.time() + 0.05
    for i in range(total):
        due = start + i / rate
        delay = due - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.ensure_future(one(paths[i % len(paths)], due)))
    await asyncio.gather(*tasks)
    elapsed = loop.time() - start
    while not pool.empty():
        _, writer = pool.get_nowait()
        writer.close()
    return {"requests": total, "seconds": elapsed, "achieved_rps": total / elapsed,
            "errors": errors, **percentiles(latencies)}


async def _capacity(port: int, paths: list[str], total: int, conns: int = 16) -> dict[str, Any]:
    """Closed loop: ``conns`` connections each sending the next request as soon as the last
    one is answered. The server's throughput ceiling on this machine."""
    counter = iter(range(total))

    async def worker() -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        for i in counter:
            writer.write(f"GET {paths[i % len(paths)]} HTTP/1.1\r\nHost: bench\r\n\r\n".encode())
            head = await reader.readuntil(b"\r\n\r\n")
            for line in head.split(b"\r\n"):
                if line.lower().startswith(b"content-length:"):
                    await reader.readexactly(int(line.split(b":")[1]))
        writer.close()

    t = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(conns)))
    seconds = time.perf_counter() - t
    return {"requests": total, "seconds": seconds, "rps": total / seconds}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


WINDOWS = 3


def _measured(port: int, paths: list[str], seconds: float) -> dict[str, Any]:
    """One window of the open loop, the load generator's own garbage collector paused (its
    pauses would be counted as the server's latency)."""
    gc.collect()
    gc.disable()
    try:
        return asyncio.run(_open_loop(port, paths, RATE, int(RATE * seconds)))
    finally:
        gc.enable()


def _settle(pg_url: str) -> None:
    """VACUUM ANALYZE after the fill, so that autovacuum does not pick that moment to run
    beside the measurement (on two cores it shows up as tail latency that is not the API's)."""
    import psycopg

    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE")


def _wait_healthy(port: int, proc: subprocess.Popen, timeout: float = 60) -> None:
    """Until the server answers and is warm: its columnar copy of the sessions (what the
    analytics read, loaded in the background at start) is in place. The figure is the steady
    state; while the copy loads, lookups share the CPU with it."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"serve exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as r:
                body = json.loads(r.read())
                if r.status == 200 and body.get("analytics", {}).get("columnar", True):
                    return
        except OSError:
            pass
        time.sleep(0.3)
    raise RuntimeError("serve did not become healthy")


def figures(quick: bool, services: Services) -> list[Figure]:
    n = 20_000 if quick else 300_000
    seconds = 2.0 if quick else 20.0
    fig = Figure(name=f"API active-session lookup p99 at {RATE:,} req/s (ms)", value=None,
                 unit="ms", baseline="RedisCache.active_sessions p99 (direct)",
                 target=f"p99 < {TARGET_P99_MS:g} ms")
    if not services.redis:
        fig.note = "skipped: Redis not reachable (" + "; ".join(services.problems) + ")"
        return [fig]
    from sessionize.caches.redis import RedisCache

    reset(services.pg, services.redis)
    tmp = tempfile.mkdtemp(prefix="sessionize-lookup-")
    if services.pg:
        from sessionize.stores.postgres import PostgresStore

        store, store_arg = PostgresStore(services.pg), ["--store", services.pg]
        store_name = "PostgreSQL"
    else:
        from sessionize.stores.sqlite import SqliteStore

        db = str(Path(tmp) / "bench.db")
        store, store_arg, store_name = SqliteStore(db), ["--db", db], "SQLite"
    cache = RedisCache(services.redis, max_gap_ms=EngineConfig().max_gap_ms,
                       grace_ms=EngineConfig().grace_ms)
    try:
        keys = fill(store, cache, n)
        raw = redis_latency(cache, keys, 500 if quick else 5_000)
    finally:
        store.close()
    if services.pg:
        _settle(services.pg)
    port = _free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "sessionize.cli", "serve", *store_arg, "--cache", services.redis,
         "--port", str(port)], cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        env={**os.environ})
    try:
        _wait_healthy(port, proc)
        rng = random.Random(9)
        paths = [f"/users/{rng.choice(keys)}/sessions/active" for _ in range(5_000)]
        asyncio.run(_open_loop(port, paths, RATE, int(RATE * 0.5)))  # warm-up
        windows = [_measured(port, paths, seconds / WINDOWS) for _ in range(WINDOWS)]
        api = sorted(windows, key=lambda w: w["p99"])[WINDOWS // 2]  # the median window
        api["windows_p99"] = [w["p99"] for w in windows]
        capacity = asyncio.run(_capacity(port, paths, 1_000 if quick else 6_000))
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
        cache.close()
    fig.value = api["p99"]
    fig.baseline_value = raw["p99"]
    fig.ratio = ratio(api["p99"], raw["p99"])
    fig.met = api["p99"] < TARGET_P99_MS and not api["errors"]
    fig.details = {"store": store_name, "events": n, "keys_with_open_sessions": len(keys),
                   "api": api, "redis": raw, "closed_loop_capacity": capacity}
    fig.note = (f"{store_name} + Redis; API p50 {api['p50']:.2f} ms, p99 {api['p99']:.2f} ms at "
                f"{api['achieved_rps']:,.0f} req/s (median of {WINDOWS} windows; their p99: "
                + ", ".join(f"{p:.2f}" for p in api["windows_p99"]) + " ms); "
                f"Redis p50 {raw['p50']:.3f} ms, "
                f"p99 {raw['p99']:.3f} ms; closed-loop capacity {capacity['rps']:,.0f} req/s"
                + (f"; errors {api['errors']}" if api["errors"] else ""))
    return [fig]
