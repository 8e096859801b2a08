"""The dashboard: one hand-written page (HTML, CSS, vanilla JS; charts on <canvas>) shipped in
the package under ``api/static``, served at ``/`` with its assets at ``/static``. No build step,
no CDN: it works on a machine without internet. The page reads the same JSON endpoints as any
client (``/live``, ``/stats/summary``, ``/analytics/*``, ``/users/{key}/sessions``) and refreshes
itself.
"""

from __future__ import annotations

from importlib import resources

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles
from starlette.responses import FileResponse, Response

STATIC = resources.files("sessionize") / "api" / "static"


def add_dashboard_routes(app: FastAPI) -> None:
    folder = str(STATIC)
    app.mount("/static", StaticFiles(directory=folder), name="static")

    @app.get("/", include_in_schema=False)
    def index() -> Response:
        return FileResponse(f"{folder}/index.html", media_type="text/html",
                            headers={"Cache-Control": "no-cache"})
