"""Reading input files: plain or compressed, streamed line by line, one bad line never fatal.

Inputs arrive as ``events.jsonl``, ``access.log.gz`` or a gzip'd file without the ``.gz``
suffix, so compression is detected from the magic bytes, not the name. Lines are read as bytes
and decoded one at a time: a line with an invalid UTF-8 sequence becomes a ``malformed``
rejection for that line instead of stopping a run that may be hours in. Nothing is read ahead
beyond the decompressor's buffer, so memory does not grow with the file.
"""

from __future__ import annotations

import bz2
import gzip
import io
import lzma
import os
import zlib
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from itertools import islice
from pathlib import Path
from typing import BinaryIO, TextIO

from sessionize.engine.event import Event, Rejection
from sessionize.errors import InputError

Line = tuple[int, str, str | None]
"""``(line number, text without the line break, what is wrong with its bytes or None)``."""

Item = Event | Rejection
ByteStream = io.BufferedIOBase | BinaryIO

_Opener = Callable[[BinaryIO], io.BufferedIOBase]


def _gzip(raw: BinaryIO) -> io.BufferedIOBase:
    return gzip.GzipFile(fileobj=raw, mode="rb")


def _bz2(raw: BinaryIO) -> io.BufferedIOBase:
    return bz2.BZ2File(raw, mode="rb")


def _xz(raw: BinaryIO) -> io.BufferedIOBase:
    return lzma.LZMAFile(raw, mode="rb")


_BZ2_BLOCKS = (b"1AY&SY", b"\x17rE8P\x90")  # first block, or the end of an empty stream
_UNSUPPORTED = {b"\x28\xb5\x2f\xfd": "zstd", b"PK\x03\x04": "zip"}
_BOM = b"\xef\xbb\xbf"
_CORRUPT = (OSError, EOFError, zlib.error, lzma.LZMAError)


def check_readable(path: str | os.PathLike[str]) -> Path:
    """The path, if it is a readable file; otherwise an InputError that says what to do.

    Sources call this in their constructor so a wrong path is reported at start-up."""
    p = Path(path)
    if not p.exists():
        where = "" if p.is_absolute() else f" (relative to {Path.cwd()})"
        raise InputError(f"input file {str(p)!r} does not exist{where}; "
                         "check the path and its spelling")
    if p.is_dir():
        raise InputError(f"input {str(p)!r} is a directory; give the path of a file in it")
    if not os.access(p, os.R_OK):
        raise InputError(f"input file {str(p)!r} is not readable by this user; "
                         "fix its permissions or copy it somewhere readable")
    return p


def open_bytes(path: str | os.PathLike[str]) -> tuple[ByteStream, BinaryIO]:
    """``(decompressed stream, raw file)`` for a plain, gzip, bzip2 or xz file.

    The raw file is returned too because its position is the honest progress measure: the
    size on disk is all we know in advance of a compressed file."""
    p = check_readable(path)
    try:
        raw: BinaryIO = open(p, "rb")  # noqa: SIM115 - the caller owns and closes it
    except OSError as exc:
        raise InputError(f"cannot open input file {str(p)!r}: {exc.strerror}") from exc
    try:
        magic = raw.peek(10)[:10]  # type: ignore[attr-defined]
        for prefix, name in _UNSUPPORTED.items():
            if magic.startswith(prefix):
                raise InputError(f"input file {str(p)!r} is {name}-compressed, which is not "
                                 "supported; decompress it first (gzip, bzip2 and xz are read "
                                 "directly)")
        opener = _opener(magic)
        if opener is not None:
            return opener(raw), raw
    except BaseException:
        raw.close()
        raise
    return raw, raw


def _opener(magic: bytes) -> _Opener | None:
    """The decompressor the first bytes call for, if any. Each magic is checked in full (bzip2
    with its block header) so a text file cannot be mistaken for a compressed one."""
    if magic.startswith(b"\x1f\x8b"):
        return _gzip
    if magic.startswith(b"\xfd7zXZ\x00"):
        return _xz
    if magic[:3] == b"BZh" and magic[3:4].isdigit() and magic[4:10] in _BZ2_BLOCKS:
        return _bz2
    return None


def open_text(path: str | os.PathLike[str]) -> TextIO:
    """The file as UTF-8 text, decompressed if needed; undecodable bytes become ``\\xNN``.

    For small whole-file reads (headers, config); event streams use LineReader, which reports
    bad bytes per line instead of hiding them."""
    stream, _ = open_bytes(path)
    return io.TextIOWrapper(stream, encoding="utf-8-sig",  # type: ignore[type-var]
                            errors="backslashreplace", newline="")


class LineReader:
    """Numbered, decoded lines of one file, and how far into the file reading has got."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = check_readable(path)
        self.total_bytes = self.path.stat().st_size
        self._stream: ByteStream | None = None
        self._raw: BinaryIO | None = None
        self._done_bytes = 0

    def __enter__(self) -> LineReader:
        self._stream, self._raw = open_bytes(self.path)
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self._raw is not None:
            self._done_bytes = self.bytes_read
            if self._stream is not None and self._stream is not self._raw:
                self._stream.close()
            self._raw.close()
            self._raw = self._stream = None

    @property
    def bytes_read(self) -> int:
        """Bytes of the file on disk consumed so far (compressed bytes for a compressed file)."""
        if self._raw is None:
            return self._done_bytes
        try:
            return self._raw.tell()
        except (OSError, ValueError):
            return self._done_bytes

    def lines(self, skip_blank: bool = True) -> Iterator[Line]:
        """Every line with its 1-based number in the file (blank lines are still numbered).

        A line that is not valid UTF-8 comes with its bytes shown as ``\\xNN`` escapes (so the
        dead letter stays readable and lossless) and a description of the problem."""
        for lineno, data in self.raw_lines(skip_blank):
            yield lineno, *decode_line(data)

    def raw_lines(self, skip_blank: bool = True) -> Iterator[tuple[int, bytes]]:
        """``lines()`` undecoded: each line's number and bytes (without the line break, a
        leading BOM removed)."""
        if self._stream is None:
            raise RuntimeError("LineReader needs an open reader: use it in a `with`")
        lineno = 0
        try:
            for lineno, data in enumerate(self._stream, 1):
                data = data.rstrip(b"\r\n")
                if lineno == 1 and data.startswith(_BOM):
                    data = data[3:]
                if skip_blank and (not data or data.isspace()):
                    continue
                yield lineno, data
        except _CORRUPT as exc:
            raise InputError(f"input file {str(self.path)!r} is corrupt or truncated after line "
                             f"{lineno} ({exc}); re-copy or re-compress it") from exc


def decode_line(data: bytes) -> tuple[str, str | None]:
    """A line's text, and what is wrong with its bytes (None if they are valid UTF-8)."""
    try:
        return data.decode("utf-8"), None
    except UnicodeDecodeError as exc:
        return data.decode("utf-8", "backslashreplace"), _bad_bytes(exc)


def _bad_bytes(exc: UnicodeDecodeError) -> str:
    bad = exc.object[exc.start:exc.end]
    return f"not valid UTF-8 (byte {bad.hex(' ')} at column {exc.start + 1})"


class FileSource(ABC):
    """What every file source shares: one partition, batching, progress, and the skip counter.

    Subclasses implement ``_items``; each call of ``batches`` reads the file from the start,
    so a source can be replayed."""

    partition: int = 0

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = check_readable(path)
        self.name = str(path)
        self.total_bytes: int | None = self.path.stat().st_size
        self.skipped = 0
        self._reader: LineReader | None = None

    @property
    def bytes_read(self) -> int:
        return self._reader.bytes_read if self._reader is not None else 0

    def batches(self, size: int = 10_000) -> Iterator[list[Item]]:
        """Lists of at most ``size`` items (Events and Rejections), in file order."""
        if size < 1:
            raise ValueError(f"batch size must be at least 1, got {size}")
        self.skipped = 0
        with LineReader(self.path) as reader:
            self._reader = reader
            items = self._items(reader)
            while batch := list(islice(items, size)):
                yield batch

    @abstractmethod
    def _items(self, reader: LineReader) -> Iterator[Item]:
        """The file's Events and Rejections, read from ``reader``."""
