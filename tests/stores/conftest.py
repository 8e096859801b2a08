"""Store fixtures: both stores, filled by the real engine from real events, and fresh ones.

``kind`` ("sqlite" or "postgres") parametrises every test that asks for ``store``, ``real_run``
or ``unflushed_run``, so the contract tests run once per store. PostgreSQL is the real server
(``scripts/services.sh up pg``; ``SESSIONIZE_TEST_PG`` from ``scripts/services.sh env``): the
tests that need it are marked ``pg`` and FAIL (never skip) when the variable is not set.
Each test session works in its own random database, dropped at the end, and every PostgreSQL
store a fixture opens lives in a fresh schema of it.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable, Iterator
from functools import cache
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import make_conninfo

from sessionize.engine import EngineConfig
from sessionize.stores.postgres import PostgresStore
from sessionize.stores.sqlite import SqliteStore
from tests.realrun import GAP_MS, RealRun, read_rees46, run_into, to_event

PG_ENV = "SESSIONIZE_TEST_PG"
PG_HINT = (
    f"{PG_ENV} is not set: the PostgreSQL store tests run against the real server. Start it and "
    "export the variable: scripts/services.sh up pg && eval \"$(scripts/services.sh env)\" "
    "(or leave these tests out with -m 'not pg')"
)
KINDS = ["sqlite", pytest.param("postgres", marks=pytest.mark.pg)]


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", f"pg: needs the real PostgreSQL server (${PG_ENV})")


# ---------------------------------------------------------------------- PostgreSQL


@pytest.fixture(scope="session")
def pg_dsn() -> str:
    """The server's DSN from the environment; a failure (not a skip) when it is missing."""
    dsn = os.environ.get(PG_ENV)
    if not dsn:
        pytest.fail(PG_HINT, pytrace=False)
    return dsn


@pytest.fixture(scope="session")
def pg_database(pg_dsn: str) -> Iterator[str]:
    """A random database ``sessionize_test_<hex>`` for this test session, dropped afterwards."""
    name = f"sessionize_test_{secrets.token_hex(6)}"
    with psycopg.connect(pg_dsn, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield make_conninfo(pg_dsn, dbname=name)
    finally:
        with psycopg.connect(pg_dsn, autocommit=True) as admin:
            admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)")
                          .format(sql.Identifier(name)))


@pytest.fixture(scope="session")
def pg_schema(pg_database: str) -> Callable[[], str]:
    """Makes a fresh, empty schema and returns a DSN whose search_path is that schema."""

    def make() -> str:
        name = f"s_{secrets.token_hex(6)}"
        with psycopg.connect(pg_database, autocommit=True) as db:
            db.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(name)))
        return make_conninfo(pg_database, options=f"-c search_path={name}")

    return make


@pytest.fixture
def pg_store(pg_schema: Callable[[], str]) -> Iterator[PostgresStore]:
    s = PostgresStore(pg_schema())
    yield s
    s.close()


# ---------------------------------------------------------------------- both stores


@pytest.fixture(scope="session", params=KINDS)
def kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def store(kind: str, request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Any]:
    """A fresh, empty store of each kind."""
    if kind == "sqlite":
        s: Any = SqliteStore(tmp_path / "s.db")
    else:
        s = PostgresStore(request.getfixturevalue("pg_schema")())
    yield s
    s.close()


@cache
def _rees46() -> list[dict[str, str]]:
    return read_rees46()


def _filled(kind: str, request: pytest.FixtureRequest, name: str, flush: bool) -> RealRun:
    """The rees46 head through the real engine into a new store of ``kind`` (tests/realrun.py)."""
    if kind == "sqlite":
        folder = request.getfixturevalue("tmp_path_factory").mktemp(name)
        s: Any = SqliteStore(folder / "sessions.db")
    else:
        s = PostgresStore(request.getfixturevalue("pg_schema")())
    rows = _rees46()
    events = [to_event(row, i) for i, row in enumerate(rows)]
    run = run_into(s, events, EngineConfig(gap_ms=GAP_MS), flush=flush)
    run.rows = rows
    return run


@pytest.fixture(scope="session")
def real_run(kind: str, request: pytest.FixtureRequest) -> Iterator[RealRun]:
    """The rees46 head run to the end: every session final (closed). Read-only for tests."""
    run = _filled(kind, request, "real_run", flush=True)
    yield run
    run.store.close()


@pytest.fixture(scope="session")
def unflushed_run(kind: str, request: pytest.FixtureRequest) -> Iterator[RealRun]:
    """The same run without the end-of-input flush: sessions stay open or inactive."""
    run = _filled(kind, request, "unflushed_run", flush=False)
    yield run
    run.store.close()
