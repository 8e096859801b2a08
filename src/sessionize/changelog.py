"""Optional Kafka outputs of a worker: a session changelog and a dead-letter topic.

The changelog is keyed by ``session_id``: an upsert while a session is open, its final record
when it closes, and a tombstone (null value) when it is merged away, so a compacted topic
converges to exactly the sessions table. Records are produced and flushed BEFORE the batch
commits to PostgreSQL: a crash in between replays the batch and re-sends the same keyed
records (at-least-once delivery, idempotent by key), and nothing committed is ever missing.
"""

from __future__ import annotations

from typing import Any

import orjson
from confluent_kafka import Producer

from sessionize.engine.engine import ChangeSet
from sessionize.errors import SessionizeError
from sessionize.pipeline import rejection_record


class KafkaChangelog:
    def __init__(self, bootstrap: str, changelog_topic: str | None,
                 dead_letter_topic: str | None) -> None:
        self.changelog_topic = changelog_topic
        self.dead_letter_topic = dead_letter_topic
        self._producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5,
                                   "compression.type": "lz4", "enable.idempotence": True})
        self._failures: list[str] = []

    def publish(self, items: list[tuple[int, ChangeSet, int | None]]) -> None:
        """Send a batch's changes and wait until Kafka has them all (or raise)."""
        for partition, changes, _ in items:
            if self.changelog_topic:
                for sid in changes.retractions:
                    self._send(self.changelog_topic, sid.encode(), None)
                for rec in changes.upserts + changes.finals:
                    self._send(self.changelog_topic, rec["session_id"].encode(), orjson.dumps(rec))
            if self.dead_letter_topic:
                for r in changes.rejections:
                    rec = dict(rejection_record(r), partition=partition)
                    self._send(self.dead_letter_topic, None, orjson.dumps(rec, default=str))
        left = self._producer.flush(30)
        if left or self._failures:
            what = self._failures[0] if self._failures else f"{left} records not delivered in 30 s"
            self._failures.clear()
            raise SessionizeError(f"changelog/dead-letter output failed: {what}")

    def _send(self, topic: str, key: bytes | None, value: bytes | None) -> None:
        while True:
            try:
                self._producer.produce(topic, key=key, value=value, on_delivery=self._delivered)
                return
            except BufferError:
                self._producer.poll(0.2)

    def _delivered(self, err: Any, _msg: Any) -> None:
        if err is not None:
            self._failures.append(str(err))

    def close(self) -> None:
        self._producer.flush(10)
