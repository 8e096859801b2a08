"""``sessionize backfill`` on the real datasets: the columnar path must give, through the CLI and
into the store, the sessions ``sessionize run --grace unbounded`` gives for the same file
(every field but the session id), with the same accounting of what it rejected and skipped."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import orjson
import polars as pl
import pytest

from sessionize.cli import main
from sessionize.stores.records import SESSION_COLUMNS
from sessionize.stores.sqlite import SqliteStore
from tests.test_cli_real_data import APACHE, EXAMPLES, NASA, REES46, SEC

CASES = [
    ("rees46.toml", REES46),
    ("sec-edgar.toml", SEC),
    ("nasa.toml", NASA),
    ("access-log.toml", APACHE),
]


# every stored field but the ids and the bookkeeping of the write
COMPARED = [c for c in SESSION_COLUMNS if c not in ("session_id", "run_id", "updated_at_ms", "change_seq")]


def _store_contents(db: Path) -> tuple[list[tuple], dict[str, int], dict]:
    with sqlite3.connect(db) as conn:
        sessions = sorted(conn.execute(f"SELECT {', '.join(COMPARED)} FROM sessions"))
    store = SqliteStore(db)
    try:
        return sessions, store.rejected_counts(None, None), store.runs()[-1]["counters"]
    finally:
        store.close()


@pytest.mark.parametrize(("config", "data"), CASES, ids=[c for c, _ in CASES])
def test_backfill_stores_what_run_stores(tmp_path: Path, config: str, data: Path) -> None:
    cfg = str(EXAMPLES / config)
    assert main(["run", "-q", "--config", cfg, "--input", str(data), "--grace", "unbounded",
                 "--db", str(tmp_path / "run.db")]) == 0
    assert main(["backfill", "-q", "--config", cfg, "--input", str(data),
                 "--db", str(tmp_path / "backfill.db")]) == 0
    run_sessions, run_rejected, run_counters = _store_contents(tmp_path / "run.db")
    bf_sessions, bf_rejected, bf_counters = _store_contents(tmp_path / "backfill.db")
    assert len(bf_sessions) == len(run_sessions) > 100
    assert bf_sessions == run_sessions
    assert bf_rejected == run_rejected
    for name in ("received", "counted", "skipped", "sessions", "rejected_total"):
        assert bf_counters[name] == run_counters[name], name


def test_backfill_outputs_parquet_and_jsonl(tmp_path: Path) -> None:
    out, rejected = tmp_path / "s.parquet", tmp_path / "rejected.jsonl"
    assert main(["backfill", "-q", "--config", str(EXAMPLES / "access-log.toml"), "--input",
                 str(APACHE), "--no-store", "--db", str(tmp_path / "unused.db"),
                 "--output", str(out), "--rejected", str(rejected)]) == 0
    assert not (tmp_path / "unused.db").exists()
    sessions = pl.read_parquet(out)
    assert len(sessions) == 2_607 and int(sessions["event_count"].sum()) == 4_593
    lines = [orjson.loads(x) for x in rejected.read_bytes().splitlines()]
    assert [(r["reason"], r["offset"]) for r in lines] == [("malformed", 8_899)]
    assert main(["backfill", "-q", "--config", str(EXAMPLES / "nasa.toml"), "--input", str(NASA),
                 "--no-store", "--output", str(tmp_path / "s.jsonl")]) == 0
    records = [orjson.loads(x) for x in (tmp_path / "s.jsonl").read_bytes().splitlines()]
    assert len(records) == 2_989 and sum(r["event_count"] for r in records) == 30_969


def test_backfill_refuses_rules_it_cannot_apply(tmp_path: Path, capsys) -> None:
    config = tmp_path / "c.toml"
    config.write_text((EXAMPLES / "rees46.toml").read_text().replace(
        "[session]", '[session]\nmax_duration = "1h"'))
    code = main(["backfill", "-q", "--input", str(REES46), "--config", str(config),
                 "--db", str(tmp_path / "x.db")])
    assert code != 0
    assert "max_duration" in capsys.readouterr().err
