"""A real run into a SqliteStore, shared by the store and the API tests.

The 4,999 real events of the rees46 head go through the real ``SessionEngine``, and every
ChangeSet it emits goes through ``SqliteStore.apply``, as the pipeline will do. This module is
the one place to swap for the real pipeline run later: the tests rely only on ``RealRun``.

``expected_sessions`` is the independent check: plain gaps-and-islands over the CSV rows, no
engine code involved.
"""

from __future__ import annotations

import csv
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from sessionize.engine import ChangeSet, EngineConfig, Event, SessionEngine
from sessionize.stores.base import RunInfo
from sessionize.stores.sqlite import SqliteStore
from tests.conftest import DATA

REES46 = DATA / "rees46-multicategory" / "2019-Oct_head5000.csv"
GAP_MS = 30 * 60_000
BATCH = 500


@dataclass
class RealRun:
    """What a test may rely on: the filled store and what the engine emitted into it."""

    store: SqliteStore
    rows: list[dict[str, str]]  # the CSV rows, for independent computations
    finals: list[dict[str, Any]]  # every final record the engine emitted
    open_records: list[dict[str, Any]]  # engine.open_sessions() after the last batch
    stream_time: int
    run_id: int


def parse_utc(text: str) -> int:
    """``2019-10-01 00:00:00 UTC`` -> epoch ms."""
    dt = datetime.strptime(text, "%Y-%m-%d %H:%M:%S UTC").replace(tzinfo=UTC)
    return int(dt.timestamp()) * 1000


def read_rees46(path: Path = REES46) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def to_event(row: dict[str, str], offset: int) -> Event:
    return Event(
        key=row["user_id"], ts=parse_utc(row["event_time"]), type=row["event_type"],
        revenue=float(row["price"]), offset=offset, raw=row,
    )


def batches(items: list[Event], size: int) -> Iterable[list[Event]]:
    for i in range(0, len(items), size):
        yield items[i:i + size]


def run_into(store: SqliteStore, events: list[Event], config: EngineConfig, *,
             flush: bool = True) -> RealRun:
    """Run the engine over ``events`` in batches, applying every ChangeSet to ``store``."""
    engine = SessionEngine(config)
    run_id = store.begin_run(RunInfo("rees46", {"gap_ms": config.gap_ms}, 0))
    finals: list[dict[str, Any]] = []

    def apply(changes: ChangeSet, next_offset: int) -> None:
        finals.extend(changes.finals)
        store.apply(run_id, 0, changes, {0: next_offset})

    for batch in batches(events, BATCH):
        apply(engine.process(batch), batch[-1].offset + 1)  # type: ignore[operator]
    if flush:
        apply(engine.flush(), len(events))
    store.finish_run(run_id, RunInfo("rees46", {}, 0, 1, dict(engine.counters)))
    assert engine.stream_time is not None
    return RealRun(store, [], finals, engine.open_sessions(), engine.stream_time, run_id)


def expected_sessions(rows: list[dict[str, str]], gap_ms: int = GAP_MS
                      ) -> dict[str, list[tuple[int, int, int]]]:
    """Per user, ``(start, end, event_count)`` of each session, oldest first (gaps-and-islands)."""
    times: dict[str, list[int]] = defaultdict(list)
    for row in rows:
        times[row["user_id"]].append(parse_utc(row["event_time"]))
    out: dict[str, list[tuple[int, int, int]]] = {}
    for user, ts in times.items():
        ts.sort()
        sessions = [[ts[0], ts[0], 1]]
        for t in ts[1:]:
            last = sessions[-1]
            if t - last[1] <= gap_ms:
                last[1], last[2] = t, last[2] + 1
            else:
                sessions.append([t, t, 1])
        out[user] = [(s, e, n) for s, e, n in sessions]
    return out


def _filled(tmp_path_factory: pytest.TempPathFactory, name: str, flush: bool) -> RealRun:
    rows = read_rees46()
    events = [to_event(row, i) for i, row in enumerate(rows)]
    store = SqliteStore(tmp_path_factory.mktemp(name) / "sessions.db")
    run = run_into(store, events, EngineConfig(gap_ms=GAP_MS), flush=flush)
    run.rows = rows
    return run


@pytest.fixture(scope="session")
def real_run(tmp_path_factory: pytest.TempPathFactory) -> Iterable[RealRun]:
    """The rees46 head run to the end: every session final (closed). Read-only for tests."""
    run = _filled(tmp_path_factory, "real_run", flush=True)
    yield run
    run.store.close()


@pytest.fixture(scope="session")
def unflushed_run(tmp_path_factory: pytest.TempPathFactory) -> Iterable[RealRun]:
    """The same run without the end-of-input flush: sessions stay open or inactive."""
    run = _filled(tmp_path_factory, "unflushed_run", flush=False)
    yield run
    run.store.close()
