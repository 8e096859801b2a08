"""One JSON object (a JSON Lines line, a Kafka record value) to an Event or a Rejection.

Shared by every JSON input so that a bad record is described the same way wherever it came from.
"""

from __future__ import annotations

import orjson

from sessionize.decode.fields import RecordDecoder
from sessionize.engine.event import Event, Reason, Rejection


def decode_json(decoder: RecordDecoder, text: str, offset: int, where: str,
                received_at: int | None = None) -> Event | Rejection:
    """``where`` names the place for messages (``line 12``, ``partition 3 offset 77``)."""
    item = decode_json_text(decoder, text, offset, received_at)
    if item.__class__ is Rejection:
        item.detail = f"{where}: {item.detail}"  # type: ignore[union-attr]
    return item


def decode_json_text(decoder: RecordDecoder, text: str, offset: int,
                     received_at: int | None = None) -> Event | Rejection:
    """``decode_json`` whose rejection details do not name the place yet: the caller prefixes
    them (so that the place is only formatted for the rare rejection, not for every record)."""
    try:
        obj = orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        return Rejection(Reason.MALFORMED, text, f"not valid JSON: {exc}", offset)
    if obj.__class__ is not dict:
        return Rejection(Reason.MALFORMED, text, f"expected a JSON object, got {_kind(obj)}",
                         offset)
    item = decoder.decode(obj, offset, text)
    if received_at is not None and item.__class__ is Event and item.received_at is None:
        item.received_at = received_at  # type: ignore[union-attr]
    return item


def _kind(value: object) -> str:
    """The JSON name of a decoded value's type, for error messages users can match to input."""
    names = {list: "an array", str: "a string", bool: "a boolean", int: "a number",
             float: "a number", type(None): "null"}
    return names.get(type(value), type(value).__name__)
