"""Worker metrics (record_batch, the health port's /metrics) and ``sessionize status``."""

from __future__ import annotations

import socket
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from sessionize import metrics
from sessionize.cli import main
from sessionize.health import serve_health
from sessionize.worker import Health
from tests.realrun import RealRun


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _value(text: str, name: str) -> float:
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[-1])
    raise AssertionError(f"{name} not in the metrics:\n{text}")


def test_record_batch_updates_the_worker_metrics_served_on_the_health_port() -> None:
    h = Health(partitions=[0, 1], events=100, counted=90, rejected={"late": 7, "duplicate": 3},
               lag={0: 5, 1: 0}, stream_time={0: 1_569_888_000_000, 1: None})
    before = metrics.render_worker().decode()
    base_events = _value(before, "sessionize_worker_events_total")
    metrics.record_batch(h, 0.02, active_sessions=12)
    h.events, h.counted, h.rejected = 150, 135, {"late": 12, "duplicate": 3}
    h.lag = {0: 1}
    h.partitions = [0]
    metrics.record_batch(h, 0.3)

    port = _free_port()
    server = serve_health("127.0.0.1", port, lambda: (h.ok, h.as_dict()))
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
            assert r.headers["Content-Type"].startswith("text/plain")
            text = r.read().decode()
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=5) as r:
            assert r.status == 200
    finally:
        server.shutdown()
    assert _value(text, "sessionize_worker_events_total") - base_events == 150
    assert 'sessionize_worker_rejected_total{reason="late"}' in text
    assert _value(text, "sessionize_worker_active_sessions") == 12
    assert 'sessionize_worker_lag{partition="0"} 1.0' in text
    assert 'sessionize_worker_lag{partition="1"}' not in text  # revoked: its gauge is gone
    assert 'sessionize_worker_commit_seconds_bucket{le="0.025"}' in text
    assert _value(text, "sessionize_worker_commit_seconds_count") >= 2
    assert 'sessionize_worker_up{dependency="kafka"} 1.0' in text


def test_status_prints_the_store_at_a_glance(real_run: RealRun, capsys: pytest.CaptureFixture
                                             ) -> None:
    assert main(["status", "--db", str(real_run.store.path)]) == 0
    out = capsys.readouterr().out
    assert "1,753" in out and "4,999" in out
    for word in ("closed", "rejected events by reason", "late", "partitions", "2019-10-01 02:28"):
        assert word in out, word


def test_status_with_a_worker_reports_its_health_and_fails_when_unhealthy(
        real_run: RealRun, capsys: pytest.CaptureFixture) -> None:
    h = Health(partitions=[3], batches=4, events=1234, counted=1200, rejected={"late": 34},
               lag={3: 17}, stream_time={3: 1_569_888_000_000})
    port = _free_port()
    server = serve_health("127.0.0.1", port, lambda: (h.ok, h.as_dict()))
    try:
        assert main(["status", "--db", str(real_run.store.path),
                     "--worker", f"http://127.0.0.1:{port}"]) == 0
        out = capsys.readouterr().out
        assert "1,234" in out and "lag 17 records" in out and "late 34" in out
        h.kafka_ok, h.last_error = False, "broker down"
        assert main(["status", "--db", str(real_run.store.path),
                     "--worker", f"127.0.0.1:{port}"]) == 1
        out = capsys.readouterr().out
        assert "DOWN" in out and "broker down" in out
    finally:
        server.shutdown()
    assert main(["status", "--db", str(real_run.store.path),
                 "--worker", f"http://127.0.0.1:{_free_port()}"]) == 1
    assert "unreachable" in capsys.readouterr().out


def test_status_of_a_missing_store_is_an_error(tmp_path: Path, capsys: Any) -> None:
    assert main(["status", "--db", str(tmp_path / "nope.db")]) == 2
    assert "does not exist" in " ".join(capsys.readouterr().err.split())
