"""Input sources: files of JSON Lines, CSV/TSV or access logs, each read as one partition.

``open_source`` picks the reader from ``--format`` or, failing that, from the file name, so the
common case needs no flag and an unclear one fails at start-up asking for it.
"""

from __future__ import annotations

import inspect
import os
import re
from pathlib import Path
from typing import Any

from sessionize.decode.fields import FieldMap
from sessionize.errors import ConfigError
from sessionize.sources.accesslog import AccessLogSource
from sessionize.sources.base import Source
from sessionize.sources.csvfile import CsvSource
from sessionize.sources.files import LineReader, check_readable, open_text
from sessionize.sources.jsonl import JsonLinesSource

__all__ = ["AccessLogSource", "CsvSource", "JsonLinesSource", "LineReader", "Source",
           "detect_format", "open_source", "open_text"]

FORMATS = ("jsonl", "csv", "tsv", "clf")
_ALIASES = {"ndjson": "jsonl", "json": "jsonl", "combined": "clf", "common": "clf",
            "accesslog": "clf", "access_log": "clf"}
_SUFFIXES = {".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "jsonl", ".csv": "csv",
             ".tsv": "tsv", ".log": "clf"}
_COMPRESSION_SUFFIXES = (".gz", ".gzip", ".bz2", ".xz")
_LOG_NAME = re.compile(r"access[._]log|apache_log|\.log\.\d+$")


def detect_format(path: str | os.PathLike[str]) -> str | None:
    """The format a file name suggests (compression suffix ignored), or None if it says nothing."""
    name = Path(path).name.lower()
    for suffix in _COMPRESSION_SUFFIXES:
        name = name.removesuffix(suffix)
    fmt = _SUFFIXES.get(Path(name).suffix)
    if fmt is None and _LOG_NAME.search(name):
        fmt = "clf"
    return fmt


def open_source(path: str | os.PathLike[str], fmt: str | None = None,
                fields: FieldMap | None = None, **options: Any) -> Source:
    """A Source for ``path`` in format ``fmt`` (jsonl, csv, tsv, clf; None: from the name).

    ``fields`` maps JSON/CSV fields to the engine's; access logs have fixed fields and ignore
    it. ``options`` go to the source (CSV: delimiter, has_header, columns; access log: key,
    skip_assets, asset_extensions, bot_pattern); one the format does not take is an error."""
    check_readable(path)
    fmt = _resolve_format(path, fmt)
    fields = fields or FieldMap()
    if fmt == "jsonl":
        return _build(JsonLinesSource, fmt, options, path, fields)
    if fmt in ("csv", "tsv"):
        options.setdefault("delimiter", "\t" if fmt == "tsv" else ",")
        return _build(CsvSource, fmt, options, path, fields)
    return _build(AccessLogSource, fmt, options, path)


def _resolve_format(path: str | os.PathLike[str], fmt: str | None) -> str:
    if fmt is not None:
        name = _ALIASES.get(fmt.lower(), fmt.lower())
        if name not in FORMATS:
            raise ConfigError(f"unknown input format {fmt!r}; use one of {', '.join(FORMATS)}")
        return name
    detected = detect_format(path)
    if detected is None:
        raise ConfigError(f"cannot tell the format of {str(path)!r} from its name; give it with "
                          f"--format ({', '.join(FORMATS)})")
    return detected


def _build(cls: type[Any], fmt: str, options: dict[str, Any], *args: Any) -> Source:
    """``cls(*args, **options)``, with an unknown option reported as a ConfigError."""
    accepted = set(inspect.signature(cls).parameters) - {"path", "fields"}
    unknown = sorted(set(options) - accepted)
    if unknown:
        raise ConfigError(f"option(s) {', '.join(unknown)} do not apply to the {fmt} format; "
                          f"it takes: {', '.join(sorted(accepted))}")
    source: Source = cls(*args, **options)
    return source
