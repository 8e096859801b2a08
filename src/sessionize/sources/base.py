"""The contract between an input and the pipeline: batches of decoded items, plus progress.

Every input (a file today, Kafka or HTTP ingest tomorrow) is turned into this one shape so the
pipeline never knows where events came from. A source never drops a record silently
(SEMANTICS.md §4): each record becomes an Event or a ``malformed`` Rejection, except records a
source is told to skip on purpose (static assets of an access log), which it counts in
``skipped``, so that events + rejections + skipped = records read, always.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Protocol, runtime_checkable

from sessionize.engine.event import Event, Rejection


@runtime_checkable
class Source(Protocol):
    """One input partition, read in batches.

    ``offset`` of each item is its position in the partition (for files: the 1-based line
    number), so a dead letter can be traced back to the exact input line."""

    name: str
    """What the input is called in summaries and errors (the file path)."""

    partition: int
    """Which ordered stream this is; a file is one partition, always 0."""

    skipped: int
    """Records left out on purpose (not events, not rejections) during the current read."""

    @property
    def bytes_read(self) -> int:
        """Bytes of input consumed so far, for a progress bar."""
        ...

    @property
    def total_bytes(self) -> int | None:
        """Total input bytes if known in advance (compressed size for a compressed file)."""
        ...

    def batches(self, size: int = 10_000) -> Iterator[list[Event | Rejection]]:
        """The input in order, as lists of at most ``size`` Events and Rejections."""
        ...
