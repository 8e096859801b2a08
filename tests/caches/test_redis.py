"""RedisCache against the real Redis, driven by the real engine over the real REES46 events.

Every ChangeSet the engine emits (batches, no end-of-input flush) goes through
``RedisCache.apply``; after every batch the cache must hold exactly ``engine.open_sessions()``:
the same records, per key, with the status derived from the partition's stream time.
"""

from __future__ import annotations

import socket
from collections import defaultdict
from collections.abc import Callable, Iterator
from typing import Any

import orjson
import pytest
import redis

from sessionize.caches.redis import DEFAULT_TTL_MARGIN_MS, MIN_TTL_MS, RedisCache
from sessionize.engine import ChangeSet, EngineConfig, Event, SessionEngine
from sessionize.errors import CacheError
from tests.caches import make_cache, redis_url
from tests.realrun import batches, parse_utc, read_rees46, to_event

__all__ = ["make_cache", "redis_url"]  # fixtures, imported

MIN = 60_000
GAP = 30 * MIN
GRACE = 10 * MIN  # short, so that sessions close (finals) during the run
CONFIG = EngineConfig(gap_ms=GAP, grace_ms=GRACE)
BATCH = 250
MakeCache = Callable[..., RedisCache]


@pytest.fixture(scope="module")
def events() -> list[Event]:
    return [to_event(row, i) for i, row in enumerate(read_rees46())]


@pytest.fixture
def raw(redis_url: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_url)
    yield client
    client.close()


def by_key(records: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """Records per key, newest start first (ties: session id descending), as the stores order."""
    out: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for rec in records:
        out[rec["key"]].append(rec)
    for recs in out.values():
        recs.sort(key=lambda r: (r["start"], r["session_id"]), reverse=True)
    return dict(out)


def stored(raw: redis.Redis, cache: RedisCache, partitions: list[int]) -> dict[str, dict[str, Any]]:
    """Every record in the cache as stored (status as written), by session id; checks on the
    way that the partition sets name exactly the keys whose hashes exist."""
    members = set().union(*(raw.smembers(cache.partition_set(p)) for p in partitions))
    keys = {m.decode() for m in members}
    names = set(raw.scan_iter(match=cache.prefix + "user:*", count=1000))
    assert names == {cache.user_hash(k) for k in keys}, "partition sets and hashes disagree"
    pipe = raw.pipeline(transaction=False)
    for k in sorted(keys):
        pipe.hgetall(cache.user_hash(k))
    out = {}
    for fields in pipe.execute():
        for sid, value in fields.items():
            out[sid.decode()] = orjson.loads(value)
    return out


def assert_holds(cache: RedisCache, raw: redis.Redis, engine: SessionEngine,
                 per_key: bool = True) -> None:
    """The cache holds exactly the engine's open and inactive sessions."""
    expected = engine.open_sessions()
    cached = stored(raw, cache, [engine.partition])
    assert set(cached) == {r["session_id"] for r in expected}
    if per_key:
        for key, recs in by_key(expected).items():
            assert cache.active_sessions(key) == recs, key


def run(cache: RedisCache, raw: redis.Redis, events: list[Event], *, config: EngineConfig = CONFIG,
        partition: int = 0, check_every: int = 1) -> tuple[SessionEngine, list[ChangeSet]]:
    """The engine over ``events`` in batches, every ChangeSet applied to ``cache``."""
    engine = SessionEngine(config, partition)
    changes = []
    for i, batch in enumerate(batches(events, BATCH)):
        ch = engine.process(batch)
        cache.apply(partition, ch)
        changes.append(ch)
        assert_holds(cache, raw, engine, per_key=(i + 1) % check_every == 0)
    return engine, changes


# ---------------------------------------------------------------------- the real run


def test_cache_holds_exactly_the_open_sessions_after_every_batch(
        make_cache: MakeCache, raw: redis.Redis, events: list[Event]) -> None:
    cache = make_cache(max_gap_ms=GAP, grace_ms=GRACE)
    engine, changes = run(cache, raw, events, check_every=4)
    assert_holds(cache, raw, engine)  # every key, record for record
    finals = {r["session_id"] for ch in changes for r in ch.finals}
    open_now = engine.open_sessions()
    assert len(finals) > 300 and len(open_now) > 1000  # the run did close and keep sessions
    assert finals.isdisjoint(stored(raw, cache, [0]))  # finals are removed
    assert cache.stream_times() == {0: engine.stream_time}

    # statuses: derived at read time from the partition's stream time, like the stores
    statuses = {r["status"] for r in open_now}
    assert statuses == {"open", "inactive"}
    as_written = stored(raw, cache, [0])
    derived = [r for r in open_now
               if r["status"] == "inactive" and as_written[r["session_id"]]["status"] == "open"]
    assert derived, "no record was written open and read inactive: derivation not exercised"
    rec = derived[0]
    assert rec["expires"] < engine.stream_time
    assert cache.active_sessions(rec["key"]) == by_key(open_now)[rec["key"]]


def test_end_of_input_empties_the_partition(make_cache: MakeCache, raw: redis.Redis,
                                            events: list[Event]) -> None:
    cache = make_cache(max_gap_ms=GAP, grace_ms=GRACE)
    engine, _ = run(cache, raw, events[:1500], check_every=100)
    assert raw.scard(cache.partition_set(0)) > 0
    final = engine.flush()
    assert final.finals and not final.upserts
    cache.apply(0, final)
    # every session final: no hash left, and the prune emptied the partition's key set
    assert list(raw.scan_iter(match=cache.prefix + "user:*")) == []
    assert raw.exists(cache.partition_set(0)) == 0
    assert cache.active_sessions(events[0].key) == []


def test_late_bridging_event_retracts_the_absorbed_session(
        make_cache: MakeCache, raw: redis.Redis, events: list[Event]) -> None:
    config = EngineConfig(gap_ms=GAP, grace_ms=24 * 60 * MIN)
    cache = make_cache(max_gap_ms=GAP, grace_ms=config.grace_ms)
    engine, _ = run(cache, raw, events, config=config, check_every=100)
    opened = by_key(engine.open_sessions())
    key = min(k for k, recs in opened.items() if len(recs) == 1)
    first = opened[key][0]

    # a new session of the key just out of reach of the first one...
    later = Event(key=key, ts=first["expires"] + MIN, type="view", offset=len(events))
    ch = engine.process([later])
    cache.apply(0, ch)
    sessions = cache.active_sessions(key)
    assert [s["session_id"] for s in sessions][1:] == [first["session_id"]]
    second = sessions[0]
    assert second["start"] == later.ts

    # ...then a late event between them: it bridges both; the earliest survives
    bridge = Event(key=key, ts=first["expires"], type="view", offset=len(events) + 1)
    ch = engine.process([bridge])
    assert ch.retractions == [second["session_id"]] and ch.retracted_keys == [key]
    assert raw.hexists(cache.user_hash(key), second["session_id"])
    cache.apply(0, ch)
    assert not raw.hexists(cache.user_hash(key), second["session_id"])
    merged = cache.active_sessions(key)
    assert [s["session_id"] for s in merged] == [first["session_id"]]
    assert merged[0]["event_count"] == first["event_count"] + 2
    assert merged[0]["end"] == later.ts
    assert_holds(cache, raw, engine)


def test_retractions_need_their_keys(make_cache: MakeCache) -> None:
    cache = make_cache()
    with pytest.raises(ValueError, match="retracted_keys"):
        cache.apply(0, ChangeSet(retractions=["abc"]))


# ---------------------------------------------------------------------- rebuild


def test_rebuild_replaces_one_partition_only(make_cache: MakeCache, raw: redis.Redis,
                                             events: list[Event]) -> None:
    """Two partitions sharing users (alternate rows): p0 is made stale and rebuilt from the
    engine's records; p1's records, key set and stream time stay byte for byte."""
    cache = make_cache(max_gap_ms=GAP, grace_ms=GRACE)
    p0 = SessionEngine(CONFIG, 0)
    p1 = SessionEngine(CONFIG, 1)
    for batch in batches(events, BATCH):
        cache.apply(0, p0.process(batch[0::2]))
        cache.apply(1, p1.process(batch[1::2]))
    shared = {r["key"] for r in p0.open_sessions()} & {r["key"] for r in p1.open_sessions()}
    assert shared, "no key with open sessions in both partitions"
    truth = by_key(p0.open_sessions() + p1.open_sessions())
    for key in sorted(shared)[:50]:
        assert cache.active_sessions(key) == truth[key]

    def p1_state() -> tuple[Any, ...]:
        recs = {sid: r for sid, r in stored(raw, cache, [0, 1]).items() if r["partition"] == 1}
        return recs, raw.smembers(cache.partition_set(1)), cache.stream_times()[1]

    before_p1 = p1_state()
    # make p0 stale: a session that no longer exists, one lost, one altered, a wrong stream time
    keep, lose = p0.open_sessions()[:2]
    ghost = {**keep, "session_id": "ghost", "key": "ghost-user"}
    cache.apply(0, ChangeSet(upserts=[ghost], stream_time=1))
    raw.hdel(cache.user_hash(lose["key"]), lose["session_id"])
    victim = sorted(shared)[0]
    altered = next(r for r in truth[victim] if r["partition"] == 0)
    raw.hset(cache.user_hash(victim), altered["session_id"],
             orjson.dumps({**altered, "event_count": 999}))
    assert cache.active_sessions(victim) != truth[victim]
    assert cache.active_sessions("ghost-user") == [ghost]

    cache.rebuild_partition(0, p0.open_sessions(), p0.stream_time)
    assert cache.active_sessions("ghost-user") == []
    assert cache.active_sessions(lose["key"]) == truth[lose["key"]]
    assert cache.active_sessions(victim) == truth[victim]
    assert p1_state() == before_p1
    assert cache.stream_times() == {0: p0.stream_time, 1: p1.stream_time}
    assert_holds_union(cache, raw, [p0, p1])

    # rebuilding from nothing empties p0 and leaves p1 whole
    cache.rebuild_partition(0, [], None)
    assert p1_state() == before_p1
    assert cache.stream_times() == {1: p1.stream_time}
    assert raw.exists(cache.partition_set(0)) == 0
    assert_holds_union(cache, raw, [p1])


def assert_holds_union(cache: RedisCache, raw: redis.Redis, engines: list[SessionEngine]) -> None:
    expected = [r for e in engines for r in e.open_sessions()]
    assert set(stored(raw, cache, [0, 1])) == {r["session_id"] for r in expected}
    for key, recs in by_key(expected).items():
        assert cache.active_sessions(key) == recs, key


def test_rebuild_refuses_records_of_another_partition(make_cache: MakeCache,
                                                      events: list[Event]) -> None:
    cache = make_cache()
    engine = SessionEngine(CONFIG, 3)
    engine.process(events[:100])
    with pytest.raises(ValueError, match="partition 3, not 0"):
        cache.rebuild_partition(0, engine.open_sessions(), engine.stream_time)


# ---------------------------------------------------------------------- TTL


def test_every_cached_hash_has_a_ttl(make_cache: MakeCache, raw: redis.Redis,
                                     events: list[Event]) -> None:
    cache = make_cache(max_gap_ms=GAP, grace_ms=GRACE)
    run(cache, raw, events[:2000], check_every=100)
    names = list(raw.scan_iter(match=cache.prefix + "user:*"))
    assert names
    pipe = raw.pipeline(transaction=False)
    for name in names:
        pipe.pttl(name)
    ttls = pipe.execute()
    assert min(ttls) > 0
    assert max(ttls) <= GAP + GAP + GRACE + DEFAULT_TTL_MARGIN_MS


def pttl_of(raw: redis.Redis, cache: RedisCache, key: str) -> int:
    return int(raw.pttl(cache.user_hash(key)))


def test_ttl_is_time_to_close_plus_margin_and_never_shrinks(make_cache: MakeCache,
                                                          raw: redis.Redis) -> None:
    grace = 24 * 60 * MIN
    margin = 5 * MIN
    cache = make_cache(max_gap_ms=GAP, grace_ms=grace, ttl_margin_ms=margin)
    engine = SessionEngine(EngineConfig(gap_ms=GAP, grace_ms=grace))
    t0 = parse_utc("2019-10-01 00:00:00 UTC")
    # one event: stream time t0, expires t0 + gap, closes after t0 + 2 gap + grace
    cache.apply(0, engine.process([Event(key="u", ts=t0, type="view")]))
    want = GAP + GAP + grace + margin
    assert want - 5_000 < pttl_of(raw, cache, "u") <= want
    # a second session two hours later: the hash lives as long as that one needs
    cache.apply(0, engine.process([Event(key="u", ts=t0 + 120 * MIN, type="view")]))
    assert want - 5_000 < pttl_of(raw, cache, "u") <= want
    # a late event updates the older session, whose own TTL would be 89 min shorter: no shrink
    ch = engine.process([Event(key="u", ts=t0 + MIN, type="view")])
    assert len(ch.upserts) == 1 and ch.upserts[0]["start"] == t0
    cache.apply(0, ch)
    assert want - 5_000 < pttl_of(raw, cache, "u") <= want


def test_ttl_floor_and_unbounded_grace(make_cache: MakeCache, raw: redis.Redis) -> None:
    t0 = parse_utc("2019-10-01 00:00:00 UTC")
    engine = SessionEngine(EngineConfig(gap_ms=GAP, grace_ms=None))
    engine.process([Event(key="u", ts=t0, type="view")])
    records = engine.open_sessions()

    # rebuilt long after the session's close point: the one-minute floor
    floor = make_cache(max_gap_ms=GAP, grace_ms=GRACE, ttl_margin_ms=0)
    floor.rebuild_partition(0, records, t0 + 24 * 60 * MIN)
    assert MIN_TTL_MS - 5_000 < pttl_of(raw, floor, "u") <= MIN_TTL_MS

    # unbounded grace: nothing closes before the end of input; the fixed TTL applies
    week = 7 * 24 * 60 * MIN
    unbounded = make_cache(max_gap_ms=GAP, grace_ms=None)
    unbounded.rebuild_partition(0, records, t0)
    assert week - 5_000 < pttl_of(raw, unbounded, "u") <= week


# ---------------------------------------------------------------------- errors and health


def unused_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_unreachable_redis_raises_cache_error_naming_it() -> None:
    port = unused_port()
    cache = RedisCache(f"redis://127.0.0.1:{port}/0", socket_timeout=0.5)
    try:
        for call in (lambda: cache.active_sessions("u"),
                     lambda: cache.apply(0, ChangeSet(stream_time=1)),
                     lambda: cache.rebuild_partition(0, [], None)):
            with pytest.raises(CacheError) as err:
                call()
            assert f"127.0.0.1:{port}" in str(err.value)
            assert "scripts/services.sh up redis" in str(err.value)
        health = cache.health()
        assert health["ok"] is False and health["cache"] == "redis"
        assert f"127.0.0.1:{port}" in health["error"]
    finally:
        cache.close()


def test_bad_url_is_a_cache_error() -> None:
    with pytest.raises(CacheError, match="not a Redis URL"):
        RedisCache("http://127.0.0.1:1/0")


def test_health(make_cache: MakeCache, redis_url: str) -> None:
    health = make_cache().health()
    assert health["ok"] is True and health["cache"] == "redis"
    assert health["url"] == redis_url
    assert 0 <= health["latency_ms"] < 1000


def test_password_is_not_shown(redis_url: str) -> None:
    url = f"redis://user:secret@127.0.0.1:{unused_port()}/0"
    cache = RedisCache(url, socket_timeout=0.5)
    try:
        assert "secret" not in cache.url
        with pytest.raises(CacheError) as err:
            cache.active_sessions("u")
        assert "secret" not in str(err.value)
    finally:
        cache.close()
