"""The HTTP API over a ``SessionQueries`` store: sessions by user, by id, statistics,
analytics (``api/analytics.py``), Prometheus metrics and the dashboard (``api/dashboard.py``).

Routes stay thin: parse the query (``time_range``), ask the store, shape the output
(``present``). Every error, whatever raised it, leaves as ``{"error": code, "detail": message}``
so a client needs one error path. Times go out as ISO-8601 UTC strings with the epoch
milliseconds alongside (``start`` and ``start_ms``), and come in as either form.

Keys are arbitrary text (an IP, ``"ip|user agent"`` with spaces and slashes), so the key routes
use a ``{key:path}`` converter: a slash in a key may be sent as is or as ``%2F``; ``?``, ``#``
and ``%`` must be percent-encoded, as in any URL.
"""

from __future__ import annotations

from typing import Annotated, Any

import orjson
from fastapi import FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.responses import Response

from sessionize.decode.timestamps import BadTimestamp, format_ms, make_parser
from sessionize.errors import StoreError
from sessionize.stores.base import SessionQueries

TIME_FORMS = (
    "ISO-8601, e.g. 2019-10-01T00:00:00Z or 2019-10-01T02:00:00+02:00 (read as UTC when it has "
    "no offset), or epoch milliseconds, e.g. 1569888000000"
)
_MIN_MS = -62_135_596_800_000  # 0001-01-01T00:00:00Z
_MAX_MS = 253_402_300_799_999  # 9999-12-31T23:59:59.999Z
_read_time = make_parser("iso", "UTC")

FromParam = Annotated[
    str | None, Query(alias="from", description=f"Range start, inclusive. {TIME_FORMS}.")
]
ToParam = Annotated[
    str | None, Query(alias="to", description=f"Range end, exclusive. {TIME_FORMS}.")
]
CursorParam = Annotated[str | None, Query(description="next_cursor of the previous page.")]
KEY_NOTE = (
    "The key is any text (user id, IP, 'ip|user agent'); slashes may be sent as is, "
    "other reserved characters percent-encoded."
)


class OrjsonResponse(Response):
    """JSON rendered by orjson: several times faster than the stdlib encoder, no extra pass."""

    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content)


class ApiError(Exception):
    """An error with its HTTP status and machine-readable code; the handler renders it."""

    def __init__(self, status: int, code: str, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.code = code
        self.detail = detail


def error_body(status: int, code: str, detail: str) -> OrjsonResponse:
    return OrjsonResponse({"error": code, "detail": detail}, status_code=status)


def parse_time(name: str, value: str | None) -> int | None:
    """A query time (ISO-8601 or epoch ms) as epoch ms; ``None`` when absent."""
    if value is None or not value.strip():
        return None
    try:
        ms = _read_time(value)
    except (BadTimestamp, ValueError, OverflowError):
        ms = None
    if ms is None or not _MIN_MS <= ms <= _MAX_MS:
        raise ApiError(400, "bad_time", f"{name}={value!r} is not a time. Use {TIME_FORMS}.")
    return ms


def time_range(start: str | None, end: str | None) -> tuple[int | None, int | None]:
    """The ``from``/``to`` query pair as epoch ms, checked to be in order."""
    lo, hi = parse_time("from", start), parse_time("to", end)
    if lo is not None and hi is not None and lo > hi:
        raise ApiError(400, "bad_range", f"from ({start}) is after to ({end})")
    return lo, hi


def range_echo(lo: int | None, hi: int | None) -> dict[str, Any]:
    """The range a statistic covers, as the client should read it back."""
    return {"from": format_ms(lo), "to": format_ms(hi), "from_ms": lo, "to_ms": hi}


def present(record: dict[str, Any]) -> dict[str, Any]:
    """A store record for output: ISO-8601 UTC times, the epoch ms kept alongside as ``*_ms``."""
    out = dict(record)
    for name in ("start", "end", "expires"):
        out[f"{name}_ms"] = record[name]
        out[name] = format_ms(record[name])
    return out


def create_app(queries: SessionQueries, *, title: str = "sessionize") -> FastAPI:
    """The API application over ``queries``; interactive docs at ``/docs``."""
    app = FastAPI(
        title=title,
        description="User sessions computed from activity streams (event-time session windows).",
        default_response_class=OrjsonResponse,
    )
    _install_error_handlers(app)
    _add_session_routes(app, queries)
    _add_stats_routes(app, queries)
    from sessionize.api.analytics import add_analytics_routes
    from sessionize.api.dashboard import add_dashboard_routes

    add_analytics_routes(app, queries)
    _add_metrics_route(app, queries)
    add_dashboard_routes(app)
    read = getattr(queries, "active_sessions_async", None)
    if read is not None:  # the hot lookup in front of the framework (api/lookup.py)
        from sessionize.api.lookup import ActiveSessionsFastPath

        app.add_middleware(ActiveSessionsFastPath, read=read, present=present)
    return app


def _add_metrics_route(app: FastAPI, queries: SessionQueries) -> None:
    from prometheus_client import generate_latest

    from sessionize.metrics import CONTENT_TYPE, store_registry

    registry = store_registry(queries)

    @app.get("/metrics", summary="Prometheus metrics of the store", include_in_schema=True)
    def metrics() -> Response:
        """Sessions by status, rejected events by reason, counted events, stream time and its
        lag behind the wall clock per partition, read from the store at each scrape."""
        return Response(generate_latest(registry), media_type=CONTENT_TYPE)


def _add_session_routes(app: FastAPI, queries: SessionQueries) -> None:
    @app.get("/health", summary="Is the store reachable?")
    def health() -> Response:
        """200 with the store's facts, or 503 when the store cannot answer."""
        try:
            info = queries.health()
        except Exception as exc:  # a probe must answer, whatever the store raised
            return OrjsonResponse(
                {"status": "unavailable", "error": "store_unavailable",
                 "detail": f"{type(exc).__name__}: {exc}"},
                status_code=503,
            )
        ok = info.get("ok", True)
        return OrjsonResponse({**info, "status": "ok" if ok else "degraded"},
                              status_code=200 if ok else 503)

    @app.get("/users/{key:path}/sessions/active", summary="A user's open and inactive sessions",
             description=KEY_NOTE)
    async def active_sessions(key: str) -> Response:
        # the hot lookup: on the event loop when the reads can be awaited (Redis), else on the
        # threadpool like every other (blocking) store read
        read = getattr(queries, "active_sessions_async", None)
        if read is not None:
            records = await read(key)
        else:
            records = await run_in_threadpool(queries.active_sessions, key)
        return OrjsonResponse({"key": key, "sessions": [present(r) for r in records]})

    @app.get("/users/{key:path}/sessions", summary="A user's sessions overlapping a range",
             description=f"Newest first, paged: pass next_cursor back as cursor. {KEY_NOTE}")
    def user_sessions(
        key: str,
        start: FromParam = None,
        end: ToParam = None,
        limit: Annotated[int, Query(ge=1, le=1000, description="Page size.")] = 50,
        cursor: CursorParam = None,
    ) -> Response:
        lo, hi = time_range(start, end)
        try:
            records, next_cursor = queries.user_sessions(key, lo, hi, limit, cursor)
        except ValueError as exc:
            raise ApiError(400, "bad_cursor", str(exc)) from None
        sessions = [present(r) for r in records]
        return OrjsonResponse({"key": key, "sessions": sessions, "next_cursor": next_cursor})

    @app.get("/sessions/{session_id}", summary="One session by id")
    def session(session_id: str) -> Response:
        record = queries.session(session_id)
        if record is None:
            raise ApiError(404, "not_found", f"no session with id {session_id!r}")
        return OrjsonResponse(present(record))


def _add_stats_routes(app: FastAPI, queries: SessionQueries) -> None:
    @app.get("/stats/summary", summary="Session statistics over sessions starting in a range")
    def summary(start: FromParam = None, end: ToParam = None) -> Response:
        lo, hi = time_range(start, end)
        return OrjsonResponse({**range_echo(lo, hi), **queries.summary(lo, hi)})

    @app.get("/stats/rejected", summary="Rejected (dead-letter) events by reason")
    def rejected(start: FromParam = None, end: ToParam = None) -> Response:
        lo, hi = time_range(start, end)
        counts = queries.rejected_counts(lo, hi)
        total = sum(counts.values())
        return OrjsonResponse({**range_echo(lo, hi), "rejected": counts, "total": total})


_HTTP_CODES = {404: "not_found", 405: "method_not_allowed"}


def _install_error_handlers(app: FastAPI) -> None:
    """Every error in the one shape ``{"error": code, "detail": message}``."""

    @app.exception_handler(ApiError)
    def api_error(_: Request, exc: ApiError) -> Response:
        return error_body(exc.status, exc.code, exc.detail)

    @app.exception_handler(HTTPException)
    def http_error(request: Request, exc: HTTPException) -> Response:
        detail = str(exc.detail)
        if exc.status_code == 404 and detail == "Not Found":
            detail = f"no endpoint {request.method} {request.url.path}; the endpoints are at /docs"
        response = error_body(exc.status_code, _HTTP_CODES.get(exc.status_code, "http_error"),
                              detail)
        response.headers.update(exc.headers or {})
        return response

    @app.exception_handler(RequestValidationError)
    def bad_request(_: Request, exc: RequestValidationError) -> Response:
        problems = [f"{_param_name(e['loc'])}: {e['msg']}" for e in exc.errors()]
        return error_body(400, "bad_request", "; ".join(problems))

    @app.exception_handler(StoreError)
    def store_error(_: Request, exc: StoreError) -> Response:
        return error_body(503, "store_unavailable", str(exc))


def _param_name(loc: tuple[Any, ...] | list[Any]) -> str:
    """``("query", "limit")`` -> ``limit``: the name the client sent."""
    return ".".join(str(p) for p in loc[1:]) or str(loc[0])
