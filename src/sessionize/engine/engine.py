"""SessionEngine: event-time session windows for one partition (SEMANTICS.md §2-§6).

Pure and deterministic: no I/O, no clock. Events go in; a ChangeSet comes out per call, holding
the batch's net effect (the latest state of every session it touched, the sessions it merged
away, the sessions it closed, and the events it refused). Feeding the same events in any batch
sizes gives the same sessions, because a ChangeSet only coalesces what happened, never decides.

Read ``_accept_or_reject`` next to SEMANTICS.md §3: the names are the spec's names.
"""

from __future__ import annotations

import hashlib
import heapq
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sessionize.engine.columns import EventColumns
from sessionize.engine.config import EngineConfig, check_time_zone
from sessionize.engine.event import Event, Reason, Rejection
from sessionize.engine.session import Session

STATE_VERSION = 1


@dataclass
class ChangeSet:
    """The net effect of one batch, in the order sinks must apply it: retract, upsert, finalise."""

    retractions: list[str] = field(default_factory=list)
    upserts: list[dict[str, Any]] = field(default_factory=list)
    finals: list[dict[str, Any]] = field(default_factory=list)
    rejections: list[Rejection] = field(default_factory=list)
    stream_time: int | None = None
    counted: int = 0
    state: StateDelta | None = None  # only when the engine tracks its state (Kafka workers)
    retracted_keys: list[str] = field(default_factory=list)  # key of each retraction, aligned

    def __bool__(self) -> bool:
        return bool(self.retractions or self.upserts or self.finals or self.rejections)


@dataclass
class StateDelta:
    """How the engine's own state changed in a batch, for a store that persists it so that a
    restarted worker continues exactly (the equivalent of a Kafka Streams store changelog).

    Applying every delta in order to a table of session states, a table of sealed sessions and
    the partition scalars gives what ``snapshot()`` would return at that point."""

    partition: dict[str, Any]  # stream_time, seq, idle_base, counters
    sessions: list[dict[str, Any]] = field(default_factory=list)  # Session.to_state, upsert
    removed: list[str] = field(default_factory=list)  # session ids closed or merged away
    sealed: list[dict[str, Any]] = field(default_factory=list)  # per key, upsert
    unsealed: list[str] = field(default_factory=list)  # keys whose seal was forgotten


class SessionEngine:
    """Sessions of one partition. One instance per partition: stream time is per partition."""

    def __init__(self, config: EngineConfig, partition: int = 0, track_state: bool = False) -> None:
        self.config = config
        self.partition = partition
        self.track_state = track_state
        self.stream_time: int | None = None  # T: max ts of accepted events; never goes back
        self._seq = 0  # arrival number of the next event: ties and session ids
        self._open: dict[str, list[Session]] = {}
        self._closing: list[tuple[int, int, Session]] = []  # (deadline, created, session)
        self._ids: dict[str, set[str]] = {}  # event ids counted in open sessions, per key
        self._idle_base: int | None = None  # T when the partition last received anything
        self._sealed: dict[str, Session] = {}  # per key, its last closed session (see _seal)
        self._unseal: list[tuple[int, int, str]] = []  # (expires + retention, created, key)
        self._seal_retention = config.seal_retention_ms
        self._gmax_plus_grace = (
            None if config.grace_ms is None else config.max_gap_ms + config.grace_ms
        )
        self._track_ids = config.track_event_ids or config.dedup
        self._days = LocalDays(config.midnight_tz) if config.midnight_tz else None
        self.counters: dict[str, int] = {"received": 0, "counted": 0} | {r.value: 0 for r in Reason}
        self._reset_batch()

    # ------------------------------------------------------------------ public surface

    def process(self, events: Iterable[Event]) -> ChangeSet:
        """Sessionize a batch of events (in arrival order) and return its net changes."""
        for ev in events:
            self._accept_or_reject(ev)
        self._idle_base = self.stream_time
        return self._drain()

    def process_event_columns(self, batch: EventColumns) -> ChangeSet:
        """``process`` for a batch decoded in columns (what FastEngine takes), so either engine
        can continue a partition whose source decodes in columns."""
        return self.process([batch[i] for i in range(len(batch))])

    def reject(self, rejections: Iterable[Rejection]) -> None:
        """Account for records refused before they became events (malformed input).

        They go out with the next ChangeSet so that counted + rejected = received holds in one
        place, and they do not move stream time.
        """
        for r in rejections:
            self._refuse(r)

    def flush(self) -> ChangeSet:
        """End of input: close every session that is still open (SEMANTICS.md §3)."""
        remaining = [s for sessions in self._open.values() for s in sessions]
        remaining.sort(key=lambda s: (s.start, s.created))
        for s in remaining:
            self._close(s)
        self._closing.clear()
        return self._drain()

    def advance_idle(self, idle_ms: int) -> ChangeSet:
        """Optional idle close: wall time passed with no input moves stream time on (§3).

        The caller measures ``idle_ms`` (the engine reads no clock). A deviation from pure event
        time, hence off unless ``idle_timeout`` is configured.
        """
        timeout = self.config.idle_timeout_ms
        if timeout is not None and idle_ms >= timeout and self._idle_base is not None:
            target = self._idle_base + idle_ms
            if self.stream_time is None or target > self.stream_time:
                self._advance(target)
        return self._drain()

    def open_sessions(self) -> list[dict[str, Any]]:
        """Records of all sessions still open or inactive (for caches and the API)."""
        return [self._record(s) for sessions in self._open.values() for s in sessions]

    @property
    def open_count(self) -> int:
        return sum(len(v) for v in self._open.values())

    # ------------------------------------------------------------------ the rules

    def _accept_or_reject(self, ev: Event) -> None:
        cfg = self.config
        self.counters["received"] += 1
        seq = self._seq
        self._seq = seq + 1
        key = ev.key
        if not key:
            return self._refuse_event(ev, Reason.NO_KEY, "the event has no key (user id)")
        gap = cfg.gap_for(ev.type)
        if gap is None:
            return self._refuse_event(ev, Reason.NO_GAP, f"no gap is configured for type {ev.type!r}")
        if (
            cfg.max_future_ms is not None
            and ev.received_at is not None
            and ev.ts > ev.received_at + cfg.max_future_ms
        ):
            return self._refuse_event(
                ev, Reason.FUTURE, f"ts is {ev.ts - ev.received_at} ms ahead of its receipt"
            )
        sessions = self._open.get(key)
        if cfg.dedup and sessions and ev.event_id in self._ids.get(key, ()):
            return self._refuse_event(
                ev, Reason.DUPLICATE, f"event id {ev.event_id!r} is already in an open session"
            )

        ts = ev.ts
        sealed = self._sealed.get(key)
        if sessions or sealed is not None:
            candidates = self._candidates(ev, gap, sessions or [], sealed)
            if sealed is not None and any(c is sealed for c in candidates):
                return self._refuse_event(
                    ev, Reason.LATE,
                    f"it touches session {sealed.sid} of this key, already closed (final)",
                )
        else:
            candidates = []
        merged_start, merged_expires = ts, ts + gap
        for c in candidates:
            if c.start < merged_start:
                merged_start = c.start
            if c.expires > merged_expires:
                merged_expires = c.expires
        T = self.stream_time
        if T is not None and cfg.grace_ms is not None:
            cutoff = T - cfg.grace_ms
            if merged_expires < cutoff:
                return self._refuse_event(
                    ev, Reason.LATE,
                    f"its session would expire at {merged_expires}, before the cut-off {cutoff} "
                    f"(stream time {T} - grace {cfg.grace_ms})",
                )

        if candidates:
            survivor = min(candidates, key=_by_start_then_created)
            for c in candidates:
                if c is not survivor:
                    self._merge_away(c, survivor, sessions)  # type: ignore[arg-type]
        else:
            survivor = self._new_session(key, seq, ev)
        survivor.add(ev, seq, gap, cfg.metrics, self._track_ids)
        if cfg.dedup and ev.event_id is not None:
            self._ids.setdefault(key, set()).add(ev.event_id)
        self._dirty[survivor.sid] = survivor
        self.counters["counted"] += 1
        self._batch_counted += 1
        if T is None or ts > T:
            self._advance(ts)

    def _candidates(self, ev: Event, gap: int, sessions: list[Session],
                    sealed: Session | None) -> list[Session]:
        """Sessions of the key whose ``[start, expires]`` touches ``[ts, ts + gap]``, narrowed
        by the optional rules that forbid some merges (§6). ``sealed``, the key's last closed
        session, is included so that the caller can refuse an event that would touch it."""
        ts, reach = ev.ts, ev.ts + gap
        found = [s for s in sessions if s.start <= reach and ts <= s.expires]
        if sealed is not None and sealed.start <= reach and ts <= sealed.expires:
            found.append(sealed)
        if not found:
            return found
        cfg = self.config
        if self._days is not None:
            day = self._days.day_of(ts)
            found = [s for s in found if s.day == day]
        if cfg.campaign_split and found:
            found = _same_campaign(found, ev)
        if cfg.max_duration_ms is not None and found:
            found = _within_max_duration(found, ts, cfg.max_duration_ms)
        return found

    def _new_session(self, key: str, seq: int, ev: Event) -> Session:
        digest = hashlib.blake2b(
            f"{self.partition}\x1f{key}\x1f{seq}".encode(), digest_size=16
        ).hexdigest()
        s = Session(digest, key, seq)
        if self._days is not None:
            s.day = self._days.day_of(ev.ts)
        if self.config.campaign_split:
            s.campaign_key = ev.campaign or None
        self._open.setdefault(key, []).append(s)
        if self._gmax_plus_grace is not None:
            # a lower bound of the real deadline (expires >= ts); _close_due re-files it lazily
            heapq.heappush(self._closing, (ev.ts + self._gmax_plus_grace, seq, s))
        return s

    def _merge_away(self, gone: Session, survivor: Session, sessions: list[Session]) -> None:
        survivor.absorb(gone, self.config.metrics)
        sessions.remove(gone)
        self._dirty.pop(gone.sid, None)
        self._removed.append(gone.sid)
        if gone.emitted:
            self._retracted.append(gone.sid)
            self._retracted_keys.append(gone.key)

    def _advance(self, T: int) -> None:
        """Stream time moves to ``T``: close what is due, forget seals past their retention.
        Both checks are one comparison when nothing is due."""
        self.stream_time = T
        if self._closing and self._closing[0][0] < T:
            self._close_due()
        if self._unseal and self._unseal[0][0] < T - (self.config.grace_ms or 0):
            self._unseal_due(T)

    def _close_due(self) -> None:
        """Close every session that no acceptable event can touch any more (§3)."""
        T = self.stream_time
        heap = self._closing
        extra = self._gmax_plus_grace
        assert T is not None and extra is not None
        due = []
        while heap and heap[0][0] < T:
            _, created, s = heapq.heappop(heap)
            if not s.alive:
                continue
            deadline = s.expires + extra
            if deadline < T:
                due.append(s)
            else:
                heapq.heappush(heap, (deadline, created, s))
        # heap entries are lower bounds whose history differs after a restore: emit in an
        # order that depends only on the sessions, so replays and restores agree exactly
        due.sort(key=_by_start_then_created)
        for s in due:
            self._close(s)

    def _close(self, s: Session) -> None:
        sessions = self._open[s.key]
        sessions.remove(s)
        if not sessions:
            del self._open[s.key]
        ids = self._ids.get(s.key) if self.config.dedup else None
        if ids is not None and s.event_ids:
            ids.difference_update(e[2] for e in s.event_ids)
            if not ids:
                del self._ids[s.key]
        s.alive = False
        self._dirty.pop(s.sid, None)
        self._removed.append(s.sid)
        self._finals.append(s.to_record("closed", self.config.metrics, self.partition))
        self._seal(s)

    def _seal(self, s: Session) -> None:
        """Remember the key's last closed session, so that an event touching it is late.

        §3's closing point assumes an event is judged alone or with the session itself; but an
        old event can also reach a later open session of the key (and be accepted through it),
        and each such event moves that session's start back by up to a gap. Without this, such
        a chain could bring a session within a gap of a final one (found by the property
        tests). Only the latest closed session matters: a chain cannot step over it.
        """
        s.path, s.event_ids = [], None  # keep only what the candidate test reads
        current = self._sealed.get(s.key)
        if current is None or s.expires >= current.expires:
            self._sealed[s.key] = s
            self._resealed.add(s.key)
            heapq.heappush(self._unseal, (s.expires + self._seal_retention, s.created, s.key))

    def _unseal_due(self, T: int) -> None:
        """Forget seals older than ``seal_retention`` beyond the cut-off, for keys with nothing
        open: bounded memory, at the price that a chain of more than retention/gap reverse-
        ordered late events of one key could land within a gap of a forgotten final session."""
        heap = self._unseal
        cutoff = T - (self.config.grace_ms or 0)
        while heap and heap[0][0] < cutoff:
            _, _, key = heapq.heappop(heap)
            sealed = self._sealed.get(key)
            if (sealed is not None and key not in self._open
                    and sealed.expires + self._seal_retention < cutoff):
                del self._sealed[key]
                self._resealed.add(key)

    def _refuse_event(self, ev: Event, reason: Reason, detail: str) -> None:
        self._refuse(
            Rejection(reason, ev.raw, detail, ev.offset, ev.key, ev.event_id, ev.ts), counted=True
        )

    def _refuse(self, r: Rejection, counted: bool = False) -> None:
        if not counted:
            self.counters["received"] += 1
        self.counters[r.reason.value] += 1
        self._rejections.append(r)

    # ------------------------------------------------------------------ output

    def _record(self, s: Session) -> dict[str, Any]:
        T = self.stream_time
        status = "inactive" if T is not None and s.expires < T else "open"
        return s.to_record(status, self.config.metrics, self.partition)

    def _drain(self) -> ChangeSet:
        upserts = []
        for s in self._dirty.values():
            s.emitted = True
            upserts.append(self._record(s))
        out = ChangeSet(
            self._retracted, upserts, self._finals, self._rejections,
            self.stream_time, self._batch_counted,
            self._state_delta() if self.track_state else None,
            self._retracted_keys,
        )
        self._reset_batch()
        return out

    def _state_delta(self) -> StateDelta:
        sealed = [self._sealed[k].seal_state() for k in sorted(self._resealed) if k in self._sealed]
        return StateDelta(
            partition=self._scalars(),
            sessions=[s.to_state() for s in self._dirty.values()],
            removed=self._removed,
            sealed=sealed,
            unsealed=[k for k in sorted(self._resealed) if k not in self._sealed],
        )

    def _scalars(self) -> dict[str, Any]:
        return {"stream_time": self.stream_time, "seq": self._seq, "idle_base": self._idle_base,
                "counters": dict(self.counters)}

    def _reset_batch(self) -> None:
        self._dirty: dict[str, Session] = {}
        self._retracted: list[str] = []
        self._retracted_keys: list[str] = []
        self._finals: list[dict[str, Any]] = []
        self._rejections: list[Rejection] = []
        self._batch_counted = 0
        self._removed: list[str] = []
        self._resealed: set[str] = set()

    # ------------------------------------------------------------------ snapshot / restore

    def snapshot(self) -> dict[str, Any]:
        """Everything needed to continue exactly here: taken between batches, never mid-batch."""
        return {
            "version": STATE_VERSION,
            "partition": self.partition,
            **self._scalars(),
            "sessions": [s.to_state() for v in self._open.values() for s in v],
            "sealed": [s.seal_state() for s in self._sealed.values()],
        }

    @classmethod
    def restore(cls, config: EngineConfig, state: dict[str, Any],
                track_state: bool = False) -> SessionEngine:
        if state.get("version") != STATE_VERSION:
            raise ValueError(f"engine state version {state.get('version')} is not {STATE_VERSION}")
        eng = cls(config, state["partition"], track_state)
        eng.stream_time = state["stream_time"]
        eng._seq = state["seq"]
        eng._idle_base = state["idle_base"]
        eng.counters.update(state["counters"])
        for st in state["sessions"]:
            s = Session.from_state(st)
            eng._open.setdefault(s.key, []).append(s)
            if eng._gmax_plus_grace is not None:
                eng._closing.append((s.expires + eng._gmax_plus_grace, s.created, s))
            if config.dedup and s.event_ids:
                eng._ids.setdefault(s.key, set()).update(e[2] for e in s.event_ids)
        for st in state.get("sealed", []):
            s = Session.from_state(st)
            s.alive = False
            eng._sealed[s.key] = s
            eng._unseal.append((s.expires + eng._seal_retention, s.created, s.key))
        heapq.heapify(eng._unseal)
        for sessions in eng._open.values():
            sessions.sort(key=_by_start_then_created)
        heapq.heapify(eng._closing)
        return eng


def _by_start_then_created(s: Session) -> tuple[int, int]:
    return (s.start, s.created)


def _same_campaign(found: list[Session], ev: Event) -> list[Session]:
    """New session on campaign change (§6): never merge sessions of different campaigns.

    An event with a campaign joins only sessions of that campaign. An event without one belongs
    to the session in effect at its time: the latest-starting candidate that started at or before
    it (else the earliest), and joins only candidates of that session's campaign.
    """
    if ev.campaign:
        return [s for s in found if s.campaign_key == ev.campaign]
    before = [s for s in found if s.start <= ev.ts]
    anchor = max(before, key=_by_start_then_created) if before else min(found, key=_by_start_then_created)
    return [s for s in found if s.campaign_key == anchor.campaign_key]


def _within_max_duration(found: list[Session], ts: int, max_ms: int) -> list[Session]:
    """Max duration (§6): join candidates in order of start while the span stays within D."""
    lo = hi = ts
    joined = []
    for s in sorted(found, key=_by_start_then_created):
        new_lo, new_hi = min(lo, s.start), max(hi, s.end)
        if new_hi - new_lo <= max_ms:
            joined.append(s)
            lo, hi = new_lo, new_hi
    return joined


class LocalDays:
    """Local calendar day of a UTC millisecond in an IANA zone, cached per day.

    Day boundaries come from the zone database (never wall-clock arithmetic), so a 23- or 25-hour
    DST day is one day. The cache makes the common case two integer comparisons.
    """

    def __init__(self, tz_name: str) -> None:
        self.tz = check_time_zone(tz_name, setting="split_at_midnight")
        self._lo = 1
        self._hi = 0
        self._day = 0

    def day_of(self, ts_ms: int) -> int:
        if self._lo <= ts_ms < self._hi:
            return self._day
        local = datetime.fromtimestamp(ts_ms / 1000, self.tz)
        midnight = datetime(local.year, local.month, local.day, tzinfo=self.tz)
        nxt = midnight.date() + timedelta(days=1)
        next_midnight = datetime(nxt.year, nxt.month, nxt.day, tzinfo=self.tz)
        self._lo = int(midnight.timestamp() * 1000)
        self._hi = int(next_midnight.timestamp() * 1000)
        self._day = midnight.toordinal()
        return self._day
