"""The hot lookup, answered in front of the framework.

``GET /users/{key}/sessions/active`` is what a product calls on every page view, so it is the
one route whose cost per request decides the capacity of the server. Through FastAPI's routing,
dependency resolution and response machinery it costs about as much again as the Redis read
itself; this ASGI middleware matches the same path (the same pattern Starlette compiles for the
route) and answers directly: await the cache, render with orjson, send. The FastAPI route stays
declared, for the OpenAPI docs and for every app whose reads cannot be awaited (a store without
a cache), and gives byte-for-byte the same answers; the tests compare both.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from typing import Any

import orjson

from sessionize.errors import StoreError

# Starlette compiles "/users/{key:path}/sessions/active" to exactly this
ACTIVE_PATH = re.compile(r"^/users/(?P<key>.*)/sessions/active$")

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]
_HEADERS = [(b"content-type", b"application/json")]


class ActiveSessionsFastPath:
    """ASGI middleware: active-session lookups from ``read`` (an ``async`` reader such as
    ``CachedQueries.active_sessions_async``), everything else to ``app``."""

    def __init__(self, app: Any, read: Callable[[str], Awaitable[list[dict[str, Any]]]],
                 present: Callable[[dict[str, Any]], dict[str, Any]]) -> None:
        self.app = app
        self.read = read
        self.present = present

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "GET":
            return await self.app(scope, receive, send)
        match = ACTIVE_PATH.match(scope["path"])
        if match is None:
            return await self.app(scope, receive, send)
        key = match.group("key")
        try:
            records = await self.read(key)
        except StoreError as exc:  # the cache is down and the store may not take the load
            return await _respond(send, 503, {"error": "store_unavailable", "detail": str(exc)})
        present = self.present
        await _respond(send, 200, {"key": key, "sessions": [present(r) for r in records]})


async def _respond(send: Send, status: int, body: Any) -> None:
    data = orjson.dumps(body)
    await send({"type": "http.response.start", "status": status,
                "headers": [*_HEADERS, (b"content-length", str(len(data)).encode())]})
    await send({"type": "http.response.body", "body": data})
