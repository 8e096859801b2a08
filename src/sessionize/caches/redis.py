"""RedisCache: the open and inactive sessions of every key, in Redis, for sub-millisecond
active-session lookups. PostgreSQL (or SQLite) stays the source of truth; this can always be
rebuilt from it.

Layout (every name starts with ``prefix``, ``sessionize:`` by default):

``{prefix}user:{key}``        HASH  session_id -> the session's record (JSON, ``to_record``)
``{prefix}p:{partition}:users`` SET  keys that have cached sessions of that partition
``{prefix}stream_time``        HASH  partition -> stream time (epoch ms)

A key's hash may hold sessions of several partitions (a user in two input files); each record
carries its ``partition``, which is how a read finds the stream time its status depends on and
how a rebuild or a prune touches one partition only.

Writes: ``apply`` sends one batch's changes as ONE script call (atomic, one round trip), so a
reader sees a batch whole or not at all. Retractions and finals are HDELs (a hash left empty
disappears); upserts are HSETs that also add the key to its partition's set and refresh the
hash's TTL. A key that lost sessions and got none is pruned from the partition set, so the set
stays the size of what is cached.

Reads: ``active_sessions`` is one round trip, one command (a Lua script, atomic: HVALS of the
key's hash + HGETALL of the small stream-time hash); the status is derived there exactly as the
stores derive it.
``active_sessions_async`` is the same read on redis.asyncio, for an ``async def`` endpoint: it
answers on the event loop instead of occupying a threadpool thread per request.

TTL, a safety net only. Sessions leave the cache by explicit deletes: the worker HDELs each
session when it is retracted or final. The TTL exists for orphans, sessions whose deletes
never come: a worker that died and whose partition was never taken over (so never rebuilt), a
partition that stopped being consumed, a prefix left behind. A session closes once stream time
passes ``expires + max_gap + grace`` (SEMANTICS.md §3), so ``expires + max_gap + grace -
stream_time`` is how much *event* time it has left to live; in a live stream event time
advances about as fast as the wall clock, and faster while catching up, so that span
(at least 60 s) plus a margin, as a wall-clock TTL, outlives every session the worker will
delete itself. It can only cut a session short when event time crawls slower than the wall
clock: a partition with no events at all for longer than ``max_gap + grace + margin`` (25 h
with the defaults) loses its open sessions from the cache, while the store still shows them
(a rebuild restores them). The TTL is per hash, so it is only ever extended (PEXPIRE NX, then
GT): a late event that updates an old session must not shorten the life of a newer one. With
unbounded grace nothing closes before the end of input, so the TTL is ``unbounded_ttl_ms``
(7 days) after the key's last write.

Standalone Redis (or a primary with replicas): a batch's transaction spans many keys and the
rebuild script derives hash names from set members, neither of which Redis Cluster allows.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import Iterable
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import orjson
import redis
import redis.asyncio
import redis.asyncio.retry
from redis.backoff import ExponentialBackoff
from redis.retry import Retry

from sessionize.engine.config import DEFAULT_GAP_MS, DEFAULT_GRACE_MS, EngineConfig
from sessionize.engine.engine import ChangeSet
from sessionize.errors import CacheError

MIN_TTL_MS = 60_000
DEFAULT_TTL_MARGIN_MS = 3_600_000
DEFAULT_UNBOUNDED_TTL_MS = 7 * 86_400_000

# One batch of a partition (RedisCache.apply). KEYS: the partition's key set, the stream-time
# hash. ARGV: the prefix of the users' hashes, partition, stream time ("" for none); n, then n
# (key, session_id) pairs to delete (retracted and final); m, then m groups of (key, ttl, k, k
# (session_id, JSON) pairs) to write. A key that lost sessions and got none is dropped from the
# set when its hash holds no session of the partition any more. The users' hashes are named
# from ARGV (one per key, too many to pass): standalone Redis only, as the module doc says.
_APPLY = """
local pset, stimes = KEYS[1], KEYS[2]
local prefix, part = ARGV[1], ARGV[2]
local p = tonumber(part)
local i = 5
local lost = {}
for _ = 1, tonumber(ARGV[4]) do
  redis.call('HDEL', prefix .. ARGV[i], ARGV[i + 1])
  lost[#lost + 1] = ARGV[i]
  i = i + 2
end
local written = {}
local m = tonumber(ARGV[i]); i = i + 1
for _ = 1, m do
  local key, ttl, k = ARGV[i], ARGV[i + 1], tonumber(ARGV[i + 2])
  local h = prefix .. key
  i = i + 3
  for j = i, i + 2 * k - 1, 200 do
    redis.call('HSET', h, unpack(ARGV, j, math.min(j + 199, i + 2 * k - 1)))
  end
  i = i + 2 * k
  redis.call('PEXPIRE', h, ttl, 'NX')
  redis.call('PEXPIRE', h, ttl, 'GT')
  redis.call('SADD', pset, key)
  written[key] = true
end
for _, key in ipairs(lost) do
  if not written[key] then
    local keep = false
    for _, v in ipairs(redis.call('HVALS', prefix .. key)) do
      -- a value that is not a record (written by hand?) cannot stop the batch half-applied
      local ok, rec = pcall(cjson.decode, v)
      if ok and type(rec) == 'table' and rec['partition'] == p then keep = true; break end
    end
    if not keep then redis.call('SREM', pset, key) end
    written[key] = true
  end
end
if ARGV[3] ~= '' then redis.call('HSET', stimes, part, ARGV[3]) end
return 0
"""

# KEYS: the partition's key set; ARGV: partition, the prefix of the hashes' names. Remove every
# cached session of the partition (sessions of other partitions stay), then the set itself.
_CLEAR_PARTITION = """
local p = tonumber(ARGV[1])
local removed = 0
for _, member in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  local h = ARGV[2] .. member
  local fields = redis.call('HGETALL', h)
  for i = 1, #fields, 2 do
    if cjson.decode(fields[i + 1])['partition'] == p then
      redis.call('HDEL', h, fields[i])
      removed = removed + 1
    end
  end
end
redis.call('DEL', KEYS[1])
return removed
"""


class RedisCache:
    """The ``SessionCache`` in Redis. Thread-safe (a redis-py connection pool).

    ``max_gap_ms`` and ``grace_ms`` are the engine's (``EngineConfig.max_gap_ms`` and
    ``grace_ms``; ``for_config`` reads them): they only size the safety-net TTL (module
    docstring). Nothing connects until the first command.
    """

    def __init__(self, url: str, *, prefix: str = "sessionize:", socket_timeout: float = 2.0,
                 max_gap_ms: int = DEFAULT_GAP_MS, grace_ms: int | None = DEFAULT_GRACE_MS,
                 ttl_margin_ms: int = DEFAULT_TTL_MARGIN_MS,
                 unbounded_ttl_ms: int = DEFAULT_UNBOUNDED_TTL_MS) -> None:
        self.url = _redacted(url)
        self.prefix = prefix
        self._raw_url = url
        self._socket_timeout = socket_timeout
        self._aclient: redis.asyncio.Redis | None = None  # made on first async read
        self._aloop: asyncio.AbstractEventLoop | None = None  # the loop it belongs to
        try:
            self._client = redis.Redis.from_url(
                url, socket_timeout=socket_timeout, socket_connect_timeout=socket_timeout,
                # one quick retry (a pooled connection dropped by a Redis restart reconnects),
                # never redis-py's default of 10 with backoff: a lookup must fail fast
                retry=Retry(ExponentialBackoff(cap=0.05, base=0.01), 1),
            )
        except ValueError as exc:
            raise CacheError(
                f"cache url {self.url!r} is not a Redis URL ({exc}); use e.g. "
                "redis://127.0.0.1:6379/0"
            ) from None
        kw = self._client.connection_pool.connection_kwargs
        self.where = kw.get("path") or f"{kw.get('host', 'localhost')}:{kw.get('port', 6379)}"
        self._close_after = None if grace_ms is None else max_gap_ms + grace_ms
        self._margin = ttl_margin_ms
        self._unbounded_ttl = unbounded_ttl_ms
        self._user_prefix = f"{prefix}user:".encode()
        self._read = self._client.register_script(_READ_SCRIPT)
        self._apply = self._client.register_script(_APPLY)
        self._stream_time = f"{prefix}stream_time".encode()

    @classmethod
    def for_config(cls, url: str, config: EngineConfig, **kwargs: Any) -> RedisCache:
        """A cache whose TTLs follow ``config`` (an ``EngineConfig``): its max gap and grace."""
        return cls(url, max_gap_ms=config.max_gap_ms, grace_ms=config.grace_ms, **kwargs)

    # ------------------------------------------------------------------ names

    def user_hash(self, key: str) -> bytes:
        """The name of ``key``'s hash."""
        return self._user_prefix + key.encode()

    def partition_set(self, partition: int) -> bytes:
        """The name of the set of keys with cached sessions of ``partition``."""
        return f"{self.prefix}p:{partition}:users".encode()

    # ------------------------------------------------------------------ writing

    def apply(self, partition: int, changes: ChangeSet) -> None:
        """One batch in one command (the ``_APPLY`` script: atomic, one round trip): retract,
        finalise, upsert, prune, stream time. One command rather than a MULTI of a few per
        session, because the client's cost is per command: a batch of a thousand sessions was
        four thousand commands to pack, queue and parse replies for."""
        if len(changes.retracted_keys) != len(changes.retractions):
            raise ValueError(
                f"the ChangeSet has {len(changes.retractions)} retractions but "
                f"{len(changes.retracted_keys)} retracted_keys: the cache needs the key of each"
            )
        if not (changes.retractions or changes.upserts or changes.finals
                or changes.stream_time is not None):
            return
        keys = [self.partition_set(partition), self._stream_time]
        args: list[Any] = [self._user_prefix, partition,
                           "" if changes.stream_time is None else changes.stream_time,
                           len(changes.retractions) + len(changes.finals)]
        for sid, key in zip(changes.retractions, changes.retracted_keys, strict=True):
            args += (key, sid)
        for rec in changes.finals:
            args += (rec["key"], rec["session_id"])
        by_key = self._by_key(changes.upserts, changes.stream_time)
        args.append(len(by_key))
        for key, (ttl, mapping) in by_key.items():
            args += (key, ttl, len(mapping) // 2, *mapping)
        self._run(lambda: self._apply(keys=keys, args=args),
                  f"applying a batch of partition {partition}")

    def rebuild_partition(self, partition: int, records: Iterable[dict[str, Any]],
                          stream_time: int | None) -> None:
        """Replace the partition's cached sessions by ``records`` (its open and inactive
        sessions, from the store) in one transaction; other partitions are untouched."""
        records = list(records)
        for rec in records:
            if rec["partition"] != partition:
                raise ValueError(
                    f"session {rec['session_id']} is of partition {rec['partition']}, "
                    f"not {partition}: rebuild a partition from its own sessions"
                )
            if rec["status"] == "closed":
                raise ValueError(f"session {rec['session_id']} is closed: the cache holds "
                                 "open and inactive sessions only")
        pipe = self._client.pipeline(transaction=True)
        pipe.eval(_CLEAR_PARTITION, 1, self.partition_set(partition), partition,
                  self._user_prefix)
        self._write(pipe, partition, records, stream_time)
        if stream_time is None:
            pipe.hdel(self._stream_time, str(partition))
        else:
            pipe.hset(self._stream_time, str(partition), stream_time)
        self._execute(pipe, f"rebuilding partition {partition}")

    def _write(self, pipe: Any, partition: int, records: list[dict[str, Any]],
               stream_time: int | None) -> set[str]:
        """Queue the HSET, SADD and TTL of each key's records; returns the keys written."""
        by_key = self._by_key(records, stream_time)
        if by_key:
            pipe.sadd(self.partition_set(partition), *by_key)
        for key, (ttl, mapping) in by_key.items():
            name = self.user_hash(key)
            pipe.hset(name, items=mapping)
            pipe.pexpire(name, ttl, nx=True)  # a new hash has no TTL: set one
            pipe.pexpire(name, ttl, gt=True)  # else only ever extend it
        return set(by_key)

    def _by_key(self, records: list[dict[str, Any]], stream_time: int | None
                ) -> dict[str, tuple[int, list[Any]]]:
        """Each key's TTL (the longest its records need) and its records as a flat
        ``[session_id, JSON, ...]`` list."""
        by_key: dict[str, tuple[int, list[Any]]] = {}
        for rec in records:
            key = rec["key"]
            ms = self._ttl_ms(rec, stream_time)
            entry = by_key.get(key)
            if entry is None:
                by_key[key] = (ms, [rec["session_id"], orjson.dumps(rec)])
            else:
                entry[1].extend((rec["session_id"], orjson.dumps(rec)))
                if ms > entry[0]:
                    by_key[key] = (ms, entry[1])
        return by_key

    def _ttl_ms(self, rec: dict[str, Any], stream_time: int | None) -> int:
        """Wall-clock TTL for a hash holding ``rec``: its event time left until it closes
        (at least a minute) plus the margin; see the module docstring."""
        if self._close_after is None:
            return self._unbounded_ttl
        now = stream_time if stream_time is not None else rec["end"]
        return max(MIN_TTL_MS, rec["expires"] + self._close_after - now) + self._margin

    # ------------------------------------------------------------------ reading

    def active_sessions(self, key: str) -> list[dict[str, Any]]:
        """The key's open and inactive sessions, newest start first, status as of each
        session's partition stream time. One round trip."""
        keys = (self.user_hash(key), self._stream_time)
        values, times = self._run(lambda: self._read(keys=keys),
                                  f"reading the sessions of key {key!r}")
        return _active_records(values, times)

    async def active_sessions_async(self, key: str) -> list[dict[str, Any]]:
        """``active_sessions`` on redis.asyncio: the same one round trip and answer, without
        blocking the event loop."""
        client = self._async_client()
        keys = (self.user_hash(key), self._stream_time)
        try:
            try:  # EVALSHA directly: redis-py's Script wrapper costs a tenth of a lookup
                values, times = await client.evalsha(_READ_SHA, 2, *keys)
            except redis.exceptions.NoScriptError:  # a restarted Redis: load it once again
                await client.script_load(_READ_SCRIPT)
                values, times = await client.evalsha(_READ_SHA, 2, *keys)
        except redis.RedisError as exc:
            raise self._cache_error(exc, f"reading the sessions of key {key!r}") from exc
        return _active_records(values, times)

    def _async_client(self) -> redis.asyncio.Redis:
        """The redis.asyncio client of the running event loop (its connections belong to one
        loop: a new loop, as in a test client, gets a new client)."""
        loop = asyncio.get_running_loop()
        if self._aclient is None or self._aloop is not loop:
            self._aclient = redis.asyncio.Redis.from_url(
                self._raw_url, socket_timeout=self._socket_timeout,
                socket_connect_timeout=self._socket_timeout,
                retry=redis.asyncio.retry.Retry(ExponentialBackoff(cap=0.05, base=0.01), 1),
            )
            self._aloop = loop
        return self._aclient

    async def aclose(self) -> None:
        """Close the async client's connections (on the loop that made them)."""
        client, self._aclient, self._aloop = self._aclient, None, None
        if client is not None:
            await client.aclose()

    def stream_times(self) -> dict[int, int]:
        """Stream time per partition as last written."""
        times = self._run(lambda: self._client.hgetall(self._stream_time), "reading stream times")
        return {int(p): int(t) for p, t in times.items()}

    def health(self) -> dict[str, Any]:
        """Is Redis answering, and how fast (one PING). Never raises."""
        out: dict[str, Any] = {"cache": "redis", "url": self.url, "prefix": self.prefix}
        t0 = time.perf_counter()
        try:
            self._run(self._client.ping, "answering PING")
        except CacheError as exc:
            return {**out, "ok": False, "error": str(exc)}
        return {**out, "ok": True, "latency_ms": round((time.perf_counter() - t0) * 1000, 3)}

    def clear(self) -> int:
        """Delete every name under this cache's prefix (SCAN + UNLINK); returns how many."""
        def run() -> int:
            n = 0
            batch: list[bytes] = []
            for name in self._client.scan_iter(match=_glob_escape(self.prefix) + "*", count=1000):
                batch.append(name)
                if len(batch) == 1000:
                    n += self._client.unlink(*batch)
                    batch.clear()
            if batch:
                n += self._client.unlink(*batch)
            return n
        return self._run(run, f"clearing {self.prefix!r}")

    def close(self) -> None:
        self._client.close()

    # ------------------------------------------------------------------ errors

    def _execute(self, pipe: Any, what: str) -> list[Any]:
        return self._run(pipe.execute, what)

    def _run(self, call: Any, what: str) -> Any:
        try:
            return call()
        except redis.RedisError as exc:
            raise self._cache_error(exc, what) from exc

    def _cache_error(self, exc: redis.RedisError, what: str) -> CacheError:
        if isinstance(exc, (redis.ConnectionError, redis.TimeoutError)):
            return CacheError(
                f"Redis at {self.where} ({self.url}) did not answer while {what}: {exc}. "
                "Is it running? For development and tests start it with "
                "`scripts/services.sh up redis`."
            )
        return CacheError(f"Redis at {self.where} refused {what}: {exc}")


# A lookup in one command, atomic like MULTI but a single request and reply (EVALSHA): the
# key's cached records and the stream time of every partition (flat field/value list).
_READ_SCRIPT = "return {redis.call('HVALS', KEYS[1]), redis.call('HGETALL', KEYS[2])}"
_READ_SHA = hashlib.sha1(_READ_SCRIPT.encode()).hexdigest()


def _active_records(values: list[bytes], times: list[bytes]) -> list[dict[str, Any]]:
    """A key's cached records (HVALS) with each status as of its partition's stream time
    (HGETALL of the stream times, as the flat list a script returns), newest start first."""
    records = [orjson.loads(v) for v in values]
    if not records:
        return records
    stream = {int(times[i]): int(times[i + 1]) for i in range(0, len(times), 2)}
    for rec in records:
        if rec["status"] == "open":
            t = stream.get(rec["partition"])
            if t is not None and rec["expires"] < t:
                rec["status"] = "inactive"
    records.sort(key=_newest_first, reverse=True)
    return records


def _newest_first(rec: dict[str, Any]) -> tuple[int, str]:
    return (rec["start"], rec["session_id"])  # sorted in reverse: the stores' ORDER BY


def _redacted(url: str) -> str:
    """``url`` without its password, for messages and health output."""
    try:
        parts = urlsplit(url)
        if parts.password is None:
            return url
        user = parts.username or ""
        host = parts.hostname or ""
        port = f":{parts.port}" if parts.port else ""
        return urlunsplit(parts._replace(netloc=f"{user}:***@{host}{port}"))
    except ValueError:
        return url


def _glob_escape(text: str) -> str:
    return "".join("\\" + c if c in "*?[]\\" else c for c in text)
