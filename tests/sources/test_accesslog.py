"""AccessLogSource on two real combined-format logs, and the format's corner cases."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from sessionize.engine.event import Event, Reason
from sessionize.errors import ConfigError
from sessionize.sources import AccessLogSource
from sessionize.sources.accesslog import parse_clf_time
from tests.conftest import DATA
from tests.sources.helpers import ms, read_all

HACKERS = DATA / "basjes-hackers-combined" / "hackers-access.log"
APACHE = DATA / "elastic-apache-combined" / "apache_logs"


def test_hackers_log_by_ip() -> None:
    source = AccessLogSource(HACKERS, key="ip")
    got = read_all(source)
    assert (len(got.events), len(got.rejections), source.skipped) == (3456, 0, 0)
    assert len(got.keys) == 520
    first = got.events[0]
    assert first == Event(
        key="195.154.46.135", ts=ms("2015-10-25T03:11:25+00:00"), type="page_view",
        page="/linux/doing-pxe-without-dhcp-control", referrer="http://howto.basjes.nl/",
        user_agent="Mozilla/5.0 (Windows NT 5.1; rv:35.0) Gecko/20100101 Firefox/35.0",
        offset=1, raw=HACKERS.read_text().split("\n", 1)[0])
    assert first.ts == 1_445_742_685_000
    assert got.events[-1].ts == ms("2015-10-30T14:59:39+00:00")
    # the file has no static assets, and its spam bots all pose as browsers
    assert Counter(e.type for e in got.events) == {"page_view": 3456}
    assert not any(e.is_bot for e in got.events)


def test_hackers_log_absolute_form_requests_count_as_their_path() -> None:
    pages = Counter(e.page for e in read_all(AccessLogSource(HACKERS)).events)
    assert not any(str(p).startswith("http") for p in pages)
    assert pages["/join_form"] > 0


def test_hackers_log_by_ip_and_user_agent_splits_visitors() -> None:
    got = read_all(AccessLogSource(HACKERS))
    assert len(got.keys) == 654
    assert got.events[0].key == ("195.154.46.135|Mozilla/5.0 (Windows NT 5.1; rv:35.0) "
                                 "Gecko/20100101 Firefox/35.0")


def test_apache_logs_one_malformed_line_assets_skipped_and_counted() -> None:
    source = AccessLogSource(APACHE, key="ip")
    got = read_all(source)
    assert (len(got.events), len(got.rejections), source.skipped) == (4593, 1, 5406)
    assert len(got.events) + len(got.rejections) + source.skipped == 10_000
    assert len(got.keys) == 1348  # IPs that fetched at least one page, not only assets
    (bad,) = got.rejections
    assert bad.reason is Reason.MALFORMED
    assert bad.offset == 8899
    assert bad.detail == 'line 8899: unterminated quoted User-Agent (a " without its closing ")'
    assert bad.raw == APACHE.read_text().splitlines()[8898]
    assert bad.raw.endswith('"Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/'
                            'bot.html')
    assert {e.type for e in got.events} == {"page_view"}


def test_apache_logs_with_assets_as_events() -> None:
    source = AccessLogSource(APACHE, key="ip", skip_assets=False)
    got = read_all(source)
    assert (len(got.events), len(got.rejections), source.skipped) == (9999, 1, 0)
    assert Counter(e.type for e in got.events) == {"asset": 5406, "page_view": 4593}
    # all 1,753 IPs of the file: the malformed line's IP has other, valid lines
    assert len(got.keys) == 1753
    assert "46.118.127.106" in got.keys
    assert got.events[0].ts == ms("2015-05-17T10:05:03+00:00")


def test_apache_logs_bots_flagged_and_campaigns_read() -> None:
    events = read_all(AccessLogSource(APACHE)).events
    by_line = {e.offset: e for e in events}
    googlebot = by_line[8894]
    assert googlebot.is_bot
    assert googlebot.referrer is None
    assert not by_line[8895].is_bot  # Chrome
    assert by_line[8898].user_agent == "portscout/0.8.1"
    feed = [e for e in events if e.campaign]
    assert len(feed) == 153
    assert str(feed[0].campaign).startswith("feedburner/feed/Feed")
    assert "?" not in str(feed[0].page)


def write(tmp_path: Path, *lines: str) -> Path:
    p = tmp_path / "access.log"
    p.write_text("\n".join(lines) + "\n")
    return p


def test_common_and_combined_lines_mix(tmp_path: Path) -> None:
    p = write(tmp_path,
              '10.0.0.1 - frank [10/Oct/2000:13:55:36 -0700] "GET /a.html?x=1 HTTP/1.0" 200 2326',
              '10.0.0.2 - - [10/Oct/2000:13:55:37 -0700] "GET / HTTP/1.1" 304 - "-" "-"',
              '10.0.0.3 - - [10/Oct/2000:13:55:38 -0700] "\\x16\\x03\\x01" 400 226 "-" "-"',
              '10.0.0.4 - - [10/Oct/2000:13:55:39 -0700] "-" 408 - "-" "-"',
              '10.0.0.5 - - [10/Oct/2000:13:55:40 -0700] "GET /q\\"uote HTTP/1.1" 200 5 '
              '"http://r/" "curl/8.0"')
    events = read_all(AccessLogSource(p)).events
    assert [(e.key, e.page, e.user_agent) for e in events] == [
        ("10.0.0.1", "/a.html", None),
        ("10.0.0.2", "/", None),
        ("10.0.0.3", "\\x16\\x03\\x01", None),
        ("10.0.0.4", None, None),
        ("10.0.0.5|curl/8.0", '/q\\"uote', "curl/8.0"),
    ]
    assert events[0].ts == ms("2000-10-10T20:55:36+00:00")
    assert {e.type for e in events} == {"page_view"}
    assert [e.is_bot for e in events] == [False, False, False, False, True]


def test_unparseable_lines_are_malformed_with_a_reason(tmp_path: Path) -> None:
    p = write(tmp_path,
              "just some text",
              '10.0.0.1 - - [10/Oct/2000:13:55:36 -0700] "GET / HTTP/1.0 200 12',
              '10.0.0.1 - - [10/Oct/2000:13:55:36 -0700] "GET / HTTP/1.0" 200 12 "http://x/',
              '10.0.0.1 - - [31/Feb/2000:13:55:36 -0700] "GET / HTTP/1.0" 200 12',
              '10.0.0.1 - - [10/Oct/2000:13:55:36] "GET / HTTP/1.0" 200 12',
              '10.0.0.1 - - [10/Oct/2000:13:55:36 -0700] "GET / HTTP/1.0" OK 12')
    got = read_all(AccessLogSource(p))
    assert got.events == []
    assert [r.detail for r in got.rejections] == [
        "line 1: not in Common or Combined Log Format: no [date] after host, ident and user",
        'line 2: unterminated quoted request (a " without its closing ")',
        'line 3: unterminated quoted Referer (a " without its closing ")',
        "line 4: bad timestamp [31/Feb/2000:13:55:36 -0700]: no such date or time",
        "line 5: bad timestamp [10/Oct/2000:13:55:36]: expected e.g. "
        "[10/Oct/2000:13:55:36 -0700]",
        'line 6: not in Common or Combined Log Format: expected "request" status bytes, '
        'optionally followed by "referer" "user-agent"',
    ]
    assert [r.offset for r in got.rejections] == [1, 2, 3, 4, 5, 6]


@pytest.mark.parametrize(("text", "iso"), [
    ("10/Oct/2000:13:55:36 -0700", "2000-10-10T13:55:36-07:00"),
    ("25/Oct/2015:04:11:25 +0100", "2015-10-25T04:11:25+01:00"),
    ("29/Feb/2024:23:59:59 +0530", "2024-02-29T23:59:59+05:30"),
    ("01/Jan/1970:00:00:00 +0000", "1970-01-01T00:00:00+00:00"),
    ("31/Dec/1969:23:59:59 +0000", "1969-12-31T23:59:59+00:00"),
    ("10/Oct/2000:13:55:36.250 +0000", "2000-10-10T13:55:36.250+00:00"),
])
def test_clf_time(text: str, iso: str) -> None:
    assert parse_clf_time(text) == ms(iso)


def test_bad_options_are_config_errors() -> None:
    with pytest.raises(ConfigError, match="ip\\+ua, ip"):
        AccessLogSource(HACKERS, key="user")
    with pytest.raises(ConfigError, match="bot_pattern"):
        AccessLogSource(HACKERS, bot_pattern="(")
