"""CSV / TSV input: rows become dicts keyed by the header and go through the RecordDecoder.

The header is checked against the field mapping when the source is created, so a mapping that
names a column the file does not have is a start-up error (with the file's real columns in the
message), not a million ``malformed`` rejections. Columns for optional metrics (page, revenue,
...) may be absent; the decoder is then told not to read them.
"""

from __future__ import annotations

import csv
import difflib
import os
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import replace
from itertools import chain
from pathlib import Path

from sessionize.decode.fields import FieldMap, RecordDecoder
from sessionize.engine.event import Reason, Rejection
from sessionize.errors import ConfigError
from sessionize.sources.files import FileSource, Item, Line, LineReader

_DEFAULTS = FieldMap()
_OPTIONAL = ("event_id", "page", "referrer", "user_agent", "revenue", "received_at")


class CsvSource(FileSource):
    """Events from a delimited text file (plain or compressed), one data row per event."""

    def __init__(self, path: str | os.PathLike[str], fields: FieldMap | None = None,
                 delimiter: str = ",", has_header: bool = True,
                 columns: Sequence[str] | None = None) -> None:
        super().__init__(path)
        if len(delimiter) != 1:
            raise ConfigError(f"the CSV delimiter must be one character, got {delimiter!r}")
        self.delimiter = delimiter
        self.has_header = has_header
        header = self._read_header() if has_header else None
        if columns is None and not has_header:
            raise ConfigError(f"{self.name}: has_header is off, so the column names must be "
                              "given (columns = [...])")
        self.columns: list[str] | None = list(columns) if columns is not None else header
        self.fields = fields or FieldMap()
        if self.columns is not None:  # None: an empty file, nothing to check or read
            self.fields = fit_fields(self.fields, self.columns, self.name)
        self._decoder = RecordDecoder(self.fields)

    def _read_header(self) -> list[str] | None:
        with LineReader(self.path) as reader:
            for _, text, _ in reader.lines():
                return next(csv.reader([text], delimiter=self.delimiter))
        return None

    def _items(self, reader: LineReader) -> Iterator[Item]:
        if self.columns is None:
            return
        lines = reader.lines(skip_blank=False)
        pending: list[Line] = []  # the physical lines of the row being parsed

        def feed(pushed_back: Iterable[Line] = ()) -> Iterator[str]:
            for line in chain(pushed_back, lines):
                pending.append(line)
                yield line[1] + "\n"  # keeps line breaks inside quoted fields

        rows = csv.reader(feed(), delimiter=self.delimiter, strict=True)
        skip_header = self.has_header
        while True:
            try:
                row = next(rows)
            except StopIteration:
                return
            except csv.Error as exc:
                # Only the row's first line is rejected: an unclosed quote would otherwise
                # swallow every line after it. The others are parsed again.
                yield _rejection(pending[0], f"unreadable CSV: {exc}")
                rows = csv.reader(feed(pending[1:]), delimiter=self.delimiter, strict=True)
                pending.clear()
                continue
            if not row or (len(row) == 1 and not row[0].strip()):
                pass  # a blank line
            elif skip_header:
                skip_header = False
            else:
                yield self._decode_row(row, pending[0] if len(pending) == 1 else _joined(pending))
            pending.clear()

    def _decode_row(self, row: list[str], line: Line) -> Item:
        lineno, raw, bad = line
        columns = self.columns
        assert columns is not None
        if bad is not None:
            return Rejection(Reason.MALFORMED, raw, f"line {lineno}: {bad}", lineno)
        if len(row) != len(columns):
            return Rejection(Reason.MALFORMED, raw, f"line {lineno}: expected {len(columns)} "
                             f"fields, got {len(row)}", lineno)
        item = self._decoder.decode(dict(zip(columns, row, strict=True)), lineno, raw)
        if type(item) is Rejection:
            item.detail = f"line {lineno}: {item.detail}"
        return item


def _joined(pending: list[Line]) -> Line:
    """One row that spans several lines (a quoted field with line breaks) as one Line."""
    bad = next((b for _, _, b in pending if b is not None), None)
    return pending[0][0], "\n".join(text for _, text, _ in pending), bad


def _rejection(line: Line, what: str) -> Rejection:
    lineno, raw, _ = line
    return Rejection(Reason.MALFORMED, raw, f"line {lineno}: {what}", lineno)


def fit_fields(fields: FieldMap, columns: Sequence[str], source: str | Path) -> FieldMap:
    """The mapping, checked against ``columns``: required columns must exist (else ConfigError),
    optional ones that are absent are switched off so the decoder does not look for them.

    Required: the key and time columns, and the type column if it was set explicitly (the
    default ``type`` column may be absent: events then get ``default_type``)."""
    present = set(columns)
    required = [*fields.key, *fields.ts]
    if fields.type is not None and fields.type != _DEFAULTS.type:
        required.append(fields.type)
    missing = list(dict.fromkeys(c for c in required if c not in present))
    if missing:
        raise ConfigError(_missing_message(missing, columns, source))
    changes: dict[str, object] = {
        name: None for name in ("type", *_OPTIONAL)
        if getattr(fields, name) is not None and getattr(fields, name) not in present
    }
    if fields.campaign and not present.intersection(fields.campaign):
        changes["campaign"] = ()
    return replace(fields, **changes) if changes else fields  # type: ignore[arg-type]


def _missing_message(missing: list[str], columns: Sequence[str], source: str | Path) -> str:
    names = ", ".join(repr(c) for c in missing)
    hints = []
    for name in missing:
        close = difflib.get_close_matches(name, columns, n=1)
        if close:
            hints.append(f"{name!r} -> {close[0]!r}?")
    hint = f" Did you mean: {'; '.join(hints)}" if hints else ""
    return (f"{source}: the field mapping names column(s) {names} that the header does not "
            f"have. The file's columns are: {', '.join(repr(c) for c in columns)}. Map the key "
            f"and time fields (and the type, if set) to columns of the file.{hint}")
