"""open_source: the format from --format or the file name, options checked per format."""

from __future__ import annotations

from pathlib import Path

import pytest

from sessionize.decode.fields import FieldMap
from sessionize.errors import ConfigError, InputError
from sessionize.sources import (
    AccessLogSource,
    CsvSource,
    JsonLinesSource,
    Source,
    detect_format,
    open_source,
)
from tests.conftest import DATA

NASA_FIELDS = FieldMap(key=("host",), ts=("time",), ts_format="epoch_s", page="url")


@pytest.mark.parametrize(("name", "fmt"), [
    ("events.jsonl", "jsonl"), ("events.NDJSON", "jsonl"), ("e.json.gz", "jsonl"),
    ("e.csv", "csv"), ("e.csv.gz", "csv"), ("e.tsv", "tsv"), ("e.tsv.bz2", "tsv"),
    ("site.log", "clf"), ("access_log", "clf"), ("access_log.2024-01-01.gz", "clf"),
    ("access.log.1", "clf"), ("apache_logs", "clf"), ("old_apache_logs.xz", "clf"),
    ("events.txt", None), ("data", None), ("catalog.csv.zip", None),
])
def test_detect_format(name: str, fmt: str | None) -> None:
    assert detect_format(name) == fmt


def test_picks_the_source_from_the_name() -> None:
    rees = DATA / "rees46-multicategory" / "2019-Oct_head5000.csv"
    assert isinstance(open_source(rees, None, FieldMap(key=("user_id",), ts=("event_time",))),
                      CsvSource)
    log = open_source(DATA / "elastic-apache-combined" / "apache_logs", None, key="ip")
    assert isinstance(log, AccessLogSource)
    assert log.key_mode == "ip"
    tsv = open_source(DATA / "nasa-http-19950801" / "nasa_19950801.tsv", None, NASA_FIELDS)
    assert isinstance(tsv, CsvSource)
    assert tsv.delimiter == "\t"
    assert isinstance(tsv, Source)
    assert (tsv.name, tsv.partition, tsv.skipped) == (str(DATA / "nasa-http-19950801" /
                                                          "nasa_19950801.tsv"), 0, 0)


def test_format_flag_wins_over_the_name(tmp_path: Path) -> None:
    p = tmp_path / "events.txt"
    p.write_text('{"user_id": "u", "ts": 1}\n')
    with pytest.raises(ConfigError, match="--format"):
        open_source(p, None)
    assert isinstance(open_source(p, "jsonl"), JsonLinesSource)
    assert isinstance(open_source(p, "NDJSON"), JsonLinesSource)
    with pytest.raises(ConfigError, match="unknown input format 'xml'; use one of jsonl, csv"):
        open_source(p, "xml")


def test_tsv_format_means_tab(tmp_path: Path) -> None:
    p = tmp_path / "e.txt"
    p.write_text("user_id\tts\nu\t1970-01-01T00:00:01Z\n")
    source = open_source(p, "tsv")
    assert [item.ts for batch in source.batches() for item in batch] == [1000]


def test_options_that_do_not_apply_are_refused() -> None:
    with pytest.raises(ConfigError, match=r"skip_assets do not apply to the csv format"):
        open_source(DATA / "nasa-http-19950801" / "nasa_19950801.tsv", "csv", NASA_FIELDS,
                    skip_assets=True)


def test_a_missing_file_is_reported_before_its_format(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="does not exist"):
        open_source(tmp_path / "whatever.xyz", None)
