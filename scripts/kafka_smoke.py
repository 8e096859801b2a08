"""Smoke check for the local Kafka broker started by scripts/services.sh.

Creates a fresh topic with 4 partitions, produces 10 messages, consumes them back.
Needs confluent-kafka (pip install 'confluent-kafka>=2.6,<3'). Exit code 0 on success.

    python scripts/kafka_smoke.py [bootstrap]   # default: $SESSIONIZE_TEST_KAFKA or 127.0.0.1:59092
"""

from __future__ import annotations

import os
import sys
import time
import uuid

from confluent_kafka import Consumer, Producer
from confluent_kafka.admin import AdminClient, NewTopic


def main() -> int:
    bootstrap = (
        sys.argv[1]
        if len(sys.argv) > 1
        else os.environ.get("SESSIONIZE_TEST_KAFKA", "127.0.0.1:59092")
    )
    topic = f"smoke-{uuid.uuid4().hex[:8]}"
    admin = AdminClient({"bootstrap.servers": bootstrap})
    admin.create_topics([NewTopic(topic, num_partitions=4, replication_factor=1)])[topic].result(
        timeout=30
    )
    partitions = len(admin.list_topics(topic, timeout=10).topics[topic].partitions)

    producer = Producer({"bootstrap.servers": bootstrap, "acks": "all"})
    sent = {f"m{i}" for i in range(10)}
    for i, value in enumerate(sorted(sent)):
        producer.produce(topic, key=f"user-{i}", value=value)
    if producer.flush(30) != 0:
        print("FAIL: messages left unflushed", file=sys.stderr)
        return 1

    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"{topic}-check",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    consumer.subscribe([topic])
    got: set[str] = set()
    seen_partitions: set[int] = set()
    deadline = time.monotonic() + 60
    while got != sent and time.monotonic() < deadline:
        msg = consumer.poll(1.0)
        if msg is None:
            continue
        if msg.error():
            print(f"consumer error: {msg.error()}", file=sys.stderr)
            continue
        got.add(msg.value().decode())
        seen_partitions.add(msg.partition())
    consumer.close()
    admin.delete_topics([topic])[topic].result(timeout=30)

    ok = got == sent and partitions == 4
    print(
        f"{'OK' if ok else 'FAIL'}: topic {topic} partitions={partitions} "
        f"produced={len(sent)} consumed={len(got)} from partitions {sorted(seen_partitions)}"
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
