"""JSON Lines input: one JSON object per line, decoded by the shared RecordDecoder.

The line is the unit of failure: a line that is not JSON, not an object, or whose fields cannot
be read becomes one ``malformed`` rejection carrying the line text, and reading goes on.

``column_batches`` reads the same lines into ``EventColumns`` for the compiled engine (one
decoder call per batch, ``sessionize.decode.columnar``), with exactly the same events and
rejections as ``batches``.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from itertools import islice

from sessionize.decode.columnar import ColumnDecoder, unsupported_reason
from sessionize.decode.fields import FieldMap, RecordDecoder
from sessionize.decode.jsonrecord import decode_json
from sessionize.engine.columns import EventColumns
from sessionize.engine.event import Event, Reason, Rejection
from sessionize.sources.files import FileSource, Item, LineReader, decode_line


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

    def columnar(self) -> bool:
        """Can this file's records be decoded in columns (``column_batches``)?"""
        return unsupported_reason(self.fields) is None

    def column_batches(self, size: int = 10_000
                       ) -> Iterator[tuple[EventColumns, list[Rejection]]]:
        """Batches of at most ``size`` lines: their events as columns, and their rejections."""
        if size < 1:
            raise ValueError(f"batch size must be at least 1, got {size}")
        decoder = ColumnDecoder(self.fields)
        self.skipped = 0
        with LineReader(self.path) as reader:
            self._reader = reader
            lines = reader.raw_lines()
            while chunk := list(islice(lines, size)):
                numbers = [n for n, _ in chunk]
                values = [data for _, data in chunk]

                def one(i: int, numbers: list[int] = numbers, values: list[bytes] = values
                        ) -> Event | Rejection:
                    lineno = numbers[i]
                    text, bad = decode_line(values[i])
                    if bad is not None:
                        return Rejection(Reason.MALFORMED, text, f"line {lineno}: {bad}", lineno)
                    return decode_json(self._decoder, text, lineno, f"line {lineno}")

                yield decoder.decode(values, numbers, one)  # type: ignore[arg-type]
