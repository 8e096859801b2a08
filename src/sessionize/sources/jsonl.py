"""JSON Lines input: one JSON object per line, decoded by the shared RecordDecoder.

The line is the unit of failure: a line that is not JSON, not an object, or whose fields cannot
be read becomes one ``malformed`` rejection carrying the line text, and reading goes on.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import orjson

from sessionize.decode.fields import FieldMap, RecordDecoder
from sessionize.engine.event import Reason, Rejection
from sessionize.sources.files import FileSource, Item, LineReader


class JsonLinesSource(FileSource):
    """Events from a ``.jsonl`` / ``.ndjson`` file (plain or compressed)."""

    def __init__(self, path: str | os.PathLike[str], fields: FieldMap | None = None) -> None:
        super().__init__(path)
        self.fields = fields or FieldMap()
        self._decoder = RecordDecoder(self.fields)

    def _items(self, reader: LineReader) -> Iterator[Item]:
        decode = self._decoder.decode
        loads = orjson.loads
        for lineno, text, bad in reader.lines():
            if bad is not None:
                yield _malformed(text, lineno, bad)
                continue
            try:
                obj = loads(text)
            except orjson.JSONDecodeError as exc:
                yield _malformed(text, lineno, f"not valid JSON: {exc}")
                continue
            if not isinstance(obj, dict):
                yield _malformed(text, lineno, f"expected a JSON object, got {_kind(obj)}")
                continue
            item = decode(obj, lineno, text)
            if isinstance(item, Rejection):
                item.detail = f"line {lineno}: {item.detail}"
            yield item


def _malformed(text: str, lineno: int, what: str) -> Rejection:
    return Rejection(Reason.MALFORMED, text, f"line {lineno}: {what}", lineno)


def _kind(value: object) -> str:
    """The JSON name of a decoded value's type, for error messages users can match to input."""
    names = {list: "an array", str: "a string", bool: "a boolean", int: "a number",
             float: "a number", type(None): "null"}
    return names.get(type(value), type(value).__name__)
