"""JSON Lines input: one JSON object per line, decoded by the shared RecordDecoder.

The line is the unit of failure: a line that is not JSON, not an object, or whose fields cannot
be read becomes one ``malformed`` rejection carrying the line text, and reading goes on.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

from sessionize.decode.fields import FieldMap, RecordDecoder
from sessionize.decode.jsonrecord import decode_json
from sessionize.engine.event import Reason, Rejection
from sessionize.sources.files import FileSource, Item, LineReader


class JsonLinesSource(FileSource):
    """Events from a ``.jsonl`` / ``.ndjson`` file (plain or compressed)."""

    def __init__(self, path: str | os.PathLike[str], fields: FieldMap | None = None) -> None:
        super().__init__(path)
        self.fields = fields or FieldMap()
        self._decoder = RecordDecoder(self.fields)

    def _items(self, reader: LineReader) -> Iterator[Item]:
        decoder = self._decoder
        for lineno, text, bad in reader.lines():
            if bad is not None:
                yield Rejection(Reason.MALFORMED, text, f"line {lineno}: {bad}", lineno)
                continue
            yield decode_json(decoder, text, lineno, f"line {lineno}")
