"""The local services (scripts/services.sh): their URLs, whether they answer, and private
databases for the bench so that it never touches what the tests use."""

from __future__ import annotations

import os
import re
import subprocess
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

from bench.common import ROOT

BENCH_DB = "sessionize_bench"
BENCH_REDIS_DB = 5


@dataclass
class Services:
    kafka: str | None
    pg: str | None
    redis: str | None
    problems: list[str]


def service_env() -> dict[str, str]:
    """SESSIONIZE_TEST_* from the environment, else from ``scripts/services.sh env``."""
    names = ("SESSIONIZE_TEST_KAFKA", "SESSIONIZE_TEST_PG", "SESSIONIZE_TEST_REDIS")
    env = {n: os.environ[n] for n in names if os.environ.get(n)}
    if len(env) < len(names):
        try:
            out = subprocess.run([str(ROOT / "scripts" / "services.sh"), "env"], capture_output=True,
                                 text=True, timeout=20, check=False).stdout
        except (OSError, subprocess.TimeoutExpired):
            out = ""
        for name, value in re.findall(r"export (SESSIONIZE_TEST_\w+)=(\S+)", out):
            env.setdefault(name, value)
    return env


def probe() -> Services:
    """Which services answer now (each checked with a real request, a few seconds at most)."""
    env = service_env()
    problems = []
    kafka = env.get("SESSIONIZE_TEST_KAFKA")
    if kafka:
        try:
            from confluent_kafka.admin import AdminClient

            AdminClient({"bootstrap.servers": kafka}).list_topics(timeout=5)
        except Exception as exc:
            problems.append(f"Kafka at {kafka}: {exc}")
            kafka = None
    else:
        problems.append("no SESSIONIZE_TEST_KAFKA (run scripts/services.sh up)")
    pg = env.get("SESSIONIZE_TEST_PG")
    if pg:
        try:
            pg = bench_database(pg)
        except Exception as exc:
            problems.append(f"PostgreSQL at {pg}: {exc}")
            pg = None
    else:
        problems.append("no SESSIONIZE_TEST_PG")
    redis_url = env.get("SESSIONIZE_TEST_REDIS")
    if redis_url:
        try:
            import redis

            redis_url = with_path(redis_url, f"/{BENCH_REDIS_DB}")
            redis.Redis.from_url(redis_url, socket_timeout=3).ping()
        except Exception as exc:
            problems.append(f"Redis at {redis_url}: {exc}")
            redis_url = None
    else:
        problems.append("no SESSIONIZE_TEST_REDIS")
    return Services(kafka, pg, redis_url, problems)


def with_path(url: str, path: str) -> str:
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, path, parts.query, parts.fragment))


def bench_database(pg_url: str) -> str:
    """A URL of the bench's own database on that server (created when missing)."""
    import psycopg

    with psycopg.connect(pg_url, autocommit=True, connect_timeout=5) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (BENCH_DB,)).fetchone()
        if not exists:
            conn.execute(f'CREATE DATABASE "{BENCH_DB}"')
    return with_path(pg_url, f"/{BENCH_DB}")


def reset(pg_url: str | None, redis_url: str | None) -> None:
    """Empty the bench's database and Redis db (never the ones the tests use)."""
    if pg_url:
        assert pg_url.rstrip("/").endswith(BENCH_DB)
        import psycopg

        with psycopg.connect(pg_url, autocommit=True) as conn:
            conn.execute("DROP SCHEMA IF EXISTS public CASCADE")
            conn.execute("CREATE SCHEMA public")
    if redis_url:
        assert redis_url.endswith(f"/{BENCH_REDIS_DB}")
        import redis

        redis.Redis.from_url(redis_url).flushdb()
