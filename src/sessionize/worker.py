"""StreamWorker: Kafka -> engine per partition -> PostgreSQL (one transaction) -> Redis.

Exactly-once effect comes from one rule: a batch's session changes, rejected events, engine
state and next offsets are committed to PostgreSQL in ONE transaction, and the only place a
partition ever resumes from is what that transaction stored. So:

- crash (kill -9) anywhere: the uncommitted batch is lost with the process; the next owner of
  the partition restores the engine state and offset committed with the last batch, and
  replays the rest, deterministically (same session ids);
- rebalance: a partition is taken from the store on assignment; on revocation there is nothing
  to flush, since every processed batch is already committed;
- PostgreSQL down: the commit fails, the worker throws away its in-memory state (which is ahead
  of the store), waits with backoff until PostgreSQL answers, restores every partition from it
  and rewinds Kafka to the stored offsets: the same path as a crash, without the restart;
- Redis down: PostgreSQL already holds the truth; the cache is marked stale, processing goes
  on, and the cache is rebuilt from PostgreSQL for every owned partition once Redis answers.

Commits run on a thread of their own (``Committer``): while one batch commits, one more may wait
and the next is decoded and sessionized, so the engines run up to two batches ahead of the
store. Batches commit in order, and a failed commit drops the batches behind it, so the rules
above hold unchanged. Before partitions are given up or taken, and before the
cache is rebuilt, the worker waits for the commits in flight.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from sessionize.caches.base import SessionCache
from sessionize.changelog import KafkaChangelog
from sessionize.committer import Committer
from sessionize.engine.config import EngineConfig
from sessionize.engine.engine import ChangeSet, SessionEngine
from sessionize.engine.event import Event
from sessionize.engine.fast import FastEngine, engine_for, restored_engine_for
from sessionize.engine.fast import available as fast_available
from sessionize.engine.fast import unsupported as fast_unsupported
from sessionize.errors import SessionizeError
from sessionize.metrics import record_batch
from sessionize.sources.kafka import KafkaSource, PartitionBatch
from sessionize.stores.base import RunInfo

log = logging.getLogger("sessionize.worker")


class StreamStore(Protocol):
    """What the worker needs from its store (PostgresStore implements it)."""

    def begin_run(self, info: RunInfo) -> int: ...
    def finish_run(self, run_id: int, info: RunInfo) -> None: ...
    def apply_batch(self, run_id: int, source: str,
                    items: list[tuple[int, ChangeSet, int | None]]) -> None: ...
    def load_partition(self, source: str, partition: int) -> tuple[dict | None, int | None]: ...
    def open_sessions_of_partition(self, partition: int) -> list[dict[str, Any]]: ...
    def stream_time_of(self, partition: int) -> int | None: ...


@dataclass
class Health:
    """What the health endpoint reports; written by the worker loop, read by the HTTP thread."""

    store_ok: bool = True
    cache_ok: bool = True
    kafka_ok: bool = True
    last_error: str | None = None
    partitions: list[int] = field(default_factory=list)
    batches: int = 0
    events: int = 0
    counted: int = 0
    rejected: dict[str, int] = field(default_factory=dict)
    lag: dict[int, int] = field(default_factory=dict)
    stream_time: dict[int, int | None] = field(default_factory=dict)
    commit_seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return self.store_ok and self.cache_ok and self.kafka_ok

    def as_dict(self) -> dict[str, Any]:
        return {"status": "ok" if self.ok else "unhealthy", "postgres": self.store_ok,
                "redis": self.cache_ok, "kafka": self.kafka_ok, "last_error": self.last_error,
                "partitions": self.partitions, "batches": self.batches, "events": self.events,
                "counted": self.counted, "rejected": self.rejected, "lag": self.lag,
                "stream_time": self.stream_time,
                "last_commit_ms": round(self.commit_seconds * 1000, 2)}


@dataclass
class _Batch:
    """What the committer thread needs of one processed batch: its changes per partition and
    the engines' figures right after it (the thread never touches the engines)."""

    items: list[tuple[int, ChangeSet, int | None]]
    counters: dict[str, int]
    stream_time: dict[int, int | None]
    open_sessions: int


class StreamWorker:
    """One member of the consumer group. ``run()`` until stopped (or idle, for bounded runs)."""

    def __init__(self, config: EngineConfig, store: StreamStore, cache: SessionCache | None,
                 make_source: Callable[..., KafkaSource], *, batch_size: int = 50_000,
                 poll_timeout: float = 0.5, max_backoff: float = 10.0,
                 run_config: dict[str, Any] | None = None,
                 changelog: KafkaChangelog | None = None) -> None:
        self.config = config
        self.changelog = changelog
        self.store = store
        self.cache = cache
        self.batch_size = batch_size
        self.poll_timeout = poll_timeout
        self.max_backoff = max_backoff
        self.health = Health()
        self.engines: dict[int, SessionEngine | FastEngine] = {}
        self._cache_stale = False
        self._last_seen: dict[int, float] = {}  # monotonic time of each partition's last record
        self._stop = threading.Event()
        # the compiled engine takes its batches decoded in columns
        columnar = fast_available() and not fast_unsupported(config)
        self.source = make_source(on_assign=self._assigned, on_revoke=self._revoked,
                                  columnar=columnar)
        self._info = RunInfo(source=self.source.name, config=run_config or {},
                             started_at_ms=time.time_ns() // 1_000_000)
        self.run_id = self._retry("recording the run", lambda: store.begin_run(self._info))
        self._committer: Committer[_Batch] = Committer(self._commit)
        # offsets committed to the store, told to Kafka by the loop (the consumer is used from
        # the loop's thread only: a call from the committer's would wait for its polls)
        self._committed_offsets: dict[int, int] = {}
        self._offsets_lock = threading.Lock()

    # -------------------------------------------------------------- loop

    def stop(self) -> None:
        self._stop.set()

    def run(self, until_idle: float | None = None) -> None:
        """Consume until ``stop()``; with ``until_idle``, also stop after that many seconds
        without a record (bounded replays and tests)."""
        last_data = time.monotonic()
        try:
            while not self._stop.is_set():
                self._recover_if_failed()
                self._tell_kafka()
                batch = self.source.poll(self.batch_size, self.poll_timeout)
                self.health.kafka_ok = self.source.last_error is None
                now = time.monotonic()
                for p in batch:
                    self._last_seen[p] = now
                if batch:
                    last_data = now
                    self._process(batch)
                elif until_idle is not None and now - last_data > until_idle:
                    break
                if self.config.idle_timeout_ms is not None:
                    self._advance_idle(now)
                if self._cache_stale:
                    self._committer.drain()  # the store must hold every batch processed so far
                    self._recover_if_failed()
                    self._rebuild_cache(list(self.engines))
        finally:
            self._finish()

    def _process(self, batch: dict[int, PartitionBatch]) -> None:
        items: list[tuple[int, ChangeSet, int | None]] = []
        for partition, pb in sorted(batch.items()):
            engine = self.engines.get(partition)
            if engine is None:  # revoked while the records were in flight: not ours any more
                continue
            if pb.columns is not None:  # decoded in columns: items are the malformed records
                engine.reject(pb.items)  # type: ignore[arg-type]
                changes = engine.process_event_columns(pb.columns)  # type: ignore[union-attr]
            else:
                events = [it for it in pb.items if isinstance(it, Event)]
                if len(events) != len(pb.items):
                    engine.reject(it for it in pb.items if not isinstance(it, Event))
                changes = engine.process(events)
            items.append((partition, changes, pb.next_offset))
        if items:
            self._submit(items)
            self.health.lag = self.source.lag()

    def _submit(self, items: list[tuple[int, ChangeSet, int | None]]) -> None:
        """Hand a processed batch to the committer, with the engines' figures after it."""
        totals: dict[str, int] = {}
        for engine in self.engines.values():
            for name, n in engine.counters.items():
                totals[name] = totals.get(name, 0) + n
        batch = _Batch(items, totals, {p: e.stream_time for p, e in self.engines.items()},
                       sum(e.open_count for e in self.engines.values()))
        if not self._committer.submit(batch):
            # an earlier commit failed: this batch was computed from engine state the store
            # never got; it is dropped and read again after the rewind
            self._recover_if_failed()

    def _commit(self, batch: _Batch) -> None:
        """On the committer thread: changelog, then the store transaction, then the cache and
        Kafka's own offsets (for lag only). A SessionizeError stops the commits here."""
        items = batch.items
        if self.changelog is not None:  # before the commit: at-least-once, keyed
            self.changelog.publish(items)
        started = time.perf_counter()
        self.store.apply_batch(self.run_id, self.source.name, items)
        self.health.commit_seconds = time.perf_counter() - started
        self.health.store_ok = True
        self._update_cache(items)
        with self._offsets_lock:
            self._committed_offsets.update({p: off for p, _, off in items if off is not None})
        self._count(batch)
        record_batch(self.health, self.health.commit_seconds, batch.open_sessions)

    def _tell_kafka(self) -> None:
        """Commit the store's offsets to Kafka too, for lag monitoring (the store holds the
        truth: a partition resumes from what PostgreSQL says)."""
        with self._offsets_lock:
            offsets, self._committed_offsets = self._committed_offsets, {}
        offsets = {p: o for p, o in offsets.items() if p in self.engines}
        if offsets:
            self.source.commit_async(offsets)

    def _advance_idle(self, now: float) -> None:
        """Idle close (SEMANTICS.md §3, off by default): a partition that received nothing for
        ``idle_timeout`` of wall-clock time has its stream time moved on by the idle time, so
        quiet streams still close sessions. The engine reads no clock: the wall time is ours."""
        timeout_s = (self.config.idle_timeout_ms or 0) / 1000
        items: list[tuple[int, ChangeSet, int | None]] = []
        for p, engine in self.engines.items():
            idle = now - self._last_seen.setdefault(p, now)
            if idle >= timeout_s:
                changes = engine.advance_idle(int(idle * 1000))
                if changes:
                    items.append((p, changes, None))
        if items:
            self._submit(items)

    def _count(self, batch: _Batch) -> None:
        h = self.health
        h.batches += 1
        h.stream_time = batch.stream_time
        totals = batch.counters
        h.events, h.counted = totals.get("received", 0), totals.get("counted", 0)
        h.rejected = {k: v for k, v in totals.items() if k not in ("received", "counted")}

    # -------------------------------------------------------------- failures

    def _recover_if_failed(self) -> None:
        exc = self._committer.failure()
        if exc is not None:
            self._store_failed(exc)

    def _store_failed(self, exc: Exception) -> None:
        """The batch did not commit: the engines are ahead of the store. Throw them away and
        come back exactly as a restarted worker would: state and offsets from the store."""
        self.health.store_ok = False
        self.health.last_error = str(exc)
        log.error("commit to the store failed, will restore from it and replay: %s", exc)
        owned = list(self.engines)
        offsets = self._retry("restoring partitions after a failed commit",
                              lambda: self._restore(owned))
        self.source.rewind(offsets)
        # the failed commit may in fact have landed (a reply lost with the connection): the
        # store is the truth either way, so the cache is rebuilt from it
        self._cache_stale = True
        self.health.store_ok = True
        log.info("recovered partitions %s from the store; replaying from %s", owned, offsets)

    def _update_cache(self, items: list[tuple[int, ChangeSet, int | None]]) -> None:
        if self.cache is None or self._cache_stale:
            return
        try:
            for partition, changes, _ in items:
                self.cache.apply(partition, changes)
            self.health.cache_ok = True
        except SessionizeError as exc:
            self._cache_stale = True
            self.health.cache_ok = False
            self.health.last_error = str(exc)
            log.error("cache write failed; it will be rebuilt from the store: %s", exc)

    def _rebuild_cache(self, partitions: list[int]) -> None:
        if self.cache is None:
            return
        try:
            for p in partitions:
                self.cache.rebuild_partition(p, self.store.open_sessions_of_partition(p),
                                             self.store.stream_time_of(p))
        except SessionizeError as exc:
            self._cache_stale = True
            self.health.cache_ok = False
            self.health.last_error = str(exc)
            return
        self._cache_stale = False
        self.health.cache_ok = True
        log.info("cache rebuilt from the store for partitions %s", partitions)

    def _retry(self, what: str, action: Callable[[], Any]) -> Any:
        """Run ``action`` until it succeeds, backing off exponentially; never skip, never drop."""
        delay = 0.2
        while True:
            try:
                return action()
            except SessionizeError as exc:
                self.health.store_ok = False
                self.health.last_error = f"{what}: {exc}"
                log.warning("%s failed, retrying in %.1f s: %s", what, delay, exc)
                if self._stop.wait(delay):
                    raise
                delay = min(delay * 2, self.max_backoff)

    # -------------------------------------------------------------- partitions

    def _restore(self, partitions: list[int]) -> dict[int, int | None]:
        offsets: dict[int, int | None] = {}
        engines = {}
        for p in partitions:
            state, offset = self.store.load_partition(self.source.name, p)
            # the compiled engine when it is built and covers the rules; both read and write
            # the same state, so a partition can move between machines with and without it
            engines[p] = (restored_engine_for(self.config, state, track_state=True) if state
                          else engine_for(self.config, p, track_state=True))
            offsets[p] = offset
        self.engines.update(engines)
        self.health.store_ok = True
        return offsets

    def _assigned(self, partitions: list[int]) -> dict[int, int | None]:
        self._committer.drain()
        offsets = self._retry(f"restoring partitions {partitions}",
                              lambda: self._restore(partitions))
        self.health.partitions = sorted(self.engines)
        # a cache already stale is rebuilt whole: a rebuild clears the flag for every partition
        self._rebuild_cache(list(self.engines) if self._cache_stale else partitions)
        return offsets

    def _revoked(self, partitions: list[int]) -> None:
        # every batch of these partitions must be in the store before their next owner reads
        # it (a failed commit is collected by the loop: it restores the partitions kept)
        self._committer.drain()
        self._tell_kafka()  # lag monitoring: their last offsets, while they are still ours
        for p in partitions:
            self.engines.pop(p, None)
        self.health.partitions = sorted(self.engines)

    def _finish(self) -> None:
        self._committer.close()
        exc = self._committer.failure()
        if exc is not None:
            log.warning("the last batches were not committed (the next run replays them): %s", exc)
        try:
            self._tell_kafka()
            self.source.close()
        finally:
            self._info.finished_at_ms = time.time_ns() // 1_000_000
            self._info.counters = self.health.as_dict()
            try:
                self.store.finish_run(self.run_id, self._info)
            except SessionizeError as exc:
                log.warning("could not record the end of the run: %s", exc)
