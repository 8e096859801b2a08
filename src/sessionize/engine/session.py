"""A session under construction, with metrics that merge exactly (SEMANTICS.md §7).

Every aggregate is kept in a form whose merge is exact whatever the arrival order: counts and sums
add; "first"/"last" values carry the ``(ts, seq)`` they were seen at, so the earliest wins on merge
(``seq`` is the arrival number, which breaks timestamp ties in arrival order); the path keeps the
``path_cap`` earliest ``(ts, seq, type)`` triples, and the earliest N of a union are the earliest N
of the parts' earliest N. Derived values (duration, bounce, engaged) are computed only on output.
"""

from __future__ import annotations

from bisect import insort
from typing import Any

from sessionize.engine.config import MetricsConfig
from sessionize.engine.event import Event

Stamped = tuple[int, int, str]  # (ts, seq, value)


class Session:
    """Open state of one session. Mutated in place by the engine; serialised by ``to_record``."""

    __slots__ = (
        "alive",
        "bot",
        "campaign",
        "campaign_key",
        "conversions",
        "count",
        "created",
        "day",
        "emitted",
        "end",
        "entry",
        "event_ids",
        "exit",
        "expires",
        "key",
        "page_views",
        "path",
        "referrer",
        "revenue",
        "sid",
        "start",
        "user_agent",
    )

    def __init__(self, sid: str, key: str, created: int) -> None:
        self.sid = sid
        self.key = key
        self.created = created  # arrival seq of the event that created it: merge tie-break
        self.start = 0
        self.end = 0
        self.expires = 0
        self.count = 0
        self.page_views = 0
        self.conversions = 0
        self.revenue = 0.0
        self.entry: Stamped | None = None
        self.exit: Stamped | None = None
        self.referrer: Stamped | None = None
        self.campaign: Stamped | None = None
        self.user_agent: Stamped | None = None
        self.path: list[Stamped] = []
        self.bot = False
        self.event_ids: list[Stamped] | None = None
        self.day: int | None = None  # local day number, when sessions split at midnight
        self.campaign_key: str | None = None  # campaign that defines it, when splitting on change
        self.emitted = False  # has an upsert for it left the engine? (retract only if so)
        self.alive = True

    def add(self, ev: Event, seq: int, gap: int, m: MetricsConfig, track_ids: bool) -> None:
        """Count one event into this session."""
        ts = ev.ts
        if self.count == 0:
            self.start = self.end = ts
            self.expires = ts + gap
        else:
            if ts < self.start:
                self.start = ts
            if ts > self.end:
                self.end = ts
            if ts + gap > self.expires:
                self.expires = ts + gap
        self.count += 1
        etype = ev.type
        if etype in m.page_view_types:
            self.page_views += 1
        if etype in m.conversion_types:
            self.conversions += 1
            if ev.revenue is not None:
                self.revenue += ev.revenue
        if ev.page:
            here = (ts, seq, ev.page)
            if self.entry is None or here < self.entry:
                self.entry = here
            if self.exit is None or here > self.exit:
                self.exit = here
        if ev.referrer and (self.referrer is None or (ts, seq) < self.referrer[:2]):
            self.referrer = (ts, seq, ev.referrer)
        if ev.campaign and (self.campaign is None or (ts, seq) < self.campaign[:2]):
            self.campaign = (ts, seq, ev.campaign)
        if ev.user_agent and (self.user_agent is None or (ts, seq) < self.user_agent[:2]):
            self.user_agent = (ts, seq, ev.user_agent)
        if ev.is_bot:
            self.bot = True
        if m.path_cap:
            _path_add(self.path, (ts, seq, etype or ""), m.path_cap)
        if track_ids:
            if self.event_ids is None:
                self.event_ids = []
            self.event_ids.append((ts, seq, _event_ref(ev)))

    def absorb(self, other: Session, m: MetricsConfig) -> None:
        """Merge ``other`` into this session; ``other`` is then dead and must be retracted."""
        if other.start < self.start:
            self.start = other.start
        if other.end > self.end:
            self.end = other.end
        if other.expires > self.expires:
            self.expires = other.expires
        self.count += other.count
        self.page_views += other.page_views
        self.conversions += other.conversions
        self.revenue += other.revenue
        self.entry = _earliest(self.entry, other.entry)
        self.exit = _latest(self.exit, other.exit)
        self.referrer = _earliest(self.referrer, other.referrer)
        self.campaign = _earliest(self.campaign, other.campaign)
        self.user_agent = _earliest(self.user_agent, other.user_agent)
        self.bot = self.bot or other.bot
        if m.path_cap:
            self.path = sorted(self.path + other.path)[: m.path_cap]
        if other.event_ids:
            self.event_ids = (self.event_ids or []) + other.event_ids
        other.alive = False

    def to_record(self, status: str, m: MetricsConfig, partition: int = 0) -> dict[str, Any]:
        """The session as the flat record every sink and the API share (SEMANTICS.md §7)."""
        duration = self.end - self.start
        rec: dict[str, Any] = {
            "session_id": self.sid,
            "key": self.key,
            "partition": partition,
            "start": self.start,
            "end": self.end,
            "expires": self.expires,
            "duration_ms": duration,
            "event_count": self.count,
            "status": status,
            "page_views": self.page_views,
            "conversions": self.conversions,
            "revenue": round(self.revenue, 6),
            "bounce": self.count == 1,
            "engaged": (
                duration >= m.engaged_min_duration_ms
                or self.page_views >= m.engaged_min_page_views
                or self.conversions > 0
            ),
            "entry_page": self.entry[2] if self.entry else None,
            "exit_page": self.exit[2] if self.exit else None,
            "referrer": self.referrer[2] if self.referrer else None,
            "campaign": self.campaign[2] if self.campaign else None,
            "user_agent": self.user_agent[2] if self.user_agent else None,
            "is_bot": self.bot,
            "path": [p[2] for p in self.path],
            "path_ms": [p[0] - self.start for p in self.path],
            "path_truncated": self.count > len(self.path),
        }
        if self.event_ids is not None:
            rec["event_ids"] = [e[2] for e in sorted(self.event_ids)]
        return rec

    # -- snapshot: the complete state, so a restored engine continues exactly where it stopped --

    def to_state(self) -> dict[str, Any]:
        state = {name: getattr(self, name) for name in self.__slots__ if name != "alive"}
        state["path"] = list(self.path)  # a copy: the live list keeps changing
        if self.event_ids is not None:
            state["event_ids"] = list(self.event_ids)
        return state

    def seal_state(self) -> dict[str, Any]:
        """A closed session kept as its key's seal: only what the engine reads of a seal (the
        candidate test and the optional rules' narrowing of it: span, local day, campaign; the
        detail of a late event; replacing and forgetting the seal). ``from_state`` reads it
        back (the metrics keep their defaults)."""
        return {"sid": self.sid, "key": self.key, "created": self.created, "start": self.start,
                "end": self.end, "expires": self.expires, "day": self.day,
                "campaign_key": self.campaign_key}

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> Session:
        s = cls(state["sid"], state["key"], state["created"])
        for name, value in state.items():
            if name in ("entry", "exit", "referrer", "campaign", "user_agent") and value is not None:
                value = tuple(value)
            elif name in ("path", "event_ids") and value is not None:
                value = [tuple(v) for v in value]
            setattr(s, name, value)
        return s


def _event_ref(ev: Event) -> str:
    """The event's id, or ``#<offset>`` (its line or Kafka offset) when the input has no ids."""
    if ev.event_id is not None:
        return ev.event_id
    return f"#{ev.offset}" if ev.offset is not None else ""


def _path_add(path: list[Stamped], item: Stamped, cap: int) -> None:
    if not path or item > path[-1]:
        if len(path) < cap:
            path.append(item)
        return
    insort(path, item)
    if len(path) > cap:
        path.pop()


def _earliest(a: Stamped | None, b: Stamped | None) -> Stamped | None:
    if a is None:
        return b
    if b is None:
        return a
    return a if a[:2] <= b[:2] else b


def _latest(a: Stamped | None, b: Stamped | None) -> Stamped | None:
    if a is None:
        return b
    if b is None:
        return a
    return a if a[:2] >= b[:2] else b
