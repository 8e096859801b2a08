"""Timestamps in the forms real data uses, to integer UTC milliseconds (SEMANTICS.md §3).

A timestamp without a UTC offset is read in the configured input zone. A local time that does
not exist there (the hour skipped by DST) is an error the caller reports as ``malformed``; a
repeated local hour resolves to its first occurrence (``fold=0``).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo

from sessionize.engine.config import check_time_zone
from sessionize.errors import ConfigError

_EPOCH_UNITS = {"epoch_s": 1000, "epoch_ms": 1, "epoch_us": 0.001}


class BadTimestamp(ValueError):
    """The value cannot be read as a timestamp; the message says why (becomes the reason detail)."""


def make_parser(fmt: str = "iso", input_tz: str = "UTC") -> Callable[[object], int]:
    """A function from a raw value to UTC epoch ms for ``fmt``: ``iso`` (also accepts epoch
    numbers), ``epoch_s``, ``epoch_ms``, ``epoch_us``, or a ``strptime`` pattern."""
    tz = check_time_zone(input_tz, setting="input_tz")
    if fmt == "iso":
        return _iso_parser(tz)
    if fmt in _EPOCH_UNITS:
        return _epoch_parser(_EPOCH_UNITS[fmt])
    if "%" not in fmt:
        raise ConfigError(
            f"timestamp format {fmt!r} is not known: use 'iso', 'epoch_s', 'epoch_ms', "
            "'epoch_us' or a strptime pattern such as '%Y-%m-%d %H:%M:%S'"
        )
    return _pattern_parser(fmt, tz)


def _epoch_parser(scale: float) -> Callable[[object], int]:
    def parse(value: object) -> int:
        try:
            return round(float(value) * scale)  # type: ignore[arg-type]
        except (TypeError, ValueError, OverflowError):
            raise BadTimestamp(f"not an epoch number: {value!r}") from None

    return parse


def _iso_parser(tz: ZoneInfo) -> Callable[[object], int]:
    @lru_cache(maxsize=65536)
    def parse_local(text: str, dt: datetime) -> int:
        return _checked(dt, tz, text)  # zone rules and the DST check: worth caching

    def parse_text(text: str) -> int:
        try:
            dt = datetime.fromisoformat(text)
        except ValueError:
            try:
                return round(float(text))  # an epoch-ms number written as text
            except (ValueError, OverflowError):
                raise BadTimestamp(f"not an ISO-8601 timestamp: {text!r}") from None
        if dt.tzinfo is None:
            return parse_local(text, dt)
        # with an offset: plain arithmetic, cheaper than a cache lookup that mostly misses
        # (millisecond timestamps rarely repeat)
        try:
            delta = dt - _EPOCH
        except OverflowError:
            raise BadTimestamp(f"{text!r} is out of the representable range") from None
        return (delta.days * 86_400 + delta.seconds) * 1000 + delta.microseconds // 1000

    def parse(value: object) -> int:
        if isinstance(value, bool):
            raise BadTimestamp(f"not a timestamp: {value!r}")
        if isinstance(value, (int, float)):
            try:
                return int(value)  # epoch milliseconds
            except (ValueError, OverflowError):
                raise BadTimestamp(f"not a finite epoch number: {value!r}") from None
        if isinstance(value, str):
            return parse_text(value.strip())
        raise BadTimestamp(f"not a timestamp: {value!r}")

    return parse


def _pattern_parser(fmt: str, tz: ZoneInfo) -> Callable[[object], int]:
    @lru_cache(maxsize=65536)
    def parse_text(text: str) -> int:
        try:
            dt = datetime.strptime(text, fmt)
        except ValueError:
            raise BadTimestamp(f"{text!r} does not match the format {fmt!r}") from None
        return _checked(dt, tz, text)

    def parse(value: object) -> int:
        if not isinstance(value, str):
            raise BadTimestamp(f"not a timestamp string: {value!r}")
        return parse_text(value.strip())

    return parse


def _checked(dt: datetime, tz: ZoneInfo, text: str) -> int:
    try:
        return to_epoch_ms(dt, tz)
    except OverflowError:
        raise BadTimestamp(f"{text!r} is out of the representable range") from None


def to_epoch_ms(dt: datetime, tz: ZoneInfo) -> int:
    """UTC ms of ``dt``; a naive ``dt`` is local time in ``tz`` and must exist there."""
    if dt.tzinfo is None:
        local = dt.replace(tzinfo=tz, fold=0)
        back = local.astimezone(UTC).astimezone(tz)
        if back.replace(tzinfo=None) != dt:
            raise BadTimestamp(
                f"{dt.isoformat()} does not exist in {tz.key} (skipped by a DST change)"
            )
        dt = local
    delta = dt - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1000 + delta.microseconds // 1000


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def format_ms(ms: int | None) -> str | None:
    """ISO-8601 UTC with milliseconds, the form every output uses (``2026-01-01T00:00:00.000Z``)."""
    if ms is None:
        return None
    # naive arithmetic + isoformat: about 3x cheaper than strftime (every API record has three)
    return (_NAIVE_EPOCH + timedelta(milliseconds=ms)).isoformat(timespec="milliseconds") + "Z"


_NAIVE_EPOCH = datetime(1970, 1, 1)
