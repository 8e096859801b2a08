"""SqliteStore's own behaviour: the file, its schema version, WAL, and JSON as text.

The store contract (real run, queries, atomicity, paging) runs for SQLite and PostgreSQL alike
in test_store_contract.py.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from sessionize.engine import ChangeSet
from sessionize.errors import StoreError
from sessionize.stores.base import RunInfo
from sessionize.stores.sqlite import MIGRATIONS, SqliteStore
from tests.realrun import parse_utc

T0 = parse_utc("2019-10-01 00:00:00 UTC")


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SqliteStore]:
    s = SqliteStore(tmp_path / "s.db")
    yield s
    s.close()


def test_fresh_store_is_migrated_in_wal_mode_and_reopens(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    s = SqliteStore(path)
    s.apply(1, 0, ChangeSet(stream_time=T0))
    s.close()
    again = SqliteStore(path)
    assert again.schema_version() == len(MIGRATIONS)
    assert again.stream_times() == {0: T0}
    assert again.health() == {"store": "sqlite", "path": str(path), "ok": True, "sessions": 0}
    again.close()
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_a_file_from_a_newer_version_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    with sqlite3.connect(path) as db:
        db.execute(f"PRAGMA user_version = {len(MIGRATIONS) + 1}")
    with pytest.raises(StoreError, match="newer sessionize"):
        SqliteStore(path)


def test_missing_folder_is_a_store_error_naming_the_path(tmp_path: Path) -> None:
    path = tmp_path / "nope" / "s.db"
    with pytest.raises(StoreError, match="does not exist") as err:
        SqliteStore(path)
    assert str(path) in str(err.value) and "mkdir" in str(err.value)


def test_a_file_that_is_no_database_is_a_store_error(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    path.write_bytes(b"this is not sqlite " * 100)
    with pytest.raises(StoreError, match=str(path)):
        SqliteStore(path)


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write anywhere")
def test_unwritable_folder_is_a_store_error(tmp_path: Path) -> None:
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o500)
    try:
        with pytest.raises(StoreError, match="not writable"):
            SqliteStore(folder / "s.db")
    finally:
        folder.chmod(0o700)


def test_run_config_with_sets_is_stored_as_json_text(store: SqliteStore) -> None:
    run_id = store.begin_run(RunInfo("f.csv", {"types": frozenset({"b", "a"})}, 5))
    store.finish_run(run_id, RunInfo("f.csv", {"types": frozenset({"b", "a"})}, 5, 9, {"n": 1}))
    with sqlite3.connect(store.path) as db:
        row = db.execute("SELECT source, config, started_at_ms, finished_at_ms, counters "
                         "FROM runs").fetchone()
    assert row == ("f.csv", '{"types":["a","b"]}', 5, 9, '{"n":1}')


def test_flags_are_stored_as_integers(store: SqliteStore) -> None:
    """The shared row builder hands SQLite Python bools: they must land as 0/1 as before."""
    from sessionize.engine import EngineConfig, Event, SessionEngine

    engine = SessionEngine(EngineConfig(gap_ms=60_000))
    store.apply(1, 0, engine.process([Event("u", T0, "view")]))
    with sqlite3.connect(store.path) as db:
        row = db.execute("SELECT typeof(bounce), bounce, engaged, is_bot, path_truncated "
                         "FROM sessions").fetchone()
    assert row == ("integer", 1, 0, 0, 0)
