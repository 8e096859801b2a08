"""Kafka -> engine -> PostgreSQL + Redis, against real servers: end to end, kill -9, rebalance,
outages. The expected result is always the engine run directly over what the topic holds, per
partition in offset order: an uninterrupted, in-memory run of the same input."""

from __future__ import annotations

import random
import subprocess
import time
from collections import defaultdict
from pathlib import Path

import orjson
import psycopg
import pytest
from confluent_kafka import Consumer, TopicPartition

from sessionize.caches.redis import RedisCache
from sessionize.decode.fields import FieldMap, RecordDecoder
from sessionize.engine import Event, SessionEngine
from sessionize.produce import Disorder, produce
from sessionize.settings import load_settings
from sessionize.sources import open_source
from sessionize.sources.kafka import KafkaSource
from sessionize.stores.postgres import PostgresStore
from tests.conftest import DATA, REPO
from tests.integration.conftest import wait_until

REES46 = DATA / "rees46-multicategory" / "2019-Oct_head5000.csv"
NASA = DATA / "nasa-http-19950801" / "nasa_19950801.tsv"
SERVICES = str(REPO / "scripts" / "services.sh")

WORKER_TOML = """
[session]
gap = "30m"
grace = "{grace}"
[metrics]
page_view_types = ["view", "GET"]
conversion_types = ["purchase"]
[kafka.consumer]
"session.timeout.ms" = 6000
"""


@pytest.fixture
def cfg_file(tmp_path) -> Path:
    p = tmp_path / "worker.toml"
    p.write_text(WORKER_TOML.format(grace="1h"))
    return p


def publish(kafka: str, topic: str, data: Path, example: str, **disorder) -> int:
    settings = load_settings(REPO / "examples" / example, env={})
    source = open_source(data, settings.input.format, settings.input.fields,
                         **({"delimiter": "\t"} if data.suffix == ".tsv" else {}))
    counts = produce(source, kafka, topic, 4, Disorder(**disorder))
    return counts["total"]


def worker_args(kafka, topic, group, pg_url, redis_url, cfg, *extra) -> list[str]:
    return ["--source", f"kafka://{kafka}/{topic}", "--group", group, "--store", pg_url,
            "--cache", redis_url, "--config", str(cfg), "--until-idle", "8",
            "--batch-size", "300", *extra]


# ------------------------------------------------------------------ the expected result

def topic_records(kafka: str, topic: str, partitions: int = 4) -> dict[int, list]:
    """Every record of the topic, per partition, in offset order."""
    c = Consumer({"bootstrap.servers": kafka, "group.id": "reference", "enable.auto.commit": False})
    out: dict[int, list] = {}
    try:
        for p in range(partitions):
            tp = TopicPartition(topic, p, 0)
            _, high = c.get_watermark_offsets(tp, timeout=10)
            c.assign([tp])
            msgs: list = []
            while len(msgs) < high:
                msgs += [m for m in c.consume(1000, 2) if not m.error()]
            out[p] = msgs
    finally:
        c.close()
    return out


def reference(kafka: str, topic: str, cfg: Path) -> tuple[dict[str, dict], set[tuple]]:
    """The engine over the topic's records: every session (final or still open) and every
    rejection, exactly as an uninterrupted worker must leave them."""
    config = load_settings(cfg, env={}).engine
    decoder = RecordDecoder(FieldMap())
    sessions: dict[str, dict] = {}
    rejected: set[tuple] = set()
    for p, msgs in topic_records(kafka, topic).items():
        engine = SessionEngine(config, p)
        items = [KafkaSource._decode(decoder, m.value(), p, m.offset(), m.timestamp()[1])
                 for m in msgs]
        engine.reject(it for it in items if not isinstance(it, Event))
        ch = engine.process([it for it in items if isinstance(it, Event)])
        for rec in ch.finals + engine.open_sessions():
            sessions[rec["session_id"]] = rec
        rejected |= {(p, r.offset, r.reason.value) for r in ch.rejections}
    return sessions, rejected


def stored(pg_url: str) -> tuple[dict[str, dict], set[tuple]]:
    store = PostgresStore(pg_url)
    try:
        sessions = {r["session_id"]: r for r in store.all_sessions()}
    finally:
        store.close()
    with psycopg.connect(pg_url) as conn:
        rejected = set(conn.execute(
            'SELECT "partition", "offset", reason FROM rejected_events').fetchall())
    return sessions, rejected


def assert_same_as_reference(pg_url: str, redis_url: str, want: tuple) -> None:
    want_sessions, want_rejected = want
    got_sessions, got_rejected = stored(pg_url)
    assert set(got_sessions) == set(want_sessions)  # same session ids: nothing lost or doubled
    for sid, rec in want_sessions.items():
        got = {k: got_sessions[sid].get(k) for k in rec}
        assert got == rec, sid  # every field
    assert got_rejected == want_rejected
    # Redis holds exactly the sessions that are still open (or inactive), per user
    cache = RedisCache(redis_url, max_gap_ms=30 * 60_000, grace_ms=3_600_000)
    try:
        open_by_key: dict[str, set[str]] = defaultdict(set)
        for rec in want_sessions.values():
            if rec["status"] != "closed":
                open_by_key[rec["key"]].add(rec["session_id"])
        for key in {r["key"] for r in want_sessions.values()}:
            cached = cache.active_sessions(key)
            assert {r["session_id"] for r in cached} == open_by_key.get(key, set()), key
            for r in cached:
                assert r["status"] == want_sessions[r["session_id"]]["status"]
    finally:
        cache.close()


def committed(pg_url: str) -> int:
    """Records committed so far (sum of stored next offsets)."""
    try:
        with psycopg.connect(pg_url, connect_timeout=2) as conn:
            row = conn.execute("SELECT COALESCE(SUM(next_offset), 0) FROM engine_partitions").fetchone()
            return int(row[0])
    except psycopg.Error:
        return 0


# ------------------------------------------------------------------ tests

def test_end_to_end_disordered_real_data(kafka, topic, pg_url, redis_url, cfg_file, workers):
    total = publish(kafka, topic, REES46, "rees46.toml", shuffle_within_ms=600_000,
                    late_fraction=0.02, late_by_ms=2 * 3_600_000)
    port = free_port()
    w = workers("solo", worker_args(kafka, topic, "g-solo", pg_url, redis_url, cfg_file,
                                    "--health-port", str(port))).start()
    wait_until(lambda: committed(pg_url) >= total, 120, "every record committed")
    check_worker_metrics(port, pg_url, total)
    assert w.wait(120) == 0, w.tail()
    assert committed(pg_url) == total
    want = reference(kafka, topic, cfg_file)
    assert len(want[1]) > 0, "the disorder should make some events late"
    assert {r for _, _, r in want[1]} == {"late"}
    statuses = {r["status"] for r in want[0].values()}
    assert {"closed", "open"} <= statuses or {"closed", "inactive"} <= statuses
    assert_same_as_reference(pg_url, redis_url, want)
    counted = sum(r["event_count"] for r in want[0].values())
    assert counted + len(want[1]) == total
    check_api(pg_url, redis_url, want[0])


def worker_metrics(port: int) -> dict[tuple[str, tuple], float]:
    """The samples of the worker's /metrics: (name, sorted labels) -> value."""
    import urllib.request

    from prometheus_client.parser import text_string_to_metric_families

    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def check_worker_metrics(port: int, pg_url: str, total: int) -> None:
    """The worker's Prometheus counters agree with what was produced and what the store holds."""
    with psycopg.connect(pg_url) as conn:
        by_reason = dict(conn.execute(
            "SELECT reason, count(*) FROM rejected_events GROUP BY reason").fetchall())
        open_sessions = conn.execute(
            "SELECT count(*) FROM sessions WHERE status <> 'closed'").fetchone()[0]
    # the metrics are updated just after the commit that the caller saw
    m = wait_until(lambda: (lambda m: m if m[("sessionize_worker_events_total", ())] == total
                            else None)(worker_metrics(port)), 30, "the worker's metrics")
    rejected = {dict(labels)["reason"]: v for (name, labels), v in m.items()
                if name == "sessionize_worker_rejected_total"}
    assert {r: n for r, n in rejected.items() if n} == by_reason
    assert m[("sessionize_worker_counted_total", ())] + sum(rejected.values()) == total
    assert m[("sessionize_worker_active_sessions", ())] == open_sessions
    assert m[("sessionize_worker_batches_total", ())] >= 1
    assert m[("sessionize_worker_commit_seconds_count", ())] >= 1
    assert sum(v for (name, _), v in m.items() if name == "sessionize_worker_lag") == 0
    assert {dict(labels)["partition"] for (name, labels), v in m.items()
            if name == "sessionize_worker_stream_time_ms"} == {"0", "1", "2", "3"}
    for dep in ("postgres", "redis", "kafka"):
        assert m[("sessionize_worker_up", (("dependency", dep),))] == 1


def check_api(pg_url: str, redis_url: str, sessions: dict[str, dict]) -> None:
    """The API over the pipeline's stores: active sessions from Redis, history from PostgreSQL."""
    from fastapi.testclient import TestClient

    from sessionize.api.app import create_app
    from sessionize.api.queries import CachedQueries

    store = PostgresStore(pg_url)
    cache = RedisCache(redis_url, max_gap_ms=30 * 60_000, grace_ms=3_600_000)
    try:
        client = TestClient(create_app(CachedQueries(store, cache, fallback=False)))
        live = next(r for r in sessions.values() if r["status"] != "closed")
        key = live["key"]
        active = client.get(f"/users/{key}/sessions/active").json()["sessions"]
        assert live["session_id"] in {r["session_id"] for r in active}
        history = client.get(f"/users/{key}/sessions", params={"limit": 1000}).json()["sessions"]
        assert {r["session_id"] for r in history} == {
            r["session_id"] for r in sessions.values() if r["key"] == key}
        assert client.get("/health").json()["status"] == "ok"
        cache.clear()  # prove where each answer comes from
        assert client.get(f"/users/{key}/sessions/active").json()["sessions"] == []
        assert len(client.get(f"/users/{key}/sessions").json()["sessions"]) == len(history)
        assert client.get(f"/sessions/{live['session_id']}").json()["event_count"] == \
            live["event_count"]
    finally:
        cache.close()
        store.close()


def test_kill_9_at_random_points_then_restart(kafka, topic, pg_url, redis_url, cfg_file, workers):
    total = publish(kafka, topic, NASA, "nasa.toml", shuffle_within_ms=300_000,
                    late_fraction=0.01, late_by_ms=3 * 3_600_000)
    rng = random.Random(7)
    kill_points = sorted(rng.sample(range(total // 10, total * 9 // 10), 3))
    args = worker_args(kafka, topic, "g-crash", pg_url, redis_url, cfg_file,
                       "--instance-id", "crash-worker", "--batch-size", "100")
    for n, point in enumerate(kill_points):
        w = workers(f"crash{n}", args).start()
        wait_until(lambda p=point: committed(pg_url) >= p, 120, f"{point} records committed",
                   interval=0.01)
        w.kill9()
        assert committed(pg_url) < total, "killed too late to be a mid-stream crash"
    w = workers("final", args).start()
    assert w.wait(180) == 0, w.tail()
    assert committed(pg_url) == total
    assert_same_as_reference(pg_url, redis_url, reference(kafka, topic, cfg_file))


def test_rebalance_survivor_takes_over(kafka, topic, pg_url, redis_url, cfg_file, workers):
    total = publish(kafka, topic, NASA, "nasa.toml", shuffle_within_ms=300_000)
    a = workers("a", worker_args(kafka, topic, "g-rebal", pg_url, redis_url, cfg_file,
                                 "--batch-size", "100")).start()
    b = workers("b", worker_args(kafka, topic, "g-rebal", pg_url, redis_url, cfg_file,
                                 "--batch-size", "100")).start()
    wait_until(lambda: committed(pg_url) >= total // 3, 120, "a third committed", interval=0.01)
    b.kill9()
    assert committed(pg_url) < total, "killed too late to be a mid-stream crash"
    assert a.wait(240) == 0, a.tail()
    assert committed(pg_url) == total
    assert_same_as_reference(pg_url, redis_url, reference(kafka, topic, cfg_file))


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def unhealthy(port: int) -> dict | None:
    """The worker's health document if it answers 503, else None."""
    import urllib.error
    import urllib.request

    try:
        urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2)
    except urllib.error.HTTPError as exc:
        return orjson.loads(exc.read()) if exc.code == 503 else None
    except OSError:
        return None
    return None


def split_file(src: Path, tmp_path: Path) -> tuple[Path, Path]:
    """The file's rows in two halves, each with the header: published one after the other."""
    header, *rows = src.read_text().splitlines(keepends=True)
    half = len(rows) // 2
    first, second = tmp_path / f"first{src.suffix}", tmp_path / f"second{src.suffix}"
    first.write_text(header + "".join(rows[:half]))
    second.write_text(header + "".join(rows[half:]))
    return first, second


@pytest.mark.parametrize("service", ["pg", "redis"])
def test_outage_of_a_store_loses_nothing(service, kafka, topic, pg_url, redis_url, cfg_file,
                                         workers, tmp_path):
    """The first half is processed; the store goes down; the second half arrives during the
    outage; the store comes back: the result is exactly the uninterrupted one."""
    first, second = split_file(NASA, tmp_path)
    n_first = publish(kafka, topic, first, "nasa.toml", shuffle_within_ms=300_000)
    port = free_port()
    w = workers(f"outage-{service}", worker_args(kafka, topic, f"g-out-{service}", pg_url,
                                                 redis_url, cfg_file, "--until-idle", "15",
                                                 "--health-port", str(port)))
    w.start()
    wait_until(lambda: committed(pg_url) >= n_first, 120, "the first half committed")
    subprocess.run([SERVICES, "down", service], check=True, timeout=120)
    try:
        total = n_first + publish(kafka, topic, second, "nasa.toml", shuffle_within_ms=300_000)
        # the worker meets the outage: commits (or cache writes) fail, and it says so
        health = wait_until(lambda: unhealthy(port), 60, "the worker to report unhealthy")
        assert health[service if service == "redis" else "postgres"] is False
        time.sleep(2)
        assert w.proc.poll() is None, "the worker must wait out the outage, not exit"
    finally:
        subprocess.run([SERVICES, "up", service], check=True, timeout=120)
    assert w.wait(240) == 0, w.tail()
    log = w.tail()
    assert ("retrying" in log) if service == "pg" else ("rebuilt" in log), log
    assert committed(pg_url) == total
    assert_same_as_reference(pg_url, redis_url, reference(kafka, topic, cfg_file))


def test_changelog_and_dead_letter_topics_mirror_the_store(kafka, topic, pg_url, redis_url,
                                                            cfg_file, workers, tmp_path):
    """A late event bridges two sessions that were already published: the compacted changelog
    converges to the sessions table (with a tombstone for the merged-away one), and every
    rejection is on the dead-letter topic."""
    m = 60_000
    lines = [{"user_id": "bridge", "ts": 0}, {"user_id": "bridge", "ts": 40 * m},
             {"user_id": "bridge", "ts": 20 * m}, {"user_id": "bridge", "ts": 200 * m},
             {"user_id": "bridge", "ts": 5 * m}, {"ts": 201 * m}]  # late; no key
    events = tmp_path / "bridge.jsonl"
    events.write_bytes(b"\n".join(orjson.dumps(x) for x in lines) + b"\nnot json\n")
    produce(open_source(events), kafka, topic, 4)
    log_topic, dlq = f"{topic}-sessions", f"{topic}-dead"
    w = workers("changelog", worker_args(kafka, topic, "g-log", pg_url, redis_url, cfg_file,
                                         "--changelog-topic", log_topic,
                                         "--dead-letter-topic", dlq, "--batch-size", "1")).start()
    assert w.wait(120) == 0, w.tail()
    assert committed(pg_url) == len(lines) + 1
    compacted: dict[str, dict | None] = {}
    for msgs in topic_records(kafka, log_topic, partitions=1).values():
        for msg in msgs:
            compacted[msg.key().decode()] = None if msg.value() is None else orjson.loads(msg.value())
    live = {sid: rec for sid, rec in compacted.items() if rec is not None}
    sessions, rejected = stored(pg_url)
    assert set(live) == set(sessions)
    for sid, rec in live.items():
        assert {k: rec[k] for k in ("key", "start", "end", "event_count")} == \
            {k: sessions[sid][k] for k in ("key", "start", "end", "event_count")}
    assert sorted((r["key"], r["event_count"]) for r in live.values()) == [("bridge", 1),
                                                                            ("bridge", 3)]
    assert list(compacted.values()).count(None) == 1  # the session [40m] merged away
    dead = [orjson.loads(msg.value()) for ms in topic_records(kafka, dlq, partitions=1).values()
            for msg in ms]
    assert {(d["partition"], d["offset"], d["reason"]) for d in dead} == rejected
    assert sorted(d["reason"] for d in dead) == ["late", "malformed", "no_key"]


def test_idle_close_closes_sessions_of_a_quiet_partition(kafka, topic, pg_url, redis_url,
                                                         workers, tmp_path):
    """With idle_timeout, wall-clock quiet moves stream time on: sessions close with no more
    input. Without it (the default, pure event time) they stay open: the first test shows."""
    cfg = tmp_path / "idle.toml"
    cfg.write_text('[session]\ngap = "1s"\ngrace = "0s"\nidle_timeout = "1s"\n'
                   '[kafka.consumer]\n"session.timeout.ms" = 6000\n')
    events = tmp_path / "quiet.jsonl"
    events.write_bytes(b"".join(orjson.dumps({"user_id": f"u{i % 3}", "ts": 1_000 * i}) + b"\n"
                                for i in range(6)))
    produce(open_source(events), kafka, topic, 4)
    w = workers("idle", worker_args(kafka, topic, "g-idle", pg_url, redis_url, cfg)).start()
    assert w.wait(120) == 0, w.tail()
    sessions, _ = stored(pg_url)
    assert len(sessions) == 6 and {s["status"] for s in sessions.values()} == {"closed"}
    cache = RedisCache(redis_url, max_gap_ms=1_000, grace_ms=0)
    try:
        assert all(cache.active_sessions(f"u{i}") == [] for i in range(3))
    finally:
        cache.close()
