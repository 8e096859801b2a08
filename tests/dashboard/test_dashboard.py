"""The dashboard in a real headless Chromium (Debian's, driven by playwright; no browser
download): served by the real app over the store the REES46 demo run fills, it must render its
counters and charts with the real numbers, build a funnel that agrees with the API, and show a
user's sessions with their paths. A screenshot is saved to tests/dashboard/artifacts/.

Chromium comes from ``scripts/install-browser.sh``. Without it the tests skip on a developer's
machine and FAIL when ``CI`` is set.
"""

from __future__ import annotations

import os
import shutil
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn

from sessionize.api import create_app
from sessionize.cli import main
from sessionize.stores.columnar import ColumnarAnalytics
from sessionize.stores.sqlite import SqliteStore

CHROMIUM = os.environ.get("SESSIONIZE_CHROMIUM", "/usr/bin/chromium")
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]
ARTIFACTS = Path(__file__).parent / "artifacts"
REPO = Path(__file__).resolve().parents[2]
HINT = "install Debian's chromium with scripts/install-browser.sh (and pip install -e '.[test]')"


def _need_browser() -> Any:
    missing = []
    if not Path(CHROMIUM).exists():
        missing.append(f"chromium ({CHROMIUM})")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        missing.append("the playwright Python package")
        sync_playwright = None
    if missing:
        message = f"{' and '.join(missing)} not found: {HINT}"
        if os.environ.get("CI"):
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    return sync_playwright


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def demo_store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SqliteStore]:
    folder = tmp_path_factory.mktemp("demo")
    assert main(["demo", "--no-serve", "--dir", str(folder)]) == 0
    store = SqliteStore(folder / "demo.db")
    yield store
    store.close()


@pytest.fixture(scope="module")
def server(demo_store: SqliteStore) -> Iterator[str]:
    """The real app under uvicorn on a free loopback port, in a thread, reading the analytics
    from the columnar copy as ``sessionize serve`` does."""
    port = _free_port()
    reads = ColumnarAnalytics(demo_store)
    assert reads.refresh()
    config = uvicorn.Config(create_app(reads), host="127.0.0.1", port=port,
                            log_level="warning")
    srv = uvicorn.Server(config)
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{base}/health", timeout=1).status_code == 200:
                break
        except httpx.HTTPError:
            time.sleep(0.1)
    else:
        raise AssertionError("the API did not start")
    yield base
    srv.should_exit = True
    thread.join(10)


@pytest.fixture(scope="module")
def page(server: str) -> Iterator[Any]:
    sync_playwright = _need_browser()
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        context = browser.new_context(viewport={"width": 1360, "height": 1700},
                                      timezone_id="UTC")
        pg = context.new_page()
        errors: list[str] = []
        pg.on("pageerror", lambda exc: errors.append(str(exc)))
        requests: list[str] = []
        pg.on("request", lambda req: requests.append(req.url))
        pg.goto(f"{server}/?tz=UTC", wait_until="domcontentloaded")
        pg.wait_for_selector("body[data-loaded='true']", timeout=20_000)
        pg.errors = errors  # type: ignore[attr-defined]
        pg.requests = requests  # type: ignore[attr-defined]
        yield pg
        context.close()
        browser.close()


def test_counters_and_charts_render_the_real_numbers(page: Any, server: str) -> None:
    assert page.errors == []
    assert all(u.startswith(server) for u in page.requests), page.requests  # nothing external
    assert page.inner_text("#c-sessions") == "1,753"
    assert page.inner_text("#c-users") == "1,747"
    summary = httpx.get(f"{server}/stats/summary").json()
    assert page.inner_text("#c-bounce") == f"{summary['bounce_rate'] * 100:.1f} %"

    ts = page.locator("#chart-timeseries")
    buckets = httpx.get(f"{server}/analytics/timeseries?interval=hour&tz=UTC").json()["buckets"]
    assert int(ts.get_attribute("data-bars")) == len(buckets) > 0
    assert int(ts.get_attribute("data-total")) == 1753
    assert ts.locator("rect.bar").count() == len(buckets)
    assert int(ts.get_attribute("data-points")) == len(buckets)
    heights = [float(h) for h in ts.locator("rect.bar").evaluate_all(
        "els => els.map(e => e.getAttribute('height'))")]
    assert sum(h > 0 for h in heights) == sum(b["sessions"] > 0 for b in buckets)

    for chart, metric in (("#chart-length", "duration"), ("#chart-events", "events")):
        el = page.locator(chart)
        bins = httpx.get(f"{server}/analytics/histogram?metric={metric}").json()["bins"]
        assert el.locator("rect.bar").count() == len(bins)
        assert int(el.get_attribute("data-total")) == 1753
        values = el.locator("rect.bar").evaluate_all("els => els.map(e => +e.dataset.value)")
        assert values == [b["sessions"] for b in bins]

    top = httpx.get(f"{server}/analytics/top-pages?kind=entry&limit=10").json()["rows"]
    cells = page.locator("#top-pages tbody tr td:first-child").all_inner_texts()
    assert cells == [r["page"] for r in top]
    assert page.locator("#pages-more").is_visible()  # more than 10 entry pages: paged
    page.click("#pages-more")
    page.wait_for_function("document.querySelectorAll('#top-pages tbody tr').length > 10")

    assert page.inner_text("#c-active") == "0"  # the demo run ends with every session closed
    assert page.locator("#partitions tbody tr").count() == 1


def test_a_funnel_built_in_the_page_matches_the_api(page: Any, server: str) -> None:
    page.fill("#funnel-steps", "view > cart > purchase")
    page.click("#funnel-build")
    page.wait_for_selector("#funnel .funnel-step[data-step='3']")
    api = httpx.get(f"{server}/analytics/funnel",
                    params={"steps": "view>cart>purchase"}).json()["steps"]
    shown = page.locator("#funnel .funnel-step").evaluate_all(
        "els => els.map(e => [e.querySelector('.name').textContent, +e.dataset.sessions, "
        "e.querySelector('.count').textContent])")
    assert [(n, s) for n, s, _ in shown] == [(f"{a['step']}. {a['type']}", a["sessions"])
                                             for a in api]
    assert [c for _, _, c in shown] == [f"{a['sessions']:,}" for a in api]
    assert api[0]["sessions"] == 1753 and api[2]["sessions"] > 0

    page.fill("#funnel-steps", "cart > purchase")
    page.click("#funnel-build")
    page.wait_for_function("document.querySelectorAll('#funnel .funnel-step').length === 2")
    api2 = httpx.get(f"{server}/analytics/funnel", params={"steps": "cart>purchase"}).json()
    assert page.locator("#funnel .funnel-step").evaluate_all(
        "els => els.map(e => +e.dataset.sessions)") == [s["sessions"] for s in api2["steps"]]
    page.fill("#funnel-steps", "view")
    page.click("#funnel-build")
    page.wait_for_selector("#error:not([hidden])")
    assert "2 to 10 steps" in page.inner_text("#error")
    page.fill("#funnel-steps", "view > cart > purchase")
    page.click("#funnel-build")
    page.wait_for_selector("#error[hidden]", state="attached")


def test_user_lookup_shows_the_users_sessions_and_paths(page: Any, server: str,
                                                        demo_store: SqliteStore) -> None:
    def interesting(key: str) -> tuple[int, int]:  # several sessions, and a purchase
        mine = demo_store.user_sessions(key, None, None, 10, None)[0]
        return min(len(mine), 2), sum(s["conversions"] > 0 for s in mine)

    key = max((r["key"] for r in demo_store.top_keys(50)), key=interesting)
    assert interesting(key) >= (2, 1)
    sessions = demo_store.user_sessions(key, None, None, 50, None)[0]
    page.fill("#user-key", key)
    page.click("#user-go")
    page.wait_for_selector(f"#user[data-key='{key}'] .session")
    shown = page.locator("#user .session").evaluate_all(
        "els => els.map(e => [e.dataset.sessionId, "
        "[...e.querySelectorAll('.step[data-type]')].map(s => s.dataset.type)])")
    assert shown == [[s["session_id"], s["path"]] for s in sessions]
    assert "+" in page.locator("#user .session .step i").first.inner_text()  # time since start

    ARTIFACTS.mkdir(exist_ok=True)
    page.evaluate("window.scrollTo(0, 0)")
    shot = ARTIFACTS / "dashboard.png"
    page.screenshot(path=str(shot), full_page=True)
    assert shot.stat().st_size > 50_000
    if os.environ.get("SESSIONIZE_UPDATE_SCREENSHOT"):
        shutil.copyfile(shot, REPO / "docs" / "dashboard.png")


def test_the_page_refreshes_itself(page: Any) -> None:
    stamp = page.inner_text("#updated")
    page.wait_for_function(f"document.getElementById('updated').textContent !== {stamp!r}",
                           timeout=15_000)
