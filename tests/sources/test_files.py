"""LineReader and FileSource: compression by magic bytes, per-line decoding, progress, memory."""

from __future__ import annotations

import bz2
import gzip
import lzma
import tracemalloc
from pathlib import Path

import pytest

from sessionize.errors import InputError
from sessionize.sources import JsonLinesSource, LineReader, open_text
from sessionize.sources.files import check_readable

TEXT = b'{"a": 1}\r\n\n   \n{"b": 2}\n\xff\xfebad\nlast line without newline'


def lines_of(path: Path, skip_blank: bool = True) -> list[tuple[int, str, str | None]]:
    with LineReader(path) as reader:
        return list(reader.lines(skip_blank))


def test_lines_are_numbered_in_the_file_and_blank_lines_skipped(tmp_path: Path) -> None:
    p = tmp_path / "t.txt"
    p.write_bytes(TEXT)
    assert lines_of(p) == [
        (1, '{"a": 1}', None),
        (4, '{"b": 2}', None),
        (5, "\\xff\\xfebad", "not valid UTF-8 (byte ff at column 1)"),
        (6, "last line without newline", None),
    ]
    assert [n for n, _, _ in lines_of(p, skip_blank=False)] == [1, 2, 3, 4, 5, 6]


@pytest.mark.parametrize("compress", [gzip.compress, bz2.compress, lzma.compress],
                         ids=["gzip", "bz2", "xz"])
def test_compression_is_detected_by_magic_bytes_not_by_name(tmp_path: Path, compress) -> None:
    plain, packed = tmp_path / "plain.txt", tmp_path / "packed.txt"  # no .gz suffix
    plain.write_bytes(TEXT)
    packed.write_bytes(compress(TEXT))
    assert lines_of(packed) == lines_of(plain)


def test_text_that_starts_like_a_magic_number_is_text(tmp_path: Path) -> None:
    p = tmp_path / "t.csv"
    p.write_bytes(b"BZh9,ts\nx,1\n")
    assert lines_of(p) == [(1, "BZh9,ts", None), (2, "x,1", None)]
    empty = tmp_path / "empty.bz2"
    empty.write_bytes(bz2.compress(b""))
    assert lines_of(empty) == []


def test_utf8_bom_is_dropped(tmp_path: Path) -> None:
    p = tmp_path / "bom.csv"
    p.write_bytes(b"\xef\xbb\xbfuser_id,ts\nu1,2026-01-01T00:00:00Z\n")
    assert lines_of(p)[0] == (1, "user_id,ts", None)
    with open_text(p) as f:
        assert f.readline() == "user_id,ts\n"


def test_open_text_reads_gzip(tmp_path: Path) -> None:
    p = tmp_path / "x"
    p.write_bytes(gzip.compress("héllo\n".encode()))
    with open_text(p) as f:
        assert f.read() == "héllo\n"


def test_missing_file_says_which_and_what_to_do(tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"nope\.jsonl' does not exist; check the path"):
        check_readable(tmp_path / "nope.jsonl")
    with pytest.raises(InputError, match=r"'nope\.jsonl' does not exist \(relative to /"):
        check_readable("nope.jsonl")
    with pytest.raises(InputError, match="does not exist"):
        JsonLinesSource(tmp_path / "nope.jsonl")


def test_directory_is_refused(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="is a directory"):
        JsonLinesSource(tmp_path)


def test_zstd_is_refused_with_advice(tmp_path: Path) -> None:
    p = tmp_path / "events.jsonl.zst"
    p.write_bytes(b"\x28\xb5\x2f\xfd" + b"\0" * 20)
    with pytest.raises(InputError, match=r"zstd-compressed.*decompress it first"):
        lines_of(p)


def test_truncated_gzip_is_an_input_error_naming_the_line(tmp_path: Path) -> None:
    data = gzip.compress(b"".join(b'{"n": %d}\n' % i for i in range(50_000)))
    p = tmp_path / "cut.jsonl.gz"
    p.write_bytes(data[: len(data) // 2])
    with pytest.raises(InputError, match=r"corrupt or truncated after line \d+"):
        lines_of(p)


def test_progress_counts_compressed_bytes(tmp_path: Path) -> None:
    body = b"".join(b'{"user_id": "u%d", "ts": %d}\n' % (i, i) for i in range(30_000))
    p = tmp_path / "e.jsonl.gz"
    p.write_bytes(gzip.compress(body))
    source = JsonLinesSource(p)
    assert source.total_bytes == p.stat().st_size < len(body)
    assert source.bytes_read == 0
    seen = [source.bytes_read for _ in source.batches(1000)]
    assert seen == sorted(seen)
    assert 0 < seen[0] <= source.total_bytes
    assert source.bytes_read == source.total_bytes  # still right after the file is closed


def test_batches_have_the_asked_size_and_can_be_replayed(tmp_path: Path) -> None:
    p = tmp_path / "e.jsonl"
    p.write_text("".join(f'{{"user_id": "u", "ts": {i}}}\n' for i in range(25)))
    source = JsonLinesSource(p)
    assert [len(b) for b in source.batches(10)] == [10, 10, 5]
    assert [len(b) for b in source.batches(25)] == [25]
    with pytest.raises(ValueError, match="at least 1"):
        next(source.batches(0))


def test_memory_does_not_grow_with_file_size(tmp_path: Path) -> None:
    """200 MB of JSON Lines (gzip'd) stream through with a peak far below the file's size."""
    n, pad = 250_000, b"x" * 700
    line = b'{"user_id": "u%d", "ts": %d, "type": "page_view", "note": "%s"}\n'
    p = tmp_path / "big.jsonl.gz"
    with gzip.open(p, "wb", compresslevel=1) as f:
        for start in range(0, n, 10_000):
            f.write(b"".join(line % (i % 5000, 1_700_000_000_000 + i, pad)
                             for i in range(start, start + 10_000)))
    source = JsonLinesSource(p)
    count = 0
    tracemalloc.start()
    try:
        for batch in source.batches():
            count += len(batch)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert count == n
    assert peak < 50_000_000, f"peak {peak / 1e6:.1f} MB for {n * 760 / 1e6:.0f} MB of input"
