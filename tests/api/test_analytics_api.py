"""The analytics routes, /live, /metrics and the dashboard's files, over a SqliteStore filled by
the real engine from the REES46 events (the store's own answers are checked against
independent computations in tests/stores/test_analytics.py; here: wiring, shapes, paging and
every bad input as a 400 JSON error)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from sessionize.api import create_app
from sessionize.api.analytics import LiveRates
from sessionize.engine import EngineConfig
from sessionize.stores.sqlite import SqliteStore
from tests.realrun import GAP_MS, RealRun, parse_utc, run_into
from tests.stores.test_analytics import rees46_events

T0 = parse_utc("2019-10-01 00:00:00 UTC")
MIN = 60_000


@pytest.fixture(scope="module")
def shop(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RealRun]:
    store = SqliteStore(tmp_path_factory.mktemp("api-shop") / "s.db")
    run = run_into(store, rees46_events(), EngineConfig(gap_ms=GAP_MS))
    yield run
    store.close()


@pytest.fixture(scope="module")
def client(shop: RealRun) -> TestClient:
    return TestClient(create_app(shop.store))


def ok(client: TestClient, url: str, **params: Any) -> dict[str, Any]:
    r = client.get(url, params=params)
    assert r.status_code == 200, r.text
    return r.json()


def assert_400(client: TestClient, url: str, code: str, match: str = "", **params: Any) -> str:
    r = client.get(url, params=params)
    assert r.status_code == 400, r.text
    body = r.json()
    assert set(body) == {"error", "detail"} and body["error"] == code, body
    assert re.search(match, body["detail"]), body["detail"]
    return body["detail"]


# ---------------------------------------------------------------------- answers


def test_funnel_route_answers_as_the_store(client: TestClient, shop: RealRun) -> None:
    body = ok(client, "/analytics/funnel", steps="view > cart > purchase")
    want = shop.store.funnel(["view", "cart", "purchase"], None, None)
    assert {k: body[k] for k in want} == want
    assert [s["type"] for s in body["steps"]] == ["view", "cart", "purchase"]
    assert body["from"] is None and body["to_ms"] is None
    repeated = client.get("/analytics/funnel?steps=view&steps=cart&from=2019-10-01T00:30:00Z"
                          "&to=1569897000000").json()
    assert repeated["from_ms"] == T0 + 30 * MIN and repeated["to_ms"] == 1569897000000
    assert repeated["steps"] == shop.store.funnel(["view", "cart"], T0 + 30 * MIN,
                                                  1569897000000)["steps"]


def test_timeseries_route(client: TestClient, shop: RealRun) -> None:
    body = ok(client, "/analytics/timeseries", interval="hour", tz="Asia/Kolkata")
    assert body["buckets"] == shop.store.timeseries("hour", "Asia/Kolkata", None, None)["buckets"]
    assert body["buckets"][0]["start"].endswith("+05:30")
    assert sum(b["sessions"] for b in body["buckets"]) == 1753
    assert ok(client, "/analytics/timeseries")["interval"] == "day"  # defaults: day, UTC
    assert ok(client, "/analytics/timeseries")["buckets"][0]["start"] == "2019-10-01T00:00:00Z"


def test_histogram_route_with_edges_in_duration_words(client: TestClient) -> None:
    body = ok(client, "/analytics/histogram", metric="duration", edges="10s,1m,5m")
    assert [(b["lo"], b["hi"]) for b in body["bins"]] == [
        (0, 10_000), (10_000, 60_000), (60_000, 300_000), (300_000, None)]
    assert body["sessions"] == 1753 and body["unit"] == "ms"
    events = ok(client, "/analytics/histogram", metric="events", edges="2,3")
    assert [b["hi"] for b in events["bins"]] == [2, 3, None]
    assert events["bins"][0]["sessions"] == ok(client, "/stats/summary")["sessions"] - sum(
        b["sessions"] for b in events["bins"][1:])


def test_top_pages_and_conversion_are_paged(client: TestClient, shop: RealRun) -> None:
    for url, params in (("/analytics/top-pages", {"kind": "exit"}),
                        ("/analytics/conversion", {"by": "campaign"})):
        rows, cursor, pages = [], None, 0
        while True:
            body = ok(client, url, limit=40, **params, **({"cursor": cursor} if cursor else {}))
            rows += body["rows"]
            pages += 1
            cursor = body["next_cursor"]
            if cursor is None:
                break
        assert pages > 3
        name = "page" if "kind" in params else "value"
        values = [r[name] for r in rows]
        assert len(values) == len(set(values))
        counts = [r["sessions"] for r in rows]
        assert counts == sorted(counts, reverse=True)
        assert sum(counts) + body["without_value"]["sessions"] == 1753


def test_live_route_turns_counters_into_rates(client: TestClient) -> None:
    first = ok(client, "/live")
    assert first["sessions"]["closed"] == 1753 and first["active_sessions"] == 0
    assert first["counted"] == 4999
    assert first["last_start_ms"] > first["first_start_ms"] >= T0
    rates = LiveRates()
    base = {"counted": 100, "rejected": {"late": 1, "malformed": 0}}
    assert rates.add(base, now=10.0)["events_per_second"] is None
    got = rates.add({"counted": 300, "rejected": {"late": 5, "malformed": 2}}, now=12.0)
    assert got["events_per_second"] == pytest.approx((200 + 4 + 2) / 2)
    assert got["rejected_per_second"] == {"late": 2.0, "malformed": 1.0}
    assert got["rate_window_s"] == 2.0
    assert rates.add({"counted": 0, "rejected": {}}, now=13.0)["events_per_second"] is None
    assert rates.add({"counted": 50, "rejected": {}}, now=40.0)["events_per_second"] == \
        pytest.approx(50 / 27)
    assert rates.add({"counted": 60, "rejected": {}}, now=200.0)["events_per_second"] is None


def test_metrics_route(client: TestClient) -> None:
    r = client.get("/metrics")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    text = r.text
    assert 'sessionize_sessions{status="closed"} 1753.0' in text
    assert 'sessionize_sessions{status="open"} 0.0' in text
    assert 'sessionize_rejected_events_total{reason="late"} 0.0' in text
    assert "sessionize_counted_events_total 4999.0" in text
    assert re.search(r'sessionize_stream_time_ms\{partition="0"\} 1\.5698\d+e\+12', text)


def test_the_dashboard_and_its_assets_are_served_without_external_urls(client: TestClient) -> None:
    page = client.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    html = page.text
    assets = re.findall(r'(?:src|href)="([^"]+)"', html)
    assert "/static/dashboard.js" in assets and "/static/dashboard.css" in assets
    for url in assets:
        assert not url.startswith(("http:", "https:", "//")), url  # no CDN: works offline
    for asset in ("/static/dashboard.js", "/static/dashboard.css"):
        r = client.get(asset)
        assert r.status_code == 200 and len(r.content) > 1000
        assert "http://" not in r.text.replace("http://www.w3.org/2000/svg", "")
    static = Path(__file__).resolve().parents[2] / "src/sessionize/api/static"
    assert {p.name for p in static.iterdir()} >= {"index.html", "dashboard.js", "dashboard.css"}


def test_openapi_lists_the_analytics_routes(client: TestClient) -> None:
    paths = client.get("/openapi.json").json()["paths"]
    assert {"/analytics/funnel", "/analytics/timeseries", "/analytics/histogram",
            "/analytics/top-pages", "/analytics/conversion", "/live", "/metrics"} <= set(paths)


# ---------------------------------------------------------------------- bad input


def test_an_unknown_time_zone_is_400_with_suggestions(client: TestClient) -> None:
    detail = assert_400(client, "/analytics/timeseries", "bad_tz", "Europe/Berlin",
                        tz="Europe/Berln")
    assert "IANA" in detail
    for bad in ("../../etc/passwd", "/etc/localtime", "", "Not/AZone", "UTC "):
        assert_400(client, "/analytics/timeseries", "bad_tz", "time zone", tz=bad)


@pytest.mark.parametrize(("url", "params", "code", "match"), [
    ("/analytics/timeseries", {"interval": "week"}, "bad_request", "interval"),
    ("/analytics/timeseries", {"interval": "hour", "from": "2000-01-01T00:00:00Z",
                               "to": "2019-01-01T00:00:00Z"}, "bad_range", "too many"),
    ("/analytics/timeseries", {"from": "2019-10-02", "to": "2019-10-01"}, "bad_range", "after"),
    ("/analytics/funnel", {}, "bad_request", "steps"),
    ("/analytics/funnel", {"steps": "view"}, "bad_steps", "2 to 10 steps"),
    ("/analytics/funnel", {"steps": "view>>cart"}, "bad_steps", "empty"),
    ("/analytics/funnel", {"steps": ">".join(["view"] * 11)}, "bad_steps", "2 to 10"),
    ("/analytics/funnel", {"steps": "view>cart", "from": "yesterday"}, "bad_time", "ISO-8601"),
    ("/analytics/histogram", {"metric": "revenue"}, "bad_request", "metric"),
    ("/analytics/histogram", {"edges": "10s,5s"}, "bad_edges", "increasing"),
    ("/analytics/histogram", {"edges": "ten"}, "bad_edges", "not a duration"),
    ("/analytics/histogram", {"metric": "events", "edges": "1.5"}, "bad_edges", "count"),
    ("/analytics/histogram", {"metric": "events", "edges": "0,2"}, "bad_edges", "positive"),
    ("/analytics/histogram", {"edges": ",".join(str(i) for i in range(1, 40))}, "bad_edges",
     "1 to 30"),
    ("/analytics/top-pages", {"kind": "middle"}, "bad_request", "kind"),
    ("/analytics/top-pages", {"limit": 0}, "bad_request", "limit"),
    ("/analytics/top-pages", {"limit": 5000}, "bad_request", "limit"),
    ("/analytics/top-pages", {"cursor": "not-a-cursor"}, "bad_cursor", "next_cursor"),
    ("/analytics/conversion", {"by": "user_agent"}, "bad_request", "by"),
    ("/analytics/conversion", {"cursor": "WzEsMl0"}, "bad_cursor", "cursor"),
])
def test_bad_input_is_a_400_json_error(client: TestClient, url: str, params: dict[str, Any],
                                       code: str, match: str) -> None:
    assert_400(client, url, code, match, **params)


def test_user_text_never_reaches_sql(client: TestClient, shop: RealRun) -> None:
    """Quotes and SQL in every free-text parameter are just values."""
    sneaky = "view'); DROP TABLE sessions; --"
    body = ok(client, "/analytics/funnel", steps=f"{sneaky}>cart")
    assert [s["sessions"] for s in body["steps"]] == [0, 0]
    cursor = ok(client, "/analytics/top-pages", limit=1)["next_cursor"]
    assert cursor
    assert shop.store.health()["sessions"] == 1753
