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
