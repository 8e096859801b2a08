"""The bench runs (correctness only, never timings): the generator, the engine figure at a tiny
size, the JSON it writes, and the backfill figure's check that sessionize.backfill, DuckDB and
plain Polars produce the same sessions."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime

import polars as pl
import pytest

pytest.importorskip("duckdb", reason="the bench extra is not installed (pip install -e '.[bench]')")
pytest.importorskip("pyarrow", reason="the bench extra is not installed (pip install -e '.[bench]')")

from bench import batch, engine
from bench.__main__ import table, write_result
from bench.common import machine
from bench.generate import Spec, generate, write_jsonl, write_parquet

FIGURE_KEYS = {"name", "value", "unit", "baseline", "baseline_value", "ratio", "target", "met",
               "note", "details"}


def test_generator_is_deterministic_and_disordered(tmp_path):
    spec = Spec(events=5_000, seed=3)
    a, b = generate(spec), generate(spec)
    assert a.equals(b) and len(a) == 5_000
    assert a["user_id"].n_unique() > 100
    assert set(a["type"].unique()) <= {"view", "cart", "purchase"}
    assert not a["ts"].is_sorted()  # arrival order is not event-time order
    assert a["event_id"].n_unique() < len(a)  # a few re-delivered duplicates
    in_order = generate(replace(spec, disorder=0, late=0, duplicates=0))
    assert in_order["ts"].is_sorted()
    jsonl, parquet = write_jsonl(a, tmp_path / "e.jsonl"), write_parquet(a, tmp_path / "e.parquet")
    assert len(jsonl.read_text().splitlines()) == 5_000
    assert pl.read_parquet(parquet)["user_id"].equals(a["user_id"])


def test_engine_and_backfill_figures_write_the_expected_json(tmp_path):
    figures = engine.figures(quick=True, n=3_000, n_mem=2_000)
    figures += batch.figures(quick=True, n=20_000, workdir=tmp_path)
    out = tmp_path / "latest.json"
    result = write_result(figures, True, out, datetime.now(UTC), machine(), 1.0)
    data = json.loads(out.read_text())
    assert data == json.loads(json.dumps(result, default=str))
    assert {"started", "quick", "seconds", "machine", "figures"} <= set(data)
    assert {"nproc", "cpu_model", "memory_bytes"} <= set(data["machine"])
    names = [f["name"] for f in data["figures"]]
    assert sum("engine throughput" in n for n in names) == 3
    assert any("memory per open session" in n for n in names)
    for f in data["figures"]:
        assert set(f) >= FIGURE_KEYS
        assert f["value"] is not None, f
    backfills = [f for f in data["figures"] if f["name"].startswith("backfill")]
    assert len(backfills) == 2
    for f in backfills:
        # sessionize.backfill, DuckDB SQL and plain Polars: same count and checksum
        assert all(f["details"]["sessions_identical"].values()), f["details"]
        counts = {r["count"] for r in f["details"]["runs"].values()}
        assert len(counts) == 1 and counts.pop() > 1_000
    assert "| figure" in table(figures)


def _figure(name, group, value=1.0, **kw):
    from bench.common import Figure

    return Figure(name=name, value=value, unit="ms", target="< 200 ms", met=True, group=group, **kw)


def test_partial_runs_merge_into_the_result_file(tmp_path):
    out = tmp_path / "latest.json"
    now = datetime.now(UTC)
    write_result([_figure("engine a", "engine"), _figure("lookup b", "lookup")], False, out, now,
                 machine(), 1.0)
    write_result([_figure("lookup c", "lookup", 2.0)], False, out, now, machine(), 1.0, merge=True)
    data = json.loads(out.read_text())
    assert [f["name"] for f in data["figures"]] == ["engine a", "lookup c"]
    assert set(data["sets"]) == {"engine", "lookup"}
    # a quick run never mixes with a full run's file
    write_result([_figure("lookup d", "lookup")], True, out, now, machine(), 1.0, merge=True)
    assert [f["name"] for f in json.loads(out.read_text())["figures"]] == ["lookup d"]


def test_quick_writes_quick_json_not_latest(monkeypatch, tmp_path):
    import bench.__main__ as main

    seen = {}

    def fake_write(figures, quick, out, *args, **kwargs):
        seen["out"] = out
        return {"figures": figures, "seconds": 0}

    monkeypatch.setattr(main, "RESULTS", tmp_path)
    monkeypatch.setattr(main, "collect", lambda quick, only: [_figure("engine a", "engine")])
    monkeypatch.setattr(main, "write_result", fake_write)
    assert main.main(["--quick", "--only", "engine"]) == 0
    assert seen["out"] == tmp_path / "quick.json"


def test_report_renders_every_slot_and_figure(tmp_path):
    from bench import report

    rows = {"summary": {"1 day": {"median": 3.0, "p95": 4.0, "max": 4.0, "calls": 3},
                        "30 days (all)": {"median": 250.0, "p95": 260.0, "max": 260.0,
                                          "calls": 3}},
            "live": {"30 days (all)": {"median": 1.0, "p95": 1.0, "max": 1.0, "calls": 3}}}
    figures = [
        _figure("engine throughput, mild (events/s, 1 core)", "engine", 2e6, baseline="Python",
                baseline_value=4e4, ratio=50.0),
        _figure("end to end Kafka -> engine", "e2e", None, note="failed: no Kafka"),
        _figure("analytics slowest endpoint, SQLite, 20,000 sessions (median ms)", "analytics",
                250.0, details={"store": "sqlite", "sessions": 20_000, "calls_per_point": 3,
                                "ranges": ["1 day", "30 days (all)"], "endpoints": rows,
                                "slowest": {"endpoint": "summary", "range": "30 days (all)",
                                            "median": 250.0, "p95": 260.0, "max": 260.0}}),
    ]
    results = tmp_path / "latest.json"
    write_result(figures, True, results, datetime.now(UTC), machine(), 1.0)
    out = report.write(results, report.RESULTS / "profile.txt", report.TEMPLATE,
                       tmp_path / "performance.md")
    text = out.read_text()
    assert "@@" not in text
    table_lines = [line for line in text.splitlines() if line.startswith("| ")]
    for f in figures:
        assert any(line.startswith(f"| {f.name} ") for line in table_lines), f.name
    assert "| summary | 3.0 | **250.0** |" in text
    with pytest.raises(ValueError, match="NOPE"):
        report.render(json.loads(results.read_text()), "", "@@TABLE@@ @@NOPE@@")
