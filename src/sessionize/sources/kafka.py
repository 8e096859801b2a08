"""KafkaSource: a consumer-group member that hands out decoded batches per partition.

Offsets are NOT committed to Kafka as the source of truth: the worker stores the next offset of
each partition in PostgreSQL in the same transaction as the batch's sessions, and on assignment
seeks to it. Kafka's own committed offsets are written too, asynchronously, for lag monitoring.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from urllib.parse import urlparse

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, KafkaException, TopicPartition

from sessionize.decode.columnar import ColumnDecoder, unsupported_reason
from sessionize.decode.fields import FieldMap, RecordDecoder
from sessionize.decode.jsonrecord import decode_json_text
from sessionize.engine.columns import EventColumns
from sessionize.engine.event import Event, Reason, Rejection
from sessionize.errors import ConfigError

log = logging.getLogger("sessionize.kafka")

AssignFn = Callable[[list[int]], dict[int, int | None]]  # partitions -> offset to start from
RevokeFn = Callable[[list[int]], None]


def parse_kafka_url(url: str) -> tuple[str, str]:
    """``kafka://host:port[,host:port]/topic`` -> (bootstrap servers, topic)."""
    parsed = urlparse(url)
    topic = parsed.path.lstrip("/")
    if parsed.scheme != "kafka" or not parsed.netloc or not topic or "/" in topic:
        raise ConfigError(f"--source {url!r}: expected kafka://HOST:PORT/TOPIC, "
                          "e.g. kafka://127.0.0.1:9092/events")
    return parsed.netloc, topic


@dataclass
class PartitionBatch:
    """What one poll brought for one partition: decoded items and the offset to resume at.
    Decoded in columns (``columnar=True``), the events are ``columns`` and ``items`` holds
    only the records rejected as malformed."""

    items: list[Event | Rejection] = field(default_factory=list)
    next_offset: int = 0
    columns: EventColumns | None = None


class KafkaSource:
    """One consumer in group ``group`` on ``topic``; records are JSON objects keyed by user.
    With ``columnar`` (for the compiled engine) each partition's records of a poll are decoded
    in one call into ``EventColumns`` when the field mapping allows it."""

    def __init__(self, bootstrap: str, topic: str, group: str, fields: FieldMap | None = None,
                 *, on_assign: AssignFn, on_revoke: RevokeFn,
                 extra: dict[str, object] | None = None, columnar: bool = False) -> None:
        self.topic = topic
        self.name = f"kafka://{bootstrap}/{topic}"
        fields = fields or FieldMap()
        self._decoder = RecordDecoder(fields)
        self._columns = (ColumnDecoder(fields)
                         if columnar and unsupported_reason(fields) is None else None)
        self._on_assign = on_assign
        self._on_revoke = on_revoke
        self.last_error: str | None = None
        conf: dict[str, object] = {
            "bootstrap.servers": bootstrap,
            "group.id": group,
            "enable.auto.commit": False,
            "enable.auto.offset.store": False,
            "auto.offset.reset": "earliest",
            "partition.assignment.strategy": "range",
            "session.timeout.ms": 10_000,
            "heartbeat.interval.ms": 1_000,
            "max.poll.interval.ms": 300_000,
            "fetch.min.bytes": 1,
            "queued.max.messages.kbytes": 65536,
            "error_cb": self._error,
        }
        conf.update(extra or {})
        self._consumer = Consumer(conf)
        self._consumer.subscribe([topic], on_assign=self._assigned, on_revoke=self._revoked,
                                 on_lost=self._revoked)

    # -------------------------------------------------------------- group membership

    def _assigned(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        starts = self._on_assign([p.partition for p in partitions])
        for tp in partitions:
            offset = starts.get(tp.partition)
            tp.offset = OFFSET_BEGINNING if offset is None else offset
        consumer.assign(partitions)
        log.info("assigned partitions %s at offsets %s", [p.partition for p in partitions],
                 {p.partition: starts.get(p.partition) for p in partitions})

    def _revoked(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self._on_revoke([p.partition for p in partitions])
        consumer.unassign()
        log.info("revoked partitions %s", [p.partition for p in partitions])

    def _error(self, err: KafkaError) -> None:
        self.last_error = f"{err.name()}: {err.str()}"
        log.warning("kafka: %s", self.last_error)

    # -------------------------------------------------------------- data

    def poll(self, max_messages: int, timeout: float) -> dict[int, PartitionBatch]:
        """Up to ``max_messages`` records, decoded and grouped by partition in offset order."""
        msgs = self._consumer.consume(num_messages=max_messages, timeout=timeout)
        columnar = self._columns is not None
        # per partition: values, offsets, timestamps (records come in runs of one partition)
        raw: dict[int, tuple[list[bytes | None], list[int], list[int]]] = {}
        values: list[bytes | None] = []
        offsets: list[int] = []
        stamps: list[int] = []
        current = -1
        recovered = False  # a record arrived after the last error: Kafka answers again
        for msg in msgs:
            err = msg.error()
            if err is not None:
                if err.code() != KafkaError._PARTITION_EOF:
                    self.last_error = f"{err.name()}: {err.str()}"
                    log.warning("kafka: %s", self.last_error)
                    recovered = False
                continue
            recovered = True
            partition = msg.partition()
            if partition != current:
                if partition not in raw:
                    raw[partition] = ([], [], [])
                values, offsets, stamps = raw[partition]
                current = partition
            values.append(msg.value())
            offsets.append(msg.offset())
            if not columnar:  # the compiled engine has no future guard: no receipt times
                stamps.append(msg.timestamp()[1])
        if recovered:
            self.last_error = None
        return {p: self._decoded(p, *parts) for p, parts in raw.items()}

    def _decoded(self, partition: int, values: list[bytes | None], offsets: list[int],
                 stamps: list[int]) -> PartitionBatch:
        decoder = self._decoder

        def one(i: int) -> Event | Rejection:
            stamp = stamps[i] if stamps else 0
            return self._decode(decoder, values[i], partition, offsets[i], stamp)

        if self._columns is not None:
            columns, rejected = self._columns.decode(values, offsets, one)
            return PartitionBatch(list(rejected), offsets[-1] + 1, columns)
        return PartitionBatch([one(i) for i in range(len(values))], offsets[-1] + 1)

    @staticmethod
    def _decode(decoder: RecordDecoder, value: bytes | None, partition: int, offset: int,
                timestamp_ms: int) -> Event | Rejection:
        if value is None:
            return Rejection(Reason.MALFORMED, None,
                             f"partition {partition} offset {offset}: record has no value", offset)
        try:
            text = value.decode("utf-8")
        except UnicodeDecodeError as exc:
            return Rejection(Reason.MALFORMED, value.decode("utf-8", "backslashreplace"),
                             f"partition {partition} offset {offset}: not UTF-8: {exc}", offset)
        item = decode_json_text(decoder, text, offset, timestamp_ms if timestamp_ms > 0 else None)
        if item.__class__ is Rejection:
            item.detail = f"partition {partition} offset {offset}: {item.detail}"  # type: ignore[union-attr]
        return item

    def rewind(self, offsets: dict[int, int | None]) -> None:
        """Put the assigned partitions back at the offsets stored with the last committed
        batch (after a failed commit). Re-assigning sets the fetch positions in one step, where
        a seek right after a (re)assignment can fail with an erroneous-state error."""
        self._consumer.assign([
            TopicPartition(self.topic, p, OFFSET_BEGINNING if o is None else o)
            for p, o in offsets.items()
        ])

    def commit_async(self, offsets: dict[int, int]) -> None:
        """Tell Kafka where we are, for lag monitoring only (PostgreSQL holds the truth)."""
        if not offsets:
            return
        try:
            self._consumer.commit(offsets=[TopicPartition(self.topic, p, o)
                                           for p, o in offsets.items()], asynchronous=True)
        except KafkaException as exc:  # e.g. during a rebalance: harmless, next batch retries
            log.debug("async commit failed: %s", exc)

    def lag(self) -> dict[int, int]:
        """Messages behind the high watermark, per assigned partition (for health/metrics)."""
        out = {}
        for tp in self._consumer.assignment():
            try:
                _, high = self._consumer.get_watermark_offsets(tp, timeout=1, cached=True)
                pos = self._consumer.position([tp])[0].offset
            except KafkaException:
                continue
            if high >= 0 and pos >= 0:
                out[tp.partition] = high - pos
        return out

    def close(self) -> None:
        self._consumer.close()
