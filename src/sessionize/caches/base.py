"""The cache interface: what a worker writes after each batch and what the API reads.

A cache keeps the sessions that are open or inactive (never the closed ones) of every key,
keyed for a lookup by key. It is written beside the store, after the store's transaction, with
the same ``ChangeSet``; it can lose nothing that matters, because a worker that takes a
partition rebuilds that partition's part of the cache from the store.

Records are the flat dicts of ``Session.to_record`` (times in epoch ms, UTC), and
``active_sessions`` returns them exactly as ``SessionQueries.active_sessions`` does: status
derived at read time (an open session whose ``expires`` is before its partition's stream time
is inactive), newest start first.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Protocol

from sessionize.engine.engine import ChangeSet


class SessionCache(Protocol):
    def apply(self, partition: int, changes: ChangeSet) -> None:
        """Apply one batch's changes atomically: remove ``retractions`` and ``finals``, write
        ``upserts``, store the partition's ``stream_time``."""

    def rebuild_partition(self, partition: int, records: Iterable[dict[str, Any]],
                          stream_time: int | None) -> None:
        """Replace everything cached for ``partition`` by ``records`` (its open and inactive
        sessions, from the store) and set its stream time, atomically; other partitions are
        untouched. What a worker does when it takes a partition."""

    def active_sessions(self, key: str) -> list[dict[str, Any]]:
        """The key's open and inactive sessions, newest first (``SessionQueries`` shape)."""

    def health(self) -> dict[str, Any]:
        """``{"cache": name, "ok": bool, ...}``; reports a failure instead of raising."""

    def close(self) -> None: ...
