"""The real datasets of shared/data, end to end through the CLI: counts, invariants, and the
REES46 agreement with its ground-truth sessions."""

from __future__ import annotations

import csv
import itertools
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import orjson
import pytest

from sessionize.cli import main
from sessionize.stores.sqlite import SqliteStore
from tests.conftest import DATA, REPO

EXAMPLES = REPO / "examples"
REES46 = DATA / "rees46-multicategory" / "2019-Oct_head5000.csv"
SEC = DATA / "sec-edgar-logs" / "log20030220_head.csv"
NASA = DATA / "nasa-http-19950801" / "nasa_19950801.tsv"
HACKERS = DATA / "basjes-hackers-combined" / "hackers-access.log"
APACHE = DATA / "elastic-apache-combined" / "apache_logs"


def run_cli(tmp_path: Path, config: Path, data: Path, *extra: str) -> tuple[list[dict], Path]:
    """``sessionize run`` into a fresh store; returns the final sessions written to --output."""
    out, db = tmp_path / "sessions.jsonl", tmp_path / "s.db"
    code = main(["run", "-q", "--config", str(config), "--input", str(data), "--db", str(db),
                 "--output", str(out), "--rejected", str(tmp_path / "rejected.jsonl"), *extra])
    assert code == 0
    return [orjson.loads(line) for line in out.read_bytes().splitlines()], db


def rejected_of(tmp_path: Path) -> list[dict]:
    return [orjson.loads(line) for line in (tmp_path / "rejected.jsonl").read_bytes().splitlines()]


def check_invariants(sessions: list[dict], db: Path, gap_ms: int, received: int,
                     skipped: int = 0) -> dict:
    """What must hold for any run: accounting, store = output, spacing, closed at end."""
    store = SqliteStore(db)
    try:
        run = store.runs()[-1]
        counters = run["counters"]
        assert counters["received"] + counters["skipped"] == received
        assert counters["skipped"] == skipped
        assert counters["counted"] + counters["rejected_total"] == counters["received"]
        assert sum(s["event_count"] for s in sessions) == counters["counted"]
        assert counters["sessions"] == len(sessions)
        assert store.summary(None, None)["sessions"] == len(sessions)
        assert store.rejected_counts(None, None) == counters["rejected"]
    finally:
        store.close()
    assert {s["status"] for s in sessions} == {"closed"}
    by_key: dict[str, list[dict]] = defaultdict(list)
    for s in sessions:
        by_key[s["key"]].append(s)
        assert s["start"] <= s["end"] and s["duration_ms"] == s["end"] - s["start"]
    for ks in by_key.values():
        ks.sort(key=lambda s: s["start"])
        for a, b in itertools.pairwise(ks):
            assert b["start"] - a["end"] > gap_ms
    return counters


def test_rees46_agreement_with_ground_truth_sessions(tmp_path, capsys):
    sessions, db = run_cli(tmp_path, EXAMPLES / "rees46.toml", REES46, "--with-event-ids")
    check_invariants(sessions, db, 30 * 60_000, received=4_999)
    # ground truth: the platform's user_session column; our sessions name events by line number
    truth: dict[str, set[str]] = defaultdict(set)
    with REES46.open(newline="") as fh:
        for line_no, row in enumerate(csv.DictReader(fh), start=2):
            truth[row["user_session"]].add(f"#{line_no}")
    ours = {frozenset(s["event_ids"]) for s in sessions}
    matched = sum(1 for events in truth.values() if frozenset(events) in ours)
    agreement = matched / len(truth)
    with capsys.disabled():
        print(f"\nREES46 exact-match agreement at 30 min: {matched}/{len(truth)} "
              f"ground-truth sessions = {agreement:.2%} ({len(sessions)} sessions produced)")
    assert len(sessions) == 1_753
    assert agreement >= 0.86  # measured 86.35% (1,639 of 1,898)
    purchases = sum(s["conversions"] for s in sessions)
    assert purchases == 54  # every purchase row counted as a conversion
    assert round(sum(s["revenue"] for s in sessions), 2) == round(sum(
        float(r["price"]) for r in csv.DictReader(REES46.open()) if r["event_type"] == "purchase"
    ), 2)


def test_sec_edgar_per_ip_sessions(tmp_path):
    sessions, db = run_cli(tmp_path, EXAMPLES / "sec-edgar.toml", SEC)
    counters = check_invariants(sessions, db, 30 * 60_000, received=8_978)
    assert counters["rejected_total"] == 0
    assert len(sessions) == 1_490  # SOURCE.md: per-IP 30 min sessions
    assert len({s["key"] for s in sessions}) == 1_264
    # `zone` 500: local time is UTC-5, so the first request at 00:00:00 is 05:00:00Z
    assert min(s["start"] for s in sessions) == 1045717200000


@pytest.mark.parametrize("gap,expected", [("10m", 3_481), ("30m", 2_989), ("60m", 2_799)])
def test_nasa_day_per_host_sessions(tmp_path, gap, expected):
    sessions, db = run_cli(tmp_path, EXAMPLES / "nasa.toml", NASA, "--gap", gap)
    check_invariants(sessions, db, int(gap[:-1]) * 60_000, received=30_969)
    assert len(sessions) == expected  # SOURCE.md's per-host gap counts
    assert len({s["key"] for s in sessions}) == 2_365


@pytest.mark.parametrize("gap,expected", [("1m", 852), ("5m", 822), ("30m", 765), ("60m", 739)])
def test_hackers_access_log_per_ip(tmp_path, gap, expected):
    cfg = tmp_path / "clf.toml"
    cfg.write_text('[input]\nformat = "clf"\nclf_key = "ip"\n')
    sessions, db = run_cli(tmp_path, cfg, HACKERS, "--gap", gap)
    check_invariants(sessions, db, int(gap[:-1]) * 60_000, received=3_456)
    assert len(sessions) == expected  # SOURCE.md's per-IP gap counts
    assert len({s["key"] for s in sessions}) == 520


def test_apache_combined_log_with_a_malformed_line_and_assets(tmp_path):
    sessions, db = run_cli(tmp_path, EXAMPLES / "access-log.toml", APACHE)
    counters = check_invariants(sessions, db, 30 * 60_000, received=10_000, skipped=5_406)
    assert counters["rejected"]["malformed"] == 1 and counters["rejected_total"] == 1
    [bad] = rejected_of(tmp_path)
    assert bad["reason"] == "malformed" and bad["offset"] == 8899
    assert bad["raw"].startswith("46.118.127.106 ")
    assert any(s["is_bot"] for s in sessions)
    assert all("|" in s["key"] or s["user_agent"] is None for s in sessions)  # ip + user agent


def test_console_script_end_to_end(tmp_path):
    """The installed ``sessionize`` entry point, as a user runs it (gzip'd input, summary)."""
    import gzip

    gz = tmp_path / "hackers-access.log.gz"
    gz.write_bytes(gzip.compress(HACKERS.read_bytes()))
    exe = Path(sys.executable).with_name("sessionize")
    res = subprocess.run([str(exe), "run", "--input", str(gz), "--db", str(tmp_path / "c.db"),
                          "--gap", "30m"], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    assert "3,456" in res.stdout and "sessions" in res.stdout


def test_bad_configuration_fails_at_start_with_a_useful_message(tmp_path, capsys):
    assert main(["run", "--input", str(REES46), "--db", str(tmp_path / "x.db"),
                 "--gap", "0"]) == 2
    assert "gap must be greater than 0" in capsys.readouterr().err
    cfg = tmp_path / "c.toml"
    cfg.write_text('[input]\nformat = "csv"\nkey = "visitor"\nts = "event_time"\n')
    assert main(["run", "--config", str(cfg), "--input", str(REES46),
                 "--db", str(tmp_path / "x.db")]) == 2
    err = capsys.readouterr().err
    assert "visitor" in err
    assert main(["run", "--input", str(tmp_path / "missing.jsonl"),
                 "--db", str(tmp_path / "x.db")]) == 2
    assert "missing.jsonl" in capsys.readouterr().err


def test_demo_sessionizes_the_bundled_sample(tmp_path, capsys):
    assert main(["demo", "--no-serve", "--dir", str(tmp_path / "demo")]) == 0
    shown = capsys.readouterr().out
    assert "1,753 sessions of 1,747 users" in shown
    store = SqliteStore(tmp_path / "demo" / "demo.db")
    try:
        assert store.summary(None, None)["sessions"] == 1_753
    finally:
        store.close()
