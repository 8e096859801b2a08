"""What every SQL store shares: session records <-> rows, rejections as rows, JSON text, page
cursors and range bounds. Pure functions, no database: SQLite and PostgreSQL use the same ones,
so both stores write the same values and hand back the same records.

A session row is in ``SESSION_COLUMNS`` order; flags are Python bools (SQLite stores them as
0/1, PostgreSQL as boolean), ``path``, ``path_ms`` and ``event_ids`` are JSON text.
"""

from __future__ import annotations

import base64
import time
from dataclasses import dataclass
from typing import Any

import orjson

from sessionize.engine.engine import ChangeSet
from sessionize.engine.event import Rejection

MIN_MS = -(2**63)
MAX_MS = 2**63 - 1

SESSION_COLUMNS = (
    "session_id", '"key"', '"partition"', "start_ms", "end_ms", "expires_ms", "duration_ms",
    "event_count", "status", "page_views", "conversions", "revenue", "bounce", "engaged",
    "entry_page", "exit_page", "referrer", "campaign", "user_agent", "is_bot", "path",
    "path_ms", "path_truncated", "event_ids", "run_id", "updated_at_ms", "change_seq",
)

# What the columnar analytics (stores/columnar.py) read of a session, in this order.
ANALYTICS_COLUMNS = (
    "session_id", '"key"', "start_ms", "duration_ms", "event_count", "bounce", "engaged",
    "conversions", "revenue", "path_truncated", "entry_page", "exit_page", "referrer",
    "campaign", "path", "path_ms",
)


@dataclass
class SessionChanges:
    """What changed in a store since the ``change_seq`` watermarks a reader had, read in ONE
    snapshot: the store's current watermark per partition, the closed sessions written after
    the reader's watermarks (rows in ``ANALYTICS_COLUMNS`` order) and every session that is not
    closed. Closed sessions are immutable and never retracted (SEMANTICS.md §3, §5), so a
    reader that keeps the closed rows it has seen and takes the unclosed ones whole each time
    holds exactly what the store holds."""

    seqs: dict[int, int]
    closed: list[tuple[Any, ...]]
    unclosed: list[tuple[Any, ...]] | None  # None: nothing was written since the watermarks


def fetch_yielding(cursor: Any, size: int = 2_000) -> list[tuple[Any, ...]]:
    """``cursor.fetchall()`` in pieces, letting other threads run in between: the columnar
    copy's read of every open session (or, at start, every session) in one call held the GIL
    for as long as it took, and the API's event loop with it (p99 of a lookup: 50 ms)."""
    rows: list[tuple[Any, ...]] = []
    while chunk := cursor.fetchmany(size):
        rows.extend(chunk)
        time.sleep(0)
    return rows


def session_row(rec: dict[str, Any], run_id: int | None, now: int,
                change_seq: int = 0) -> tuple[Any, ...]:
    """A ``Session.to_record`` dict as a ``sessions`` row, in ``SESSION_COLUMNS`` order.

    ``path_ms`` (ms since the session's start of each path step) is stored as ``[]`` when a
    record comes without it (a producer that predates it): the funnel then counts the session
    but leaves it out of the times between steps. ``change_seq`` is the batch's number in its
    partition (``SessionChanges``)."""
    event_ids = rec.get("event_ids")
    return (
        rec["session_id"], rec["key"], rec["partition"], rec["start"], rec["end"],
        rec["expires"], rec["duration_ms"], rec["event_count"], rec["status"],
        rec["page_views"], rec["conversions"], rec["revenue"], bool(rec["bounce"]),
        bool(rec["engaged"]), rec["entry_page"], rec["exit_page"], rec["referrer"],
        rec["campaign"], rec["user_agent"], bool(rec["is_bot"]), json_text(rec["path"]),
        json_text(rec.get("path_ms", [])), bool(rec["path_truncated"]),
        None if event_ids is None else json_text(event_ids), run_id, now, change_seq,
    )


def session_record(row: tuple[Any, ...] | list[Any]) -> dict[str, Any]:
    """A session row as read back (the stored columns, the derived status in place of the
    stored one, without run_id and updated_at_ms) as the flat record of ``Session.to_record``.
    ``path``, ``path_ms`` and ``event_ids`` may come as JSON text or already decoded."""
    (sid, key, partition, start, end, expires, duration, count, status, page_views, conversions,
     revenue, bounce, engaged, entry, exit_, referrer, campaign, user_agent, is_bot, path,
     path_ms, truncated, event_ids) = row
    rec: dict[str, Any] = {
        "session_id": sid, "key": key, "partition": partition, "start": start, "end": end,
        "expires": expires, "duration_ms": duration, "event_count": count, "status": status,
        "page_views": page_views, "conversions": conversions, "revenue": revenue,
        "bounce": bool(bounce), "engaged": bool(engaged), "entry_page": entry,
        "exit_page": exit_, "referrer": referrer, "campaign": campaign,
        "user_agent": user_agent, "is_bot": bool(is_bot), "path": _decoded(path),
        "path_ms": _decoded(path_ms), "path_truncated": bool(truncated),
    }
    if event_ids is not None:
        rec["event_ids"] = _decoded(event_ids)
    return rec


def ingest_counts(changes: ChangeSet) -> dict[str, int]:
    """What a batch adds to its partition's ingest counters: ``counted`` and one entry per
    rejection reason present (nothing for an empty batch)."""
    counts: dict[str, int] = {}
    if changes.counted:
        counts["counted"] = changes.counted
    for r in changes.rejections:
        reason = str(r.reason)
        counts[reason] = counts.get(reason, 0) + 1
    return counts


def rejection_row(r: Rejection, run_id: int | None, partition: int,
                  stream_time: int | None) -> tuple[Any, ...]:
    """``(run_id, partition, offset, reason, detail, key, event_id, ts_ms, at_ms, raw)``.

    ``at_ms`` is the event's ts, or the partition's stream time for records without one
    (malformed input), so that ranged counts place every rejection somewhere in event time."""
    at = r.ts if r.ts is not None else stream_time
    return (run_id, partition, r.offset, str(r.reason), r.detail, r.key, r.event_id, r.ts, at,
            raw_text(r.raw))


def raw_text(raw: Any) -> str | None:
    """The raw input as text: a string as it came, bytes decoded, anything else as JSON."""
    if raw is None or isinstance(raw, str):
        return raw
    if isinstance(raw, bytes | bytearray):
        return bytes(raw).decode("utf-8", "replace")
    return json_text(raw)


def json_text(value: Any) -> str:
    return json_bytes(value).decode()


def json_bytes(value: Any) -> bytes:
    """Compact JSON; sets become sorted lists, non-string keys strings, anything else its text."""
    return orjson.dumps(value, default=_jsonable, option=orjson.OPT_NON_STR_KEYS)


def _jsonable(value: Any) -> Any:
    """What orjson cannot write itself: sets become sorted lists, anything else its text."""
    if isinstance(value, set | frozenset):
        return sorted(value, key=str)
    return str(value)


def _decoded(value: Any) -> Any:
    return orjson.loads(value) if isinstance(value, str | bytes | bytearray | memoryview) else value


# ---------------------------------------------------------------------- paging and ranges


def encode_cursor(start_ms: int, session_id: str) -> str:
    """The opaque page cursor: the sort key ``(start_ms, session_id)`` of a page's last row."""
    return base64.urlsafe_b64encode(orjson.dumps([start_ms, session_id])).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[int, str]:
    """Inverse of ``encode_cursor``; anything it did not produce is a ValueError."""
    try:
        value = orjson.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    except (ValueError, TypeError):
        value = None
    if (
        isinstance(value, list) and len(value) == 2
        and type(value[0]) is int and isinstance(value[1], str)
    ):
        return value[0], value[1]
    raise ValueError(f"cursor {cursor!r} is not one this API issued: pass next_cursor unchanged")


FIRST_PAGE = (MAX_MS, "\uffff")  # sorts after every (start_ms, session_id): the first page


def bounds(start_ms: int | None, end_ms: int | None) -> tuple[int, int]:
    """Open ends as the extreme integers, so every range query is one index-friendly shape."""
    return (MIN_MS if start_ms is None else start_ms, MAX_MS if end_ms is None else end_ms)


def now_ms() -> int:
    return time.time_ns() // 1_000_000
