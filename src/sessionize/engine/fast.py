"""FastEngine: the compiled session core (``rust/``, module ``sessionize_core``) behind the
surface of SessionEngine.

The pure-Python ``SessionEngine`` stays the reference: the tests feed both the same random
streams and require identical ChangeSets. FastEngine covers a static gap with ``grace`` (or
unbounded grace), seals, the metrics and the ids; a configuration that uses anything else
(gap by type, max duration, midnight split, campaign split, dedup, future guard, idle close)
raises ConfigError, and so does a missing core raise ImportError: callers then
use SessionEngine (``engine_for`` does that choice).

Two ways in:

- ``process(events)``: a list of Event, like SessionEngine (encodes per event; for tests and
  small batches);
- ``process_columns(key_codes, ts, ...)``: the fast path, one call per batch of NumPy columns of
  integer codes from the engine's dictionaries (``engine.keys.encode(...)``, ``engine.types``,
  ``engine.pages`` ...; the key dictionary, one entry per user, is kept compactly by the
  core). It returns ColumnarChanges, the ChangeSet in columns; session ids and
  dict records are made only when asked for (``.session_ids()``, ``.records()``,
  ``.to_changeset()``).

With ``track_state`` (Kafka workers) each ChangeSet carries a StateDelta in exactly the format
SessionEngine writes, and ``FastEngine.restore`` reads SessionEngine's snapshot format: a worker's
persisted state does not depend on which engine wrote it, so either can take a partition over.
"""

from __future__ import annotations

import hashlib
import logging
import math
from collections.abc import Iterable, Sequence
from typing import Any

from sessionize.engine.columns import EventColumns
from sessionize.engine.config import EngineConfig
from sessionize.engine.engine import STATE_VERSION, ChangeSet, StateDelta
from sessionize.engine.event import Event, Reason, Rejection
from sessionize.errors import ConfigError

try:
    import numpy as np
    import sessionize_core as _core
except ImportError as exc:  # no compiler on this machine, or the core was never built
    np = None  # type: ignore[assignment]
    _core = None
    _IMPORT_ERROR: str | None = f"{type(exc).__name__}: {exc}"
else:
    _IMPORT_ERROR = None

log = logging.getLogger("sessionize.engine")

_LIMIT = 1 << 60
_NO_KEY_DETAIL = "the event has no key (user id)"
_REJ_NO_KEY, _REJ_LATE_SEALED, _REJ_LATE_CUTOFF = 0, 1, 2


def available() -> bool:
    """Is the compiled core importable here?"""
    return _core is not None


def unavailable_reason() -> str | None:
    """Why the core cannot be used (None when it can)."""
    if _core is not None:
        return None
    return (f"the compiled core sessionize_core is not installed ({_IMPORT_ERROR}); build it with "
            "`make setup` (needs cargo) or `.venv/bin/maturin develop --release -m rust/Cargo.toml`, "
            "or use the pure-Python SessionEngine")


def unsupported(config: EngineConfig) -> list[str]:
    """The settings of ``config`` that the compiled core does not implement."""
    found = []
    if config.gap_by_type is not None:
        found.append("gap_by_type")
    if config.max_duration_ms is not None:
        found.append("max_duration")
    if config.midnight_tz is not None:
        found.append("split_at_midnight")
    if config.campaign_split:
        found.append("campaign_split")
    if config.dedup:
        found.append("dedup")
    if config.max_future_ms is not None:
        found.append("max_future")
    if config.idle_timeout_ms is not None:
        found.append("idle_timeout")
    if not 0 < config.gap_ms < _LIMIT or not 0 <= (config.grace_ms or 0) < _LIMIT \
            or not 0 <= config.seal_retention_ms < _LIMIT:
        found.append("durations of 2^60 ms or more")
    if config.metrics.path_cap > 65535:
        found.append("path_cap > 65535")
    return found


def engine_for(config: EngineConfig, partition: int = 0, track_state: bool = False):
    """FastEngine when the core is built and supports ``config``, else SessionEngine."""
    from sessionize.engine.engine import SessionEngine

    if available() and not unsupported(config):
        return FastEngine(config, partition, track_state)
    return SessionEngine(config, partition, track_state)


def restored_engine_for(config: EngineConfig, state: dict[str, Any], track_state: bool = False):
    """``engine_for``, continuing from ``state`` (a snapshot, written by either engine). A
    state the core cannot hold (times beyond its range, stored before the decoder refused them)
    is continued by SessionEngine, which takes the same batches."""
    from sessionize.engine.engine import SessionEngine

    if available() and not unsupported(config):
        try:
            return FastEngine.restore(config, state, track_state)
        except ValueError as exc:
            log.warning("partition %s continues on the Python engine: %s",
                        state.get("partition"), exc)
    return SessionEngine.restore(config, state, track_state)


class Vocab:
    """Strings <-> dense codes (0, 1, 2 ...). A falsy value (None, "") is -1, "no value",
    except with ``keep_empty`` where only None is -1 and "" gets a code (event types: ``""``
    may be a configured type, and a path shows None as "")."""

    __slots__ = ("index", "keep_empty", "strings")

    def __init__(self, keep_empty: bool = False) -> None:
        self.index: dict[str, int] = {}
        self.strings: list[str] = []
        self.keep_empty = keep_empty

    def __len__(self) -> int:
        return len(self.strings)

    def code(self, value: str | None) -> int:
        if value is None or (not value and not self.keep_empty):
            return -1
        c = self.index.get(value)
        if c is None:
            c = self.index[value] = len(self.strings)
            self.strings.append(value)
        return c

    def encode(self, values: Iterable[str | None]) -> Any:
        """Codes of ``values`` as an int32 array, adding the strings not seen yet."""
        code = self.code
        return np.fromiter((code(v) for v in values), dtype=np.int32)

    def decode(self, code: int) -> str | None:
        return self.strings[code] if code >= 0 else None


class KeyVocab:
    """The key dictionary, kept by the core (``vocab.rs``: the UTF-8 bytes, an offset and a
    hash-table slot a key, ~22 bytes, against ~90 for a Python dict of str -> int and a list).
    Same surface as Vocab: a key of None or "" is -1; ``strings[code]`` is the key string."""

    __slots__ = ("_core", "strings")

    def __init__(self, core: Any) -> None:
        self._core = core
        self.strings = _KeyStrings(core)

    def __len__(self) -> int:
        return self._core.n_keys

    def code(self, value: str | None) -> int:
        return self._core.key_code(value)

    def encode(self, values: Iterable[str | None]) -> Any:
        """Codes of ``values`` as an int32 array, adding the keys not seen yet."""
        return self._core.encode_keys(values)

    def decode(self, code: int) -> str | None:
        return self._core.key_string(code) if code >= 0 else None


class _KeyStrings:
    """``keys.strings``: the key strings by code, read from the core on demand."""

    __slots__ = ("_core",)

    def __init__(self, core: Any) -> None:
        self._core = core

    def __len__(self) -> int:
        return self._core.n_keys

    def __getitem__(self, code: int) -> str:
        if code < 0:
            code += self._core.n_keys
        return self._core.key_string(code)


class FastEngine:
    """Sessions of one partition, computed by the compiled core. Same results as SessionEngine
    for the configurations it supports (see ``unsupported``)."""

    def __init__(self, config: EngineConfig, partition: int = 0, track_state: bool = False) -> None:
        if _core is None:
            raise ImportError(unavailable_reason())
        missing = unsupported(config)
        if missing:
            raise ConfigError(
                "the compiled engine does not implement " + ", ".join(missing)
                + "; use SessionEngine (sessionize.engine.fast.engine_for chooses)"
            )
        self.config = config
        self.partition = partition
        self.track_state = track_state
        m = config.metrics
        self._core = _core.Core(partition, config.gap_ms, config.grace_ms, config.seal_retention_ms,
                                m.path_cap, config.track_event_ids, track_state)
        self.keys = KeyVocab(self._core)
        self.types = Vocab(keep_empty=True)
        self.pages = Vocab()
        self.referrers = Vocab()
        self.campaigns = Vocab()
        self.user_agents = Vocab()
        self.event_ids = Vocab(keep_empty=True)
        self._pending: list[Rejection] = []
        self._outside: dict[str, int] = {"received": 0} | {r.value: 0 for r in Reason}

    # ------------------------------------------------------------------ public surface

    def process(self, events: Iterable[Event]) -> ChangeSet:
        """Sessionize a batch of events (in arrival order) and return its net changes."""
        events = events if isinstance(events, list) else list(events)
        return self.process_columns(**self._encode(events)).to_changeset(events)

    def process_columns(self, key_codes: Any, ts: Any, type_codes: Any = None, page_codes: Any = None,
                        referrer_codes: Any = None, campaign_codes: Any = None, ua_codes: Any = None,
                        revenue: Any = None, is_bot: Any = None,
                        event_ids: Any = None) -> ColumnarChanges:
        """The fast path: one batch as columns, in arrival order. Codes come from this engine's
        vocabularies (``keys``, ``types``, ``pages``, ``referrers``, ``campaigns``,
        ``user_agents``, ``event_ids``), -1 meaning no value (a key of -1 is rejected
        ``no_key``); ``revenue`` NaN means none; omitted columns mean no value for every event."""
        key = np.ascontiguousarray(key_codes, dtype=np.int32)
        n = len(key)
        ts = np.ascontiguousarray(ts, dtype=np.int64)
        missing = None

        def codes(a: Any) -> Any:
            nonlocal missing
            if a is None:
                if missing is None:
                    missing = np.full(n, -1, dtype=np.int32)
                return missing
            return np.ascontiguousarray(a, dtype=np.int32)

        rev = (np.full(n, np.nan) if revenue is None
               else np.ascontiguousarray(revenue, dtype=np.float64))
        bot = np.zeros(n, dtype=bool) if is_bot is None else np.ascontiguousarray(is_bot, dtype=bool)
        refs = codes(event_ids) if self.config.track_event_ids else None
        self._sync()
        out = self._core.process(key, ts, codes(type_codes), codes(page_codes), codes(referrer_codes),
                                 codes(campaign_codes), codes(ua_codes), rev, bot, refs)
        return self._changes(out, key, ts)

    def process_event_columns(self, batch: EventColumns) -> ChangeSet:
        """Sessionize a batch decoded in columns (``sessionize.decode.columnar``): its per-batch
        dictionaries are mapped through the engine's once per distinct value, no Event is made
        (but for the rejected events, from their raw records)."""
        texts = batch.texts
        ids = None
        if self.config.track_event_ids:
            codes, values = texts["event_id"]
            refs = [values[c] if c >= 0 else (f"#{o}" if o is not None else "")
                    for c, o in zip(codes.tolist(), batch.offsets, strict=True)]
            ids = self.event_ids.encode(refs)
        changes = self.process_columns(
            _remap(self.keys.encode(texts["key"][1]), texts["key"][0]), batch.ts,
            _remap_vocab(self.types, texts["type"]), _remap_vocab(self.pages, texts["page"]),
            _remap_vocab(self.referrers, texts["referrer"]),
            _remap_vocab(self.campaigns, texts["campaign"]),
            _remap_vocab(self.user_agents, texts["user_agent"]), batch.revenue, None, ids)
        return changes.to_changeset(batch)

    def reject(self, rejections: Iterable[Rejection]) -> None:
        """Account for records refused before they became events (malformed input); they go
        out with the next ChangeSet and do not move stream time (as SessionEngine.reject)."""
        for r in rejections:
            self._outside["received"] += 1
            self._outside[r.reason.value] += 1
            self._pending.append(r)

    def flush(self) -> ChangeSet:
        """End of input: close every session that is still open."""
        return self.flush_columns().to_changeset()

    def flush_columns(self) -> ColumnarChanges:
        self._sync()
        return self._changes(self._core.flush(), None, None)

    def advance_idle(self, idle_ms: int) -> ChangeSet:
        """Idle close is not supported (ConfigError at construction), so this only drains."""
        return self.process([])

    def open_sessions(self) -> list[dict[str, Any]]:
        """Records of all sessions still open or inactive, ordered by (start, created)
        (SessionEngine lists them per key instead)."""
        cols = SessionColumns(self, self._core.open_records(), None, self.stream_time)
        return cols.records()

    @property
    def open_count(self) -> int:
        return self._core.open_count

    @property
    def stream_time(self) -> int | None:
        return self._core.stream_time

    @property
    def counters(self) -> dict[str, int]:
        received, counted, late, no_key = self._core.counters()
        out = {"received": received + self._outside["received"], "counted": counted}
        for r in Reason:
            out[r.value] = self._outside[r.value]
        out["late"] += late
        out["no_key"] += no_key
        return out

    def memory(self) -> dict[str, int]:
        """Bytes held by the core's main structures (capacities), by name."""
        return dict(self._core.memory())

    @classmethod
    def restore(cls, config: EngineConfig, state: dict[str, Any],
                track_state: bool = False) -> FastEngine:
        """An engine that continues exactly where ``state`` (``SessionEngine.snapshot()``'s
        format, e.g. rebuilt from a store's StateDeltas, written by either engine) stopped."""
        if state.get("version") != STATE_VERSION:
            raise ValueError(f"engine state version {state.get('version')} is not {STATE_VERSION}")
        eng = cls(config, state["partition"], track_state)
        eng._restore(state)
        return eng

    def _restore(self, state: dict[str, Any]) -> None:
        sessions, sealed = state["sessions"], state.get("sealed", [])
        keys = self.keys.encode([st["key"] for st in sessions])
        seal_keys = self.keys.encode([st["key"] for st in sealed])
        stamp_vocabs = (self.pages, self.pages, self.referrers, self.campaigns, self.user_agents)
        stamp_code, stamp_ts, stamp_seq = [], [], []
        path_offsets, path_code, path_ts, path_seq = [0], [], [], []
        ids_offsets, ids_code, ids_ts, ids_seq = [0], [], [], []
        tc, ic = self.types.code, self.event_ids.code
        for st in sessions:
            for name, vocab in zip(_STAMPS, stamp_vocabs, strict=True):
                v = st.get(name)
                stamp_ts.append(v[0] if v else 0)
                stamp_seq.append(v[1] if v else 0)
                stamp_code.append(vocab.code(v[2]) if v else -1)
            for ts, seq, typ in st.get("path") or ():
                path_ts.append(ts)
                path_seq.append(seq)
                path_code.append(tc(typ))
            path_offsets.append(len(path_code))
            for ts, seq, ref in st.get("event_ids") or ():
                ids_ts.append(ts)
                ids_seq.append(seq)
                ids_code.append(ic(ref))
            ids_offsets.append(len(ids_code))
        counters = dict(state.get("counters", {}))
        outside = {r.value: counters.get(r.value, 0) for r in Reason if r.value not in _CORE_REASONS}
        self._outside = {"received": sum(outside.values()), **outside,
                         **{r: 0 for r in _CORE_REASONS}}
        core_counters = (counters.get("received", 0) - self._outside["received"],
                         counters.get("counted", 0), counters.get("late", 0),
                         counters.get("no_key", 0))
        self._sync()
        self._core.restore(
            state["stream_time"], state["seq"], core_counters, keys.tolist(),
            [st["created"] for st in sessions], [st["start"] for st in sessions],
            [st["end"] for st in sessions], [st["count"] for st in sessions],
            [st["page_views"] for st in sessions], [st["conversions"] for st in sessions],
            [float(st["revenue"]) for st in sessions], [bool(st["bot"]) for st in sessions],
            stamp_code, stamp_ts, stamp_seq, path_offsets, path_code, path_ts, path_seq,
            ids_offsets if self.config.track_event_ids else [], ids_code, ids_ts, ids_seq,
            seal_keys.tolist(), [st["start"] for st in sealed], [st["expires"] for st in sealed],
            [st["created"] for st in sealed],
        )

    # ------------------------------------------------------------------ internals

    def _sync(self) -> None:
        """Hand the core the type flags it has not seen yet (keys are coded by the core)."""
        core = self._core
        if len(self.types) > core.n_types:
            m = self.config.metrics
            core.add_types([(t in m.page_view_types) | (t in m.conversion_types) << 1
                            for t in self.types.strings[core.n_types:]])

    def _encode(self, events: Sequence[Event]) -> dict[str, Any]:
        tc, pc = self.types.code, self.pages.code
        rc, cc, uc = self.referrers.code, self.campaigns.code, self.user_agents.code
        cols: dict[str, Any] = {
            "key_codes": self.keys.encode([e.key for e in events]),
            "ts": [e.ts for e in events],
            "type_codes": [tc(e.type) for e in events],
            "page_codes": [pc(e.page) for e in events],
            "referrer_codes": [rc(e.referrer) for e in events],
            "campaign_codes": [cc(e.campaign) for e in events],
            "ua_codes": [uc(e.user_agent) for e in events],
            "revenue": [math.nan if e.revenue is None else e.revenue for e in events],
            "is_bot": [bool(e.is_bot) for e in events],
        }
        if self.config.track_event_ids:
            ic = self.event_ids.code
            cols["event_ids"] = [ic(_event_ref(e)) for e in events]
        for name in ("key_codes", "type_codes", "page_codes", "referrer_codes", "campaign_codes",
                     "ua_codes", "event_ids"):
            if name in cols:
                cols[name] = np.array(cols[name], dtype=np.int32)
        cols["ts"] = np.array(cols["ts"], dtype=np.int64)
        cols["revenue"] = np.array(cols["revenue"], dtype=np.float64)
        cols["is_bot"] = np.array(cols["is_bot"], dtype=bool)
        return cols

    def _changes(self, out: dict[str, Any], key: Any, ts: Any) -> ColumnarChanges:
        pending, self._pending = self._pending, []
        return ColumnarChanges(self, out, key, ts, pending)

    def _sid(self, key_code: int, created: int) -> str:
        return hashlib.blake2b(
            f"{self.partition}\x1f{self.keys.strings[key_code]}\x1f{created}".encode(), digest_size=16
        ).hexdigest()


def _remap(table: Any, codes: Any) -> Any:
    """Per-batch codes (-1: none) through ``table`` (the engine's code of each batch value)."""
    return np.append(np.asarray(table, dtype=np.int32), np.int32(-1))[codes]


def _remap_vocab(vocab: Vocab, text: tuple[Any, list[str]]) -> Any:
    codes, values = text
    code = vocab.code
    return _remap(np.fromiter((code(v) for v in values), np.int32, len(values)), codes)


_STAMPS = ("entry", "exit", "referrer", "campaign", "user_agent")
_CORE_REASONS = ("late", "no_key")  # counted by the core; the other reasons arise outside it


def _event_ref(ev: Event) -> str:
    """As session.py's: the event's id, or ``#<offset>``, or ""."""
    if ev.event_id is not None:
        return ev.event_id
    return f"#{ev.offset}" if ev.offset is not None else ""


class SessionColumns:
    """Session records in columns (NumPy arrays): ``key`` (code), ``created`` (arrival number of
    the creating event), ``start``, ``end``, ``count``, ``page_views``, ``conversions``,
    ``revenue`` (unrounded sum), ``entry``/``exit`` (page codes), ``referrer``, ``campaign``,
    ``user_agent`` (codes), ``is_bot``, the path as ``path`` (type codes) and ``path_ms`` (each
    step's ts - start) cut by ``path_offsets``, and with track_event_ids ``ids``/``ids_offsets``.
    A code of -1 is None.
    ``status`` is "closed" for finals; for upserts it follows from ``stream_time``."""

    def __init__(self, engine: FastEngine, cols: dict[str, Any], status: str | None,
                 stream_time: int | None) -> None:
        self._engine = engine
        self.cols = cols
        self.status = status
        self.stream_time = stream_time
        self._ids: list[str] | None = None

    def __len__(self) -> int:
        return len(self.cols["key"])

    def __getattr__(self, name: str) -> Any:
        try:
            return self.__dict__["cols"][name]
        except KeyError:
            raise AttributeError(name) from None

    @property
    def expires(self) -> Any:
        return self.cols["end"] + self._engine.config.gap_ms

    def session_ids(self) -> list[str]:
        """The session ids, hashed by the core (cached)."""
        if self._ids is None:
            self._ids = self._engine._core.session_ids(self.cols["key"], self.cols["created"])
        return self._ids

    def session_ids_array(self) -> Any:
        """The session ids as a NumPy ``S32`` array (no Python string per session)."""
        raw = self._engine._core.session_ids_bytes(self.cols["key"], self.cols["created"])
        return np.frombuffer(raw, dtype="S32")

    def records(self) -> list[dict[str, Any]]:
        """The records exactly as ``Session.to_record`` makes them."""
        eng = self._engine
        m = eng.config.metrics
        gap, partition = eng.config.gap_ms, eng.partition
        keys = eng.keys.strings
        c = {name: arr.tolist() for name, arr in self.cols.items()}
        T = self.stream_time
        min_dur, min_pv = m.engaged_min_duration_ms, m.engaged_min_page_views
        # each dictionary with its "no value" at index -1, so a code indexes it directly
        types = [*eng.types.strings, ""]
        pages, refs = [*eng.pages.strings, None], [*eng.referrers.strings, None]
        camps, uas = [*eng.campaigns.strings, None], [*eng.user_agents.strings, None]
        path, path_ms, poff = c["path"], c["path_ms"], c["path_offsets"]
        ids, ioff = c.get("ids"), c.get("ids_offsets")
        refs_of_ids = [*eng.event_ids.strings, ""]
        out = []
        rows = zip(self.session_ids(), c["key"], c["start"], c["end"], c["count"],
                   c["page_views"], c["conversions"], c["revenue"], c["entry"], c["exit"],
                   c["referrer"], c["campaign"], c["user_agent"], c["is_bot"], strict=True)
        for i, (sid, key, start, end, count, pv, conv, revenue, entry, exit_, ref, camp, ua,
                bot) in enumerate(rows):
            duration = end - start
            expires = end + gap
            lo, hi = poff[i], poff[i + 1]
            steps = [types[t] for t in path[lo:hi]]
            rec: dict[str, Any] = {
                "session_id": sid,
                "key": keys[key],
                "partition": partition,
                "start": start,
                "end": end,
                "expires": expires,
                "duration_ms": duration,
                "event_count": count,
                "status": self.status or ("inactive" if T is not None and expires < T else "open"),
                "page_views": pv,
                "conversions": conv,
                "revenue": round(revenue, 6),
                "bounce": count == 1,
                "engaged": duration >= min_dur or pv >= min_pv or conv > 0,
                "entry_page": pages[entry],
                "exit_page": pages[exit_],
                "referrer": refs[ref],
                "campaign": camps[camp],
                "user_agent": uas[ua],
                "is_bot": bot,
                "path": steps,
                "path_ms": path_ms[lo:hi],
                "path_truncated": count > hi - lo,
            }
            if ids is not None:
                rec["event_ids"] = [refs_of_ids[r] for r in ids[ioff[i]:ioff[i + 1]]]
            out.append(rec)
        return out

    def session_states(self) -> list[dict[str, Any]]:
        """The sessions' full state, exactly as ``Session.to_state`` gives it (track_state)."""
        eng = self._engine
        c = {name: arr.tolist() for name, arr in self.cols.items()}
        if "stamp_ts" not in c:
            raise ValueError("the engine does not track its state (track_state=False)")
        gap = eng.config.gap_ms
        keys, types = eng.keys.strings, [*eng.types.strings, ""]
        pages = eng.pages.strings
        vocabs = (pages, pages, eng.referrers.strings, eng.campaigns.strings,
                  eng.user_agents.strings)
        sts, sseq = c["stamp_ts"], c["stamp_seq"]
        path, path_ms, path_seq, poff = c["path"], c["path_ms"], c["path_seq"], c["path_offsets"]
        ids, ioff = c.get("ids"), c.get("ids_offsets")
        refs = [*eng.event_ids.strings, ""]
        out = []
        rows = zip(self.session_ids(), c["key"], c["created"], c["start"], c["end"], c["count"],
                   c["page_views"], c["conversions"], c["revenue"], c["is_bot"], c["entry"],
                   c["exit"], c["referrer"], c["campaign"], c["user_agent"], strict=True)
        for i, (sid, key, created, start, end, count, pv, conv, revenue, bot, *codes) in \
                enumerate(rows):
            lo, hi = poff[i], poff[i + 1]
            state: dict[str, Any] = {
                "sid": sid, "key": keys[key], "created": created, "start": start, "end": end,
                "expires": end + gap, "count": count, "page_views": pv, "conversions": conv,
                "revenue": revenue, "bot": bot, "day": None, "campaign_key": None,
                "emitted": True,
                "path": [(start + ms, q, types[t])
                         for ms, q, t in zip(path_ms[lo:hi], path_seq[lo:hi], path[lo:hi],
                                             strict=True)],
                "event_ids": None,
            }
            for f, (name, strings, code) in enumerate(zip(_STAMPS, vocabs, codes, strict=True)):
                state[name] = None if code < 0 else (sts[5 * i + f], sseq[5 * i + f], strings[code])
            if ids is not None:
                its, iseq = c["ids_ts"], c["ids_seq"]
                state["event_ids"] = [(its[j], iseq[j], refs[ids[j]])
                                      for j in range(ioff[i], ioff[i + 1])]
            out.append(state)
        return out


class ColumnarChanges:
    """The net effect of one batch (ChangeSet) in columns: ``upserts`` and ``finals`` are
    SessionColumns; retractions are ``retracted_key``/``retracted_created`` arrays (ids on
    demand); rejections by the core are ``rejected_index`` (position in the batch),
    ``rejected_reason`` codes, with the details made on demand; ``pre_rejections`` are those
    handed to ``reject()`` before."""

    def __init__(self, engine: FastEngine, out: dict[str, Any], key: Any, ts: Any,
                 pre_rejections: list[Rejection]) -> None:
        self._engine = engine
        self.stream_time: int | None = out["stream_time"]
        self.counted: int = out["counted"]
        self.upserts = SessionColumns(engine, out["upserts"], None, self.stream_time)
        self.finals = SessionColumns(engine, out["finals"], "closed", self.stream_time)
        self.retracted_key = out["retracted_key"]
        self.retracted_created = out["retracted_created"]
        self.rejected_index = out["rej_index"]
        self._rej_kind, self._rej_a, self._rej_b = out["rej_kind"], out["rej_a"], out["rej_b"]
        self.pre_rejections = pre_rejections
        self._state = out if "merged_key" in out else None
        self._key = key[self.rejected_index] if key is not None else None
        self._ts = ts[self.rejected_index] if ts is not None else None

    def __bool__(self) -> bool:
        return bool(len(self.upserts) or len(self.finals) or len(self.retracted_key)
                    or len(self.rejected_index) or self.pre_rejections)

    @property
    def rejected_reason(self) -> list[Reason]:
        return [Reason.NO_KEY if k == _REJ_NO_KEY else Reason.LATE for k in self._rej_kind.tolist()]

    def retractions(self) -> list[str]:
        return self._engine._core.session_ids(self.retracted_key, self.retracted_created)

    def rejections(self, events: Sequence[Event] | None = None) -> list[Rejection]:
        """Rejection objects as SessionEngine makes them (raw input, offset and event id come
        from ``events``, the batch as Events, when given)."""
        eng = self._engine
        grace = eng.config.grace_ms
        out = list(self.pre_rejections)
        for j, (i, kind, a, b) in enumerate(zip(self.rejected_index.tolist(), self._rej_kind.tolist(),
                                                 self._rej_a.tolist(), self._rej_b.tolist(),
                                                 strict=True)):
            if kind == _REJ_NO_KEY:
                reason, detail = Reason.NO_KEY, _NO_KEY_DETAIL
            elif kind == _REJ_LATE_SEALED:
                sid = eng._sid(int(self._key[j]), a)
                reason = Reason.LATE
                detail = f"it touches session {sid} of this key, already closed (final)"
            else:
                reason = Reason.LATE
                detail = (f"its session would expire at {a}, before the cut-off {b - grace} "
                          f"(stream time {b} - grace {grace})")
            if events is not None:
                ev = events[i]
                out.append(Rejection(reason, ev.raw, detail, ev.offset, ev.key, ev.event_id, ev.ts))
            else:
                k = int(self._key[j])
                out.append(Rejection(reason, None, detail, None, eng.keys.decode(k),
                                     None, int(self._ts[j])))
        return out

    def state_delta(self) -> StateDelta | None:
        """How the engine's state changed (SessionEngine's StateDelta), with track_state."""
        out = self._state
        if out is None:
            return None
        eng = self._engine
        core = eng._core
        keys = eng.keys.strings
        removed = core.session_ids(out["merged_key"], out["merged_created"]) + self.finals.session_ids()
        sealed_keys = out["sealed_key"]
        sids = core.session_ids(sealed_keys, out["sealed_created"])
        gap = eng.config.gap_ms
        sealed = [{"sid": sid, "key": keys[k], "created": created, "start": start,
                   "end": expires - gap, "expires": expires, "day": None, "campaign_key": None}
                  for sid, k, created, start, expires in zip(
                      sids, sealed_keys.tolist(), out["sealed_created"].tolist(),
                      out["sealed_start"].tolist(), out["sealed_expires"].tolist(), strict=True)]
        return StateDelta(
            partition={"stream_time": self.stream_time, "seq": core.seq,
                       "idle_base": self.stream_time, "counters": eng.counters},
            sessions=self.upserts.session_states(),
            removed=removed,
            sealed=sealed,
            unsealed=[keys[k] for k in out["unsealed_key"].tolist()],
        )

    def to_changeset(self, events: Sequence[Event] | None = None) -> ChangeSet:
        """The same ChangeSet SessionEngine returns (dict records, ids, Rejection objects)."""
        keys = self._engine.keys.strings
        return ChangeSet(
            retractions=self.retractions(),
            upserts=self.upserts.records(),
            finals=self.finals.records(),
            rejections=self.rejections(events),
            stream_time=self.stream_time,
            counted=self.counted,
            state=self.state_delta(),
            retracted_keys=[keys[k] for k in self.retracted_key.tolist()],
        )
