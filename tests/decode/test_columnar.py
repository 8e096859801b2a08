"""ColumnDecoder against RecordDecoder, the reference: on random records of every shape and on
the real datasets, every record decodes to the same Event, or is rejected in the same words."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sessionize.decode import columnar
from sessionize.decode.fields import FieldMap, RecordDecoder
from sessionize.decode.jsonrecord import decode_json_text
from sessionize.engine.event import Event, Rejection
from sessionize.produce import event_record
from sessionize.sources import open_source
from tests.conftest import DATA, REPO

needs_core = pytest.mark.skipif(columnar.unsupported_reason(FieldMap()) is not None,
                                reason=str(columnar.unsupported_reason(FieldMap())))


def reference(fields: FieldMap, values: list[bytes | None]) -> tuple[list[Event], list[Rejection]]:
    decoder = RecordDecoder(fields)
    events, rejected = [], []
    for i, v in enumerate(values):
        text = v.decode("utf-8", "backslashreplace") if v is not None else "null"
        item = decode_json_text(decoder, text, i)
        if isinstance(item, Event):
            item.received_at = None  # the columns carry what the compiled engine reads
            events.append(item)
        else:
            rejected.append(item)
    return events, rejected


def fallback(fields: FieldMap, values: list[bytes | None]):
    """Record ``i`` through the reference, as the sources hand it over."""
    decoder = RecordDecoder(fields)

    def one(i: int) -> Event | Rejection:
        v = values[i]
        return decode_json_text(decoder, v.decode("utf-8", "backslashreplace")
                                if v is not None else "null", i)
    return one


def decode(fields: FieldMap, values: list[bytes | None]):
    return columnar.ColumnDecoder(fields).decode(values, list(range(len(values))),
                                                 fallback(fields, values))


def check(fields: FieldMap, values: list[bytes | None]) -> int:
    """Decode both ways, compare; returns how many records the compiled decoder took."""
    cols, rejected = decode(fields, values)
    want_events, want_rejected = reference(fields, values)
    if values:
        for e in want_events:  # raw as the columns keep it: the record's text
            e.raw = values[e.offset].decode("utf-8", "backslashreplace")  # type: ignore[union-attr]
    assert [cols[i] for i in range(len(cols))] == want_events
    assert rejected == want_rejected
    return len(values) - len(rejected)


# ------------------------------------------------------------------ random records

def iso_texts() -> st.SearchStrategy[str]:
    """ISO-8601 spellings, the strict ones the compiled decoder reads and many it leaves."""
    moments = st.datetimes(min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30))
    offsets = st.sampled_from(["Z", "+00:00", "+02:00", "-05:30", "+0200", "+02", "", "+23:59",
                               "-00:00", "+05:30:15", " "])
    return st.builds(
        lambda dt, sep, digits, off, pad: (
            f"{pad}{dt.strftime('%Y-%m-%d')}{sep}{dt.strftime('%H:%M:%S')}"
            + (("." + f"{dt.microsecond:06d}{dt.microsecond % 1000:03d}"[:digits]) if digits else "")
            + off + pad),
        moments, st.sampled_from(["T", " ", "x"]), st.integers(0, 9), offsets,
        st.sampled_from(["", "", "", " "]))


NUMBERS = (st.integers(-(1 << 70), 1 << 70) | st.integers(-(1 << 48), 1 << 48)
           | st.floats(allow_nan=False, allow_infinity=False) | st.sampled_from([0, -0.0, 1.5, 1e300]))
TEXT = st.text(max_size=6) | st.sampled_from(["a", "b", "ü", "", "a\x00", "view", "purchase"])
ANY = st.recursive(st.none() | st.booleans() | NUMBERS | TEXT,
                   lambda inner: st.lists(inner, max_size=2) | st.dictionaries(TEXT, inner, max_size=2),
                   max_leaves=4)


def field_value(name: str) -> st.SearchStrategy:
    common = st.none() | TEXT | ANY
    if name in ("ts", "received_at"):
        return iso_texts() | NUMBERS | common | st.integers(0, 2_000_000_000_000).map(str)
    if name == "revenue":
        return NUMBERS | common | st.sampled_from(["1.5", " 2", "nan"])
    return TEXT | TEXT | common


NAMES = ["user_id", "ip", "ua", "ts", "type", "event_id", "page", "referrer", "user_agent",
         "revenue", "utm_source", "utm_medium", "utm_campaign", "received_at", "extra"]


# JSON spellings a Python object does not produce, where two parsers may part ways
FRAGMENTS = ['"\\ud83d\\ude00"', '"\\ud800"', '"\\udc00x"', '1e400', '-1e-400', '1E+3',
             '123456789012345678901234', '18446744073709551615', '-9223372036854775808',
             '"\\u0000"', '"a\\u00e9\\/"', '[1, 2, {"a": "\\q"}]', 'true', '-0', '0.1e-300',
             '"\t"', '"\\u12"', '9999999999999999999e290', '"2019-10-01T00:00:00.123456Z"',
             '1569888000123.75', '"<FF>"', '{"nested": [null, 1e2]}']


@st.composite
def records(draw) -> bytes | None:
    kind = draw(st.integers(0, 30))
    if kind == 0:
        return None
    if kind == 1:
        return draw(st.binary(max_size=12))
    if kind == 2:
        return json.dumps(draw(ANY)).encode()
    obj = {}
    for name in NAMES:
        if draw(st.integers(0, 4)):
            obj[name] = draw(field_value(name))
    text = json.dumps(obj, ensure_ascii=draw(st.booleans()))
    for _ in range(draw(st.integers(0, 2))):  # a raw fragment in a read or an ignored field
        name = draw(st.sampled_from(["user_id", "ts", "revenue", "page", "extra"]))
        frag = draw(st.sampled_from(FRAGMENTS))
        text = text[:-1] + (", " if text != "{}" else "") + f'"{name}": {frag}}}'
    return text.encode().replace(b"<FF>", b"\xff")  # invalid UTF-8 inside a string


@st.composite
def plain_records(draw) -> bytes:
    """Records of the shapes feeds send: the compiled path's own ground, with random values."""
    obj: dict = {}
    for name in NAMES:
        if draw(st.integers(0, 3)):
            if name in ("ts", "received_at"):
                obj[name] = draw(iso_texts() | st.integers(-(1 << 48), 1 << 48) | st.floats(-1e15, 1e15))
            elif name == "revenue":
                obj[name] = draw(st.none() | st.floats(allow_nan=False, allow_infinity=False)
                                 | st.integers(-(1 << 60), 1 << 60))
            else:
                obj[name] = draw(st.none() | st.text(max_size=5) | st.sampled_from(["a", "b", ""]))
    return json.dumps(obj, ensure_ascii=draw(st.booleans())).encode()


FIELD_MAPS = st.sampled_from([
    FieldMap(),
    FieldMap(key=("ip", "ua"), default_type="hit"),
    FieldMap(ts_format="epoch_ms", revenue=None),
    FieldMap(ts_format="epoch_s", campaign=("utm_source",)),
    FieldMap(ts_format="epoch_us", received_at=None),
    FieldMap(input_tz="Europe/Berlin"),
    FieldMap(campaign=()),
    FieldMap(default_type=""),  # a type of "" that is a value, not "no value"
])


@needs_core
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(FIELD_MAPS, st.lists(records(), max_size=40))
def test_random_records_decode_as_the_reference_does(fields: FieldMap, values: list) -> None:
    check(fields, values)


@needs_core
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(FIELD_MAPS, st.lists(plain_records(), min_size=1, max_size=40))
def test_random_plain_records_decode_as_the_reference_does(fields: FieldMap, values: list) -> None:
    check(fields, values)


@needs_core
def test_the_common_shapes_are_decoded_in_columns() -> None:
    """Not all left to the reference: records real feeds send take the compiled path."""
    base = datetime(2019, 10, 1, tzinfo=UTC)
    values = [json.dumps({"user_id": f"u{i % 7}", "ts": (base + timedelta(seconds=i)).isoformat(),
                          "type": "view", "page": f"/p/{i % 3}", "revenue": i * 0.5,
                          "utm_source": "g" if i % 2 else None}).encode() for i in range(50)]
    values += [json.dumps({"user_id": "x", "ts": 1569888000123 + i}).encode() for i in range(5)]
    values.append(json.dumps({"user_id": "y", "ts": "2019-10-01 02:00:00",
                              "received_at": "2019-10-01T02:00:00.5+02:00"}).encode())
    cols, rejected = decode(FieldMap(), values)
    assert not rejected and len(cols) == 56
    assert check(FieldMap(), values) == 56
    assert cols[55].ts == int(datetime(2019, 10, 1, 2, tzinfo=UTC).timestamp() * 1000)
    assert cols[0].ts == int(base.timestamp() * 1000) and cols[1].revenue == 0.5
    # and none of these needed the reference (all decoded by the core)
    out = columnar.ColumnDecoder(FieldMap())._core.decode(values)
    assert out["status"].sum() == 0


@needs_core
def test_records_left_to_the_reference_keep_their_place_and_words() -> None:
    values = [b'{"user_id": "a", "ts": "2019-10-01T00:00:00Z"}',
              b'{"user_id": 7, "ts": "2019-10-01T00:00:01Z"}',          # a number as key
              b'not json', None, "{\"user_id\": \"\u00e9\xff\"}".encode("latin-1"),
              b'{"user_id": "b", "ts": "2019-10-01T00:00:02+0200"}',    # an offset Python reads
              b'{"user_id": "c", "ts": 99999999999999999}',             # beyond the engine's range
              b'{"user_id": "d", "ts": "1e3"}',
              b'{"user_id": "e", "ts": 0, "x": "\\ud800"}',                 # a lone surrogate
              b'{"user_id": "f", "ts": 0, "x": "\\q"}',                     # a bad escape
              b'{"user_id": "g", "ts": 0, "x": "a\tb"}',                     # a raw control char
              b'{"user_id": "h", "ts": 0, "x": "\xff"}',                     # not UTF-8, ignored field
              b'{"user_id": "i", "ts": 0, "x": 123456789012345678901234}',   # beyond 64 bits
              b'{"user_id": "j", "ts": 0, "x": [1, {"y": 1e400}]}',          # beyond a double
              b'{"user_id": "k", "ts": 0, "user_id": "k2"}',                 # a repeated key
              b' {"user_id": "l", "ts": 0} ']
    cols, rejected = decode(FieldMap(), values)
    check(FieldMap(), values)
    assert [r.offset for r in rejected][:4] == [2, 3, 4, 6]
    assert "out of the supported range" in rejected[3].detail
    assert {"a", "7", "b", "d", "k2", "l"} <= {cols[i].key for i in range(len(cols))}


# ------------------------------------------------------------------ real datasets

REAL = [
    ("rees46.toml", DATA / "rees46-multicategory" / "2019-Oct_head5000.csv"),
    ("nasa.toml", DATA / "nasa-http-19950801" / "nasa_19950801.tsv"),
    ("sec-edgar.toml", next((DATA / "sec-edgar-logs").glob("*.csv"), DATA / "sec-edgar-logs")),
]


@needs_core
@pytest.mark.parametrize(("example", "path"), REAL, ids=[e for e, _ in REAL])
def test_real_records_as_produced_to_kafka(example: str, path) -> None:
    """What ``sessionize produce`` publishes of each real dataset, decoded both ways (the
    records as JSON with the default field names), nearly all on the compiled path."""
    from sessionize.settings import load_settings

    settings = load_settings(REPO / "examples" / example, env={})
    source = open_source(path, settings.input.format, settings.input.fields,
                         **({"delimiter": "\t"} if path.suffix == ".tsv" else {}))
    values = [orjson.dumps(event_record(ev)) for batch in source.batches(5000)
              for ev in batch if isinstance(ev, Event)]
    assert len(values) > 4000
    decoded = check(FieldMap(), values)
    out = columnar.ColumnDecoder(FieldMap())._core.decode(values)
    assert decoded == len(values) and out["status"].sum() == 0


def test_without_the_core_it_says_why(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(columnar, "_JsonDecoder", None)
    assert columnar.unsupported_reason(FieldMap()) == "the compiled core is not built"
    with pytest.raises(ValueError, match="cannot decode in columns"):
        columnar.ColumnDecoder(FieldMap())


@needs_core
def test_field_maps_it_cannot_decode_say_why() -> None:
    assert "several fields" in columnar.unsupported_reason(FieldMap(ts=("d", "t")))
    assert "%Y" in columnar.unsupported_reason(FieldMap(ts_format="%Y-%m-%d %H:%M:%S"))
