"""Fixtures for the cache tests (here, not in a conftest, so that the API tests import them too):
the real Redis of ``scripts/services.sh``, one random prefix per cache, cleaned afterwards."""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis

from sessionize.caches.redis import RedisCache

START_IT = (
    "start it with `scripts/services.sh up redis` and export its URL with "
    "`eval \"$(scripts/services.sh env)\"` (SESSIONIZE_TEST_REDIS=redis://127.0.0.1:56379/0)"
)


@pytest.fixture(scope="session")
def redis_url() -> str:
    """The test Redis; a missing or silent one fails the tests (never a silent skip)."""
    url = os.environ.get("SESSIONIZE_TEST_REDIS")
    if not url:
        pytest.fail(f"SESSIONIZE_TEST_REDIS is not set: the cache tests need a real Redis; {START_IT}")
    client = redis.Redis.from_url(url, socket_timeout=2, socket_connect_timeout=2)
    try:
        client.ping()
    except redis.RedisError as exc:
        pytest.fail(f"Redis at {url} does not answer ({exc}); {START_IT}")
    finally:
        client.close()
    return url


@pytest.fixture
def make_cache(redis_url: str) -> Iterator[Callable[..., RedisCache]]:
    """``make_cache(**kwargs)``: a RedisCache under a fresh random prefix; every name under
    each prefix is deleted afterwards, and the test fails if any is left."""
    made: list[RedisCache] = []

    def make(**kwargs: Any) -> RedisCache:
        kwargs.setdefault("prefix", f"sessionize-test:{secrets.token_hex(6)}:")
        cache = RedisCache(redis_url, **kwargs)
        made.append(cache)
        return cache

    yield make
    raw = redis.Redis.from_url(redis_url)
    try:
        for cache in made:
            cache.clear()
            left = list(raw.scan_iter(match=cache.prefix + "*"))
            cache.close()
            assert not left, f"names left under {cache.prefix}: {left[:5]}"
    finally:
        raw.close()
