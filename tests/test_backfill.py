"""The columnar backfill against the streaming engine (SEMANTICS.md §8: batch and stream agree).

- random disordered streams with every metrics field, with and without dedup, midnight split and
  gap_by_type: ``sessionize.backfill`` equals ``SessionEngine`` run with unbounded grace and
  flushed, field for field (session ids aside: they are defined differently on purpose);
- the real REES46 and NASA files: identical sessions to ``sessionize run`` on the same file;
- reading: malformed rows of JSON Lines and CSV are rejections with the streaming path's
  reasons and offsets, counted + rejected = received; Parquet and DataFrames read the same.
"""

from __future__ import annotations

import dataclasses
import math
from collections import Counter
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import orjson
import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sessionize import backfill as bf
from sessionize.cli import main
from sessionize.decode.fields import FieldMap
from sessionize.engine import EngineConfig, Event, MetricsConfig, SessionEngine
from sessionize.errors import ConfigError
from sessionize.settings import load_settings
from sessionize.sources import open_source
from tests.conftest import DATA, REPO

REES46 = DATA / "rees46-multicategory" / "2019-Oct_head5000.csv"
NASA = DATA / "nasa-http-19950801" / "nasa_19950801.tsv"
BERLIN = ZoneInfo("Europe/Berlin")
# 2024-03-31 is a 23-hour day in Berlin (02:00 -> 03:00): the stream straddles its midnights
MIDNIGHT = int(datetime(2024, 3, 31, tzinfo=BERLIN).timestamp() * 1000)


# ---------------------------------------------------------------------------- helpers

def engine_sessions(events: list[Event], config: EngineConfig, batch: int = 7):
    """Finals, rejections and counters of the streaming engine, fed in small batches."""
    engine = SessionEngine(config)
    finals, rejected = [], []
    for i in range(0, len(events), batch):
        changes = engine.process(events[i:i + batch])
        finals += changes.finals
        rejected += changes.rejections
    changes = engine.flush()
    return finals + changes.finals, rejected + changes.rejections, engine.counters


def comparable(records) -> list[tuple]:
    """Every field but the id, hashable, in a canonical order (revenue compared apart)."""
    out = []
    for r in records:
        out.append(tuple(sorted(
            (k, tuple(v) if isinstance(v, list) else v) for k, v in r.items()
            if k not in ("session_id", "revenue"))))
    return sorted(out, key=repr)


def assert_same_sessions(engine_records, backfill_frame: pl.DataFrame) -> None:
    ours = backfill_frame.to_dicts()
    assert len(ours) == len(engine_records)
    assert list(backfill_frame.columns) == list(engine_records[0]) if engine_records else True
    assert comparable(ours) == comparable(engine_records)
    rev_a = sorted((r["key"], r["start"], r["revenue"]) for r in engine_records)
    rev_b = sorted((r["key"], r["start"], r["revenue"]) for r in ours)  # keys are never None
    for (ka, sa, a), (kb, sb, b) in zip(rev_a, rev_b, strict=True):
        assert (ka, sa) == (kb, sb) and math.isclose(a, b, abs_tol=1e-9)


# ---------------------------------------------------------------------------- random streams

TYPES = ["view", "cart", "purchase", "checkout", None]


@st.composite
def streams(draw, max_events: int = 50, midnight: bool = False):
    """Events of a few keys on a small time axis (frequent gaps, ties and merges), every metrics
    field drawn, in an arrival order disturbed by local and long-range moves; event ids repeat
    so that dedup has work to do."""
    n = draw(st.integers(0, max_events))
    unit = 60_000 if midnight else 1
    base = MIDNIGHT - 200 * unit if midnight else 1_000
    times = sorted(draw(st.lists(st.integers(0, 400), min_size=n, max_size=n)))
    events = []
    for i, t in enumerate(times):
        events.append(Event(
            key=draw(st.sampled_from(["a", "b", "c", "d", "", None])) if i % 11 == 10
            else draw(st.sampled_from(["a", "b", "c", "d"])),
            ts=base + t * unit,
            type=draw(st.sampled_from(TYPES)),
            event_id=draw(st.sampled_from([f"e{i}", f"e{i}", f"e{i % 5}", None])),
            page=draw(st.sampled_from(["/", "/a", "/b", None])),
            referrer=draw(st.sampled_from(["https://r1/", "https://r2/", None, None])),
            campaign=draw(st.sampled_from(["g/cpc/x", "fb//", None, None, None])),
            user_agent=draw(st.sampled_from(["UA1", "UA2", None])),
            revenue=draw(st.sampled_from([None, 0.0, 1.25, 19.99, 100.1])),
            is_bot=draw(st.booleans()) if i % 7 == 0 else False,
        ))
    swaps = draw(st.lists(st.tuples(st.integers(0, max(n - 1, 0)), st.integers(-30, 30)),
                          max_size=n))
    for i, d in swaps:
        j = min(max(i + d, 0), n - 1)
        if n:
            events[i], events[j] = events[j], events[i]
    for offset, ev in enumerate(events, 1):
        ev.offset = offset
    return events


METRICS = MetricsConfig(path_cap=4, engaged_min_duration_ms=20)
CONFIGS = {
    "static": EngineConfig(gap_ms=10, grace_ms=None, metrics=METRICS, track_event_ids=True),
    "dedup": EngineConfig(gap_ms=10, grace_ms=None, dedup=True, metrics=METRICS),
    "gap_by_type": EngineConfig(grace_ms=None, metrics=METRICS, track_event_ids=True,
                                gap_by_type={"view": 10, "cart": 25, "purchase": 3, "*": 7}),
    "gap_by_type_no_fallback": EngineConfig(grace_ms=None, metrics=METRICS,
                                            gap_by_type={"view": 10, "cart": 25, "purchase": 3}),
    "dedup_gap_by_type": EngineConfig(grace_ms=None, dedup=True, metrics=METRICS,
                                      gap_by_type={"view": 12, "purchase": 2, "*": 5}),
}
SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def check_agreement(events: list[Event], config: EngineConfig) -> None:
    finals, rejected, counters = engine_sessions(events, config)
    result = bf.sessionize_events(events, config)
    assert_same_sessions(finals, result.sessions)
    assert sorted((r.reason.value, r.offset) for r in rejected) == sorted(
        result.rejections.select("reason", "offset").iter_rows())
    ours = result.counters
    assert ours["received"] == counters["received"] == len(events)
    assert ours["counted"] == counters["counted"]
    assert ours["counted"] + sum(ours[r] for r in ("late", "duplicate", "no_key", "malformed",
                                                   "future", "no_gap")) == ours["received"]
    for reason in ("duplicate", "no_key", "no_gap", "late"):
        assert ours[reason] == counters[reason]


@pytest.mark.parametrize("name", list(CONFIGS))
@SETTINGS
@given(events=streams())
def test_backfill_equals_engine_with_unbounded_grace(name, events):
    check_agreement(events, CONFIGS[name])


@pytest.mark.parametrize("dedup", [False, True])
@SETTINGS
@given(events=streams(midnight=True))
def test_backfill_equals_engine_split_at_midnight_across_dst(dedup, events):
    config = EngineConfig(gap_ms=30 * 60_000, grace_ms=None, midnight_tz="Europe/Berlin",
                          dedup=dedup, metrics=MetricsConfig(path_cap=3), track_event_ids=True)
    check_agreement(events, config)


@SETTINGS
@given(events=streams(midnight=True))
def test_backfill_equals_engine_midnight_with_gap_by_type(events):
    config = EngineConfig(grace_ms=None, midnight_tz="America/New_York",
                          gap_by_type={"view": 30 * 60_000, "cart": 90 * 60_000, "*": 600_000})
    check_agreement(events, config)


def test_future_guard_is_applied():
    events = [Event("a", 1_000, "view", received_at=1_000, offset=1),
              Event("a", 9_000, "view", received_at=1_000, offset=2),
              Event("a", 2_000, "view", offset=3)]
    config = EngineConfig(gap_ms=5_000, grace_ms=None, max_future_ms=5_000)
    check_agreement(events, config)
    assert bf.sessionize_events(events, config).counters["future"] == 1


# ---------------------------------------------------------------------------- ids and scope

def test_session_ids_are_deterministic_and_match_the_reference():
    keys = pl.Series(["a", "ü-key", "a", "x" * 70, "192.168.0.1|Mozilla/5.0"])
    starts = pl.Series([0, 1_700_000_000_000, 5, -3, 42])
    firsts = pl.Series([1, 2, 3, 4, 10**9])
    ids = bf.session_ids(3, keys, starts, firsts).to_list()
    assert ids == [bf.session_id(3, k, s, f) for k, s, f in
                   zip(keys, starts, firsts, strict=True)]
    assert len(set(ids)) == len(ids) and all(len(i) == 32 for i in ids)
    assert bf.session_ids(3, keys, starts, firsts).to_list() == ids


def test_unsupported_rules_are_refused():
    for config in (EngineConfig(grace_ms=3_600_000),
                   EngineConfig(grace_ms=None, max_duration_ms=60_000),
                   EngineConfig(grace_ms=None, campaign_split=True)):
        assert not bf.supported(config)
        with pytest.raises(ConfigError):
            bf.run(pl.DataFrame({"user_id": ["a"], "ts": [1]}), config)
    assert bf.supported(EngineConfig(grace_ms=None, dedup=True, midnight_tz="UTC",
                                     gap_by_type={"*": 5}, max_future_ms=10))


# ---------------------------------------------------------------------------- real files

def cli_sessions(tmp_path: Path, config: Path, data: Path) -> list[dict]:
    out = tmp_path / "cli.jsonl"
    code = main(["run", "-q", "--config", str(config), "--input", str(data), "--grace",
                 "unbounded", "--with-event-ids", "--db", str(tmp_path / "s.db"),
                 "--output", str(out)])
    assert code == 0
    records = [orjson.loads(line) for line in out.read_bytes().splitlines()]
    for r in records:
        del r["start_time"], r["end_time"]
    return records


@pytest.mark.parametrize("example,data,expected", [
    ("rees46.toml", REES46, 1_753), ("nasa.toml", NASA, 2_989)])
def test_real_file_identical_to_sessionize_run(tmp_path, example, data, expected):
    config_file = REPO / "examples" / example
    streamed = cli_sessions(tmp_path, config_file, data)
    settings_ = load_settings(config_file, {"output": {"with_event_ids": True}})
    config = dataclasses.replace(settings_.engine, grace_ms=None)
    result = bf.run(data, config, settings_.input.fields, fmt=settings_.input.format)
    assert len(result.sessions) == expected
    assert_same_sessions(streamed, result.sessions)
    assert result.counters["received"] == result.counters["counted"] == sum(
        r["event_count"] for r in streamed)
    # the same events as Parquet (ts as text, as in the CSV) give the same sessions
    frame = pl.read_csv(data, separator="\t" if data.suffix == ".tsv" else ",",
                        infer_schema=False)
    parquet = tmp_path / "events.parquet"
    frame.write_parquet(parquet)
    again = bf.run(parquet, dataclasses.replace(config, track_event_ids=False),
                   settings_.input.fields)
    assert comparable(again.sessions.to_dicts()) == comparable(
        [{k: v for k, v in r.items() if k != "event_ids"} for r in streamed])


# ---------------------------------------------------------------------------- reading

def streamed_run(path: Path, fields: FieldMap, config: EngineConfig, fmt: str | None = None):
    """What the pipeline computes for a file: its source, the engine, flushed."""
    source = open_source(path, fmt, fields)
    engine = SessionEngine(config)
    finals, rejected = [], []
    for batch in source.batches(3):
        engine.reject(it for it in batch if not isinstance(it, Event))
        changes = engine.process([it for it in batch if isinstance(it, Event)])
        finals += changes.finals
        rejected += changes.rejections
    changes = engine.flush()
    return finals + changes.finals, rejected + changes.rejections, engine.counters


def check_file(path: Path, fields: FieldMap, config: EngineConfig, fmt: str | None = None):
    finals, rejected, counters = streamed_run(path, fields, config, fmt)
    result = bf.run(path, config, fields, fmt=fmt)
    assert_same_sessions(finals, result.sessions)
    # the dead letters too: same reason, line, message and raw record (but for CSV, where the
    # raw record of a no-key or duplicate event is the decoded event: README, Backfill)
    def letter(reason: str, offset: int, detail: str, raw: str) -> tuple:
        jsonl = bf.file_format(path, fmt) == "jsonl"
        return (reason, offset, detail, raw if jsonl or reason == "malformed" else None)

    assert Counter(letter(r.reason.value, r.offset, r.detail, r.raw) for r in rejected) == Counter(
        letter(*row) for row in result.rejections.select("reason", "offset", "detail", "raw")
        .iter_rows())
    for name in ("received", "counted", "malformed", "no_key", "duplicate"):
        assert result.counters[name] == counters[name], name
    assert result.counters["counted"] + len(result.rejections) == result.counters["received"]
    return result


MESSY_JSONL = [
    '{"user_id": "a", "ts": "2024-03-01T10:00:00.000Z", "type": "view", "page": "/x"}',
    '{"user_id": "a", "ts": "2024-03-01T10:05:00+01:00", "type": "purchase", "revenue": "9.5"}',
    '{"user_id": "b", "ts": 1709287200000, "type": "view", "event_id": "e1"}',
    '{"user_id": 42, "ts": "2024-03-01 10:10:00", "type": "cart", "event_id": "e1"}',
    '{"user_id": "a", "ts": "not a time", "type": "view"}',
    '{"user_id": "a", "ts": "2024-03-01T10:20:00.000Z", "revenue": "abc"}',
    '{"ts": "2024-03-01T10:21:00.000Z", "type": "view"}',
    '{"user_id": "c", "type": "view"}',
    '{"user_id": "c", "ts": "20240301", "utm_source": "g", "utm_campaign": "spring"}',
    '{"user_id": "c", "ts": "2024-03-01T00:30:00.000Z", "referrer": "", "page": ""}',
    '{"user_id": "d", "ts": "9000-01-01T00:00:00Z", "type": "view"}',
    '{"user_id": "d", "ts": "2024-03-01T00:31:00.000Z", "type": "purchase", "revenue": "nan"}',
]


def test_jsonl_rows_that_cannot_be_read_are_rejections(tmp_path):
    path = tmp_path / "events.jsonl"
    path.write_text("\n".join(MESSY_JSONL) + "\n")
    config = EngineConfig(gap_ms=30 * 60_000, grace_ms=None, track_event_ids=True)
    result = check_file(path, FieldMap(), config)
    assert result.counters["malformed"] == 5 and result.counters["no_key"] == 1
    details = dict(result.rejections.select("offset", "detail").iter_rows())
    assert details[11] == ("line 11: field 'ts': '9000-01-01T00:00:00Z' is out of the supported range "
                           "(years -2489 to 6429)")
    assert details[12] == "line 12: field 'revenue': not a finite number: 'nan'"
    # a line that is not JSON, and a blank line, send the chunk down the exact path
    path.write_text("\n".join([*MESSY_JSONL[:3], "{not json", "", "[1, 2]", *MESSY_JSONL[2:]]))
    result = check_file(path, FieldMap(), dataclasses.replace(config, dedup=True))
    assert result.counters["malformed"] == 7 and result.counters["duplicate"] == 1


def test_jsonl_empty_lines_keep_line_numbers(tmp_path):
    # Polars' scan skips empty lines and numbers rows: its rows are moved past them
    path = tmp_path / "events.jsonl"
    config = EngineConfig(gap_ms=30 * 60_000, grace_ms=None)
    lines = [MESSY_JSONL[0], "", "", *MESSY_JSONL[1:5], "", *MESSY_JSONL[5:], "", ""]
    path.write_bytes("\r\n".join(lines).encode())
    assert bf._scanned_jsonl(path, FieldMap()) is not None
    result = check_file(path, FieldMap(), config)
    bad = dict(result.rejections.select("offset", "detail").iter_rows())
    assert bad[7].startswith("line 7: field 'ts'") and bad[9].startswith("line 9: field 'rev")
    # lines of blanks it skips too, the last one without its line break included
    path.write_text("\n".join([MESSY_JSONL[0], " \t", *MESSY_JSONL[1:], "  "]))
    assert bf._scanned_jsonl(path, FieldMap()) is not None
    check_file(path, FieldMap(), config)
    # a vertical tab it cannot read: the chunked reader
    path.write_text("\n".join([MESSY_JSONL[0], "\v", *MESSY_JSONL[1:]]))
    assert bf._scanned_jsonl(path, FieldMap()) is None
    check_file(path, FieldMap(), config)


@given(st.binary(max_size=60).map(lambda b: bytes(b"\n\rx \t"[c % 5] for c in b)),
       st.integers(1, 9))
@settings(max_examples=300, deadline=None)
def test_line_count_and_line_lookup_at_any_block_size(data, block):
    import tempfile
    import threading

    lines = data.split(b"\n")
    total = data.count(b"\n") + (1 if data and not data.endswith(b"\n") else 0)
    # the blank lines, which Polars' reader skips (the exact path too, but it numbers them)
    empty = [i for i, line in enumerate(lines, 1) if i <= total and not line.strip(b" \t\r")]
    with tempfile.NamedTemporaryFile() as f:
        f.write(data)
        f.flush()
        assert bf._count_lines(f.name, threading.Event(), block) == total
        found = bf._empty_lines_in(f.name, block)
    assert found.tolist() == empty
    others = [i for i in range(1, total + 1) if i not in empty]
    rows = pl.Series("offset", range(1, len(others) + 1), pl.Int64)
    assert bf._rows_as_lines(rows, found).to_list() == others
    wanted = pl.DataFrame({"offset": list(range(total, 0, -1))}, schema={"offset": pl.Int64})
    raws = bf._with_lines(wanted, data, block)["raw"].to_list()
    assert raws == [lines[i - 1].rstrip(b"\r").decode() for i in range(total, 0, -1)]


def test_jsonl_records_polars_reads_leniently_are_still_dead_letters(tmp_path):
    # Polars reads a lone surrogate as NUL and a 23-digit time as null; neither is an event
    path = tmp_path / "events.jsonl"
    path.write_text("\n".join([
        MESSY_JSONL[0], '{"user_id": "a\\u0000b", "ts": 1709287200000}',
        '{"user_id": "\\ud800", "ts": 1709287200000}',
        '{"user_id": "a", "ts": 17092872000000000000000}', MESSY_JSONL[0],
        # a negative time beside one beyond Int64 once made Polars type them as Int128
        '{"user_id": "a", "ts": -1}', '{"user_id": "a", "ts": 9223372036854775807}']) + "\n")
    config = EngineConfig(gap_ms=30 * 60_000, grace_ms=None)
    result = bf.run(path, config, FieldMap())
    _, rejected, _ = streamed_run(path, FieldMap(), config)
    expected = [("malformed", n, None if n < 4 else "a", line)
                for n, line in enumerate(path.read_text().splitlines(), 1) if n in (2, 3, 4, 7)]
    assert [(r.reason.value, r.offset, r.key, r.raw) for r in rejected] == expected
    assert result.rejections.select("reason", "offset", "key", "raw").rows() == expected
    assert result.counters["counted"] == 3


def test_jsonl_name_with_glob_characters(tmp_path):
    # Polars' scan reads a name as a glob pattern: "events[1].jsonl" would match nothing, and
    # "*.jsonl" every file beside it
    (tmp_path / "other.jsonl").write_text(MESSY_JSONL[0] + "\n")
    config = EngineConfig(gap_ms=30 * 60_000, grace_ms=None)
    for name in ("events[1].jsonl", "*.jsonl"):
        path = tmp_path / name
        path.write_text("\n".join(MESSY_JSONL[:4]) + "\n")
        assert bf._scanned_jsonl(path, FieldMap()) is None
        assert check_file(path, FieldMap(), config).counters["received"] == 4


@pytest.mark.parametrize("bad_line", [None, "{not json", '{"user_id": "z", "ts": "soon"}', ""])
def test_jsonl_readers_agree(tmp_path, monkeypatch, bad_line):
    """The whole-file scan, the chunked reader (chunks of a few lines, most read by Polars,
    the one with the bad or empty line halved down to pieces the exact path reads) and the
    exact path alone give the same rows."""
    lines = [line for _ in range(40) for line in MESSY_JSONL]
    if bad_line is not None:
        lines[300] = bad_line
    path = tmp_path / "events.jsonl"
    path.write_text("\n".join(lines))  # no line break at the end
    fields = FieldMap()
    monkeypatch.setattr(bf, "SCAN_GROUP_ROWS", 100)  # several decode groups
    scanned = bf._scanned_jsonl(path, fields)
    assert (scanned is None) == (bad_line == "{not json")
    monkeypatch.setattr(bf, "JSONL_CHUNK_BYTES", 2_000)
    monkeypatch.setattr(bf, "EXACT_PIECE_BYTES", 300)
    chunked = bf._chunked_jsonl(path, fields)
    exact = bf._exact_jsonl(path.read_bytes(), fields, 1)
    for events, rejections in filter(None, [scanned, chunked]):
        assert events.equals(exact[0])
        rejections = bf._with_file_lines(rejections.sort("offset"), path)  # as run() does
        assert rejections.equals(exact[1].sort("offset"))
    assert len(exact[0]) + len(exact[1]) == len([line for line in lines if line])


def test_csv_ragged_quoted_and_bad_rows(tmp_path):
    fields = FieldMap(key=("user",), ts=("day", "time"), ts_format="%Y-%m-%d %H:%M:%S",
                      input_tz="Europe/Berlin", type="kind", revenue="price", page="url")
    rows = [
        "user,day,time,kind,price,url",
        "u1,2024-03-31,01:00:00,view,,/a",
        'u1,2024-03-31,01:10:00,purchase,12.5,"/b,c"',
        "u1,2024-03-31,02:30:00,view,,/skipped-hour",  # does not exist in Berlin
        "u2,2024-03-31,03:30:00,view",  # too few fields
        "",
        "u2,2024-03-31,03:31:00,view,,/x,extra",  # too many
        'u2,2024-03-31,03:40:00,"cart",1e2,"/q""uoted"',
        ",2024-03-31,03:41:00,view,,/nokey",
        "u3,,04:00:00,view,,/missing-day",
        "u3,2024-03-31,04:00:00,purchase,twelve,/bad-price",
    ]
    path = tmp_path / "events.csv"
    path.write_text("\n".join(rows) + "\n")
    config = EngineConfig(gap_ms=30 * 60_000, grace_ms=None, track_event_ids=True)
    result = check_file(path, fields, config)
    assert result.counters["malformed"] == 5 and result.counters["no_key"] == 1
    # a quoted field that spans lines: the exact reader decides what is a row
    path.write_text("\n".join([*rows[:3], 'u9,2024-03-31,05:00:00,view,,"multi', 'line"',
                               *rows[3:]]) + "\n")
    check_file(path, fields, config)


def test_dataframe_input_with_typed_columns():
    frame = pl.DataFrame({
        "user_id": ["a", "a", "b", None],
        "ts": [datetime(2024, 3, 1, 10), datetime(2024, 3, 1, 10, 20), datetime(2024, 3, 1),
               datetime(2024, 3, 1)],
        "type": ["view", "purchase", "view", "view"],
        "revenue": [None, 10.0, 3.0, None],
    })
    result = bf.run(frame, EngineConfig(grace_ms=None), FieldMap())
    assert result.counters == result.counters | {"received": 4, "counted": 3, "no_key": 1}
    assert result.sessions.select("key", "event_count", "revenue", "conversions").rows() == [
        ("b", 1, 0.0, 0), ("a", 2, 10.0, 1)]


def _spellings():
    """Timestamps in every shape the ISO parser meets: the canonical one with any digits
    (so invalid dates, hours and years 0 too), other ISO shapes, epoch digits, padding, junk."""
    digits = st.text("0123456789", min_size=1, max_size=4)
    field = st.integers(0, 99).map(lambda v: f"{v:02d}")
    canonical = st.builds(
        lambda y, mo, d, h, mi, s, ms: f"{y:04d}-{mo}-{d}T{h}:{mi}:{s}.{ms:03d}Z",
        st.integers(0, 9999), field, field, field, field, field, st.integers(0, 999))
    plausible = st.builds(
        lambda y, mo, d, h, mi, s: f"{y:04d}-{mo:02d}-{d:02d}T{h:02d}:{mi:02d}:{s:02d}.000Z",
        st.integers(0, 2400), st.integers(1, 12), st.integers(1, 31), st.integers(0, 23),
        st.integers(0, 59), st.integers(0, 59))
    other = st.sampled_from([
        "2024-03-01T10:00:00+01:00", "2024-03-01 10:00:00", "2024-03-01", "2024-03-01T10:00Z",
        "2024-03-01T10:00:00.5Z", "2024-03-01T10:00:00.123456-05:30", "1709287200000",
        "20240301", "not a time", "", "2024-03-01T10:00:00.000z", "٢٠٢٤-03-01T10:00:00.000Z"])
    padded = st.builds(lambda s, pad: pad + s + pad, plausible, st.sampled_from([" ", "\t"]))
    return st.one_of(canonical, plausible, other, padded, digits)


@given(values=st.lists(_spellings(), min_size=1, max_size=40),
       tz=st.sampled_from(["UTC", "Europe/Berlin"]))
@settings(max_examples=300, deadline=None)
def test_vectorised_iso_parse_equals_the_streaming_parser(values, tz):
    from sessionize.decode.timestamps import BadTimestamp, make_parser

    parse = make_parser("iso", tz)
    parsed, error = bf._timestamps(pl.Series(values, dtype=pl.String), "iso", tz)
    errors = pl.DataFrame({"v": values}).select(error.alias("e"))["e"]
    for i, value in enumerate(values):
        try:
            expected = parse(value) if value else None
        except BadTimestamp:
            expected = "error"
        got = parsed[i]
        if expected == "error":
            assert got is None and errors[i] is not None, value
        else:
            assert got == expected, value
