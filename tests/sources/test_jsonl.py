"""JsonLinesSource: each non-blank line is exactly one Event or one malformed Rejection."""

from __future__ import annotations

from pathlib import Path

from sessionize.decode.fields import FieldMap
from sessionize.engine.event import Event, Reason
from sessionize.sources import JsonLinesSource
from tests.sources.helpers import ms, read_all

LINES = [
    '{"user_id": "u1", "ts": "2026-01-01T10:00:00+01:00", "type": "page_view", "event_id": "e1",'
    ' "page": "/home", "revenue": 9.5}',
    "",
    '{"user_id": "u1", "ts": "2026-01-01T09:01:00Z"',  # 3: truncated JSON
    '["u1", "2026-01-01T09:00:00Z"]',  # 4: not an object
    '{"user_id": "u2", "type": "click"}',  # 5: no ts
    '{"user_id": "u2", "ts": "yesterday"}',  # 6: bad ts
    '{"user_id": "u3", "ts": 1767225600123}',  # 7: epoch ms as a number
    '   ',
    '{"user_id": 42, "ts": "1767225600000"}',  # 9: numeric key, epoch ms as text
]


def write(tmp_path: Path, lines: list[str], raw_tail: bytes = b"") -> Path:
    p = tmp_path / "events.jsonl"
    p.write_bytes("\n".join(lines).encode() + b"\n" + raw_tail)
    return p


def test_every_line_is_one_event_or_one_rejection(tmp_path: Path) -> None:
    got = read_all(JsonLinesSource(write(tmp_path, LINES), FieldMap()))
    assert [e.offset for e in got.events] == [1, 7, 9]
    assert [r.offset for r in got.rejections] == [3, 4, 5, 6]
    assert all(r.reason is Reason.MALFORMED for r in got.rejections)
    assert len(got.events) + len(got.rejections) == sum(1 for line in LINES if line.strip())


def test_event_fields(tmp_path: Path) -> None:
    first, epoch_num, epoch_text = read_all(JsonLinesSource(write(tmp_path, LINES))).events
    assert first == Event(key="u1", ts=ms("2026-01-01T09:00:00+00:00"), type="page_view",
                          event_id="e1", page="/home", revenue=9.5, offset=1, raw=LINES[0])
    assert (epoch_num.key, epoch_num.ts) == ("u3", 1_767_225_600_123)
    assert (epoch_text.key, epoch_text.ts) == ("42", 1_767_225_600_000)


def test_rejections_say_what_is_wrong_and_keep_the_line(tmp_path: Path) -> None:
    rej = read_all(JsonLinesSource(write(tmp_path, LINES))).rejections
    assert rej[0].detail.startswith("line 3: not valid JSON: ")
    assert rej[0].raw == LINES[2]
    assert rej[1].detail == "line 4: expected a JSON object, got an array"
    assert rej[2].detail == "line 5: missing timestamp field 'ts'"
    assert rej[2].key == "u2"
    assert rej[3].detail == "line 6: field 'ts': not an ISO-8601 timestamp: 'yesterday'"


def test_invalid_utf8_is_one_malformed_line(tmp_path: Path) -> None:
    tail = b'{"user_id": "caf\xe9", "ts": 1}\n{"user_id": "ok", "ts": 2}\n'
    got = read_all(JsonLinesSource(write(tmp_path, ['{"user_id": "a", "ts": 0}'], tail)))
    assert [e.key for e in got.events] == ["a", "ok"]
    (bad,) = got.rejections
    assert bad.offset == 2
    assert bad.raw == '{"user_id": "caf\\xe9", "ts": 1}'
    assert bad.detail == "line 2: not valid UTF-8 (byte e9 at column 17)"


def test_naive_times_are_read_in_the_input_zone(tmp_path: Path) -> None:
    lines = [
        '{"user_id": "u", "ts": "2026-03-29T02:30:00"}',  # skipped by DST in Berlin
        '{"user_id": "u", "ts": "2026-10-25T02:30:00"}',  # happens twice: first is CEST
        '{"user_id": "u", "ts": "2026-01-15T12:00:00"}',
        '{"user_id": "u", "ts": "2026-01-15T12:00:00Z"}',  # an explicit offset wins
    ]
    fields = FieldMap(input_tz="Europe/Berlin")
    got = read_all(JsonLinesSource(write(tmp_path, lines), fields))
    (gap,) = got.rejections
    assert gap.offset == 1
    assert gap.reason is Reason.MALFORMED
    assert "does not exist in Europe/Berlin" in gap.detail
    assert [e.ts for e in got.events] == [
        ms("2026-10-25T00:30:00+00:00"),
        ms("2026-01-15T11:00:00+00:00"),
        ms("2026-01-15T12:00:00+00:00"),
    ]


def test_field_names_are_configurable(tmp_path: Path) -> None:
    p = tmp_path / "e.ndjson"
    p.write_text('{"visitor": "v", "site": "s", "when": "2026-01-01 00:00:01", "kind": "x"}\n')
    fields = FieldMap(key=("site", "visitor"), ts=("when",), ts_format="%Y-%m-%d %H:%M:%S",
                      type="kind")
    (event,) = read_all(JsonLinesSource(p, fields)).events
    assert (event.key, event.ts, event.type) == ("s|v", 1_767_225_601_000, "x")


def test_empty_file_gives_no_batches(tmp_path: Path) -> None:
    p = tmp_path / "empty.jsonl"
    p.write_bytes(b"\n\n")
    assert read_all(JsonLinesSource(p)).batch_sizes == []
