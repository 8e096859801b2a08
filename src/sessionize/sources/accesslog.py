"""Apache / Nginx access logs (Common and Combined Log Format) as page-view events.

An access log has no user id, so the visitor key is the client IP, by default refined by the
User-Agent (people behind one NAT or proxy usually differ in browser). Static assets (CSS,
images, ...) are requests a browser makes on its own, not pages a person viewed: by default they
are skipped and counted in ``skipped`` so the totals still add up. Bots are kept but flagged.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from functools import lru_cache
from urllib.parse import parse_qs, urlsplit

from sessionize.engine.event import Event, Reason, Rejection
from sessionize.errors import ConfigError
from sessionize.sources.files import FileSource, Item, LineReader

DEFAULT_ASSET_EXTENSIONS: tuple[str, ...] = (
    ".css", ".js", ".mjs", ".map", ".png", ".jpg", ".jpeg", ".gif", ".ico", ".svg", ".webp",
    ".avif", ".bmp", ".tif", ".tiff", ".woff", ".woff2", ".ttf", ".otf", ".eot",
)
DEFAULT_BOT_PATTERN = (
    r"bot\b|crawl|spider|slurp|archiver|curl|wget|python-requests|python-urllib|aiohttp|"
    r"httpclient|http-client|okhttp|libwww|lwp-|java/|go-http-client|scrapy|nutch|"
    r"facebookexternalhit|mediapartners|feedfetcher|headlesschrome|phantomjs|pingdom|uptime|"
    r"monitoring|preview|masscan|zgrab|nmap|nikto|sqlmap"
)
KEY_MODES = ("ip+ua", "ip")

# %h %l %u [%t] "%r" %>s %b, then optionally "%{Referer}i" "%{User-Agent}i".
# Quoted fields allow backslash escapes, as Apache writes them (\" and \xNN).
_QUOTED = r'"([^"\\]*(?:\\.[^"\\]*)*)"'
_LINE = re.compile(
    rf'(\S+) \S+ \S+ \[([^\]]+)\] {_QUOTED} (\d{{3}}|-) (\d+|-)'
    rf'(?: {_QUOTED} {_QUOTED})?[ \t]*'
)
_QUOTE_NAMES = ("request", "Referer", "User-Agent")
_MONTHS = {m: i for i, m in enumerate(
    ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"), 1)}
_MAX_PAGE = 200


class AccessLogSource(FileSource):
    """Page-view events from an access log file (plain or compressed)."""

    def __init__(self, path: str | os.PathLike[str], *, key: str = "ip+ua",
                 skip_assets: bool = True,
                 asset_extensions: tuple[str, ...] = DEFAULT_ASSET_EXTENSIONS,
                 bot_pattern: str = DEFAULT_BOT_PATTERN) -> None:
        super().__init__(path)
        if key not in KEY_MODES:
            raise ConfigError(f"access log key must be one of {', '.join(KEY_MODES)}; "
                              f"got {key!r}")
        try:
            bots = re.compile(bot_pattern, re.IGNORECASE)
        except re.error as exc:
            raise ConfigError(f"bot_pattern is not a valid regular expression: {exc}") from None
        self.key_mode = key
        self.skip_assets = skip_assets
        self.asset_extensions = tuple(e.lower() for e in asset_extensions)
        # Pages and User-Agents repeat a lot in a log: classify each distinct one once.
        self._is_bot = lru_cache(maxsize=8192)(lambda ua: bots.search(ua) is not None)
        self._request = lru_cache(maxsize=16384)(self._classify_request)

    def _items(self, reader: LineReader) -> Iterator[Item]:
        for lineno, text, bad in reader.lines():
            if bad is not None:
                yield Rejection(Reason.MALFORMED, text, f"line {lineno}: {bad}", lineno)
                continue
            item = self._parse(text, lineno)
            if item is None:
                self.skipped += 1
            else:
                yield item

    def _parse(self, line: str, lineno: int) -> Item | None:
        """The line as an Event, a Rejection, or None for a skipped static asset."""
        m = _LINE.fullmatch(line)
        if m is None:
            return Rejection(Reason.MALFORMED, line, f"line {lineno}: {_diagnose(line)}", lineno)
        ip, when, request, _status, _size, referer, agent = m.groups()
        try:
            ts = parse_clf_time(when)
        except ValueError as exc:
            return Rejection(Reason.MALFORMED, line, f"line {lineno}: {exc}", lineno)
        page, campaign, is_asset = self._request(request)
        if is_asset and self.skip_assets:
            return None
        ua = agent if agent and agent != "-" else None
        key = f"{ip}|{ua}" if ua is not None and self.key_mode == "ip+ua" else ip
        return Event(
            key=key, ts=ts, type="asset" if is_asset else "page_view", page=page,
            referrer=referer if referer and referer != "-" else None, campaign=campaign,
            user_agent=ua, is_bot=ua is not None and self._is_bot(ua), offset=lineno, raw=line,
        )

    def _classify_request(self, request: str) -> tuple[str | None, str | None, bool]:
        """``(page, campaign, is static asset)`` of a request line."""
        page, query = _split_request(request)
        is_asset = page is not None and page.lower().endswith(self.asset_extensions)
        return page, _campaign(query) if "utm_" in query else None, is_asset


def _split_request(request: str) -> tuple[str | None, str]:
    """``(path without query, query)`` of a request line ``METHOD PATH PROTO``; a target in
    absolute form (``GET http://host/path``) is reduced to its path, so it counts as that page.

    Scanners send anything; when the request is not in that shape the (shortened) request text
    itself is the page, so the hit still counts toward the visitor's session."""
    parts = request.split(" ")
    if 2 <= len(parts) <= 3 and parts[0].isalpha() and parts[0].isupper():
        target = parts[1]
    elif request in ("", "-"):
        return None, ""
    else:
        return request[:_MAX_PAGE], ""
    if target.startswith(("http://", "https://")):  # absolute form, as proxies and bots send
        url = urlsplit(target)
        return url.path or "/", url.query
    path, _, query = target.partition("?")
    return path.partition("#")[0] or "/", query


def _campaign(query: str) -> str | None:
    """``source/medium/campaign`` from utm_ parameters, in the form the RecordDecoder uses."""
    params = parse_qs(query)
    values = [params.get(f"utm_{n}", [""])[0] for n in ("source", "medium", "campaign")]
    return "/".join(values) if any(values) else None


@lru_cache(maxsize=16384)
def parse_clf_time(text: str) -> int:
    """``10/Oct/2000:13:55:36 -0700`` (optionally with ``.fff`` seconds) to UTC epoch ms.

    Parsed by hand: strptime is the slowest step of a log line, and the format never varies."""
    try:
        stamp, zone = text.split(" ")
        day, mon, rest = stamp.split("/")
        year, hh, mm, ss = rest.split(":")
        month = _MONTHS[mon]
        sign = {"+": 1, "-": -1}[zone[0]]
        if not (len(zone) == 5 and zone[1:].isdigit() and ss.replace(".", "", 1).isdigit()):
            raise ValueError
        offset_min = sign * (int(zone[1:3]) * 60 + int(zone[3:5]))
        ms = round(float(ss) * 1000)
        d, y, h, mi = int(day), int(year), int(hh), int(mm)
    except (ValueError, KeyError, IndexError):
        raise ValueError(f"bad timestamp [{text}]: expected e.g. [10/Oct/2000:13:55:36 -0700]"
                         ) from None
    if not (1 <= d <= _month_days(y, month) and 0 <= h < 24 and 0 <= mi < 60 and ms < 61_000):
        raise ValueError(f"bad timestamp [{text}]: no such date or time")
    minutes = (_days_from_civil(y, month, d) * 24 + h) * 60 + mi - offset_min
    return minutes * 60_000 + ms


def _days_from_civil(y: int, m: int, d: int) -> int:
    """Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm)."""
    y -= m <= 2
    era = y // 400
    yoe = y - era * 400
    doy = (153 * (m + (-3 if m > 2 else 9)) + 2) // 5 + d - 1
    doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    return era * 146097 + doe - 719468


def _month_days(y: int, m: int) -> int:
    if m == 2:
        return 29 if y % 4 == 0 and (y % 100 != 0 or y % 400 == 0) else 28
    return 30 if m in (4, 6, 9, 11) else 31


def _diagnose(line: str) -> str:
    """Why a line is not in Common/Combined format, as precisely as can be told cheaply."""
    quotes = len(re.findall(r'(?<!\\)"', line))
    if quotes % 2:
        field = _QUOTE_NAMES[min(quotes // 2, 2)]
        return f'unterminated quoted {field} (a " without its closing ")'
    if not re.match(r"\S+ \S+ \S+ \[[^\]]+\] ", line):
        return "not in Common or Combined Log Format: no [date] after host, ident and user"
    return ('not in Common or Combined Log Format: expected "request" status bytes, '
            'optionally followed by "referer" "user-agent"')
