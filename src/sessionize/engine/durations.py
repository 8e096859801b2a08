"""Human durations ("30m", "1h30m", "250ms") to integer milliseconds and back.

Configuration is written by people, so it accepts the forms they type and says exactly what is
wrong when it cannot read one.
"""

from __future__ import annotations

import re

from sessionize.errors import ConfigError

_UNIT_MS = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000}
_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)")
UNBOUNDED = None


def parse_duration(text: str | int | float, *, name: str) -> int:
    """Milliseconds of ``text``: a string with units, which may chain (``1h30m``); a number
    without a unit only when it is 0 (``--gap 30`` means minutes to one person and
    milliseconds to another, so it is refused with the spellings that would work)."""
    if isinstance(text, bool):
        raise ConfigError(f"{name}: expected a duration such as '30m', got {text!r}")
    s = str(text).strip().lower().replace(" ", "")
    if re.fullmatch(r"-?\d+(\.\d+)?", s):
        if float(s) == 0:
            return 0
        raise ConfigError(
            f"{name}: {text!r} has no unit; write e.g. '{s}m' (minutes), '{s}s' (seconds) or "
            f"'{s}ms' (milliseconds)")
    pos, total = 0, 0.0
    negative = s.startswith("-")
    if negative:
        pos = 1
    for m in _PART.finditer(s, pos):
        if m.start() != pos:
            break
        total += float(m.group(1)) * _UNIT_MS[m.group(2)]
        pos = m.end()
    if pos != len(s) or pos == (1 if negative else 0):
        raise ConfigError(
            f"{name}: cannot read duration {text!r}; write a number with a unit, "
            "e.g. '30m', '90s', '1h30m', '500ms' (units: ms, s, m, h, d)"
        )
    return -int(total) if negative else int(total)


def parse_grace(text: str | int | float | None, *, name: str = "grace") -> int | None:
    """Grace in ms, or ``None`` for unbounded (batch/backfill: nothing is ever late)."""
    if text is None or (isinstance(text, str) and text.strip().lower() in ("unbounded", "inf", "none")):
        return UNBOUNDED
    return parse_duration(text, name=name)


def format_duration(ms: int | None) -> str:
    """The shortest exact spelling of ``ms`` (``1800000`` -> ``30m``), for summaries and docs."""
    if ms is None:
        return "unbounded"
    if ms == 0:
        return "0s"
    out, rest = [], abs(ms)
    for unit in ("d", "h", "m", "s", "ms"):
        n, rest = divmod(rest, _UNIT_MS[unit])
        if n:
            out.append(f"{n}{unit}")
    return ("-" if ms < 0 else "") + "".join(out)
