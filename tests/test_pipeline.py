"""FilePipeline: a JSON Lines file through the compiled engine (decoded in columns) gives, batch
for batch, exactly what the reference path gives (Events into SessionEngine): the same final
sessions with the same ids, the same rejections in the same words, the same counters."""

from __future__ import annotations

import gzip
from pathlib import Path
from typing import Any

import orjson
import pytest

from sessionize.engine import EngineConfig, SessionEngine, fast
from sessionize.pipeline import FilePipeline
from sessionize.sources import open_source
from sessionize.stores.base import RunInfo

needs_core = pytest.mark.skipif(not fast.available(), reason=fast.unavailable_reason() or "")


class ListSink:
    """A SessionSink that keeps every ChangeSet it is given."""

    def __init__(self) -> None:
        self.changes: list[Any] = []

    def begin_run(self, info: RunInfo) -> int:
        return 1

    def apply(self, run_id: int, partition: int, changes: Any, offsets: Any = None) -> None:
        self.changes.append(changes)

    def finish_run(self, run_id: int, info: RunInfo) -> None:
        pass

    def close(self) -> None:
        pass


def jsonl(path: Path) -> Path:
    """Web traffic with every kind of trouble a file has: late events, bad lines, a BOM."""
    lines = []
    for i in range(3000):
        user = f"u{(i * 7919) % 97}"
        ts = 1_569_888_000_000 + i * 20_000 + (-3_600_000 if i % 50 == 0 else 0)  # some late
        rec: dict[str, Any] = {"user_id": user, "ts": ts,
                               "type": ["view", "cart", "purchase"][i % 3],
                               "page": f"/p/{i % 11}", "revenue": i / 7 if i % 3 == 2 else None,
                               "event_id": f"e{i}", "utm_source": "ads" if i % 17 == 0 else None}
        if i % 3 == 0:
            rec["ts"] = f"2019-10-01T{(i // 180) % 24:02d}:{(i // 3) % 60:02d}:00.{i % 1000:03d}Z"
        lines.append(orjson.dumps(rec))
    lines[10] = b'{"user_id": "u1", "ts": "yesterday"}'
    lines[20] = b"not json at all"
    lines[30] = b'{"user_id": 42, "ts": 1569888000000, "type": "view"}'
    lines[40] = b'{"user_id": "u\xff", "ts": 1569888000000}'
    lines[50] = b""
    lines[60] = b'{"user_id": "u2", "ts": "2019-10-01 00:00:00"}'
    lines[70] = b'{"ts": 1569888000000}'
    path.write_bytes(gzip.compress(b"\xef\xbb\xbf" + b"\n".join(lines) + b"\n"))
    return path


def run(engine: Any, path: Path, batch_size: int) -> ListSink:
    sink = ListSink()
    FilePipeline(engine, sink, batch_size=batch_size).run(open_source(path), {})
    return sink


@needs_core
@pytest.mark.parametrize("grace", [None, 600_000])
@pytest.mark.parametrize("batch_size", [1, 97, 5000])
def test_columnar_path_gives_what_the_reference_gives(tmp_path: Path, grace, batch_size) -> None:
    path = jsonl(tmp_path / "events.jsonl.gz")
    config = EngineConfig(gap_ms=600_000, grace_ms=grace, track_event_ids=True)
    engine = fast.FastEngine(config)
    assert open_source(path).columnar()
    got = run(engine, path, batch_size)
    want = run(SessionEngine(config), path, batch_size)
    assert len(got.changes) == len(want.changes)
    for g, w in zip(got.changes, want.changes, strict=True):
        assert g.finals == w.finals and g.upserts == w.upserts
        assert g.retractions == w.retractions
        assert g.rejections == w.rejections
    finals = [f for ch in got.changes for f in ch.finals]
    rejected = [r for ch in got.changes for r in ch.rejections]
    reasons = {r.reason.value for r in rejected}
    assert len(finals) > 50 and "malformed" in reasons and ("late" in reasons) == (grace is not None)
    assert engine.counters["received"] == 2999  # the blank line is not a record
    assert engine.counters["counted"] + sum(v for k, v in engine.counters.items()
                                            if k not in ("received", "counted")) == 2999
