"""``sessionize status``: the store, the cache and a worker at a glance, as rich tables.

Reads the store through the same queries as the API (``live``, ``rejected_counts``), the cache
through its ``health``, and a worker through its health port (``GET /health``, JSON, 200 or 503).
"""

from __future__ import annotations

import urllib.error
import urllib.request
from typing import Any

import orjson
from rich.console import Console
from rich.table import Table

from sessionize.decode.timestamps import format_ms


def show_status(out: Console, store: Any, cache: Any | None, worker: str | None) -> int:
    """Print the tables; 0 when everything asked about is healthy, 1 otherwise."""
    healthy = True
    live = store.live()
    health = store.health()
    where = health.get("path") or health.get("server") or ""
    sessions = live["sessions"]

    t = Table(title=f"store: {health.get('store')} {where}", title_justify="left",
              show_header=False, min_width=40)
    t.add_column(style="bold")
    t.add_column(justify="right")
    t.add_row("sessions", f"{sessions['total']:,}")
    t.add_row("  open (active)", f"{sessions['open']:,}")
    t.add_row("  inactive", f"{sessions['inactive']:,}")
    t.add_row("  closed", f"{sessions['closed']:,}")
    t.add_row("events counted", f"{live['counted']:,}")
    t.add_row("first / last session start",
              f"{_time(live.get('first_start_ms'))} / {_time(live.get('last_start_ms'))}")
    out.print(t)

    rejected = store.rejected_counts(None, None)
    r = Table(title="rejected events by reason", title_justify="left", min_width=40)
    r.add_column("reason")
    r.add_column("events", justify="right")
    for reason, n in rejected.items():
        r.add_row(reason, f"{n:,}", style=None if n else "dim")
    r.add_row("total", f"{sum(rejected.values()):,}", style="bold")
    out.print(r)

    p = Table(title="partitions", title_justify="left")
    for col in ("partition", "stream time (UTC)", "lag (wall clock)", "last write (UTC)"):
        p.add_column(col, justify="right" if col != "partition" else "left")
    for row in live["partitions"]:
        p.add_row(str(row["partition"]), _time(row["stream_time_ms"]),
                  "-" if row["lag_ms"] is None else span(row["lag_ms"]),
                  _time(row["updated_at_ms"]))
    if not live["partitions"]:
        p.add_row("-", "no batch written yet", "", "")
    out.print(p)

    if cache is not None:
        info = _safe(cache.health)
        ok = bool(info.get("ok"))
        healthy &= ok
        c = Table(title=f"cache: {'ok' if ok else 'DOWN'}", title_justify="left",
                  show_header=False)
        c.add_column(style="bold")
        c.add_column()
        for k, v in info.items():
            c.add_row(str(k), str(v))
        out.print(c)

    if worker:
        ok, body = fetch_worker_health(worker)
        healthy &= ok
        out.print(worker_table(worker, ok, body))
    return 0 if healthy else 1


def fetch_worker_health(base: str, timeout: float = 5.0) -> tuple[bool, dict[str, Any]]:
    """``GET {base}/health``: (healthy, body). A worker that cannot be reached is unhealthy,
    with the reason as ``last_error``."""
    url = base.rstrip("/")
    if not url.startswith(("http://", "https://")):
        url = "http://" + url
    if not url.endswith("/health"):
        url += "/health"
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return resp.status == 200, orjson.loads(resp.read())
    except urllib.error.HTTPError as exc:  # 503: unhealthy, same JSON body
        try:
            return False, orjson.loads(exc.read())
        except orjson.JSONDecodeError:
            return False, {"status": f"HTTP {exc.code}", "last_error": str(exc)}
    except (urllib.error.URLError, OSError, ValueError) as exc:
        return False, {"status": "unreachable", "last_error": f"{url}: {exc}"}


def worker_table(url: str, ok: bool, body: dict[str, Any]) -> Table:
    w = Table(title=f"worker {url}: {'ok' if ok else body.get('status', 'unhealthy')}",
              title_justify="left", show_header=False)
    w.add_column(style="bold")
    w.add_column(justify="right")
    for dep in ("postgres", "redis", "kafka"):
        if dep in body:
            w.add_row(dep, "up" if body[dep] else "[red]DOWN[/]")
    for name in ("batches", "events", "counted"):
        if name in body:
            w.add_row(name, f"{body[name]:,}")
    rejected = body.get("rejected") or {}
    if rejected:
        w.add_row("rejected", ", ".join(f"{k} {v:,}" for k, v in rejected.items() if v) or "0")
    if "last_commit_ms" in body:
        w.add_row("last commit", f"{body['last_commit_ms']} ms")
    lag = body.get("lag") or {}
    stream = body.get("stream_time") or {}
    for part in sorted({*lag, *stream}, key=lambda p: int(p)):
        w.add_row(f"partition {part}",
                  f"lag {lag.get(part, '-')} records, stream time {_time(stream.get(part))}")
    if body.get("last_error"):
        w.add_row("last error", f"[red]{body['last_error']}[/]")
    return w


def _safe(call: Any) -> dict[str, Any]:
    try:
        return dict(call())
    except Exception as exc:  # a status page reports, never raises
        return {"ok": False, "error": f"{type(exc).__name__}: {exc}"}


def span(ms: int) -> str:
    """A lag for people: ``3 d 4 h``, ``12 min 5 s``, ``850 ms``."""
    ms = max(0, int(ms))
    if ms < 1000:
        return f"{ms} ms"
    s = ms // 1000
    for unit, size, sub, sub_size in (("d", 86400, "h", 3600), ("h", 3600, "min", 60),
                                      ("min", 60, "s", 1)):
        if s >= size:
            return f"{s // size:,} {unit} {(s % size) // sub_size} {sub}"
    return f"{s} s"


def _time(ms: int | None) -> str:
    return "-" if ms is None else (format_ms(ms) or "-")[:19].replace("T", " ")
