"""CachedQueries: the API's reads, active sessions from a cache and the rest from the store.

``create_app(CachedQueries(store, cache))`` serves ``/users/{key}/sessions/active`` from the
cache (Redis: one round trip, sub-millisecond) and history, single sessions and statistics from
the store, unchanged. The store remains the source of truth: the pipeline writes a batch to the
store first and to the cache after, and a worker rebuilds a partition's cache from the store
when it takes the partition.
"""

from __future__ import annotations

import logging
from typing import Any

from starlette.concurrency import run_in_threadpool

from sessionize.caches.base import SessionCache
from sessionize.errors import CacheError, StoreError
from sessionize.stores.base import SessionQueries

log = logging.getLogger(__name__)


class CachedQueries:
    """``SessionQueries`` with ``active_sessions`` read from ``cache``.

    When the cache cannot answer, ``fallback=True`` (the default) reads the store instead: it
    holds the same open and inactive sessions, only slower, and ``/health`` reports the cache
    as down. ``fallback=False`` fails the request instead (a ``StoreError``, which the API
    answers with 503 in its usual error shape), for deployments where the store must not take
    the lookup load.
    """

    def __init__(self, store: SessionQueries, cache: SessionCache, *, fallback: bool = True) -> None:
        self.store = store
        self.cache = cache
        self.fallback = fallback

    def active_sessions(self, key: str) -> list[dict[str, Any]]:
        try:
            return self.cache.active_sessions(key)
        except CacheError as exc:
            if not self.fallback:
                raise StoreError(f"the session cache is unavailable: {exc}") from exc
            log.warning("cache unavailable, reading active sessions from the store: %s", exc)
            return self.store.active_sessions(key)

    async def active_sessions_async(self, key: str) -> list[dict[str, Any]]:
        """``active_sessions`` without a threadpool hop when the cache reads asynchronously
        (Redis): the hot lookup then costs one round trip on the event loop."""
        read = getattr(self.cache, "active_sessions_async", None)
        if read is None:
            return await run_in_threadpool(self.active_sessions, key)
        try:
            return await read(key)
        except CacheError as exc:
            if not self.fallback:
                raise StoreError(f"the session cache is unavailable: {exc}") from exc
            log.warning("cache unavailable, reading active sessions from the store: %s", exc)
            return await run_in_threadpool(self.store.active_sessions, key)

    def user_sessions(self, key: str, start_ms: int | None, end_ms: int | None, limit: int,
                      cursor: str | None) -> tuple[list[dict[str, Any]], str | None]:
        return self.store.user_sessions(key, start_ms, end_ms, limit, cursor)

    def session(self, session_id: str) -> dict[str, Any] | None:
        return self.store.session(session_id)

    def summary(self, start_ms: int | None, end_ms: int | None) -> dict[str, Any]:
        return self.store.summary(start_ms, end_ms)

    def rejected_counts(self, start_ms: int | None, end_ms: int | None) -> dict[str, int]:
        return self.store.rejected_counts(start_ms, end_ms)

    # analytics: always the store (the cache holds only open and inactive sessions)

    def timeseries(self, interval: str, tz: str, start_ms: int | None, end_ms: int | None
                   ) -> dict[str, Any]:
        return self.store.timeseries(interval, tz, start_ms, end_ms)  # type: ignore[attr-defined]

    def funnel(self, steps: list[str], start_ms: int | None, end_ms: int | None
               ) -> dict[str, Any]:
        return self.store.funnel(steps, start_ms, end_ms)  # type: ignore[attr-defined]

    def histogram(self, metric: str, start_ms: int | None, end_ms: int | None,
                  edges: list[int] | None = None) -> dict[str, Any]:
        return self.store.histogram(metric, start_ms, end_ms, edges)  # type: ignore[attr-defined]

    def top_pages(self, kind: str, start_ms: int | None, end_ms: int | None, limit: int,
                  cursor: str | None) -> dict[str, Any]:
        return self.store.top_pages(kind, start_ms, end_ms, limit, cursor)  # type: ignore[attr-defined]

    def conversion_by(self, dimension: str, start_ms: int | None, end_ms: int | None,
                      limit: int, cursor: str | None) -> dict[str, Any]:
        return self.store.conversion_by(dimension, start_ms, end_ms, limit, cursor)  # type: ignore[attr-defined]

    def live(self) -> dict[str, Any]:
        return self.store.live()  # type: ignore[attr-defined]

    def health(self) -> dict[str, Any]:
        """The store's health (raising if the store cannot answer, as the store does) with the
        cache's under ``"cache"``; ``ok`` only if both are ok. A cache that raises is reported,
        not raised."""
        info = dict(self.store.health())
        try:
            cache = dict(self.cache.health())
        except Exception as exc:  # a probe must answer, whatever the cache raised
            cache = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
        info["ok"] = bool(info.get("ok", True)) and bool(cache.get("ok"))
        info["cache"] = cache
        return info
