"""The HTTP API over a SqliteStore filled by the real engine from real events."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from fastapi.testclient import TestClient

from sessionize.api import create_app
from sessionize.engine import EngineConfig, Event, SessionEngine
from sessionize.errors import StoreError
from sessionize.stores.sqlite import SqliteStore
from tests.realrun import RealRun, expected_sessions, parse_utc

T0 = parse_utc("2019-10-01 00:00:00 UTC")
MIN = 60_000
ODD_KEY = "10.0.0.1|Mozilla/5.0 (X11; Linux x86_64) Gecko/20100101"


def iso(ms: int) -> str:
    """Independent of the app's formatter: what an ISO-8601 UTC string with ms looks like."""
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="milliseconds")[:-6] + "Z"


def walk(client: TestClient, key: str, limit: int) -> list[dict[str, Any]]:
    out, cursor = [], None
    while True:
        params: dict[str, Any] = {"limit": limit} | ({"cursor": cursor} if cursor else {})
        body = client.get(f"/users/{key}/sessions", params=params).json()
        out += body["sessions"]
        cursor = body["next_cursor"]
        if cursor is None:
            return out


@pytest.fixture(scope="module")
def client(real_run: RealRun) -> TestClient:
    return TestClient(create_app(real_run.store))


@pytest.fixture(scope="module")
def unflushed_client(unflushed_run: RealRun) -> TestClient:
    return TestClient(create_app(unflushed_run.store))


@pytest.fixture
def odd_client(tmp_path: Path) -> Iterator[TestClient]:
    """A store holding sessions of a key with spaces, slashes, '|' and parentheses."""
    store = SqliteStore(tmp_path / "odd.db")
    engine = SessionEngine(EngineConfig(gap_ms=10 * MIN))
    events = [Event(key=ODD_KEY, ts=T0 + m * MIN, type="view") for m in (0, 5, 40)]
    store.apply(1, 0, engine.process(events[:2]))
    store.apply(1, 0, engine.process(events[2:]))
    yield TestClient(create_app(store))
    store.close()


def assert_error(response: Any, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert set(body) == {"error", "detail"} and body["error"] == code
    return body


# ---------------------------------------------------------------------- health and docs


def test_health_reports_the_store(client: TestClient, real_run: RealRun) -> None:
    body = client.get("/health").json()
    assert body["status"] == "ok" and body["store"] == "sqlite"
    assert body["sessions"] == len(real_run.finals)


class BrokenStore:
    """A store whose every read fails, as a store on a vanished disk would."""

    def __getattr__(self, name: str) -> Any:
        def fail(*args: Any) -> Any:
            raise StoreError("reading /gone/s.db failed: disk I/O error")
        return fail


def test_a_failing_store_answers_503_json() -> None:
    broken = TestClient(create_app(BrokenStore()))  # type: ignore[arg-type]
    health = broken.get("/health")
    assert health.status_code == 503
    assert health.json()["error"] == "store_unavailable" and "disk I/O" in health.json()["detail"]
    assert_error(broken.get("/stats/summary"), 503, "store_unavailable")


def test_docs_and_openapi_are_served(client: TestClient) -> None:
    assert client.get("/docs").status_code == 200
    paths = client.get("/openapi.json").json()["paths"]
    assert {"/health", "/users/{key}/sessions", "/users/{key}/sessions/active",
            "/sessions/{session_id}", "/stats/summary", "/stats/rejected"} <= set(paths)


# ---------------------------------------------------------------------- sessions


def test_one_session_by_id_with_iso_and_epoch_times(client: TestClient,
                                                    real_run: RealRun) -> None:
    final = max(real_run.finals, key=lambda f: f["event_count"])
    body = client.get(f"/sessions/{final['session_id']}").json()
    for name in ("start", "end", "expires"):
        assert body[f"{name}_ms"] == final[name]
        assert body[name] == iso(final[name])
    assert {k: v for k, v in body.items() if k not in ("start", "end", "expires")} == {
        k: v for k, v in final.items() if k not in ("start", "end", "expires")
    } | {"start_ms": final["start"], "end_ms": final["end"], "expires_ms": final["expires"]}


def test_unknown_session_and_route_are_404_json(client: TestClient) -> None:
    body = assert_error(client.get("/sessions/nope"), 404, "not_found")
    assert body["detail"] == "no session with id 'nope'"
    assert_error(client.get("/no/such/route"), 404, "not_found")


def test_user_sessions_match_independent_sessions_across_pages(client: TestClient,
                                                               real_run: RealRun) -> None:
    expected = expected_sessions(real_run.rows)
    for user in [u for u, ss in expected.items() if len(ss) > 1]:
        got = walk(client, user, 1)
        assert [(s["start_ms"], s["end_ms"], s["event_count"]) for s in got] == expected[user][::-1]
        assert len({s["session_id"] for s in got}) == len(got)
        assert all(s["key"] == user and s["status"] == "closed" for s in got)


def test_user_sessions_range_accepts_iso_with_offset_and_epoch_ms(client: TestClient,
                                                                  real_run: RealRun) -> None:
    expected = expected_sessions(real_run.rows)
    user = next(u for u, ss in expected.items() if len(ss) > 1)
    (_, first_end, _), (second_start, _, _) = expected[user][:2]
    as_iso = datetime.fromtimestamp(first_end / 1000, UTC).astimezone().isoformat()
    for lo in (str(first_end), as_iso, iso(first_end)):
        body = client.get(f"/users/{user}/sessions",
                          params={"from": lo, "to": str(second_start)}).json()
        assert [s["end_ms"] for s in body["sessions"]] == [first_end]


def test_active_sessions_show_derived_status(unflushed_client: TestClient,
                                             unflushed_run: RealRun, client: TestClient) -> None:
    by_status: dict[str, dict[str, Any]] = {}
    for r in unflushed_run.open_records:
        by_status.setdefault(r["status"], r)
    assert set(by_status) == {"open", "inactive"}
    for status, record in by_status.items():
        body = unflushed_client.get(f"/users/{record['key']}/sessions/active").json()
        mine = [s for s in body["sessions"] if s["session_id"] == record["session_id"]]
        assert body["key"] == record["key"] and mine[0]["status"] == status
        assert client.get(f"/users/{record['key']}/sessions/active").json()["sessions"] == []


def test_a_key_with_spaces_and_slashes(odd_client: TestClient) -> None:
    for path_key in (ODD_KEY, quote(ODD_KEY, safe="")):
        body = odd_client.get(f"/users/{path_key}/sessions").json()
        assert body["key"] == ODD_KEY
        assert [s["event_count"] for s in body["sessions"]] == [1, 2]
        active = odd_client.get(f"/users/{path_key}/sessions/active").json()
        assert active["key"] == ODD_KEY and len(active["sessions"]) == 2


# ---------------------------------------------------------------------- statistics


def test_summary_over_a_range_in_both_time_forms(client: TestClient, real_run: RealRun) -> None:
    lo, hi = T0 + 30 * MIN, T0 + 90 * MIN
    by_ms = client.get("/stats/summary", params={"from": lo, "to": hi}).json()
    by_iso = client.get("/stats/summary", params={"from": "2019-10-01T02:30:00+02:00",
                                                  "to": "2019-10-01T01:30:00Z"}).json()
    assert by_ms == by_iso
    assert (by_ms["from"], by_ms["to_ms"]) == ("2019-10-01T00:30:00.000Z", hi)
    chosen = [f for f in real_run.finals if lo <= f["start"] < hi]
    assert by_ms["sessions"] == len(chosen)
    assert by_ms["users"] == len({f["key"] for f in chosen})
    assert by_ms["revenue"] == pytest.approx(sum(f["revenue"] for f in chosen))


def test_rejected_counts_every_reason(client: TestClient) -> None:
    body = client.get("/stats/rejected").json()
    assert body["rejected"] == {"late": 0, "duplicate": 0, "no_key": 0, "malformed": 0,
                                "future": 0, "no_gap": 0}
    assert body["total"] == 0


# ---------------------------------------------------------------------- bad input


@pytest.mark.parametrize("bad", ["yesterday", "2019-13-01T00:00:00Z", "inf", "1e30"])
def test_a_bad_time_is_400_naming_the_accepted_forms(client: TestClient, bad: str) -> None:
    body = assert_error(client.get("/stats/summary", params={"from": bad}), 400, "bad_time")
    assert "ISO-8601" in body["detail"] and "epoch milliseconds" in body["detail"]


def test_from_after_to_is_400(client: TestClient) -> None:
    assert_error(client.get("/stats/rejected", params={"from": T0 + 1, "to": T0}), 400,
                 "bad_range")


@pytest.mark.parametrize("limit", ["0", "1001", "ten"])
def test_a_bad_limit_is_400(client: TestClient, limit: str) -> None:
    body = assert_error(client.get("/users/u/sessions", params={"limit": limit}), 400,
                        "bad_request")
    assert body["detail"].startswith("limit:")


def test_a_bad_cursor_is_400(client: TestClient) -> None:
    assert_error(client.get("/users/u/sessions", params={"cursor": "not-a-cursor"}), 400,
                 "bad_cursor")
