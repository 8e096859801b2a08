"""Small helpers shared by the source tests: read a source whole, split what it produced."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from sessionize.engine.event import Event, Rejection
from sessionize.sources.base import Source


@dataclass
class Read:
    """Everything one full read of a source produced, in order."""

    events: list[Event] = field(default_factory=list)
    rejections: list[Rejection] = field(default_factory=list)
    batch_sizes: list[int] = field(default_factory=list)

    @property
    def keys(self) -> set[str | None]:
        return {e.key for e in self.events}


def read_all(source: Source, size: int = 10_000) -> Read:
    out = Read()
    for batch in source.batches(size):
        out.batch_sizes.append(len(batch))
        for item in batch:
            if isinstance(item, Event):
                out.events.append(item)
            else:
                assert isinstance(item, Rejection)
                out.rejections.append(item)
    return out


def ms(iso: str) -> int:
    """UTC epoch ms of an ISO-8601 time with offset (an independent check of the parsers)."""
    return int(datetime.fromisoformat(iso).timestamp() * 1000)
