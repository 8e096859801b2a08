"""Figure c: end to end Kafka -> engine -> PostgreSQL + Redis, against the ceiling of merely
consuming and JSON-decoding the same topic with the same client (confluent-kafka).

Events are published once with ``sessionize produce``. The ceiling is a plain consumer in a fresh
group that reads every record and ``orjson.loads`` it. The worker is the real one, as a separate
process: ``sessionize run --source kafka://... --store PG --cache REDIS --until-idle S``; its time
is the process's wall time less the idle wait (so it includes start-up and the group join, as the
ceiling includes its own join).
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

from bench.common import ROOT, Figure, ratio
from bench.generate import Spec, generate, write_jsonl
from bench.services import Services, reset

TARGET = 0.5
IDLE_S = 5.0
CLI = [sys.executable, "-m", "sessionize.cli"]


def consume_ceiling(bootstrap: str, topic: str, expected: int, timeout_s: float = 300) -> dict:
    import orjson
    from confluent_kafka import Consumer

    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"ceiling-{uuid.uuid4().hex}",
                         "auto.offset.reset": "earliest", "enable.auto.commit": False,
                         "queued.max.messages.kbytes": 65536})
    consumer.subscribe([topic])
    got, decoded = 0, 0
    start = time.perf_counter()
    last = start
    try:
        while got < expected and time.perf_counter() - start < timeout_s:
            msgs = consumer.consume(num_messages=5000, timeout=1.0)
            for msg in msgs:
                if msg.error() is not None:
                    continue
                got += 1
                value = msg.value()
                if value is not None:
                    try:
                        orjson.loads(value)
                        decoded += 1
                    except orjson.JSONDecodeError:
                        pass
            if msgs:
                last = time.perf_counter()
    finally:
        consumer.close()
    seconds = last - start
    return {"records": got, "decoded": decoded, "seconds": seconds,
            "events_per_s": got / seconds if seconds > 0 else 0.0}


def figures(quick: bool, services: Services) -> list[Figure]:
    n = 20_000 if quick else 500_000
    name = f"end to end Kafka -> engine -> PostgreSQL + Redis, {n:,} events (events/s)"
    fig = Figure(name=name, value=None, unit="events/s",
                 baseline="consume + JSON-decode the topic (same client)",
                 target=f">= {TARGET:.0%} of the ceiling")
    missing = [s for s, url in (("Kafka", services.kafka), ("PostgreSQL", services.pg),
                                ("Redis", services.redis)) if not url]
    if missing:
        fig.note = ("skipped: " + ", ".join(missing) + " not reachable ("
                    + "; ".join(services.problems) + "); start them with scripts/services.sh up")
        return [fig]
    assert services.kafka and services.pg and services.redis
    reset(services.pg, services.redis)
    topic = f"bench-{uuid.uuid4().hex[:10]}"
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    with tempfile.TemporaryDirectory(prefix="sessionize-e2e-") as tmp:
        path = write_jsonl(generate(Spec(events=n, seed=23)), Path(tmp) / "events.jsonl")
        t0 = time.perf_counter()
        subprocess.run([*CLI, "produce", "--input", str(path), "--topic", topic, "--bootstrap",
                        services.kafka, "--partitions", "4"], check=True, env=env, cwd=ROOT,
                       capture_output=True, timeout=900)
        produce_s = time.perf_counter() - t0
    ceiling = consume_ceiling(services.kafka, topic, n)
    t0 = time.perf_counter()
    proc = subprocess.run(
        [*CLI, "run", "-q", "--source", f"kafka://{services.kafka}/{topic}", "--group",
         f"bench-{uuid.uuid4().hex[:8]}", "--store", services.pg, "--cache", services.redis,
         "--until-idle", str(IDLE_S)],
        env=env, cwd=ROOT, capture_output=True, text=True, timeout=1800)
    wall = time.perf_counter() - t0
    worker_s = max(wall - IDLE_S, 1e-9)
    counted = _stored_events(services.pg)
    fig.value = n / worker_s
    fig.baseline_value = ceiling["events_per_s"]
    fig.ratio = ratio(fig.value, fig.baseline_value)
    fig.met = fig.ratio is not None and fig.ratio >= TARGET and proc.returncode == 0
    fig.details = {"events": n, "topic": topic, "partitions": 4, "produce_seconds": produce_s,
                   "ceiling": ceiling, "worker_wall_seconds": wall, "worker_seconds": worker_s,
                   "worker_exit": proc.returncode, "worker_tail": proc.stderr[-600:],
                   "events_in_store": counted}
    fig.note = (f"worker {worker_s:.1f} s for {n:,} events vs {ceiling['seconds']:.1f} s to "
                f"consume+decode; store holds {counted} counted events")
    if proc.returncode != 0:
        fig.note = f"worker failed (exit {proc.returncode}): {proc.stderr[-300:]}"
    _delete_topic(services.kafka, topic)
    return [fig]


def _stored_events(pg_url: str) -> int | None:
    """Counted events according to the store (sum of event counts of every session)."""
    try:
        import psycopg

        with psycopg.connect(pg_url) as conn:
            row = conn.execute("SELECT coalesce(sum(event_count), 0) FROM sessions").fetchone()
            return int(row[0]) if row else None
    except Exception:
        return None


def _delete_topic(bootstrap: str, topic: str) -> None:
    try:
        from confluent_kafka.admin import AdminClient

        futures = AdminClient({"bootstrap.servers": bootstrap}).delete_topics([topic])
        futures[topic].result(timeout=30)
    except Exception:
        pass
