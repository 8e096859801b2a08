"""``sessionize produce``: publish a file's events to a Kafka topic, keyed by user.

Optionally disordered, deterministically by seed, to exercise the engine the way real
pipelines do: ``shuffle_within`` displaces each event's arrival by up to that much event time,
``late_fraction`` of events arrive ``late_by`` later than they should. Records whose line could
not be read are published too, as their raw text, so that the worker rejects them as
``malformed`` and they reach the dead letters instead of vanishing here.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

import orjson
from confluent_kafka import KafkaException, Producer
from confluent_kafka.admin import AdminClient, NewTopic

from sessionize.engine.event import Event, Rejection
from sessionize.errors import SessionizeError
from sessionize.sources.base import Source


@dataclass(frozen=True)
class Disorder:
    shuffle_within_ms: int = 0
    late_fraction: float = 0.0
    late_by_ms: int = 0
    seed: int = 1


def event_record(ev: Event) -> dict[str, Any]:
    """The canonical JSON form of an event (what the JSON Lines decoder reads by default)."""
    rec: dict[str, Any] = {"user_id": ev.key, "ts": ev.ts}
    for name in ("type", "event_id", "page", "referrer", "user_agent", "revenue"):
        value = getattr(ev, name)
        if value is not None:
            rec[name] = value
    if ev.event_id is None and ev.offset is not None:
        rec["event_id"] = f"#{ev.offset}"  # stable name for events of inputs without ids
    if ev.campaign:
        parts = ([*ev.campaign.split("/", 2), "", ""])[:3]
        rec.update(zip(("utm_source", "utm_medium", "utm_campaign"), parts, strict=True))
    return rec


def arrival_order(items: list[Event | Rejection], disorder: Disorder) -> list[Event | Rejection]:
    """The order to publish in: event time, disturbed as asked; stable, seeded."""
    if not (disorder.shuffle_within_ms or disorder.late_fraction):
        return items
    rng = random.Random(disorder.seed)
    keyed = []
    last = 0
    for i, it in enumerate(items):
        t = it.ts if isinstance(it, Event) else last  # keep unreadable lines where they were
        last = t
        arrival = t + rng.uniform(0, disorder.shuffle_within_ms)
        if disorder.late_fraction and rng.random() < disorder.late_fraction:
            arrival += disorder.late_by_ms
        keyed.append((arrival, i, it))
    keyed.sort(key=lambda x: (x[0], x[1]))
    return [it for _, _, it in keyed]


def ensure_topic(bootstrap: str, topic: str, partitions: int) -> int:
    """Create ``topic`` with ``partitions`` if missing; returns its partition count."""
    admin = AdminClient({"bootstrap.servers": bootstrap})
    meta = admin.list_topics(timeout=10)
    if topic in meta.topics and not meta.topics[topic].error:
        return len(meta.topics[topic].partitions)
    futures = admin.create_topics([NewTopic(topic, num_partitions=partitions, replication_factor=1)])
    try:
        futures[topic].result(timeout=30)
    except KafkaException as exc:
        if "TOPIC_ALREADY_EXISTS" not in str(exc):
            raise SessionizeError(f"cannot create topic {topic!r} on {bootstrap}: {exc}") from None
    return partitions


def produce(source: Source, bootstrap: str, topic: str, partitions: int = 4,
            disorder: Disorder = Disorder()) -> dict[str, int]:
    """Publish every record of ``source``; returns counts (events, unreadable, total)."""
    ensure_topic(bootstrap, topic, partitions)
    items = [it for batch in source.batches(50_000) for it in batch]
    producer = Producer({
        "bootstrap.servers": bootstrap,
        "partitioner": "murmur2_random",  # the Java client's partitioner: same key, same partition
        "linger.ms": 20,
        "compression.type": "lz4",
        "enable.idempotence": True,
    })
    failures: list[str] = []

    def delivered(err: Any, _msg: Any) -> None:
        if err is not None:
            failures.append(str(err))

    counts = {"events": 0, "unreadable": 0}
    for it in arrival_order(items, disorder):
        if isinstance(it, Event):
            key, value = (it.key or "").encode(), orjson.dumps(event_record(it))
            counts["events"] += 1
        else:
            key, value = None, _raw_bytes(it.raw)
            counts["unreadable"] += 1
        _send(producer, topic, key, value, delivered)
    producer.flush(60)
    if failures:
        raise SessionizeError(f"{len(failures)} records were not delivered to {topic}: "
                              f"{failures[0]}")
    counts["total"] = counts["events"] + counts["unreadable"]
    return counts


def _send(producer: Producer, topic: str, key: bytes | None, value: bytes,
          delivered: Any) -> None:
    while True:
        try:
            producer.produce(topic, value=value, key=key, on_delivery=delivered)
            return
        except BufferError:  # local queue full: let deliveries drain, then retry
            producer.poll(0.5)


def _raw_bytes(raw: Any) -> bytes:
    if isinstance(raw, bytes):
        return raw
    if isinstance(raw, str):
        return raw.encode("utf-8", "backslashreplace")
    return orjson.dumps(raw, default=str)
