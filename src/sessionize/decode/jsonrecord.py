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
    try:
        obj = orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        return Rejection(Reason.MALFORMED, text, f"{where}: not valid JSON: {exc}", offset)
    if not isinstance(obj, dict):
        return Rejection(Reason.MALFORMED, text, f"{where}: expected a JSON object, got "
                         f"{_kind(obj)}", offset)
    item = decoder.decode(obj, offset, text)
    if isinstance(item, Rejection):
        item.detail = f"{where}: {item.detail}"
    elif received_at is not None and item.received_at is None:
        item.received_at = received_at
    return item


def _kind(value: object) -> str:
    """The JSON name of a decoded value's type, for error messages users can match to input."""
    names = {list: "an array", str: "a string", bool: "a boolean", int: "a number",
             float: "a number", type(None): "null"}
    return names.get(type(value), type(value).__name__)
