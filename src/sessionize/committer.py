"""Committer: a worker's batches committed in order on a thread of their own.

Why a thread: a batch's commit is mostly waiting (PostgreSQL applying the transaction, Redis
running the cache script) while the next batch could already be decoded and sessionized. With a
queue of ``depth`` (1 in the worker) the two overlap: one batch commits, one waits, and the
caller works on the next; ordering is kept: batches are committed one at a time, in the order
they were submitted.

What it does not change is where the truth is: a batch counts once its store transaction has
committed, and nothing after a failed commit is committed. When a commit fails, the batches
queued behind it are dropped (they were computed from engine state that the store never
received) and the failure is kept until the worker collects it with ``failure()``, restores
its engines from the store and rewinds, as after a crash.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable
from typing import Generic, TypeVar

from sessionize.errors import SessionizeError

log = logging.getLogger("sessionize.worker")

T = TypeVar("T")
_STOP = object()


class Committer(Generic[T]):
    """Runs ``commit(batch)`` for each submitted batch, in order, on one background thread;
    at most ``depth`` batches wait behind the one being committed."""

    def __init__(self, commit: Callable[[T], None], depth: int = 1) -> None:
        self._commit = commit
        self._queue: queue.Queue[object] = queue.Queue(maxsize=depth)
        self._failed: SessionizeError | None = None
        self._thread = threading.Thread(target=self._loop, name="committer", daemon=True)
        self._thread.start()

    def submit(self, batch: T) -> bool:
        """Queue ``batch`` (blocks while ``depth`` batches wait). False, and nothing queued,
        when an earlier commit failed and the failure has not been collected yet."""
        if self._failed is not None:
            return False
        self._queue.put(batch)
        return True

    def drain(self) -> None:
        """Wait until every submitted batch is committed (or dropped after a failure)."""
        self._queue.join()

    def failure(self) -> SessionizeError | None:
        """The failed commit's error, once every batch behind it has been dropped; collecting
        it lets batches be submitted again."""
        if self._failed is None:
            return None
        self.drain()
        failed, self._failed = self._failed, None
        return failed

    def close(self) -> None:
        """Commit what is queued, then stop the thread."""
        self._queue.put(_STOP)
        self._thread.join()

    def _loop(self) -> None:
        while True:
            batch = self._queue.get()
            try:
                if batch is _STOP:
                    return
                if self._failed is None:
                    self._commit(batch)  # type: ignore[arg-type]
            except SessionizeError as exc:
                self._failed = exc
            except Exception as exc:  # a bug: keep the worker from committing past it
                log.exception("committing a batch failed unexpectedly")
                self._failed = SessionizeError(f"committing a batch failed: {exc!r}")
            finally:
                self._queue.task_done()
