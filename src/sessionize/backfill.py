"""Columnar backfill: historical files to final sessions with Polars, vectorised end to end.

With an unbounded grace nothing is late and nothing closes before the end of input, so the
streaming engine's result on a bounded input is plain gaps-and-islands per key (SEMANTICS.md §8):
sort each partition's events by ``(ts, arrival)``, start a new session where an event lies beyond
the reach of everything before it, aggregate. That is a handful of columnar operations instead of
a Python call per event, and it gives the same sessions as ``SessionEngine`` run with
``grace_ms=None`` and flushed, field for field, for every rule that can be written that way:

- static gap, or ``gap_by_type`` (a new session iff ``ts`` is beyond the running maximum of
  ``ts + gap(type)`` of the earlier events of the partition);
- ``dedup``: the first-arriving copy of each ``(key, event_id)`` counts, later ones are rejected
  ``duplicate`` (every session stays open until the end, so the engine remembers every id);
- ``split_at_midnight``: the local day (from the zone database, so DST days are one day each)
  is part of the partition;
- ``max_future`` (needs ``received_at``), and the rejections ``no_key`` and ``no_gap``.

``max_duration``, ``campaign_split`` and a finite grace depend on arrival order in ways a sort
cannot express: ``supported(config)`` is False for them and callers use the streaming engine.

Session ids: ``SessionEngine`` names a session after the arrival number of the event that
created it, which depends on the order events arrive in. A backfill names it after what the
session *is*: a 128-bit hash (see ``session_id``) of the partition, the key, the start and the
offset (line number) of the session's first event. Deterministic for the same input, and
different from the streaming ids, so a backfill and a streaming run of the same file do not
share ids. Everything else in the record is identical.

Reading. JSON Lines, CSV/TSV and Parquet go through Polars' own readers; every row that cannot
be read becomes a ``malformed`` rejection, never a silent drop, and ``counted + rejected =
received`` holds as in the pipeline. Field values are decoded with vectorised rules that mirror
``sessionize.decode``; the values those rules do not cover (an unusual timestamp spelling, a
number Polars cannot cast) are handed one by one to the very parser the streaming path uses, so
the result and the error messages are the same. JSON Lines are read by Polars' whole-file scan
with its rows renumbered past the blank lines it skips; a file it cannot read goes in chunks, and
the parts of a chunk Polars cannot read (an invalid line, invalid UTF-8) are decoded by the
streaming source itself (exact, slower), as are a CSV whose quoting spans lines and access logs.
A JSON Lines rejection carries its line as ``raw``, as in the streaming path. Known differences,
for values that are not text where text is expected and for names given twice: a JSON float or
boolean in a text field (``"user_id": 1.0``) is spelled by Polars (``1``, ``true``) where Python
spells it ``1.0``, ``True``; a repeated name keeps its first value (Python's json its last); and
a CSV or Parquet row rejected for its key or a duplicate id has its mapped fields as ``raw``.
"""

from __future__ import annotations

import csv
import io
import logging
import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import polars as pl

from sessionize.decode.fields import TS_LIMIT_MS, FieldMap
from sessionize.decode.timestamps import BadTimestamp, make_parser
from sessionize.engine.config import ANY_TYPE, EngineConfig
from sessionize.engine.event import Event, Reason, Rejection
from sessionize.errors import ConfigError

log = logging.getLogger("sessionize.backfill")
_T = TypeVar("_T")

def _record_columns() -> tuple[str, ...]:
    """The fields of ``Session.to_record``, in its order: the backfill's output columns."""
    from sessionize.engine.config import MetricsConfig
    from sessionize.engine.session import Session

    return tuple(Session("", "", 0).to_record("closed", MetricsConfig()))


RECORD_COLUMNS = _record_columns()
REJECTION_COLUMNS = ("reason", "detail", "offset", "key", "event_id", "ts", "raw")

# the decoded events every reader produces (offset: line number, or 1-based row number)
EVENT_SCHEMA: dict[str, Any] = {
    "offset": pl.Int64, "key": pl.String, "ts": pl.Int64, "type": pl.String,
    "event_id": pl.String, "page": pl.String, "referrer": pl.String, "campaign": pl.String,
    "user_agent": pl.String, "revenue": pl.Float64, "is_bot": pl.Boolean,
    "received_at": pl.Int64,
}
REJECTION_SCHEMA: dict[str, Any] = {
    "reason": pl.String, "detail": pl.String, "offset": pl.Int64, "key": pl.String,
    "event_id": pl.String, "ts": pl.Int64, "raw": pl.String,
}
JSONL_CHUNK_BYTES = 256 << 20
# a piece of a chunk Polars cannot read that the exact path decodes rather than halving it
EXACT_PIECE_BYTES = 1 << 20
# rows of the whole-file scan decoded at a time (see _scanned_jsonl)
SCAN_GROUP_ROWS = 500_000


@dataclass
class BackfillResult:
    """Final sessions, every rejected record, and the counters of a run."""

    sessions: pl.DataFrame
    rejections: pl.DataFrame
    counters: dict[str, int] = field(default_factory=dict)

    @property
    def received(self) -> int:
        return self.counters["received"]


def supported(config: EngineConfig) -> bool:
    """True when ``backfill`` computes exactly what the streaming engine would (see module doc)."""
    return (config.grace_ms is None and config.max_duration_ms is None
            and not config.campaign_split)


def unsupported_reason(config: EngineConfig) -> str | None:
    if config.grace_ms is not None:
        return "a finite grace (the backfill sees everything: run it with grace = \"unbounded\")"
    if config.max_duration_ms is not None:
        return "max_duration (depends on arrival order)"
    if config.campaign_split:
        return "campaign_split (depends on arrival order)"
    return None


def backfill(source: pl.DataFrame | str | os.PathLike[str], config: EngineConfig,
             fields: FieldMap | None = None, **options: Any) -> pl.DataFrame:
    """Final sessions of ``source`` (a DataFrame with the FieldMap's column names, or a JSON
    Lines / CSV / TSV / Parquet / access-log path). Rejected records are logged as a count; use
    ``run`` to get them (and the counters) as well."""
    result = run(source, config, fields, **options)
    rejected = result.counters["received"] - result.counters["counted"]
    if rejected:
        log.warning("backfill: %d of %d records rejected (use sessionize.backfill.run to get "
                    "them)", rejected, result.counters["received"])
    return result.sessions


def run(source: pl.DataFrame | str | os.PathLike[str], config: EngineConfig,
        fields: FieldMap | None = None, *, fmt: str | None = None, partition: int = 0,
        delimiter: str | None = None, clf_key: str = "ip+ua",
        skip_assets: bool = True) -> BackfillResult:
    """Sessions, rejections and counters of ``source`` under ``config`` (see ``backfill``)."""
    reason = unsupported_reason(config)
    if reason is not None:
        raise ConfigError(f"the backfill cannot apply {reason}; use the streaming engine "
                          "(sessionize run) for these rules")
    fields = fields or FieldMap()
    lines_of: str | os.PathLike[str] | None = None  # a file whose lines are the records
    if isinstance(source, pl.DataFrame):
        events, rejections = decode_frame(source, fields)
        skipped = 0
    else:
        fmt = file_format(source, fmt)
        events, rejections, skipped = read_events(source, fields, fmt=fmt, delimiter=delimiter,
                                                  clf_key=clf_key, skip_assets=skip_assets)
        lines_of = source if fmt == "jsonl" else None
    sessions, refused = sessionize(events, config, partition)
    rejections = pl.concat([rejections, refused], how="vertical_relaxed")
    if len(rejections):
        rejections = rejections.sort("offset", nulls_last=True, maintain_order=True)
        if lines_of is not None:  # the dead letters' raw record: the line, as `run` gives it
            rejections = _with_file_lines(rejections, lines_of)
    return BackfillResult(sessions, rejections, _counters(sessions, rejections, skipped))


def _counters(sessions: pl.DataFrame, rejections: pl.DataFrame, skipped: int) -> dict[str, int]:
    counts = dict(rejections.group_by("reason").len().iter_rows())
    counted = int(sessions["event_count"].sum() or 0)
    out = {"received": counted + len(rejections), "counted": counted, "skipped": skipped}
    return out | {r.value: int(counts.get(r.value, 0)) for r in Reason}


# ====================================================================== sessionization

def sessionize(events: pl.DataFrame, config: EngineConfig, partition: int = 0
               ) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Decoded events (``EVENT_SCHEMA``, in arrival order) -> (sessions, rule rejections)."""
    cfg = config
    ev = events.with_row_index("_seq")
    checks: list[tuple[pl.Expr, Reason, pl.Expr]] = [
        (pl.col("key").is_null() | (pl.col("key") == ""), Reason.NO_KEY,
         pl.lit("the event has no key (user id)")),
    ]
    if cfg.gap_by_type is not None:
        gaps = cfg.gap_by_type
        fallback = gaps.get(ANY_TYPE)
        typed = {k: v for k, v in gaps.items() if k != ANY_TYPE}
        gap_expr = pl.col("type").replace_strict(list(typed), list(typed.values()),
                                                 default=fallback, return_dtype=pl.Int64)
        ev = ev.with_columns(gap_expr.alias("_gap"))
        checks.append((pl.col("_gap").is_null(), Reason.NO_GAP,
                       pl.format("no gap is configured for type {}",
                                 _py_repr(pl.col("type")))))
    else:
        ev = ev.with_columns(pl.lit(cfg.gap_ms, pl.Int64).alias("_gap"))
    if cfg.max_future_ms is not None:
        ahead = pl.col("ts") - pl.col("received_at")
        checks.append((pl.col("received_at").is_not_null() & (ahead > cfg.max_future_ms),
                       Reason.FUTURE, pl.format("ts is {} ms ahead of its receipt", ahead)))
    reason = pl.lit(None, pl.String)
    detail = pl.lit(None, pl.String)
    for cond, why, text in reversed(checks):  # the first failing check wins
        reason = pl.when(cond).then(pl.lit(why.value)).otherwise(reason)
        detail = pl.when(cond).then(text).otherwise(detail)
    ev = ev.with_columns(reason.alias("_reason"), detail.alias("_detail"))
    if cfg.dedup:
        ok = pl.col("_reason").is_null()
        has_id = pl.col("event_id").is_not_null()
        first_copy = pl.struct("key", "event_id").is_first_distinct()
        dup = ok & has_id & ~first_copy.over(ok & has_id)
        ev = ev.with_columns(
            pl.when(dup).then(pl.lit(Reason.DUPLICATE.value)).otherwise(pl.col("_reason"))
            .alias("_reason"),
            pl.when(dup).then(pl.format("event id {} is already in an open session",
                                        _py_repr(pl.col("event_id"))))
            .otherwise(pl.col("_detail")).alias("_detail"))
    refused = ev.filter(pl.col("_reason").is_not_null())
    rejections = refused.select(
        pl.col("_reason").alias("reason"), pl.col("_detail").alias("detail"), "offset", "key",
        "event_id", "ts", _raw_json(refused).alias("raw"))
    counted = ev.filter(pl.col("_reason").is_null()).drop("_reason", "_detail")
    return _sessions(counted, cfg, partition), rejections


def _sessions(ev: pl.DataFrame, cfg: EngineConfig, partition: int) -> pl.DataFrame:
    """Gaps-and-islands on the counted events. Only narrow integer and boolean columns are
    sorted; text (key, pages, referrers, ...) is gathered once per session, by the row of the
    session's first (or last) event that has it."""
    m = cfg.metrics
    if ev.is_empty():
        return _empty_sessions(cfg)
    keys = ev["key"].cast(pl.Categorical)
    part = keys.to_physical().cast(pl.Int64)  # grouping by a u32 sorts far faster than text
    if cfg.midnight_tz is not None:
        day = (pl.from_epoch(ev["ts"], "ms").dt.replace_time_zone("UTC")
               .dt.convert_time_zone(cfg.midnight_tz).dt.date().cast(pl.Int64))
        part = part * 1_000_000 + (day + 500_000)
    types = ev["type"]
    narrow = pl.DataFrame({
        "_i": pl.int_range(0, len(ev), dtype=pl.UInt32, eager=True),
        "_part": part,
        "ts": ev["ts"],
        "_gap": ev["_gap"],
        "_pv": types.is_in(list(m.page_view_types)).fill_null(False),
        "_conv": types.is_in(list(m.conversion_types)).fill_null(False),
        "revenue": ev["revenue"],
        "is_bot": ev["is_bot"],
        **{f"_{c}": ev[c].is_not_null() for c in ("page", "referrer", "campaign", "user_agent")},
    })
    if m.path_cap:
        narrow = narrow.with_columns(types.fill_null("").cast(pl.Categorical).alias("_type"))
    narrow = _sorted(narrow)
    new_part = pl.col("_part") != pl.col("_part").shift(1)
    if cfg.gap_by_type is None:
        beyond = (pl.col("ts") - pl.col("ts").shift(1)) > cfg.gap_ms
    else:
        beyond = pl.col("ts") > _segmented_prev_max(narrow)
    narrow = narrow.with_columns(
        (new_part | beyond).fill_null(True).cum_sum().cast(pl.UInt32).set_sorted().alias("_sid"))

    i = pl.col("_i")
    aggs = [
        i.first().alias("_first_i"),
        pl.col("ts").first().alias("start"),
        pl.col("ts").last().alias("end"),
        (pl.col("ts") + pl.col("_gap")).max().alias("expires"),
        pl.len().cast(pl.Int64).alias("event_count"),
        pl.col("_pv").sum().cast(pl.Int64).alias("page_views"),
        pl.col("_conv").sum().cast(pl.Int64).alias("conversions"),
        pl.col("revenue").filter(pl.col("_conv")).sum().alias("revenue"),
        i.filter(pl.col("_page")).first().alias("_entry_i"),
        i.filter(pl.col("_page")).last().alias("_exit_i"),
        *[i.filter(pl.col(f"_{c}")).first().alias(f"_{c}_i")
          for c in ("referrer", "campaign", "user_agent")],
        pl.col("is_bot").any().alias("is_bot"),
    ]
    if m.path_cap:
        aggs.append(pl.col("_type").head(m.path_cap).alias("path"))
        aggs.append(pl.col("ts").head(m.path_cap).alias("_path_ts"))
    if _with_ids(cfg):
        aggs.append(i.alias("_ids_i"))
    s = narrow.group_by("_sid", maintain_order=True).agg(aggs).sort("start", "_first_i")
    del narrow

    def text(column: str, rows: str) -> pl.Series:
        return ev[column].gather(s[rows])

    s = s.with_columns(
        text("key", "_first_i").alias("key"),
        text("page", "_entry_i").alias("entry_page"),
        text("page", "_exit_i").alias("exit_page"),
        *[text(c, f"_{c}_i").alias(c) for c in ("referrer", "campaign", "user_agent")],
        ev["offset"].gather(s["_first_i"]).alias("_first"),
    )
    if m.path_cap:
        s = s.with_columns(
            pl.col("path").cast(pl.List(pl.String)),
            # milliseconds since the start of each path step
            (pl.col("_path_ts") - pl.col("start")).alias("path_ms"))
    else:
        s = s.with_columns(pl.lit([], pl.List(pl.String)).alias("path"),
                           pl.lit([], pl.List(pl.Int64)).alias("path_ms"))
    if _with_ids(cfg):
        refs = pl.coalesce(pl.col("event_id"), pl.format("#{}", pl.col("offset")))
        ref_col = ev.select(refs.alias("ref"))["ref"]
        flat = s["_ids_i"].explode(empty_as_null=False)
        s = s.with_columns(_regroup(ref_col.gather(flat), s["_ids_i"]).alias("event_ids"))
    duration = pl.col("end") - pl.col("start")
    s = s.with_columns(
        duration.alias("duration_ms"),
        pl.lit("closed").alias("status"),
        pl.lit(partition, pl.Int64).alias("partition"),
        pl.col("revenue").round(6),
        (pl.col("event_count") == 1).alias("bounce"),
        ((duration >= m.engaged_min_duration_ms)
         | (pl.col("page_views") >= m.engaged_min_page_views)
         | (pl.col("conversions") > 0)).alias("engaged"),
        (pl.col("event_count") > pl.col("path").list.len()).alias("path_truncated"),
    )
    s = s.with_columns(session_ids(partition, s["key"], s["start"], s["_first"])
                       .alias("session_id"))
    return s.select(_output_columns(cfg))


def _with_ids(cfg: EngineConfig) -> bool:
    """Does a record carry ``event_ids``? As in the engine: when asked, and with dedup (which
    keeps the ids anyway)."""
    return cfg.track_event_ids or cfg.dedup


def _output_columns(cfg: EngineConfig) -> list[str]:
    return list(RECORD_COLUMNS) + (["event_ids"] if _with_ids(cfg) else [])


def _regroup(flat: pl.Series, like: pl.Series) -> pl.Series:
    """``flat`` cut into lists of the lengths of ``like``'s lists."""
    lengths = like.list.len()
    group = pl.Series(np.repeat(np.arange(len(like)), lengths.to_numpy()))
    return (pl.DataFrame({"g": group, "v": flat}).group_by("g", maintain_order=True)
            .agg("v")["v"])


def _sorted(narrow: pl.DataFrame) -> pl.DataFrame:
    """Rows by (partition, ts), ties in arrival order: one integer sort key when it fits."""
    lo, hi = narrow["ts"].min(), narrow["ts"].max()
    span = int(hi) - int(lo) + 1  # type: ignore[arg-type]
    top = int(narrow["_part"].max())  # type: ignore[arg-type]
    if (top + 1) * span < (1 << 62):
        order = (pl.col("_part") * span + (pl.col("ts") - lo)).alias("_k")
        return narrow.with_columns(order).sort("_k", maintain_order=True).drop("_k")
    return narrow.sort("_part", "ts", maintain_order=True)


def _segmented_prev_max(ev: pl.DataFrame) -> pl.Expr:
    """Per row, the maximum of ``ts + gap`` over the earlier rows of its partition (sorted by
    partition then ts): a global running maximum of a value lifted by the partition's rank so
    that an earlier partition can never win, or a windowed one if that could overflow."""
    lo = int(ev["ts"].min())  # type: ignore[arg-type]
    span = int(ev["ts"].max()) - lo + int(ev["_gap"].max()) + 1  # type: ignore[arg-type]
    rank = (pl.col("_part") != pl.col("_part").shift(1)).fill_null(True).cum_sum()
    parts = int(ev["_part"].n_unique())
    reach = pl.col("ts") - lo + pl.col("_gap")
    if parts * span < (1 << 62):
        lifted = rank.cast(pl.Int64) * span + reach
        return lifted.cum_max().shift(1) - rank.cast(pl.Int64) * span + lo
    return (pl.col("ts") + pl.col("_gap")).cum_max().shift(1).over("_part")


def _empty_sessions(cfg: EngineConfig) -> pl.DataFrame:
    schema: dict[str, Any] = {
        "session_id": pl.String, "key": pl.String, "partition": pl.Int64, "start": pl.Int64,
        "end": pl.Int64, "expires": pl.Int64, "duration_ms": pl.Int64, "event_count": pl.Int64,
        "status": pl.String, "page_views": pl.Int64, "conversions": pl.Int64,
        "revenue": pl.Float64, "bounce": pl.Boolean, "engaged": pl.Boolean,
        "entry_page": pl.String, "exit_page": pl.String, "referrer": pl.String,
        "campaign": pl.String, "user_agent": pl.String, "is_bot": pl.Boolean,
        "path": pl.List(pl.String), "path_ms": pl.List(pl.Int64), "path_truncated": pl.Boolean,
    }
    if _with_ids(cfg):
        schema["event_ids"] = pl.List(pl.String)
    return pl.DataFrame(schema=schema).select(_output_columns(cfg))


def _py_repr(expr: pl.Expr) -> pl.Expr:
    """``repr(text)`` for the usual case (no quotes or backslashes), as the engine's details."""
    return pl.when(expr.is_null()).then(pl.lit("None")).otherwise(pl.format("'{}'", expr))


def _raw_json(frame: pl.DataFrame) -> pl.Expr:
    cols = [c for c in EVENT_SCHEMA if c != "offset" and c in frame.columns]
    return pl.struct(cols).struct.json_encode()


# ====================================================================== session ids

_MASK = (1 << 64) - 1
_P = 0x100000001B3  # FNV-1a's 64-bit prime
_C1, _C2 = 0x9E3779B97F4A7C15, 0xD6E8FEB86659FD93


def _mix(x: int) -> int:
    """SplitMix64's finaliser (pure Python reference of ``_mix_np``)."""
    x &= _MASK
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _MASK
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _MASK
    return x ^ (x >> 31)


def _key_hash(key: str) -> int:
    h = 0
    for b in key.encode():
        h = (h * _P + b + 1) & _MASK
    return h


def session_id(partition: int, key: str, start: int, first_offset: int) -> str:
    """The backfill's session id: 32 hex digits, two 64-bit lanes of SplitMix64 over a
    polynomial hash of the key's UTF-8 bytes, the partition, the start and the first event's
    offset. Pure Python reference; ``session_ids`` computes the same, vectorised."""
    kh = _key_hash(key)
    out = []
    for c in (_C1, _C2):
        x = _mix(kh ^ _mix(partition * c + c))
        x = _mix(x ^ (start & _MASK))
        x = _mix(x ^ ((first_offset * c) & _MASK))
        out.append(f"{x:016x}")
    return "".join(out)


def _mix_np(x: np.ndarray) -> np.ndarray:
    x = x.copy()
    x ^= x >> np.uint64(30)
    x *= np.uint64(0xBF58476D1CE4E5B9)
    x ^= x >> np.uint64(27)
    x *= np.uint64(0x94D049BB133111EB)
    x ^= x >> np.uint64(31)
    return x


def _key_hashes(keys: pl.Series) -> np.ndarray:
    """``_key_hash`` of every key at once, from the column's UTF-8 buffer."""
    try:
        buffers = keys.rechunk()._get_buffers()
        values = buffers["values"].to_numpy()
        offsets = buffers["offsets"].to_numpy().astype(np.int64)
    except Exception:  # a Polars without this (private) accessor: the reference, per key
        return np.array([_key_hash(k) for k in keys.to_list()], dtype=np.uint64)
    lengths = np.diff(offsets)
    n = len(lengths)
    if n == 0:
        return np.zeros(0, np.uint64)
    if (lengths == 0).any():
        return np.array([_key_hash(k) for k in keys.to_list()], dtype=np.uint64)
    maxlen = int(lengths.max())
    powers = np.empty(maxlen, np.uint64)
    p = 1
    for i in range(maxlen):
        powers[i] = p
        p = (p * _P) & _MASK
    base = int(offsets[0])
    data = values[base:int(offsets[-1])].astype(np.uint64) + np.uint64(1)
    owner_end = np.repeat(offsets[1:] - base, lengths)
    exponent = owner_end - 1 - np.arange(len(data), dtype=np.int64)
    with np.errstate(over="ignore"):
        terms = data * powers[exponent]
        return np.add.reduceat(terms, offsets[:-1] - base)


_HEX = np.frombuffer(b"".join(f"{i:02x}".encode() for i in range(256)), dtype=np.uint16)


def session_ids(partition: int, keys: pl.Series, starts: pl.Series, firsts: pl.Series
                ) -> pl.Series:
    """``session_id`` of every session, vectorised."""
    n = len(keys)
    if n == 0:
        return pl.Series(values=[], dtype=pl.String)
    unique = keys.unique()
    if len(unique) < len(keys):
        kh = keys.replace_strict(unique, pl.Series(_key_hashes(unique)),
                                 return_dtype=pl.UInt64).to_numpy()
    else:
        kh = _key_hashes(keys)
    start = starts.to_numpy().astype(np.int64).view(np.uint64)
    first = firsts.to_numpy().astype(np.int64).view(np.uint64)
    lanes = []
    with np.errstate(over="ignore"):
        for c in (_C1, _C2):
            seed = _mix(partition * c + c)
            x = _mix_np(kh ^ np.uint64(seed))
            x = _mix_np(x ^ start)
            x = _mix_np(x ^ (first * np.uint64(c)))
            lanes.append(_HEX[x.astype(">u8").view(np.uint8).reshape(n, 8)])
    digits = np.ascontiguousarray(np.concatenate(lanes, axis=1)).view("S32").ravel()
    return pl.Series(digits).cast(pl.String)


# ====================================================================== reading files

def file_format(path: str | os.PathLike[str], fmt: str | None) -> str:
    """The format named, or told by the file's name or first bytes: parquet, jsonl, csv, tsv
    or clf (an error that says how to name it when it cannot be told)."""
    from sessionize.sources import _resolve_format
    from sessionize.sources.files import check_readable

    check_readable(path)
    if fmt is None and str(path).lower().endswith((".parquet", ".pq")):
        return "parquet"
    return fmt if fmt == "parquet" else _resolve_format(path, fmt)


def read_events(path: str | os.PathLike[str], fields: FieldMap, *, fmt: str | None = None,
                delimiter: str | None = None, clf_key: str = "ip+ua",
                skip_assets: bool = True) -> tuple[pl.DataFrame, pl.DataFrame, int]:
    """``(decoded events, malformed rejections, skipped)`` of a file, in file order."""
    fmt = file_format(path, fmt)
    if fmt == "parquet":
        frame = pl.read_parquet(path)
        events, rejections = decode_frame(frame, fields)
        return events, rejections, 0
    if fmt == "jsonl":
        events, rejections = _read_jsonl(path, fields)
        return events, rejections, 0
    if fmt in ("csv", "tsv"):
        sep = delimiter or ("\t" if fmt == "tsv" else ",")
        events, rejections = _read_csv(path, fields, sep)
        return events, rejections, 0
    from sessionize.sources import open_source

    source = open_source(path, "clf", key=clf_key, skip_assets=skip_assets)
    events, rejections = _from_items(it for batch in source.batches(50_000) for it in batch)
    return events, rejections, source.skipped


@contextmanager
def _opened(path: str | os.PathLike[str]) -> Iterator[tuple[Any, Any]]:
    """``open_bytes``' (decompressed stream, raw file), both closed after: the stream is the
    raw file itself when the file is not compressed."""
    from sessionize.sources.files import check_readable, open_bytes

    stream, raw = open_bytes(check_readable(path))
    try:
        yield stream, raw
    finally:
        if stream is not raw:
            stream.close()
        raw.close()


@contextmanager
def _file_data(path: str | os.PathLike[str]) -> Iterator[bytes]:
    """A file's bytes: a plain file mapped, not read (memory stays at what is looked at,
    whatever the file's size), a compressed one decompressed whole."""
    import mmap

    with _opened(path) as (stream, raw):
        if stream is raw and os.fstat(raw.fileno()).st_size > 0:
            with mmap.mmap(raw.fileno(), 0, access=mmap.ACCESS_READ) as data:
                yield data  # type: ignore[misc]
        else:
            yield stream.read()


def _read_bytes(path: str | os.PathLike[str]) -> bytes:
    with _opened(path) as (stream, _):
        return stream.read()  # type: ignore[no-any-return]


# ---------------------------------------------------------------- JSON Lines

def _read_jsonl(path: str | os.PathLike[str], fields: FieldMap
                ) -> tuple[pl.DataFrame, pl.DataFrame]:
    """A plain file is first scanned whole by Polars' streaming reader; a file it cannot read
    (a malformed line, a BOM, a compressed file) goes through the chunked reader, which falls
    back per chunk to the exact path. The fast paths' dead letters carry the decoded fields as
    their raw record: ``run`` puts the file's lines in their place."""
    scanned = _scanned_jsonl(path, fields)
    return scanned if scanned is not None else _chunked_jsonl(path, fields)


class _Unreadable(Exception):
    """Polars' reader stopped at a line it cannot read."""


def _scanned_jsonl(path: str | os.PathLike[str], fields: FieldMap
                   ) -> tuple[pl.DataFrame, pl.DataFrame] | None:
    """The file through ``scan_ndjson``'s batches, decoded a group of rows at a time on this
    thread while the reader runs ahead on a worker; None when the scan cannot stand for the
    file. Polars' reader splits the file over both cores without our copying it into chunks
    first (2 M events read and decoded in 1.9 to 2.1 s; 2.5 to 3.6 s by the chunked reader).

    Polars numbers rows, not lines, and skips blank lines: the lines are counted alongside;
    when rows and lines differ, the blank lines are found and the rows moved past them, and any
    other difference sends the file to the chunked reader, which numbers lines itself."""
    import threading
    from concurrent.futures import ThreadPoolExecutor

    path = os.path.abspath(path)
    if any(c in path for c in "*?[{") or not _plain_text(path):
        return None  # Polars would read a name with glob characters as a pattern
    if not hasattr(pl.LazyFrame, "collect_batches"):  # an older Polars (and the API is
        return None  # marked unstable): the chunked reader
    # The rows given before a read error are no prefix of the file: the morsel with the bad
    # line is dropped and the row index runs on over the ones after it. So nothing of a
    # failed scan is kept.
    schema = dict.fromkeys(_input_names(fields), pl.String)
    scan = (pl.scan_ndjson(path, schema=schema, row_index_name="_offset", row_index_offset=1)
            .with_columns(pl.col("_offset").cast(pl.Int64)))
    events, rejections = [], []
    stop = threading.Event()
    with ThreadPoolExecutor(1, thread_name_prefix="backfill-count") as pool:
        counted = pool.submit(_count_lines, path, stop)
        scanned = False
        try:
            for group in _prefetched(_row_groups(_batches(scan), SCAN_GROUP_ROWS)):
                ev, rej = decode_columns(group, fields)
                events.append(ev)
                rejections.append(rej)
            scanned = True
        except _Unreadable:
            return None
        finally:
            if not scanned:  # a bad line, an error, Ctrl-C: the count need not read on
                stop.set()
        lines = counted.result()
    if lines is None:
        return None
    received = sum(len(e) for e in events) + sum(len(r) for r in rejections)
    empty = _empty_lines_in(path) if received != lines else None
    if empty is not None and received + len(empty) != lines:
        return None  # Polars read some line as something else than one row or none
    if not events:
        return _empty_events(), _empty_rejections()
    ev, rej = pl.concat(events), pl.concat(rejections, how="vertical_relaxed")
    if empty is not None:
        ev, rej = (frame.with_columns(_rows_as_lines(frame["offset"], empty))
                   for frame in (ev, rej))
    return ev, _line_prefixed(rej)


def _batches(scan: pl.LazyFrame) -> Iterator[pl.DataFrame]:
    try:
        yield from scan.collect_batches()
    except pl.exceptions.PolarsError as exc:
        raise _Unreadable(str(exc)) from exc


def _count_lines(path: str, stop: Any, block: int = 16 << 20) -> int | None:
    """The file's lines as the exact path counts them: line breaks, and a last line without
    one (None once ``stop`` is set)."""
    breaks, last = 0, b"\n"
    buffer = bytearray(block)
    with open(path, "rb", buffering=0) as f:
        while n := f.readinto(buffer):  # type: ignore[attr-defined]
            if stop.is_set():
                return None
            breaks += buffer.count(b"\n", 0, n)
            last = buffer[n - 1:n]
    return breaks + (last != b"\n")


def _empty_lines_in(path: str, block: int = 16 << 20) -> np.ndarray:
    """1-based numbers of the blank lines (empty, or only spaces, tabs and CRs), ascending:
    the lines Polars' reader skips. A second pass, made only when rows and lines differ: it
    takes about twice as long as the count."""
    found, breaks = [], 0
    # the unfinished line before each block, from its line break on (the file starts as after
    # one), so that every line closed in a block is whole in its window
    tail = b"\n"
    buffer = bytearray(block)
    with open(path, "rb", buffering=0) as f:
        while n := f.readinto(buffer):  # type: ignore[attr-defined]
            window = tail + bytes(buffer[:n])
            found.append(_empty_lines(window, breaks))
            breaks += buffer.count(b"\n", 0, n)
            tail = window[window.rfind(b"\n"):]
    if len(tail) > 1 and not tail[1:].strip(b" \t\r"):  # a last line without a break
        found.append(np.asarray([breaks + 1], np.int64))
    return np.concatenate(found) if found else np.zeros(0, np.int64)


def _rows_as_lines(rows: pl.Series, empty: np.ndarray) -> pl.Series:
    """Polars' row numbers (1-based) as line numbers: row r is line r plus the blank lines
    before it, which (with c_j = e_j - j for the j-th blank line e_j) are the c_j < r."""
    c = empty - np.arange(1, len(empty) + 1)
    r = rows.to_numpy()
    return pl.Series(rows.name, r + np.searchsorted(c, r, side="left"), pl.Int64)


def _empty_lines(window: bytes, breaks_before: int) -> np.ndarray:
    """Line numbers of the blank lines (nothing but spaces, tabs and CRs) closed in ``window``,
    which starts with the line break numbered ``breaks_before`` (0: the file's start), so that
    the line after its i-th break is line ``breaks_before + i + 1``. Only a line that starts
    with a blank or a break can be one: those few are looked at one by one."""
    w = np.frombuffer(window, np.uint8)
    at = np.flatnonzero(w == 10)
    starts, ends = at[:-1] + 1, at[1:]
    head = w[starts]  # a closed line has its break at least, so this is inside the window
    maybe = np.flatnonzero((head == 10) | (head == 32) | (head == 9) | (head == 13))
    blank = [i for i in maybe.tolist() if not window[starts[i]:ends[i]].strip(b" \t\r")]
    return np.asarray(blank, np.int64) + breaks_before + 1


def _plain_text(path: str | os.PathLike[str]) -> bool:
    """Neither compressed nor starting with a BOM: a file Polars' scan reads as it is."""
    with _opened(path) as (stream, raw):
        return stream is raw and raw.peek(3)[:3] != b"\xef\xbb\xbf"  # type: ignore[no-any-return]


def _row_groups(batches: Iterable[pl.DataFrame], rows: int) -> Iterator[pl.DataFrame]:
    """The reader's batches (a few thousand rows each) gathered into frames of about ``rows``:
    each decode has a fixed cost of some twenty Polars calls."""
    pending: list[pl.DataFrame] = []
    held = 0
    for batch in batches:
        pending.append(batch)
        held += len(batch)
        if held >= rows:
            yield pl.concat(pending, rechunk=False)
            pending, held = [], 0
    if pending:
        yield pl.concat(pending, rechunk=False)


def _chunked_jsonl(path: str | os.PathLike[str], fields: FieldMap
                   ) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Chunks are parsed by Polars on a reader thread one chunk ahead of their decoding here:
    the parse and the decode each leave part of the two cores idle, and both release the GIL.
    A chunk Polars cannot read, or whose rows are not its lines, is halved (``_pieces``)."""
    events, rejections = [], []
    line = 1
    for chunk, lines, frame in _prefetched(_parsed_chunks(path, fields)):
        for ev, rej in _pieces(chunk, lines, frame, line, fields):
            events.append(ev)
            rejections.append(rej)
        line += lines
    if not events:
        return _empty_events(), _empty_rejections()
    return pl.concat(events), pl.concat(rejections, how="vertical_relaxed")


def _with_file_lines(rejections: pl.DataFrame, path: str | os.PathLike[str]) -> pl.DataFrame:
    """``_with_lines`` over a whole JSON Lines file, read again (up to the last line wanted)
    rather than kept: rejections are few."""
    if rejections.is_empty():
        return rejections
    with _file_data(path) as data:
        return _with_lines(rejections, data)


def _with_lines(rejections: pl.DataFrame, data: bytes, block: int = 64 << 20) -> pl.DataFrame:
    """The rejections with their lines of ``data`` (a file's bytes) as the raw record, as the
    streaming path gives it: the fast paths only see the fields they asked Polars for."""
    wanted = rejections["offset"].to_numpy() - 1  # 0-based line numbers
    order = np.argsort(wanted, kind="stable")
    found = [""] * len(wanted)
    buffer = np.frombuffer(data, dtype=np.uint8)
    before = 0  # line breaks before the block
    # where the line that is open at the block's start begins (after a BOM, as the reader)
    start_of_line = 3 if data[:3] == b"\xef\xbb\xbf" else 0
    i = 0
    for at in range(0, len(buffer), block):
        if i == len(order):
            break
        breaks = np.flatnonzero(buffer[at:at + block] == 10) + at
        while i < len(order) and wanted[order[i]] < before + len(breaks):
            k = int(wanted[order[i]]) - before
            begin = start_of_line if k == 0 else int(breaks[k - 1]) + 1
            found[order[i]] = _line_text(data[begin:int(breaks[k])])
            i += 1
        if len(breaks):
            start_of_line = int(breaks[-1]) + 1
        before += len(breaks)
    while i < len(order):  # the last line, without a line break
        found[order[i]] = _line_text(data[start_of_line:])
        i += 1
    return rejections.with_columns(pl.Series("raw", found, pl.String))


def _line_text(line: bytes) -> str:
    return line.rstrip(b"\r").decode("utf-8", "backslashreplace")


def _pieces(chunk: bytes, lines: int, frame: pl.DataFrame | None, first_line: int,
            fields: FieldMap) -> Iterator[tuple[pl.DataFrame, pl.DataFrame]]:
    """Decoded events and rejections of a chunk: as columns when Polars read it with a row per
    line; otherwise halved at a line break, each half read again, down to pieces of
    ``EXACT_PIECE_BYTES`` that the exact path decodes line by line. One bad line in a 256 MB
    chunk then costs the exact decoding of about a megabyte (the whole chunk took seconds)."""
    if frame is not None and len(frame) == lines:
        frame = frame.with_columns(
            pl.int_range(first_line, first_line + lines, dtype=pl.Int64).alias("_offset"))
        ev, rej = decode_columns(frame, fields)
        yield ev, _line_prefixed(rej)
        return
    cut = chunk.find(b"\n", len(chunk) // 2) + 1
    if len(chunk) <= EXACT_PIECE_BYTES or not 0 < cut < len(chunk):
        yield _exact_jsonl(chunk, fields, first_line)
        return
    for piece, line in ((chunk[:cut], first_line), (chunk[cut:], first_line + chunk.count(
            b"\n", 0, cut))):
        yield from _pieces(piece, _line_count(piece), _polars_frame(piece, fields), line,
                           fields)


def _parsed_chunks(path: str | os.PathLike[str], fields: FieldMap
                   ) -> Iterator[tuple[bytes, int, pl.DataFrame | None]]:
    """``(chunk, its lines, Polars' frame of it or None)``."""
    for chunk in _jsonl_chunks(path, JSONL_CHUNK_BYTES):
        yield chunk, _line_count(chunk), _polars_frame(chunk, fields)


def _line_count(chunk: bytes) -> int:
    return chunk.count(b"\n") + (0 if chunk.endswith(b"\n") else 1)


def _polars_frame(chunk: bytes, fields: FieldMap) -> pl.DataFrame | None:
    """Polars' frame of a chunk, or None when it cannot read it (not JSON, not UTF-8, not
    objects): the exact path then reports why, per line."""
    try:
        return pl.read_ndjson(chunk, schema=dict.fromkeys(_input_names(fields), pl.String))
    except Exception:  # any reason Polars gives
        return None


def _prefetched(items: Iterator[_T]) -> Iterator[_T]:
    """``items``, each produced on a worker thread while the caller works on the one before."""
    from concurrent.futures import ThreadPoolExecutor

    done = object()
    with ThreadPoolExecutor(1, thread_name_prefix="backfill-read") as pool:
        ahead = pool.submit(next, items, done)
        while (item := ahead.result()) is not done:
            ahead = pool.submit(next, items, done)
            yield item  # type: ignore[misc]


def _jsonl_chunks(path: str | os.PathLike[str], size: int) -> Iterator[bytes]:
    """The file in pieces of about ``size`` bytes that end at a line break, a BOM blanked
    (same length, so line numbers hold); memory stays at a chunk or two for a plain file."""
    with _file_data(path) as data:
        yield from _chunks(data, size)


def _chunks(data: bytes, size: int) -> Iterable[bytes]:
    """``data`` in pieces of about ``size`` bytes that end at a line break (the first with a
    BOM blanked)."""
    start, n = 0, len(data)
    while start < n:
        end = min(start + size, n)
        if end < n:
            nl = data.find(b"\n", end)
            end = n if nl < 0 else nl + 1
        chunk = data[start:end]
        if start == 0 and chunk.startswith(b"\xef\xbb\xbf"):
            chunk = b"   " + chunk[3:]
        yield chunk
        start = end


def _exact_jsonl(chunk: bytes, fields: FieldMap, first_line: int
                 ) -> tuple[pl.DataFrame, pl.DataFrame]:
    """The streaming path's own line reading and decoding, for a chunk Polars could not read."""
    from sessionize.decode.fields import RecordDecoder
    from sessionize.decode.jsonrecord import decode_json

    decoder = RecordDecoder(fields)

    def items() -> Iterable[Event | Rejection]:
        for i, data in enumerate(chunk.split(b"\n"), first_line):
            data = data.rstrip(b"\r")
            if not data or data.isspace():
                continue
            try:
                text = data.decode("utf-8")
            except UnicodeDecodeError as exc:
                bad = exc.object[exc.start:exc.end]
                yield Rejection(Reason.MALFORMED, data.decode("utf-8", "backslashreplace"),
                                f"line {i}: not valid UTF-8 (byte {bad.hex(' ')} at column "
                                f"{exc.start + 1})", i)
                continue
            yield decode_json(decoder, text, i, f"line {i}")

    return _from_items(items())


# ---------------------------------------------------------------- CSV / TSV

def _read_csv(path: str | os.PathLike[str], fields: FieldMap, sep: str
              ) -> tuple[pl.DataFrame, pl.DataFrame]:
    from sessionize.sources.csvfile import CsvSource, fit_fields

    data = _read_bytes(path)
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    marker = next((bytes([b]) for b in range(1, 32) if bytes([b]) not in data
                   and bytes([b]) not in (b"\n", b"\r", b"\t")), None)
    lines = None
    if marker is not None and b"\r" not in data.replace(b"\r\n", b"\n"):
        try:
            lines = pl.read_csv(io.BytesIO(data), has_header=False, separator=marker.decode(),
                                quote_char=None, new_columns=["line"],
                                schema_overrides={"line": pl.String},
                                empty_string_is_null=False)["line"]
        except Exception:
            lines = None
        else:
            # a last line without its line break is a line; an empty file has none
            expected = data.count(b"\n") + (0 if data.endswith(b"\n") or not data else 1)
            if len(lines) != expected:
                lines = None
    quote = b'"'
    if lines is not None and quote in data:
        odd = lines.str.count_matches('"', literal=True) % 2 == 1
        if odd.any():
            lines = None  # a quoted field spans lines: only a real CSV reader can tell rows
    if lines is None:
        source = CsvSource(path, fields, delimiter=sep)
        return _from_items(it for batch in source.batches(50_000) for it in batch)

    frame = pl.DataFrame({"line": lines}).with_row_index("_offset", offset=1)
    frame = frame.with_columns(pl.col("_offset").cast(pl.Int64))
    blank = pl.col("line").is_null() | (pl.col("line").str.strip_chars() == "")
    frame = frame.filter(~blank)
    if frame.is_empty():
        return _empty_events(), _empty_rejections()
    header_text = frame["line"][0]
    columns = next(csv.reader([header_text], delimiter=sep))
    fields = fit_fields(fields, columns, str(path))
    body = frame.slice(1)
    n = len(columns)
    quoted = body["line"].str.contains('"', literal=True)
    plain = body.filter(~quoted)
    parts = plain.select(
        "_offset", pl.col("line").alias("_raw"),
        (pl.col("line").str.count_matches(sep, literal=True) + 1).alias("_nf"),
        pl.col("line").str.split_exact(sep, max(n - 1, 0)).alias("_f"))
    parts = parts.unnest("_f")
    parts = parts.rename({f"field_{i}": c for i, c in enumerate(columns)})
    if quoted.any():
        parts = pl.concat([parts, _csv_quoted_rows(body.filter(quoted), columns, sep)],
                          how="vertical_relaxed").sort("_offset")
    bad = pl.col("_nf") != n
    wrong = parts.filter(bad)
    rejections = wrong.select(
        pl.lit(Reason.MALFORMED.value).alias("reason"),
        pl.format("line {}: expected {} fields, got {}", "_offset", pl.lit(n), "_nf")
        .alias("detail"),
        pl.col("_offset").alias("offset"), pl.lit(None, pl.String).alias("key"),
        pl.lit(None, pl.String).alias("event_id"), pl.lit(None, pl.Int64).alias("ts"),
        pl.col("_raw").alias("raw"))
    good = parts.filter(~bad)
    events, rej = decode_columns(good, fields)
    return events, pl.concat([rejections, _line_prefixed(rej)], how="vertical_relaxed")


def _csv_quoted_rows(rows: pl.DataFrame, columns: Sequence[str], sep: str) -> pl.DataFrame:
    """Lines with quotes (each balanced, so one line is one row), read by Python's csv module
    exactly as the streaming CSV source reads them."""
    out: dict[str, list[Any]] = {c: [] for c in ["_offset", "_raw", "_nf", *columns]}
    for offset, text in rows.select("_offset", "line").iter_rows():
        try:
            row = next(csv.reader([text + "\n"], delimiter=sep, strict=True))
        except (csv.Error, StopIteration):
            row = None
        out["_offset"].append(offset)
        out["_raw"].append(text)
        out["_nf"].append(-1 if row is None else len(row))
        for i, c in enumerate(columns):
            out[c].append(row[i] if row is not None and i < len(row) else None)
    frame = pl.DataFrame(out, schema={"_offset": pl.Int64, "_raw": pl.String, "_nf": pl.Int64,
                                      **dict.fromkeys(columns, pl.String)})
    return frame


# ====================================================================== decoding columns

def _input_names(fields: FieldMap) -> list[str]:
    names = [*fields.key, *fields.ts]
    for name in (fields.type, fields.event_id, fields.page, fields.referrer, fields.user_agent,
                 fields.revenue, fields.received_at):
        if name:
            names.append(name)
    names.extend(fields.campaign)
    return list(dict.fromkeys(names))


def decode_frame(frame: pl.DataFrame, fields: FieldMap) -> tuple[pl.DataFrame, pl.DataFrame]:
    """A DataFrame with the FieldMap's column names (one row per event, in arrival order; a
    row's offset is its 1-based row number) to decoded events and malformed rejections."""
    frame = frame.with_columns(pl.int_range(1, len(frame) + 1, dtype=pl.Int64).alias("_offset"))
    return decode_columns(frame, fields)


def decode_columns(frame: pl.DataFrame, fields: FieldMap
                   ) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Vectorised ``RecordDecoder``: raw columns (text or typed) to ``EVENT_SCHEMA`` columns,
    and ``malformed`` rejections with the decoder's messages. ``_offset`` must be present."""
    f = fields
    present = set(frame.columns)

    def text(name: str | None) -> pl.Expr:
        if not name or name not in present:
            return pl.lit(None, pl.String)
        col = pl.col(name)
        dtype = frame.schema[name]
        if dtype != pl.String:
            col = col.cast(pl.String)
        elif not (frame[name] == "").any():
            return col  # nothing to blank out: no copy
        return pl.when(col == "").then(None).otherwise(col)

    def joined(names: Sequence[str], sep: str, partial: bool = False) -> pl.Expr:
        if len(names) == 1:
            return text(names[0])
        parts = [text(n) for n in names]
        if partial:
            return pl.lit(_partial_join(frame, parts, sep))
        return pl.concat_str(parts, separator=sep)  # null if any part is null

    ts_name = "+".join(f.ts)
    etype = text(f.type)
    if f.default_type is not None:
        etype = etype.fill_null(pl.lit(f.default_type))
    out = frame.select(
        pl.col("_offset").alias("offset"),
        joined(f.key, "|").alias("key"),
        (pl.col(f.ts[0]) if len(f.ts) == 1 else joined(f.ts, " ")).alias("_ts_raw")
        if all(n in present for n in f.ts) else pl.lit(None, pl.String).alias("_ts_raw"),
        etype.alias("type"),
        text(f.event_id).alias("event_id"),
        text(f.page).alias("page"),
        text(f.referrer).alias("referrer"),
        (joined(f.campaign, "/", partial=True) if f.campaign else pl.lit(None, pl.String))
        .alias("campaign"),
        text(f.user_agent).alias("user_agent"),
        (pl.col(f.revenue) if f.revenue and f.revenue in present
         else pl.lit(None, pl.String)).alias("_rev_raw"),
        (pl.col(f.received_at) if f.received_at and f.received_at in present
         else pl.lit(None, pl.String)).alias("_recv_raw"),
        *([pl.col("_raw")] if "_raw" in present else []),
    )
    ts, ts_err = _timestamps(out["_ts_raw"], f.ts_format, f.input_tz)
    rev, rev_err = _numbers(out["_rev_raw"], f.revenue or "")
    recv, recv_err = _timestamps(out["_recv_raw"], "iso", "UTC")
    missing = out["_ts_raw"].is_null()
    if out["_ts_raw"].dtype == pl.String:
        missing = missing | (out["_ts_raw"] == "")
    out = out.with_columns(ts.alias("ts"), rev.alias("revenue"), recv.alias("received_at"),
                           pl.lit(False).alias("is_bot"))
    # the decoder's range of event time (sessionize.decode.fields.TS_LIMIT_MS); a time the
    # vectorised parse left without a value or an error is beyond even Int64 (a 23-digit
    # epoch): never an event without a time
    beyond = ((pl.col("ts") < -TS_LIMIT_MS) | (pl.col("ts") >= TS_LIMIT_MS)
              | pl.col("ts").is_null())
    raw_ts = pl.col("_ts_raw").cast(pl.String)
    spelled = pl.lit("'") + raw_ts + pl.lit("'") if out["_ts_raw"].dtype == pl.String else raw_ts
    nul_key = pl.col("key").str.contains("\x00", literal=True)  # the decoder refuses it
    detail = (
        pl.when(nul_key).then(pl.lit("the key contains a NUL character"))
        .when(missing).then(pl.lit(f"missing timestamp field {ts_name!r}"))
        .when(ts_err.is_not_null()).then(pl.lit(f"field {ts_name!r}: ") + ts_err)
        .when(beyond).then(pl.lit(f"field {ts_name!r}: ") + spelled
                           + pl.lit(" is out of the supported range (years -2489 to 6429)"))
        .when(rev_err.is_not_null()).then(pl.lit(f"field {f.revenue!r}: ") + rev_err)
        .when(recv_err.is_not_null()).then(pl.lit(f"field {f.received_at!r}: ") + recv_err)
    )
    out = out.with_columns(detail.alias("_detail"))
    bad = out.filter(pl.col("_detail").is_not_null())
    raw = pl.col("_raw") if "_raw" in out.columns else _raw_from(frame, bad["offset"])
    rejections = bad.select(
        pl.lit(Reason.MALFORMED.value).alias("reason"),
        pl.col("_detail").alias("detail"), "offset",
        pl.when(nul_key).then(None).otherwise(pl.col("key")).alias("key"),
        pl.lit(None, pl.String).alias("event_id"), pl.lit(None, pl.Int64).alias("ts"),
        raw.alias("raw") if "_raw" in out.columns else pl.Series("raw", raw, pl.String))
    good = out if bad.is_empty() else out.filter(pl.col("_detail").is_null())
    events = good.select([pl.col(c).cast(t) for c, t in EVENT_SCHEMA.items()])
    return events, rejections


def _line_prefixed(rejections: pl.DataFrame) -> pl.DataFrame:
    """Details as the line-reading sources word them: ``line N: ...`` (the offset is the line)."""
    return rejections.with_columns(pl.format("line {}: {}", "offset", "detail").alias("detail"))


def _partial_join(frame: pl.DataFrame, parts: list[pl.Expr], sep: str) -> pl.Series:
    """The parts joined by ``sep`` (a missing part as ""), null where every part is missing.
    Joined only on the rows that have a part: a campaign is on few events, often none."""
    has = frame.select(pl.any_horizontal([p.is_not_null() for p in parts])).to_series()
    rows = has.arg_true()
    joined = _nulls(len(frame), pl.String)
    if len(rows):
        values = frame[rows].select(pl.concat_str([p.fill_null("") for p in parts],
                                                  separator=sep)).to_series()
        joined = joined.scatter(rows, values)
    return joined


def _raw_from(frame: pl.DataFrame, offsets: pl.Series) -> list[str]:
    """The input fields of the given rows, as JSON (for dead letters of the fast paths)."""
    if offsets.is_empty():
        return []
    rows = frame.filter(pl.col("_offset").is_in(offsets.implode()))
    cols = [c for c in rows.columns if not c.startswith("_")]
    return rows.select(pl.struct(cols).struct.json_encode())[:, 0].to_list()


_CANONICAL = r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$"
# where each field of the canonical spelling sits: (first character, width)
_CANONICAL_FIELDS = {"y": (0, 4), "mo": (5, 2), "d": (8, 2), "h": (11, 2), "mi": (14, 2),
                     "s": (17, 2), "ms": (20, 3)}
_ISO = (r"^(\d{4})-(\d{2})-(\d{2})(?:[T ](\d{2}):(\d{2})(?::(\d{2})(?:\.(\d{1,6}))?)?"
        r"(Z|[+-]\d{2}:?\d{2})?)?$")


def _timestamps(raw: pl.Series, fmt: str, tz: str) -> tuple[pl.Series, pl.Expr]:
    """(UTC ms, error message) per value, as ``make_parser(fmt, tz)`` would give them: common
    spellings vectorised, every other value through ``make_parser`` itself."""
    n = len(raw)
    if raw.dtype == pl.Null or raw.null_count() == n:
        return _nulls(n, pl.Int64), pl.lit(None, pl.String)
    dtype = raw.dtype
    scale = {"epoch_s": 1000.0, "epoch_ms": 1.0, "epoch_us": 0.001}.get(fmt)
    if isinstance(dtype, pl.Datetime):
        values = raw
        if dtype.time_zone is None:
            values = values.dt.replace_time_zone(tz, ambiguous="earliest", non_existent="null")
        us = values.dt.epoch("us")
        ms = us // 1000
        return ms, pl.lit(None, pl.String)
    if dtype.is_integer() or dtype.is_float():
        if fmt == "iso":
            return raw.cast(pl.Int64, strict=False), pl.lit(None, pl.String)
        if scale is None:
            return _residual(raw.cast(pl.String), _nulls(n, pl.Int64),
                             fmt, tz)
        return _round_half_even(raw.cast(pl.Float64) * scale), pl.lit(None, pl.String)
    text = raw.cast(pl.String)
    if scale is not None:
        parsed = _round_half_even(text.str.strip_chars().cast(pl.Float64, strict=False) * scale)
    elif fmt == "iso":
        parsed = _iso(text, tz)  # strips what is not canonical (which has no blanks)
    else:
        parsed = _pattern(text.str.strip_chars(), fmt, tz)
    return _residual(text, parsed, fmt, tz)


def _nulls(n: int, dtype: Any) -> pl.Series:
    return pl.repeat(None, n, dtype=dtype, eager=True)


def _round_half_even(values: pl.Series) -> pl.Series:
    finite = values.is_finite() & (values.abs() < 9.2e18)
    return (pl.select(pl.when(finite).then(values.round(0, mode="half_to_even")))
            .to_series().cast(pl.Int64, strict=False))


def _iso(text: pl.Series, tz: str) -> pl.Series:
    """ISO-8601 in the shapes ``datetime.fromisoformat`` reads the same way (date, date and
    time with ``T`` or a space, seconds optional, up to 6 fraction digits, ``Z`` or ``±HH:MM``),
    and epoch milliseconds written as digits; anything else is left null for the residual."""
    # the canonical spelling (JavaScript's toISOString) first: by far the most common. Its
    # fields sit at fixed places, so slicing them out and doing the calendar arithmetic is
    # exact once the shape is checked, and 3 to 4x faster than strptime (one core either way)
    canonical = text.str.contains(_CANONICAL)
    fast = None
    if canonical.any():
        t = pl.col("t")
        parts = pl.DataFrame({"t": text, "c": canonical}).select(
            "c", *(t.str.slice(at, width).cast(pl.Int64, strict=False).alias(name)
                   for name, (at, width) in _CANONICAL_FIELDS.items()))
        p = {name: pl.col(name) for name in _CANONICAL_FIELDS}
        valid, local_us = _civil_us(p["y"], p["mo"], p["d"], p["h"], p["mi"], p["s"],
                                    p["ms"] * 1000)
        fast = parts.select(pl.when(pl.col("c") & valid).then(local_us // 1000)).to_series()
        if bool(canonical.all()) and fast.null_count() == 0:
            return fast
        text = pl.select(pl.when(~canonical | fast.is_null()).then(text)).to_series()
    slow = _iso_general(text.str.strip_chars(), tz)
    return slow if fast is None else fast.fill_null(slow)


def _civil_us(y: pl.Expr, mo: pl.Expr, d: pl.Expr, hh: pl.Expr, mi: pl.Expr, ss: pl.Expr,
              frac_us: pl.Expr) -> tuple[pl.Expr, pl.Expr]:
    """(is a real date and time, microseconds since the epoch read as UTC) of the fields, with
    ``fromisoformat``'s ranges: years from 1, no leap seconds, no hour 24."""
    mdays = (pl.when(mo == 2).then(
        pl.when(((y % 4 == 0) & (y % 100 != 0)) | (y % 400 == 0)).then(29).otherwise(28))
        .when(mo.is_in([4, 6, 9, 11])).then(30).otherwise(31))
    valid = ((mo >= 1) & (mo <= 12) & (d >= 1) & (d <= mdays) & (hh < 24) & (mi < 60)
             & (ss < 60) & (y >= 1))
    local_us = ((_days_from_civil(y, mo, d) * 86_400 + hh * 3600 + mi * 60 + ss) * 1_000_000
                + frac_us)
    return valid, local_us


def _iso_general(text: pl.Series, tz: str) -> pl.Series:
    g = text.str.extract_groups(_ISO)
    frame = pl.DataFrame({"t": text, "g": g}).unnest("g")
    names = [f"{i}" for i in range(1, 9)]
    frame = frame.rename({old: new for old, new in zip(frame.columns[1:], names, strict=True)})
    i = {k: pl.col(k).cast(pl.Int64, strict=False) for k in names[:6]}
    frac = pl.col("7").str.pad_end(6, "0").cast(pl.Int64, strict=False).fill_null(0)
    valid, local_us = _civil_us(i["1"], i["2"], i["3"], i["4"].fill_null(0),
                                i["5"].fill_null(0), i["6"].fill_null(0), frac)
    off = pl.col("8")
    sign = pl.when(off.str.starts_with("-")).then(-1).otherwise(1)
    digits = off.str.replace(":", "", literal=True)
    off_h = digits.str.slice(1, 2).cast(pl.Int64, strict=False)
    off_m = digits.str.slice(3, 2).cast(pl.Int64, strict=False)
    off_us = sign * (off_h * 3600 + off_m * 60) * 1_000_000
    off_ok = (off == "Z") | ((off_h < 24) & (off_m < 60))
    aware_us = local_us - pl.when(off == "Z").then(0).otherwise(off_us)
    out = frame.select(
        pl.when(valid & off.is_not_null() & off_ok).then(aware_us).alias("aware"),
        pl.when(valid & off.is_null()).then(local_us).alias("naive"),
        # epoch ms as digits: only where fromisoformat cannot read a basic-format date
        pl.when(pl.col("t").str.contains(r"^\d{9,18}$")
                & ~pl.col("t").str.contains(r"^\d{4}(0[1-9]|1[0-2])(0[1-9]|[12]\d|3[01])"))
        .then(pl.col("t").cast(pl.Int64, strict=False)).alias("digits"),
    )
    naive = out["naive"]
    if tz != "UTC" and naive.null_count() < len(naive):
        naive = (pl.from_epoch(naive, "us").dt.replace_time_zone(
            tz, ambiguous="earliest", non_existent="null").dt.epoch("us"))
    us = out["aware"].fill_null(naive)
    return (us // 1000).fill_null(out["digits"])


def _days_from_civil(y: pl.Expr, m: pl.Expr, d: pl.Expr) -> pl.Expr:
    y = y - (m <= 2).cast(pl.Int64)
    era = y // 400
    yoe = y - era * 400
    doy = (153 * (m + pl.when(m > 2).then(-3).otherwise(9)) + 2) // 5 + d - 1
    doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    return era * 146097 + doe - 719468


def _pattern(text: pl.Series, fmt: str, tz: str) -> pl.Series:
    try:
        dt = text.str.strptime(pl.Datetime("us"), fmt, strict=False)
    except Exception:  # a directive Polars does not know: everything to the residual
        return _nulls(len(text), pl.Int64)
    if dt.dtype.time_zone is None:  # type: ignore[union-attr]
        dt = dt.dt.replace_time_zone(tz, ambiguous="earliest", non_existent="null")
    return dt.dt.epoch("us") // 1000


def _residual(raw: pl.Series, parsed: pl.Series, fmt: str, tz: str
              ) -> tuple[pl.Series, pl.Expr]:
    """Values the vectorised parse left null go through the streaming path's parser."""
    todo = parsed.is_null() & raw.is_not_null() & (raw != "")
    errors: pl.Series | None = None
    if todo.any():
        parse = make_parser(fmt, tz)
        values: dict[str, int | None] = {}
        messages: dict[str, str] = {}
        for v in raw.filter(todo).unique().to_list():
            try:
                ms = parse(v)
            except BadTimestamp as exc:
                messages[v] = str(exc)
            else:  # beyond the decoder's range (or Int64's) stays null: out of range
                values[v] = ms if -TS_LIMIT_MS <= ms < TS_LIMIT_MS else None
        looked = raw.replace_strict(list(values), list(values.values()), default=None,
                                    return_dtype=pl.Int64) if values else None
        if looked is not None:
            parsed = pl.select(pl.when(todo).then(looked).otherwise(parsed)).to_series()
        if messages:
            errors = raw.replace_strict(list(messages), list(messages.values()), default=None,
                                        return_dtype=pl.String)
            errors = pl.select(pl.when(todo).then(errors)).to_series()
    return parsed, pl.lit(None, pl.String) if errors is None else pl.lit(errors)


def _numbers(raw: pl.Series, name: str) -> tuple[pl.Series, pl.Expr]:
    """``float(value)`` per value, as the decoder reads the revenue field."""
    n = len(raw)
    if raw.dtype == pl.Null or raw.null_count() == n:
        return _nulls(n, pl.Float64), pl.lit(None, pl.String)
    errors: pl.Series | None = None
    if raw.dtype.is_numeric():
        parsed = raw.cast(pl.Float64)
        spelling = None
    else:
        text = spelling = raw.cast(pl.String)
        parsed = text.str.strip_chars().cast(pl.Float64, strict=False)
        todo = parsed.is_null() & text.is_not_null() & (text != "")
        if todo.any():
            values: dict[str, float] = {}
            messages: dict[str, str] = {}
            for v in text.filter(todo).unique().to_list():
                try:
                    values[v] = float(v)
                except (TypeError, ValueError):
                    messages[v] = f"not a number: {v!r}"
            if values:
                looked = text.replace_strict(list(values), list(values.values()), default=None,
                                             return_dtype=pl.Float64)
                parsed = pl.select(pl.when(todo).then(looked).otherwise(parsed)).to_series()
            if messages:
                errors = text.replace_strict(list(messages), list(messages.values()),
                                             default=None, return_dtype=pl.String)
                errors = pl.select(pl.when(todo).then(errors)).to_series()
    # "nan" and "inf" parse, but are not amounts (the decoder rejects them too)
    odd = (parsed.is_nan() | parsed.is_infinite()).fill_null(False)
    if odd.any():
        spelled = (spelling.filter(odd).to_list() if spelling is not None
                   else parsed.filter(odd).to_list())
        message = pl.Series([f"not a finite number: {v!r}" for v in spelled], dtype=pl.String)
        fill = pl.Series([None] * n, dtype=pl.String).scatter(odd.arg_true(), message)
        errors = fill if errors is None else errors.fill_null(fill)
    return parsed, pl.lit(None, pl.String) if errors is None else pl.lit(errors)


# ====================================================================== from Event objects

def _from_items(items: Iterable[Event | Rejection]) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Events and Rejections of the streaming sources, as the backfill's frames."""
    cols: dict[str, list[Any]] = {c: [] for c in EVENT_SCHEMA}
    rej: dict[str, list[Any]] = {c: [] for c in REJECTION_COLUMNS}
    getters: list[tuple[list[Any], Callable[[Event], Any]]] = [
        (cols[c], _attr(c)) for c in EVENT_SCHEMA]
    for it in items:
        if isinstance(it, Event):
            for target, get in getters:
                target.append(get(it))
        else:
            rej["reason"].append(it.reason.value)
            rej["detail"].append(it.detail)
            rej["offset"].append(it.offset)
            rej["key"].append(it.key)
            rej["event_id"].append(it.event_id)
            rej["ts"].append(it.ts)
            rej["raw"].append(it.raw if isinstance(it.raw, str) or it.raw is None
                              else _json(it.raw))
    return (pl.DataFrame(cols, schema=EVENT_SCHEMA),
            pl.DataFrame(rej, schema=REJECTION_SCHEMA))


def _attr(name: str) -> Callable[[Event], Any]:
    if name in ("page", "referrer", "campaign", "user_agent", "event_id", "key", "type"):
        return lambda ev: getattr(ev, name) or None
    return lambda ev: getattr(ev, name)


def _json(value: Any) -> str:
    import orjson

    return orjson.dumps(value, default=str).decode()


def events_frame(events: Iterable[Event]) -> pl.DataFrame:
    """Decoded ``Event`` objects (in arrival order) as the backfill's events frame; an event
    without an offset gets its 1-based position."""
    frame, _ = _from_items(events)
    return frame.with_columns(
        pl.col("offset").fill_null(pl.int_range(1, pl.len() + 1, dtype=pl.Int64)))


def _empty_events() -> pl.DataFrame:
    return pl.DataFrame(schema=EVENT_SCHEMA)


def _empty_rejections() -> pl.DataFrame:
    return pl.DataFrame(schema=REJECTION_SCHEMA)


def sessionize_events(events: Iterable[Event], config: EngineConfig, partition: int = 0
                      ) -> BackfillResult:
    """Backfill of already-decoded events (the property tests compare it with the engine)."""
    reason = unsupported_reason(config)
    if reason is not None:
        raise ConfigError(f"the backfill cannot apply {reason}")
    sessions, rejections = sessionize(events_frame(events), config, partition)
    return BackfillResult(sessions, rejections, _counters(sessions, rejections, 0))


def write_jsonl(sessions: pl.DataFrame, path: str | Path) -> None:
    """Sessions as the pipeline's JSON Lines output (``start_time``/``end_time`` beside ms)."""
    iso = "%Y-%m-%dT%H:%M:%S%.3fZ"
    sessions.with_columns(
        pl.from_epoch("start", "ms").dt.strftime(iso).alias("start_time"),
        pl.from_epoch("end", "ms").dt.strftime(iso).alias("end_time"),
    ).write_ndjson(path)
