"""A tiny HTTP endpoint for a worker's health, on its own thread (stdlib only).

``GET /health`` answers 200 with the worker's status when PostgreSQL, Redis and Kafka are all
reachable and 503 with the same JSON when one is not, so a supervisor or a load balancer can
act on it. ``GET /metrics`` serves the worker's Prometheus metrics (``sessionize.metrics``,
updated by ``record_batch`` after each batch). The worker loop writes the status; this thread
only reads it.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import orjson


def serve_health(host: str, port: int, status: Callable[[], tuple[bool, dict[str, Any]]]
                 ) -> ThreadingHTTPServer:
    """Start serving ``status()`` at ``http://host:port/health`` in a daemon thread."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            route = self.path.split("?")[0]
            if route == "/metrics":
                from sessionize.metrics import CONTENT_TYPE, render_worker

                self._send_bytes(200, render_worker(), CONTENT_TYPE)
                return
            if route != "/health":
                self._send(404, {"error": "not_found", "detail": "try /health or /metrics"})
                return
            ok, body = status()
            self._send(200 if ok else 503, body)

        def _send(self, code: int, body: dict[str, Any]) -> None:
            self._send_bytes(code, orjson.dumps(body, option=orjson.OPT_NON_STR_KEYS),
                             "application/json")

        def _send_bytes(self, code: int, data: bytes, content_type: str) -> None:
            self.send_response(code)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args: object) -> None:  # keep the worker's log for the worker
            return

    server = ThreadingHTTPServer((host, port), Handler)
    threading.Thread(target=server.serve_forever, name="health", daemon=True).start()
    return server
