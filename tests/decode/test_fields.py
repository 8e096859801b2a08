"""RecordDecoder: a record becomes an Event or a malformed Rejection that says why."""

from __future__ import annotations

from sessionize.decode.fields import FieldMap, RecordDecoder
from sessionize.engine import Event, Reason, Rejection


def test_multi_field_key_and_timestamp_and_campaign():
    d = RecordDecoder(FieldMap(key=("ip", "ua"), ts=("date", "time"),
                               ts_format="%Y-%m-%d %H:%M:%S", input_tz="America/New_York"))
    ev = d.decode({"ip": "1.2.3.4", "ua": "x", "date": "2003-02-20", "time": "00:00:01",
                   "utm_source": "g", "utm_campaign": "c"}, 7, "raw")
    assert isinstance(ev, Event)
    assert (ev.key, ev.ts, ev.campaign, ev.offset) == ("1.2.3.4|x", 1045717201000, "g//c", 7)


def test_missing_key_is_left_to_the_engine_as_no_key():
    ev = RecordDecoder(FieldMap()).decode({"ts": 5}, 1, "raw")
    assert isinstance(ev, Event) and ev.key is None


def test_unreadable_fields_are_malformed_with_the_field_named():
    d = RecordDecoder(FieldMap())
    bad_ts = d.decode({"user_id": "u", "ts": "yesterday"}, 3, "raw")
    bad_rev = d.decode({"user_id": "u", "ts": 5, "revenue": "lots"}, 4, "raw")
    nul_key = d.decode({"user_id": "u\x00v", "ts": 5}, 5, "raw")
    for r, words in ((bad_ts, "'ts'"), (bad_rev, "'revenue'"), (nul_key, "NUL")):
        assert isinstance(r, Rejection) and r.reason is Reason.MALFORMED and words in r.detail
    assert bad_ts.offset == 3 and bad_ts.raw == "raw"


def test_amounts_that_are_not_finite_are_malformed():
    d = RecordDecoder(FieldMap())
    for value in ("nan", " inf", "-Infinity"):
        r = d.decode({"user_id": "a", "ts": 0, "revenue": value}, 4, "raw")
        assert isinstance(r, Rejection) and r.reason is Reason.MALFORMED
        assert r.detail == f"field 'revenue': not a finite number: {value!r}"
    assert d.decode({"user_id": "a", "ts": 0, "revenue": "1e3"}, 5, "raw").revenue == 1000.0


def test_timestamps_beyond_the_engines_range_are_malformed():
    d = RecordDecoder(FieldMap())
    limit = 1 << 47
    assert d.decode({"user_id": "a", "ts": limit - 1}, 1, "raw").ts == limit - 1
    assert d.decode({"user_id": "a", "ts": -limit}, 1, "raw").ts == -limit
    for ts in (limit, -limit - 1, "9000-01-01T00:00:00Z"):
        r = d.decode({"user_id": "a", "ts": ts}, 2, "raw")
        assert isinstance(r, Rejection) and r.reason is Reason.MALFORMED
        assert "out of the supported range" in r.detail and r.key == "a"
