"""Prometheus metrics: the worker's (updated per batch) and the store's (read at each scrape).

Worker. ``record_batch(health, commit_seconds)`` after each committed batch updates the
counters and gauges of ``WORKER_REGISTRY``, which the worker's health port serves at
``/metrics`` (``sessionize.health``):

- ``sessionize_worker_events_total``, ``..._counted_total``, ``..._rejected_total{reason}``:
  events received, counted and rejected by the engines of this process. They grow by the
  difference between two batches' totals; when a partition moves to another worker the totals
  of the partitions left behind stop here, and a partition taken over brings its restored
  history with it (counted here from then on), so sum ``rate()`` over the group's workers.
- ``sessionize_worker_active_sessions``: open sessions held by this worker's engines (when the
  caller passes ``active_sessions``).
- ``sessionize_worker_commit_seconds``: histogram of the store commit of each batch.
- ``sessionize_worker_lag{partition}`` (records behind the partition's end) and
  ``sessionize_worker_stream_time_ms{partition}``; ``sessionize_worker_up{dependency}``.

Store. ``StoreCollector(queries)`` answers a scrape of the API's ``/metrics`` from the store:
sessions by status, rejected events by reason, counted events, stream time per partition.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

WORKER_REGISTRY = CollectorRegistry(auto_describe=True)
EVENTS = Counter("sessionize_worker_events", "Events received by this worker's engines",
                 registry=WORKER_REGISTRY)
COUNTED = Counter("sessionize_worker_counted", "Events counted into sessions",
                  registry=WORKER_REGISTRY)
REJECTED = Counter("sessionize_worker_rejected", "Events rejected, by reason", ["reason"],
                   registry=WORKER_REGISTRY)
BATCHES = Counter("sessionize_worker_batches", "Batches committed to the store",
                  registry=WORKER_REGISTRY)
ACTIVE = Gauge("sessionize_worker_active_sessions", "Open sessions in this worker's engines",
               registry=WORKER_REGISTRY)
COMMIT = Histogram("sessionize_worker_commit_seconds", "Store commit time of one batch",
                   buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
                   registry=WORKER_REGISTRY)
LAG = Gauge("sessionize_worker_lag", "Records behind the end of the partition", ["partition"],
            registry=WORKER_REGISTRY)
STREAM_TIME = Gauge("sessionize_worker_stream_time_ms", "Stream time of the partition (epoch ms)",
                    ["partition"], registry=WORKER_REGISTRY)
UP = Gauge("sessionize_worker_up", "1 when the dependency answers", ["dependency"],
           registry=WORKER_REGISTRY)

_lock = threading.Lock()
_last: dict[str, int] = {}
_partitions: set[str] = set()


def record_batch(health: Any, commit_seconds: float, active_sessions: int | None = None) -> None:
    """Update the worker metrics from ``health`` (a ``worker.Health``) after a committed batch
    that took ``commit_seconds`` to commit."""
    with _lock:
        BATCHES.inc()
        COMMIT.observe(max(0.0, commit_seconds))
        totals = {"events": int(health.events), "counted": int(health.counted)}
        totals |= {f"rejected:{k}": int(v) for k, v in health.rejected.items()}
        for name, value in totals.items():
            delta = value - _last.get(name, 0)
            _last[name] = value
            if delta <= 0:
                continue  # nothing new, or partitions left this worker
            if name == "events":
                EVENTS.inc(delta)
            elif name == "counted":
                COUNTED.inc(delta)
            else:
                REJECTED.labels(reason=name.split(":", 1)[1]).inc(delta)
        if active_sessions is not None:
            ACTIVE.set(active_sessions)
        owned = {str(p) for p in health.partitions} | {str(p) for p in health.lag}
        for gone in _partitions - owned:
            for gauge in (LAG, STREAM_TIME):
                with contextlib.suppress(KeyError):
                    gauge.remove(gone)
        _partitions.clear()
        _partitions.update(owned)
        for p, lag in health.lag.items():
            LAG.labels(partition=str(p)).set(lag)
        for p, st in health.stream_time.items():
            if st is not None:
                STREAM_TIME.labels(partition=str(p)).set(st)
        for dep, ok in (("postgres", health.store_ok), ("redis", health.cache_ok),
                        ("kafka", health.kafka_ok)):
            UP.labels(dependency=dep).set(1 if ok else 0)


def render_worker() -> bytes:
    """The worker metrics in the Prometheus text format."""
    return generate_latest(WORKER_REGISTRY)


class StoreCollector(Collector):
    """Store facts read at scrape time through ``SessionQueries`` (``live`` and
    ``rejected_counts``): what the API's ``/metrics`` serves."""

    def __init__(self, queries: Any) -> None:
        self.queries = queries

    def collect(self) -> Iterator[Any]:
        live = self.queries.live()
        sessions = GaugeMetricFamily("sessionize_sessions", "Sessions in the store by status",
                                     labels=["status"])
        for status in ("open", "inactive", "closed"):
            sessions.add_metric([status], live["sessions"][status])
        yield sessions
        rejected = CounterMetricFamily("sessionize_rejected_events",
                                       "Rejected events in the store, by reason",
                                       labels=["reason"])
        for reason, n in self.queries.rejected_counts(None, None).items():
            rejected.add_metric([reason], n)
        yield rejected
        yield CounterMetricFamily("sessionize_counted_events",
                                  "Events counted into the store's sessions",
                                  value=live["counted"])
        stream = GaugeMetricFamily("sessionize_stream_time_ms",
                                   "Stream time per partition (epoch ms)", labels=["partition"])
        lag = GaugeMetricFamily("sessionize_stream_lag_ms",
                                "How far stream time is behind the wall clock, per partition",
                                labels=["partition"])
        for p in live["partitions"]:
            if p["stream_time_ms"] is not None:
                stream.add_metric([str(p["partition"])], p["stream_time_ms"])
                lag.add_metric([str(p["partition"])], p["lag_ms"])
        yield stream
        yield lag


def store_registry(queries: Any) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(StoreCollector(queries))
    return registry
