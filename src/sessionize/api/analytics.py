"""Analytics routes: funnels, time series, histograms, ranked pages and campaigns, the live view.

Thin, like the rest of the API: parse and check the query, ask the store (its ``Analytics``
methods hold the SQL), shape the answer. Every bad input is a 400 in the API's one error shape,
with a message that says what would work.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from typing import Annotated, Any, Literal

from fastapi import FastAPI, Query
from starlette.responses import Response

from sessionize.api.app import (
    ApiError,
    CursorParam,
    FromParam,
    OrjsonResponse,
    ToParam,
    range_echo,
    time_range,
)
from sessionize.engine.durations import parse_duration
from sessionize.errors import ConfigError
from sessionize.stores import analytics as an
from sessionize.stores.base import SessionQueries

TzParam = Annotated[str, Query(description="IANA time zone of the buckets, e.g. Europe/Berlin.")]
LimitParam = Annotated[int, Query(ge=1, le=an.MAX_LIMIT, description="Rows per page.")]


def add_analytics_routes(app: FastAPI, queries: SessionQueries) -> LiveRates:
    """The ``/analytics/*`` and ``/live`` routes over ``queries``; returns the live-rate tracker."""
    rates = LiveRates()

    @app.get("/analytics/timeseries", summary="Sessions and users per hour or day in a zone")
    def timeseries(interval: Literal["hour", "day"] = "day", tz: TzParam = "UTC",
                   start: FromParam = None, end: ToParam = None) -> Response:
        """Every bucket of the range (the data's when from/to are absent), zeros included:
        sessions starting in it, users (distinct keys), events, bounce, engagement and
        conversion rates, revenue. Buckets are local calendar hours or days of ``tz``, DST
        included (a repeated hour is two buckets; a DST day is 23 or 25 hours)."""
        lo, hi = time_range(start, end)
        zi = _zone(tz)
        try:
            body = queries.timeseries(interval, zi.key, lo, hi)  # type: ignore[attr-defined]
        except ValueError as exc:
            raise ApiError(400, "bad_range", str(exc)) from None
        return OrjsonResponse({**range_echo(lo, hi), **body})

    @app.get("/analytics/funnel", summary="Ordered steps of event types within sessions")
    def funnel(steps: Annotated[list[str], Query(
                   description="Event types in order, as one value 'view>cart>purchase' or one "
                               "value per step (steps=view&steps=cart).")],
               start: FromParam = None, end: ToParam = None) -> Response:
        """Sessions (starting in the range) entering each step: a session enters step k when
        its path holds steps 1..k in that order, not necessarily adjacent. Conversion from the
        previous and from the first step; median time from the previous step (at the earliest
        matching events). Paths keep a session's first ``path_cap`` events (50 by default):
        ``truncated_paths`` counts sessions whose later steps are not seen."""
        lo, hi = time_range(start, end)
        try:
            chosen = an.parse_steps(steps)
        except ValueError as exc:
            raise ApiError(400, "bad_steps", str(exc)) from None
        body = queries.funnel(chosen, lo, hi)  # type: ignore[attr-defined]
        return OrjsonResponse({**range_echo(lo, hi), **body})

    @app.get("/analytics/histogram", summary="Session length or events per session, binned")
    def histogram(metric: Literal["duration", "events"] = "duration",
                  edges: Annotated[str | None, Query(
                      description="Bin edges, increasing: durations for duration (10s,1m,5m or "
                                  "ms), counts for events (2,3,5,10).")] = None,
                  start: FromParam = None, end: ToParam = None) -> Response:
        """Sessions starting in the range per bin ``[lo, hi)``; the first bin starts at 0, the
        last is open-ended (``hi`` null)."""
        lo, hi = time_range(start, end)
        chosen = _edges(metric, edges)
        try:
            body = queries.histogram(metric, lo, hi, chosen)  # type: ignore[attr-defined]
        except ValueError as exc:
            raise ApiError(400, "bad_edges", str(exc)) from None
        return OrjsonResponse({**range_echo(lo, hi), **body})

    @app.get("/analytics/top-pages", summary="Top entry or exit pages")
    def top_pages(kind: Literal["entry", "exit"] = "entry", start: FromParam = None,
                  end: ToParam = None, limit: LimitParam = 20,
                  cursor: CursorParam = None) -> Response:
        """Pages by sessions that entered (or left) there, with share, bounce and conversion
        rates; most sessions first, paged (pass next_cursor back as cursor). Sessions without a
        page are summed in ``without_value``."""
        lo, hi = time_range(start, end)
        body = _paged(lambda: queries.top_pages(kind, lo, hi, limit, cursor))  # type: ignore[attr-defined]
        return OrjsonResponse({**range_echo(lo, hi), "kind": kind, **body})

    @app.get("/analytics/conversion", summary="Conversion rate by entry page, campaign, ...")
    def conversion(by: Literal["entry_page", "campaign", "referrer", "exit_page"] = "entry_page",
                   start: FromParam = None, end: ToParam = None, limit: LimitParam = 20,
                   cursor: CursorParam = None) -> Response:
        """Per value: sessions, sessions with a conversion, conversion rate, revenue; most
        sessions first, paged. Sessions without a value are summed in ``without_value``."""
        lo, hi = time_range(start, end)
        body = _paged(lambda: queries.conversion_by(by, lo, hi, limit, cursor))  # type: ignore[attr-defined]
        return OrjsonResponse({**range_echo(lo, hi), "by": by, **body})

    @app.get("/live", summary="Active sessions, events/s, rejected/s, stream time and lag")
    def live() -> Response:
        """Now: sessions by status (open = active), per partition its stream time and how far
        it is behind the wall clock, cumulative counted and rejected events and, from the
        previous readings of this server (polled at least a second apart), events/s in and
        rejected/s by reason (null until there are two readings)."""
        return OrjsonResponse(rates.add(queries.live()))  # type: ignore[attr-defined]

    return rates


def _zone(tz: str) -> Any:
    try:
        return an.zone(tz)
    except ValueError as exc:
        raise ApiError(400, "bad_tz", str(exc)) from None


def _edges(metric: str, text: str | None) -> list[int] | None:
    if text is None or not text.strip():
        return None
    values = []
    for part in text.split(","):
        part = part.strip()
        try:
            if metric == "events":
                values.append(int(part))
            else:
                values.append(int(part) if part.isdigit() else parse_duration(part, name="edge"))
        except (ValueError, ConfigError):
            example = "2,3,5,10" if metric == "events" else "10s,1m,5m,30m (or milliseconds)"
            raise ApiError(400, "bad_edges", f"edges={text!r}: {part!r} is not a "
                           f"{'count' if metric == 'events' else 'duration'}; e.g. {example}"
                           ) from None
    try:
        return an.check_edges(values)
    except ValueError as exc:
        raise ApiError(400, "bad_edges", str(exc)) from None


def _paged(call: Any) -> dict[str, Any]:
    try:
        return call()
    except ValueError as exc:
        raise ApiError(400, "bad_cursor", str(exc)) from None


class LiveRates:
    """Turns the store's cumulative counters into rates: each reading is kept for a minute, and
    a rate is taken over the span from the oldest kept reading at least a second old."""

    WINDOW_S = 60.0
    MIN_SPAN_S = 1.0

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._samples: deque[tuple[float, int, dict[str, int]]] = deque()

    def add(self, live: dict[str, Any], now: float | None = None) -> dict[str, Any]:
        now = time.monotonic() if now is None else now
        counted, rejected = int(live["counted"]), dict(live["rejected"])
        with self._lock:
            if self._samples and (counted < self._samples[-1][1] or any(
                    rejected.get(k, 0) < v for k, v in self._samples[-1][2].items())):
                self._samples.clear()  # the counters went back: another store, or a reset
            while self._samples and now - self._samples[0][0] > self.WINDOW_S:
                self._samples.popleft()
            base = next((s for s in self._samples if now - s[0] >= self.MIN_SPAN_S), None)
            self._samples.append((now, counted, rejected))
        out = dict(live)
        if base is None:
            out.update(events_per_second=None, rejected_per_second=None, rate_window_s=None)
            return out
        span = now - base[0]
        per_reason = {k: (v - base[2].get(k, 0)) / span for k, v in rejected.items()}
        events = (counted - base[1]) / span + sum(per_reason.values())
        out.update(events_per_second=events, rejected_per_second=per_reason,
                   rate_window_s=round(span, 3))
        return out
