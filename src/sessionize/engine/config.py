"""The engine's rules (SEMANTICS.md §2, §3, §6) as one validated, immutable value.

Everything the engine decides depends only on this object and the input, which is what makes it
deterministic. Validation happens here, at construction, so a bad value is refused at start-up and
never discovered halfway through a billion events.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

from sessionize.errors import ConfigError

DEFAULT_GAP_MS = 30 * 60_000
DEFAULT_GRACE_MS = 24 * 3_600_000
DEFAULT_SEAL_RETENTION_MS = 7 * 86_400_000  # how long a key remembers its last closed session
ANY_TYPE = "*"  # key of the fallback entry in gap_by_type


@dataclass(frozen=True)
class MetricsConfig:
    """Which events count as page views and conversions, and how long a path may grow."""

    page_view_types: frozenset[str] = frozenset({"page_view", "pageview", "view"})
    conversion_types: frozenset[str] = frozenset({"purchase", "conversion", "order"})
    path_cap: int = 50
    engaged_min_duration_ms: int = 10_000
    engaged_min_page_views: int = 2

    def __post_init__(self) -> None:
        if self.path_cap < 0:
            raise ConfigError(f"metrics.path_cap must be >= 0, got {self.path_cap}")
        if self.engaged_min_duration_ms < 0:
            raise ConfigError("metrics.engaged_min_duration must be >= 0")


@dataclass(frozen=True)
class EngineConfig:
    """Session rules. ``grace_ms=None`` means unbounded grace (batch/backfill: nothing is late)."""

    gap_ms: int = DEFAULT_GAP_MS
    grace_ms: int | None = DEFAULT_GRACE_MS
    gap_by_type: dict[str, int] | None = None
    max_duration_ms: int | None = None
    midnight_tz: str | None = None
    dedup: bool = False
    campaign_split: bool = False
    max_future_ms: int | None = None
    idle_timeout_ms: int | None = None
    seal_retention_ms: int = DEFAULT_SEAL_RETENTION_MS
    track_event_ids: bool = False
    metrics: MetricsConfig = field(default_factory=MetricsConfig)

    def __post_init__(self) -> None:
        if self.gap_by_type is None and self.gap_ms <= 0:
            raise ConfigError(
                f"gap must be greater than 0 (got {self.gap_ms} ms): a session is the events "
                "separated by at most one gap, so a gap of 0 would make every event its own "
                "session. Set e.g. gap = \"30m\"."
            )
        if self.gap_by_type is not None:
            if not self.gap_by_type:
                raise ConfigError("gap_by_type is empty: give at least one 'type = duration' entry")
            for event_type, gap in self.gap_by_type.items():
                if gap <= 0:
                    raise ConfigError(
                        f"gap_by_type[{event_type!r}] must be greater than 0 (got {gap} ms)"
                    )
        if self.grace_ms is not None and self.grace_ms < 0:
            raise ConfigError(
                f"grace must be >= 0 or 'unbounded' (got {self.grace_ms} ms)"
            )
        if self.max_duration_ms is not None and self.max_duration_ms <= 0:
            raise ConfigError(f"max_duration must be greater than 0 (got {self.max_duration_ms} ms)")
        if self.max_future_ms is not None and self.max_future_ms < 0:
            raise ConfigError(f"max_future must be >= 0 (got {self.max_future_ms} ms)")
        if self.seal_retention_ms < 0:
            raise ConfigError(f"seal_retention must be >= 0 (got {self.seal_retention_ms} ms)")
        if self.idle_timeout_ms is not None and self.idle_timeout_ms <= 0:
            raise ConfigError(f"idle_timeout must be greater than 0 (got {self.idle_timeout_ms} ms)")
        if self.midnight_tz is not None:
            check_time_zone(self.midnight_tz, setting="split_at_midnight")

    @property
    def max_gap_ms(self) -> int:
        """``g_max`` of SEMANTICS.md §3: the largest gap any event can have."""
        if self.gap_by_type is None:
            return self.gap_ms
        return max(self.gap_by_type.values())

    def gap_for(self, event_type: str | None) -> int | None:
        """The gap an event of this type opens, or None when it has none (reason ``no_gap``)."""
        if self.gap_by_type is None:
            return self.gap_ms
        gap = self.gap_by_type.get(event_type) if event_type is not None else None
        return gap if gap is not None else self.gap_by_type.get(ANY_TYPE)


def check_time_zone(name: str, *, setting: str) -> ZoneInfo:
    """The IANA zone called ``name``, or a ConfigError that says how to spell one."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, TypeError, OSError):
        close = difflib.get_close_matches(str(name), sorted(available_timezones()), n=3,
                                          cutoff=0.6)
        hint = f" (did you mean {' or '.join(repr(c) for c in close)}?)" if close else ""
        raise ConfigError(
            f"{setting}: unknown time zone {name!r}{hint}; use an IANA name such as 'UTC', "
            "'Europe/Berlin' or 'America/New_York'"
        ) from None
