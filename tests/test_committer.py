"""Committer: batches commit in order on their own thread; nothing after a failed commit is
committed, and the failure waits to be collected."""

from __future__ import annotations

import threading

from sessionize.committer import Committer
from sessionize.errors import StoreError


def test_batches_commit_in_order_and_drain_waits_for_them() -> None:
    done: list[int] = []
    gate = threading.Event()

    def commit(n: int) -> None:
        gate.wait(5)
        done.append(n)

    c: Committer[int] = Committer(commit, depth=2)
    for n in range(3):
        assert c.submit(n)
    assert done == []  # the first is held at the gate, two wait behind it
    gate.set()
    c.drain()
    assert done == [0, 1, 2]
    assert c.failure() is None
    c.close()


def test_a_failed_commit_drops_the_batches_behind_it_until_collected() -> None:
    done: list[int] = []
    gate = threading.Event()

    def commit(n: int) -> None:
        gate.wait(5)
        if n == 1:
            raise StoreError("PostgreSQL is down")
        done.append(n)

    c: Committer[int] = Committer(commit, depth=3)
    for n in range(4):
        assert c.submit(n)
    gate.set()
    c.drain()
    assert done == [0]  # 2 and 3 were computed on top of 1: dropped with it
    assert not c.submit(4)  # refused until the failure is collected
    failed = c.failure()
    assert isinstance(failed, StoreError) and "down" in str(failed)
    assert c.failure() is None
    assert c.submit(5)
    c.close()  # close commits what is queued
    assert done == [0, 5]


def test_an_unexpected_error_stops_the_commits_too() -> None:
    def commit(n: int) -> None:
        raise KeyError(n)

    c: Committer[int] = Committer(commit)
    c.submit(1)
    c.drain()
    failed = c.failure()
    assert failed is not None and "KeyError" in str(failed)
    c.close()
