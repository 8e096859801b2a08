"""CsvSource on the real CSV/TSV datasets, plus the header check and broken rows."""

from __future__ import annotations

import gzip
import shutil
from collections import Counter
from pathlib import Path

import pytest

from sessionize.decode.fields import FieldMap
from sessionize.engine.event import Event, Reason
from sessionize.errors import ConfigError
from sessionize.sources import CsvSource, open_source
from tests.conftest import DATA
from tests.sources.helpers import ms, read_all

REES46 = DATA / "rees46-multicategory" / "2019-Oct_head5000.csv"
REES46_FIELDS = FieldMap(key=("user_id",), ts=("event_time",),
                         ts_format="%Y-%m-%d %H:%M:%S UTC", type="event_type", revenue="price")
EDGAR = DATA / "sec-edgar-logs" / "log20030220_head.csv"
EDGAR_FIELDS = FieldMap(key=("ip",), ts=("date", "time"), ts_format="%Y-%m-%d %H:%M:%S")
NASA = DATA / "nasa-http-19950801" / "nasa_19950801.tsv"
NASA_FIELDS = FieldMap(key=("host",), ts=("time",), ts_format="epoch_s", page="url")


def test_rees46() -> None:
    got = read_all(CsvSource(REES46, REES46_FIELDS))
    assert (len(got.events), len(got.rejections), len(got.keys)) == (4999, 0, 1747)
    first, last = got.events[0], got.events[-1]
    assert first == Event(
        key="541312140", ts=ms("2019-10-01T00:00:00+00:00"), type="view", revenue=35.79,
        offset=2, raw="2019-10-01 00:00:00 UTC,view,44600062,2103807459595387724,,shiseido,"
                      "35.79,541312140,72d76fde-8bb3-4e00-8c23-a032dfed738c")
    assert last.ts == ms("2019-10-01T02:28:14+00:00")
    assert last.offset == 5000
    assert Counter(e.type for e in got.events) == {"view": 4895, "cart": 50, "purchase": 54}


def test_rees46_gzipped_gives_identical_events(tmp_path: Path) -> None:
    plain = read_all(CsvSource(REES46, REES46_FIELDS)).events
    for name in ("rees46.csv.gz", "rees46.csv"):  # the second is gzip'd without saying so
        packed = tmp_path / name
        with REES46.open("rb") as src, gzip.open(packed, "wb") as dst:
            shutil.copyfileobj(src, dst)
        source = open_source(packed, None, REES46_FIELDS)
        assert read_all(source).events == plain
        assert source.bytes_read == source.total_bytes == packed.stat().st_size


def test_sec_edgar_with_date_and_time_columns() -> None:
    got = read_all(CsvSource(EDGAR, EDGAR_FIELDS))
    assert (len(got.events), len(got.rejections), len(got.keys)) == (8978, 0, 1264)
    assert (got.events[0].key, got.events[0].ts) == ("12.44.161.fed",
                                                     ms("2003-02-20T00:00:00+00:00"))
    assert got.events[-1].ts == ms("2003-02-20T08:23:27+00:00")
    # the mapping has no type column and EDGAR has none called "type": it is switched off
    assert {e.type for e in got.events} == {None}


def test_nasa_tsv() -> None:
    source = open_source(NASA, None, NASA_FIELDS)
    got = read_all(source)
    assert (len(got.events), len(got.rejections), len(got.keys)) == (30969, 0, 2365)
    first = got.events[0]
    assert (first.key, first.ts, first.page) == ("pppa006.compuserve.com", 807_256_800_000,
                                                 "/images/launch-logo.gif")
    assert got.events[-1].ts == 807_303_121_000
    # empty referer/useragent columns are not read (the mapping names none that exist)
    assert {(e.referrer, e.user_agent) for e in got.events} == {(None, None)}


def test_missing_mapped_column_is_a_config_error_naming_it() -> None:
    fields = FieldMap(key=("user",), ts=("event_time",), type="evnt_type")
    with pytest.raises(ConfigError) as err:
        CsvSource(REES46, fields)
    msg = str(err.value)
    assert "'user', 'evnt_type'" in msg
    assert str(REES46) in msg
    assert "'event_time', 'event_type', 'product_id'" in msg  # the real header
    assert "'evnt_type' -> 'event_type'?" in msg


def test_default_mapping_on_a_file_without_its_columns_fails_on_key_and_ts() -> None:
    with pytest.raises(ConfigError, match=r"column\(s\) 'user_id', 'ts' that"):
        CsvSource(EDGAR, FieldMap())


def test_optional_columns_are_switched_off_when_absent() -> None:
    source = CsvSource(NASA, NASA_FIELDS, delimiter="\t")
    f = source.fields
    assert (f.type, f.event_id, f.referrer, f.user_agent, f.revenue, f.received_at) == (
        None, None, None, None, None, None)
    assert f.campaign == ()
    assert f.page == "url"


def write(tmp_path: Path, text: str, name: str = "t.csv") -> Path:
    p = tmp_path / name
    p.write_text(text)
    return p


def test_broken_rows_are_malformed_and_reading_goes_on(tmp_path: Path) -> None:
    p = write(tmp_path, 'user_id,ts,type\n'
                        'u1,2026-01-01T00:00:00Z,a\n'
                        'u2,2026-01-01T00:00:01Z\n'  # 3: a field short
                        '\n'
                        'u3,"2026-01-01T00:00:02Z"x,b\n'  # 5: text after a closing quote
                        'u4,2026-01-01T00:00:03Z,"multi\nline"\n'  # 6-7: one row
                        'u5,2026-01-01T00:00:04Z,c,extra\n'  # 8: a field too many
                        'u6,not a time,d\n')  # 9
    got = read_all(CsvSource(p, FieldMap()))
    assert [(e.key, e.offset, e.type) for e in got.events] == [
        ("u1", 2, "a"), ("u4", 6, "multi\nline")]
    assert got.events[1].raw == 'u4,2026-01-01T00:00:03Z,"multi\nline"'
    assert [(r.offset, r.detail) for r in got.rejections] == [
        (3, "line 3: expected 3 fields, got 2"),
        (5, "line 5: unreadable CSV: ',' expected after '\"'"),
        (8, "line 8: expected 3 fields, got 4"),
        (9, "line 9: field 'ts': not an ISO-8601 timestamp: 'not a time'"),
    ]
    assert got.rejections[0].raw == "u2,2026-01-01T00:00:01Z"
    assert all(r.reason is Reason.MALFORMED for r in got.rejections)


def test_invalid_utf8_row_is_malformed(tmp_path: Path) -> None:
    p = tmp_path / "t.csv"
    p.write_bytes(b"user_id,ts\nu\xff,1\nu2,2\n")
    got = read_all(CsvSource(p, FieldMap(ts_format="epoch_ms")))
    assert [e.key for e in got.events] == ["u2"]
    assert got.rejections[0].detail == "line 2: not valid UTF-8 (byte ff at column 2)"


def test_no_header_with_given_columns(tmp_path: Path) -> None:
    p = write(tmp_path, "u1;1000\nu2;2000\n")
    source = CsvSource(p, FieldMap(ts_format="epoch_ms"), delimiter=";", has_header=False,
                       columns=["user_id", "ts"])
    assert [(e.key, e.ts, e.offset) for e in read_all(source).events] == [
        ("u1", 1000, 1), ("u2", 2000, 2)]
    with pytest.raises(ConfigError, match="column names must be given"):
        CsvSource(p, FieldMap(), has_header=False)


def test_explicit_type_column_must_exist_default_one_may_not(tmp_path: Path) -> None:
    p = write(tmp_path, "user_id,ts\nu1,1\n")
    assert CsvSource(p, FieldMap(ts_format="epoch_ms")).fields.type is None
    with pytest.raises(ConfigError, match="'event'"):
        CsvSource(p, FieldMap(type="event"))


def test_empty_file_is_no_events(tmp_path: Path) -> None:
    assert read_all(CsvSource(write(tmp_path, ""), FieldMap())).batch_sizes == []


def test_an_unclosed_quote_costs_one_line_not_the_rest_of_the_file(tmp_path: Path) -> None:
    rows = "".join(f"u{i},{i}\n" for i in range(4, 2000))
    p = write(tmp_path, f'user_id,ts\nu2,2\nu3,"3\n{rows}')
    got = read_all(CsvSource(p, FieldMap(ts_format="epoch_ms")))
    assert [(r.offset, r.raw, r.detail) for r in got.rejections] == [
        (3, 'u3,"3', "line 3: unreadable CSV: unexpected end of data")]
    assert len(got.events) == 1997
    assert [(e.key, e.offset) for e in got.events[:2]] == [("u2", 2), ("u4", 4)]
