"""Every hand-checked case of shared/cases/semantics.jsonl, through the real decoder and engine."""

from __future__ import annotations

import json
from datetime import datetime

import pytest

from sessionize.decode.fields import FieldMap, RecordDecoder
from sessionize.decode.timestamps import format_ms
from sessionize.engine import EngineConfig, Event, SessionEngine
from sessionize.errors import ConfigError
from tests.conftest import SHARED

CASES = [json.loads(line) for line in (SHARED / "cases" / "semantics.jsonl").read_text().splitlines()
         if line.strip()]


def engine_config(cfg: dict) -> EngineConfig:
    return EngineConfig(
        gap_ms=cfg.get("gap_ms", 0) if cfg.get("gap_by_type") is None else 1,
        grace_ms=cfg.get("grace_ms"),
        gap_by_type=cfg.get("gap_by_type"),
        max_duration_ms=cfg.get("max_duration_ms"),
        midnight_tz=cfg.get("midnight_tz"),
        dedup=cfg.get("dedup", False),
        campaign_split=cfg.get("campaign_split", False),
        max_future_ms=cfg.get("max_future_ms"),
        track_event_ids=True,
    )


def _iso_ms(text: str) -> int:
    return int(datetime.fromisoformat(text).timestamp() * 1000)


def run_case(case: dict) -> tuple[list[dict], list[dict]]:
    cfg = case["config"]
    engine = SessionEngine(engine_config(cfg))
    decoder = RecordDecoder(FieldMap(input_tz=cfg.get("input_tz", "UTC")))
    batches: list[list] = []
    items = [decoder.decode(rec, i, rec) for i, rec in enumerate(case["events_in_arrival_order"])]
    if "process_in_time_chunks" in cfg:
        for chunk in cfg["process_in_time_chunks"]:
            lo, hi = (_iso_ms(x) for x in chunk.split("/"))
            batches.append([it for it in items if isinstance(it, Event) and lo <= it.ts < hi])
        assert sum(map(len, batches)) == len(items), "chunks must cover the input"
    else:
        batches = [items]
    finals, rejected = [], []
    for batch in batches:
        engine.reject(it for it in batch if not isinstance(it, Event))
        changes = engine.process(it for it in batch if isinstance(it, Event))
        finals += changes.finals
        rejected += changes.rejections
        # a backfill run per chunk: the state must survive a restart between chunks
        engine = SessionEngine.restore(engine.config, json.loads(json.dumps(engine.snapshot())))
    changes = engine.flush()
    finals += changes.finals
    rejected += changes.rejections
    sessions = [
        {"user_id": s["key"], "start": format_ms(s["start"]), "end": format_ms(s["end"]),
         "event_count": s["event_count"], "event_ids": s["event_ids"]}
        for s in finals
    ]
    rejections = [{"event_id": r.event_id or r.raw.get("event_id"), "reason": r.reason.value}
                  for r in rejected]
    return sessions, rejections


def _norm_time(text: str) -> str:
    return format_ms(_iso_ms(text))


def _sort_sessions(sessions: list[dict]) -> list[dict]:
    return sorted(sessions, key=lambda s: (s["user_id"], s["start"]))


@pytest.mark.parametrize("case", CASES, ids=[c["id"] for c in CASES])
def test_shared_case(case: dict) -> None:
    expect = case["expect"]
    if "config_error" in expect:
        with pytest.raises(ConfigError):
            engine_config(case["config"])
        return
    sessions, rejections = run_case(case)
    want = [dict(s, start=_norm_time(s["start"]), end=_norm_time(s["end"]))
            for s in expect["sessions"]]
    assert _sort_sessions(sessions) == _sort_sessions(want), case["about"]
    assert rejections == expect["rejected"], case["about"]
    assert len(sessions) == len(want)
    counted = sum(s["event_count"] for s in sessions)
    assert counted + len(rejections) == len(case["events_in_arrival_order"])
