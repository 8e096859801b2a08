"""source -> decode -> engine -> sinks -> commit, and nothing else.

This is the one place where a batch's effect is applied: the store first (one transaction with
the batch's session changes, rejections and stream time), then the optional file outputs. Files
and HTTP ingest are one partition each; Kafka runs one engine per partition through the same
``apply_batch``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import orjson

from sessionize.decode.timestamps import format_ms
from sessionize.engine.engine import ChangeSet, SessionEngine
from sessionize.engine.event import Event, Reason, Rejection
from sessionize.engine.fast import FastEngine
from sessionize.sources.base import Source
from sessionize.stores.base import RunInfo, SessionSink

BATCH_SIZE = 20_000


@dataclass
class RunSummary:
    """What a run read, counted and refused; printed by the CLI, stored with the run."""

    source: str
    received: int = 0
    counted: int = 0
    rejected: dict[str, int] = field(default_factory=lambda: {r.value: 0 for r in Reason})
    skipped: int = 0
    sessions: int = 0
    seconds: float = 0.0
    stream_time: int | None = None

    @property
    def rejected_total(self) -> int:
        return sum(self.rejected.values())

    @property
    def events_per_second(self) -> float:
        return self.received / self.seconds if self.seconds > 0 else 0.0

    def as_dict(self) -> dict[str, Any]:
        return {
            "source": self.source, "received": self.received, "counted": self.counted,
            "rejected": self.rejected, "rejected_total": self.rejected_total,
            "skipped": self.skipped, "sessions": self.sessions,
            "seconds": round(self.seconds, 3), "events_per_second": round(self.events_per_second),
            "stream_time": format_ms(self.stream_time),
        }


class JsonLinesWriter:
    """Final sessions or rejected events as JSON Lines, with ISO-8601 times beside the ms."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._fh: IO[bytes] = self.path.open("wb")

    def write_sessions(self, records: Iterable[dict[str, Any]]) -> None:
        for r in records:
            out = dict(r, start_time=format_ms(r["start"]), end_time=format_ms(r["end"]))
            self._fh.write(orjson.dumps(out) + b"\n")

    def write_rejections(self, rejections: Iterable[Rejection]) -> None:
        for r in rejections:
            self._fh.write(orjson.dumps(rejection_record(r), default=str) + b"\n")

    def close(self) -> None:
        self._fh.close()


def rejection_record(r: Rejection) -> dict[str, Any]:
    """The dead-letter form of a rejection: reason, why, where, and the input as it arrived."""
    return {"reason": r.reason.value, "detail": r.detail, "offset": r.offset, "key": r.key,
            "event_id": r.event_id, "ts": format_ms(r.ts), "raw": r.raw}


@dataclass
class Outputs:
    sessions: JsonLinesWriter | None = None
    rejected: JsonLinesWriter | None = None

    def write(self, changes: ChangeSet) -> None:
        if self.sessions is not None and changes.finals:
            self.sessions.write_sessions(changes.finals)
        if self.rejected is not None and changes.rejections:
            self.rejected.write_rejections(changes.rejections)

    def close(self) -> None:
        for w in (self.sessions, self.rejected):
            if w is not None:
                w.close()


Progress = Callable[[RunSummary, Source], None]


class FilePipeline:
    """Sessionize one bounded source (a file) into a store; end of input closes everything."""

    def __init__(self, engine: SessionEngine | FastEngine, sink: SessionSink, outputs: Outputs | None = None,
                 batch_size: int = BATCH_SIZE) -> None:
        self.engine = engine
        self.sink = sink
        self.outputs = outputs or Outputs()
        self.batch_size = batch_size

    def run(self, source: Source, config: dict[str, Any],
            progress: Progress | None = None) -> RunSummary:
        summary = RunSummary(source=source.name)
        started = time.perf_counter()
        info = RunInfo(source=source.name, config=config, started_at_ms=_now_ms())
        run_id = self.sink.begin_run(info)
        for changes in self._changes(source):
            self._apply(run_id, source.partition, changes, summary)
            summary.seconds = time.perf_counter() - started
            if progress is not None:
                progress(summary, source)
        self._apply(run_id, source.partition, self.engine.flush(), summary)
        summary.skipped = getattr(source, "skipped", 0)
        summary.seconds = time.perf_counter() - started
        counters = self.engine.counters
        summary.received, summary.counted = counters["received"], counters["counted"]
        summary.rejected = {r.value: counters[r.value] for r in Reason}
        info.finished_at_ms = _now_ms()
        info.counters = summary.as_dict()
        self.sink.finish_run(run_id, info)
        self.outputs.close()
        return summary

    def _changes(self, source: Source) -> Iterator[ChangeSet]:
        """Each batch's changes: decoded in columns for the compiled engine when the source
        can (JSON Lines), else as Events."""
        engine = self.engine
        column_batches = getattr(source, "column_batches", None)
        if isinstance(engine, FastEngine) and column_batches is not None and source.columnar():
            for columns, rejected in column_batches(self.batch_size):
                engine.reject(rejected)
                yield engine.process_event_columns(columns)
            return
        for batch in source.batches(self.batch_size):
            events = [item for item in batch if isinstance(item, Event)]
            if len(events) != len(batch):
                engine.reject(item for item in batch if not isinstance(item, Event))
            yield engine.process(events)

    def _apply(self, run_id: int, partition: int, changes: ChangeSet, summary: RunSummary) -> None:
        self.sink.apply(run_id, partition, changes)
        self.outputs.write(changes)
        summary.sessions += len(changes.finals)
        summary.received = self.engine.counters["received"]
        summary.counted = self.engine.counters["counted"]
        summary.stream_time = changes.stream_time


def _now_ms() -> int:
    return time.time_ns() // 1_000_000
