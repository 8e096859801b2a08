"""The API over CachedQueries: active sessions from the real Redis, the rest from the store.

One real run (REES46 through the engine, no end-of-input flush) writes every ChangeSet to a
SqliteStore and then to a RedisCache, as a worker does. The cached app must answer exactly as
the store-only app does, and the active-session lookups must really come from Redis.
"""

from __future__ import annotations

import secrets
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
import redis
from fastapi.testclient import TestClient

from sessionize.api import create_app
from sessionize.api.queries import CachedQueries
from sessionize.caches.redis import RedisCache
from sessionize.engine import EngineConfig, Event, SessionEngine
from sessionize.stores.base import RunInfo
from sessionize.stores.sqlite import SqliteStore
from tests.caches import redis_url
from tests.realrun import batches, read_rees46, to_event

__all__ = ["redis_url"]  # fixture, imported

GAP = 30 * 60_000
CONFIG = EngineConfig(gap_ms=GAP, grace_ms=10 * 60_000)


@dataclass
class Cached:
    store: SqliteStore
    cache: RedisCache
    raw: redis.Redis
    engine: SessionEngine
    cached: TestClient  # create_app(CachedQueries(store, cache))
    plain: TestClient  # create_app(store)


@pytest.fixture(scope="module")
def run(redis_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cached]:
    store = SqliteStore(tmp_path_factory.mktemp("cached") / "sessions.db")
    cache = RedisCache.for_config(redis_url, CONFIG,
                                  prefix=f"sessionize-test:{secrets.token_hex(6)}:")
    raw = redis.Redis.from_url(redis_url)
    engine = SessionEngine(CONFIG)
    run_id = store.begin_run(RunInfo("rees46", {"gap_ms": GAP}, 0))
    events = [to_event(row, i) for i, row in enumerate(read_rees46())]
    for batch in batches(events, 500):
        changes = engine.process(batch)
        store.apply(run_id, 0, changes, {0: batch[-1].offset + 1})  # type: ignore[operator]
        cache.apply(0, changes)  # after the store's transaction, as a worker does
    store.finish_run(run_id, RunInfo("rees46", {}, 0, 1, dict(engine.counters)))
    try:
        yield Cached(store, cache, raw, engine,
                     TestClient(create_app(CachedQueries(store, cache))),
                     TestClient(create_app(store)))
    finally:
        cache.clear()
        left = list(raw.scan_iter(match=cache.prefix + "*"))
        cache.close()
        raw.close()
        store.close()
        assert not left


def active(client: TestClient, key: str) -> dict[str, Any]:
    response = client.get(f"/users/{quote(key, safe='')}/sessions/active")
    assert response.status_code == 200, response.text
    return response.json()


def test_active_sessions_answer_as_the_store_does(run: Cached) -> None:
    keys = sorted({r["key"] for r in run.engine.open_sessions()})
    assert len(keys) > 1000
    statuses = set()
    for key in keys:
        body = active(run.cached, key)
        assert body == active(run.plain, key), key
        statuses |= {s["status"] for s in body["sessions"]}
    assert statuses == {"open", "inactive"}
    # a key with no open session: empty from both
    assert active(run.cached, "nobody")["sessions"] == []


def test_active_sessions_come_from_redis(run: Cached) -> None:
    """Delete a user's hash in Redis: the active endpoint has nothing, history still answers;
    a rebuild of the partition from the store brings it back."""
    key = max(run.engine.open_sessions(), key=lambda r: (r["event_count"], r["key"]))["key"]
    before = active(run.cached, key)["sessions"]
    assert before
    assert run.raw.delete(run.cache.user_hash(key)) == 1
    try:
        assert active(run.cached, key)["sessions"] == []
        assert active(run.plain, key)["sessions"] == before  # the store still has them
        history = run.cached.get(f"/users/{key}/sessions").json()["sessions"]
        assert {s["session_id"] for s in before} <= {s["session_id"] for s in history}
        one = run.cached.get(f"/sessions/{before[0]['session_id']}")
        assert one.status_code == 200 and one.json() == before[0]
    finally:
        run.cache.rebuild_partition(0, run.engine.open_sessions(), run.engine.stream_time)
    assert active(run.cached, key)["sessions"] == before


def test_everything_else_comes_from_the_store(run: Cached) -> None:
    for path in ("/stats/summary", "/stats/rejected",
                 "/stats/summary?from=2019-10-01T02:00:00Z&to=2019-10-01T03:00:00Z"):
        assert run.cached.get(path).json() == run.plain.get(path).json()
    key = run.engine.open_sessions()[0]["key"]
    path = f"/users/{key}/sessions?limit=1"
    assert run.cached.get(path).json() == run.plain.get(path).json()


def test_health_reports_store_and_cache(run: Cached) -> None:
    response = run.cached.get("/health")
    assert response.status_code == 200
    body = response.json()
    assert body["store"] == "sqlite" and body["ok"] is True
    assert body["cache"]["cache"] == "redis" and body["cache"]["ok"] is True
    assert body["cache"]["latency_ms"] >= 0


def unused_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def down_cache() -> Iterator[RedisCache]:
    cache = RedisCache(f"redis://127.0.0.1:{unused_port()}/0", socket_timeout=0.5)
    yield cache
    cache.close()


def test_cache_down_falls_back_to_the_store(run: Cached, down_cache: RedisCache) -> None:
    client = TestClient(create_app(CachedQueries(run.store, down_cache)))
    key = run.engine.open_sessions()[0]["key"]
    assert active(client, key) == active(run.plain, key)
    body = client.get("/health").json()
    assert body["ok"] is False and body["cache"]["ok"] is False
    assert down_cache.where in body["cache"]["error"]


def test_cache_down_without_fallback_is_a_503(run: Cached, down_cache: RedisCache) -> None:
    client = TestClient(create_app(CachedQueries(run.store, down_cache, fallback=False)))
    response = client.get("/users/u/sessions/active")
    assert response.status_code == 503
    body = response.json()
    assert body["error"] == "store_unavailable"
    assert down_cache.where in body["detail"] and "scripts/services.sh up redis" in body["detail"]


class BrokenCache:
    def active_sessions(self, key: str) -> list[dict[str, Any]]:
        raise AssertionError("not called")

    def health(self) -> dict[str, Any]:
        raise RuntimeError("boom")


def test_a_cache_health_that_raises_is_reported(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "s.db")
    try:
        queries = CachedQueries(store, BrokenCache())  # type: ignore[arg-type]
        health = queries.health()
        assert health["ok"] is False and health["store"] == "sqlite"
        assert health["cache"] == {"ok": False, "error": "RuntimeError: boom"}
    finally:
        store.close()


AWKWARD_KEYS = ("10.0.0.1|Mozilla/5.0 (X11; Linux x86_64) a%b?c#d", "/leading/slash", "ü ñ 名")


def test_the_fast_path_answers_as_the_framework_route(redis_url: str, tmp_path: Path) -> None:
    """The active lookup of a cached app is answered in front of FastAPI (api/lookup.py): for
    keys with slashes, spaces, reserved and non-ASCII characters it must give exactly what the
    FastAPI route over the store gives, and leave every other route to the framework."""
    store = SqliteStore(tmp_path / "s.db")
    cache = RedisCache.for_config(redis_url, CONFIG,
                                  prefix=f"sessionize-test:{secrets.token_hex(6)}:")
    try:
        engine = SessionEngine(CONFIG)
        run_id = store.begin_run(RunInfo("awkward", {}, 0))
        events = [Event(key=k, ts=1_700_000_000_000 + i * 60_000, type="page_view", offset=i)
                  for i, k in enumerate(AWKWARD_KEYS * 2)]
        changes = engine.process(events)
        store.apply(run_id, 0, changes)
        cache.apply(0, changes)
        fast = TestClient(create_app(CachedQueries(store, cache)))
        plain = TestClient(create_app(store))
        for key in AWKWARD_KEYS:
            body = active(fast, key)
            assert [s["key"] for s in body["sessions"]] == [key]
            assert body["sessions"][0]["event_count"] == 2
            assert body == active(plain, key)
        # the same path with another method, and its neighbours, are the framework's
        assert fast.post("/users/x/sessions/active").status_code == 405
        assert fast.get("/users/x/sessions/activ").json()["error"] == "not_found"
        assert fast.get("/users/x/sessions").json() == plain.get("/users/x/sessions").json()
    finally:
        cache.clear()
        cache.close()
        store.close()
