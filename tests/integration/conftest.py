"""Real PostgreSQL, Redis and Kafka for the pipeline tests (started by scripts/services.sh).

Each test gets its own database, Redis database and topic, so tests never see each other's
data. Workers run as real processes of the ``sessionize`` command, so a crash is a real
``kill -9``.
"""

from __future__ import annotations

import itertools
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import psycopg
import pytest
import redis
from confluent_kafka.admin import AdminClient, NewTopic

SERVICES_HINT = "start the services first: scripts/services.sh up && eval \"$(scripts/services.sh env)\""


def _env(name: str) -> str:
    value = os.environ.get(name)
    if not value:
        pytest.fail(f"{name} is not set: the pipeline tests need real servers; {SERVICES_HINT}")
    return value


@pytest.fixture(scope="session")
def kafka() -> str:
    return _env("SESSIONIZE_TEST_KAFKA")


@pytest.fixture
def pg_url() -> str:
    """A fresh database for one test, dropped afterwards."""
    admin_url = _env("SESSIONIZE_TEST_PG")
    name = f"sessionize_it_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    base = admin_url.rsplit("/", 1)[0]
    yield f"{base}/{name}"
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


_redis_dbs = itertools.cycle(range(1, 16))


@pytest.fixture
def redis_url() -> str:
    """A flushed Redis database (1-15; 0 is left to users)."""
    base = _env("SESSIONIZE_TEST_REDIS").rsplit("/", 1)[0]
    url = f"{base}/{next(_redis_dbs)}"
    client = redis.Redis.from_url(url)
    client.flushdb()
    yield url
    client.flushdb()
    client.close()


@pytest.fixture
def topic(kafka: str) -> str:
    name = f"it-{uuid.uuid4().hex[:10]}"
    admin = AdminClient({"bootstrap.servers": kafka})
    admin.create_topics([NewTopic(name, num_partitions=4, replication_factor=1)])[name].result(30)
    yield name
    admin.delete_topics([name])


SESSIONIZE = str(Path(sys.executable).with_name("sessionize"))


class Worker:
    """A ``sessionize run --source kafka://...`` process."""

    def __init__(self, log_dir: Path, name: str, args: list[str]) -> None:
        self.log = log_dir / f"worker-{name}.log"
        self.args = args
        self.proc: subprocess.Popen | None = None

    def start(self) -> Worker:
        fh = self.log.open("ab")
        self.proc = subprocess.Popen([SESSIONIZE, "run", *self.args], stdout=fh, stderr=fh,
                                     start_new_session=True)
        return self

    def kill9(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(30)

    def wait(self, timeout: float) -> int:
        assert self.proc is not None
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            raise AssertionError(f"worker did not finish in {timeout} s; log:\n{self.tail()}") from None

    def tail(self) -> str:
        return self.log.read_text(errors="replace")[-4000:]

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(30)


@pytest.fixture
def workers(tmp_path):
    started: list[Worker] = []

    def make(name: str, args: list[str]) -> Worker:
        w = Worker(tmp_path, name, args)
        started.append(w)
        return w

    yield make
    for w in started:
        w.stop()


def wait_until(predicate, timeout: float, what: str, interval: float = 0.2):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")
