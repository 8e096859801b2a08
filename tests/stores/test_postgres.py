"""PostgresStore's own behaviour against the real server: schema migrations, connection errors
and recovery, and what the Kafka worker relies on (apply_batch atomic across partitions and
idempotent on replay, engine state that restores exactly).

The store contract shared with SQLite runs in test_store_contract.py.
"""

from __future__ import annotations

import contextlib
import dataclasses
import random
import secrets
import socket
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import orjson
import psycopg
import pytest
from fastapi.testclient import TestClient
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from sessionize.api import create_app
from sessionize.engine import ChangeSet, EngineConfig, Event, Reason, Rejection, SessionEngine
from sessionize.errors import StoreError
from sessionize.stores.base import RunInfo
from sessionize.stores.postgres import MIGRATIONS, PostgresStore
from tests.realrun import parse_utc, read_rees46, to_event
from tests.stores.test_store_contract import dump, sql_rows

pytestmark = pytest.mark.pg

T0 = parse_utc("2019-10-01 00:00:00 UTC")
MIN = 60_000
SOURCE = "clicks"
# small gap, grace and retention so that the 2.5 h of real events merge, close, seal and unseal
STATEFUL = EngineConfig(gap_ms=1 * MIN, grace_ms=10 * MIN, dedup=True, track_event_ids=True,
                        seal_retention_ms=5 * MIN)


def ev(key: str | None, minute: float, event_id: str | None = None, **kw: Any) -> Event:
    return Event(key=key, ts=T0 + int(minute * MIN), type="view", event_id=event_id, **kw)


def canonical(state: dict[str, Any] | None) -> dict[str, Any] | None:
    """An engine snapshot as JSON values (tuples as lists), sessions and seals in a fixed order:
    two snapshots of the same state compare equal whatever order their dicts were filled in."""
    if state is None:
        return None
    out = orjson.loads(orjson.dumps(state))
    out["sessions"].sort(key=lambda s: s["sid"])
    out["sealed"].sort(key=lambda s: s["key"])
    return out


def output(changes: ChangeSet) -> Any:
    """What an engine emits (sessions, retractions, rejections, stream time) as JSON values.

    Without ``state``: the engine's own bookkeeping may differ in timing after a restore (a
    restored engine forgets old seals at other moments, since its closing heap holds exact
    deadlines where the live one holds lower bounds), while what it emits is the same."""
    out = orjson.loads(orjson.dumps(dataclasses.asdict(changes)))
    del out["state"]
    return out


def without(rows: dict[str, list[tuple[Any, ...]]]) -> dict[str, list[tuple[Any, ...]]]:
    """A dump without what legitimately differs between equal stores: write times, serial ids,
    the physical order of rows."""
    out = dict(rows)
    # updated_at_ms is the last column of the first schema; path_ms (migration 2) follows it,
    # then change_seq (migration 3: a write counter, higher after a replay)
    out["sessions"] = [r[:-3] + r[-2:-1] for r in rows["sessions"]]
    out["partitions"] = [r[:2] for r in rows["partitions"]]
    out["rejected_events"] = [r[1:] for r in rows["rejected_events"]]  # id is first
    out["schema_migrations"] = [r[:1] for r in rows["schema_migrations"]]
    return {t: sorted(table, key=repr) for t, table in out.items()}


def real_partitions(parts: tuple[int, ...] = (3, 4), seed: int = 7) -> dict[int, list[Event]]:
    """The rees46 head split by user over ``parts``, each partition's events shuffled within
    windows of 100 (late events, merges, retractions), every 25th sent twice (duplicates), and
    numbered as Kafka offsets."""
    rnd = random.Random(seed)
    split: dict[int, list[tuple[str, dict[str, str]]]] = {p: [] for p in parts}
    for i, row in enumerate(read_rees46()):
        split[parts[int(row["user_id"]) % len(parts)]].append((f"e{i}", row))
        if i % 25 == 0:
            split[parts[int(row["user_id"]) % len(parts)]].append((f"e{i}", row))
    out = {}
    for p, rows in split.items():
        windows = [rows[i:i + 100] for i in range(0, len(rows), 100)]
        for w in windows:
            rnd.shuffle(w)
        out[p] = [dataclasses.replace(to_event(row, offset), event_id=eid) for offset, (eid, row)
                  in enumerate(r for w in windows for r in w)]
    return out


# ---------------------------------------------------------------------- schema


def test_a_fresh_schema_is_migrated_recorded_and_reopens(pg_schema: Callable[[], str]) -> None:
    dsn = pg_schema()
    s = PostgresStore(dsn)
    s.apply(1, 0, ChangeSet(stream_time=T0))
    s.close()
    again = PostgresStore(dsn)
    assert again.schema_version() == len(MIGRATIONS)
    assert again.stream_times() == {0: T0}
    server = conninfo_to_dict(dsn)
    assert again.health() == {"store": "postgres", "ok": True, "sessions": 0,
                              "server": f"{server['host']}:{server['port']}/{server['dbname']}"}
    versions = sql_rows(again, "SELECT version FROM schema_migrations ORDER BY version")
    assert versions == [(v,) for v in range(1, len(MIGRATIONS) + 1)]
    again.close()


def test_a_database_from_a_newer_version_is_refused(pg_schema: Callable[[], str]) -> None:
    dsn = pg_schema()
    PostgresStore(dsn).close()
    with psycopg.connect(dsn, autocommit=True) as db:
        db.execute("INSERT INTO schema_migrations VALUES (%s, 0)", (len(MIGRATIONS) + 1,))
    with pytest.raises(StoreError, match="newer sessionize"):
        PostgresStore(dsn)


def test_workers_starting_together_migrate_once(pg_schema: Callable[[], str]) -> None:
    dsn = pg_schema()
    start = threading.Barrier(6)
    errors: list[BaseException] = []
    stores: list[PostgresStore] = []

    def open_store() -> None:
        start.wait()
        try:
            stores.append(PostgresStore(dsn))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=open_store) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == [] and len(stores) == 6
    assert sql_rows(stores[0], "SELECT COUNT(*) FROM schema_migrations") == [(len(MIGRATIONS),)]
    for s in stores:
        s.close()


# ---------------------------------------------------------------------- connections


def unused_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_a_server_that_is_down_is_a_prompt_store_error_naming_it() -> None:
    port = unused_port()
    started = time.monotonic()
    with pytest.raises(StoreError) as err:
        PostgresStore(f"postgresql://postgres:s3cret@127.0.0.1:{port}/sessionize",
                      connect_timeout=2)
    assert time.monotonic() - started < 3
    message = str(err.value)
    assert f"127.0.0.1:{port}" in message
    assert "scripts/services.sh up pg" in message
    assert "s3cret" not in message


def test_a_wrong_database_or_dsn_is_a_store_error(pg_dsn: str) -> None:
    with pytest.raises(StoreError, match="does not exist"):
        PostgresStore(make_conninfo(pg_dsn, dbname=f"nope_{secrets.token_hex(4)}"))
    with pytest.raises(StoreError, match="not a PostgreSQL connection string") as err:
        PostgresStore("host=db password=s3cret port")
    assert "s3cret" not in str(err.value)


class Proxy:
    """A TCP forwarder to the real server that can be taken down and brought back on the same
    port: the store's view of a server that goes away and returns, without touching the shared
    server itself."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.port = unused_port()
        self._socks: list[socket.socket] = []
        self._lock = threading.Lock()
        self._listener: socket.socket | None = None

    def up(self) -> None:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen()
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def down(self) -> None:
        with self._lock:
            if self._listener is not None:
                # wakes the thread blocked in accept(), which close() alone does not
                with contextlib.suppress(OSError):
                    self._listener.shutdown(socket.SHUT_RDWR)
                self._listener.close()
                self._listener = None
            for s in self._socks:
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)
                s.close()
            self._socks.clear()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            server = socket.create_connection(self.target)
            with self._lock:
                self._socks += [client, server]
            for a, b in ((client, server), (server, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    @staticmethod
    def _pump(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)


@pytest.fixture
def proxy(pg_dsn: str) -> Iterator[Proxy]:
    params = conninfo_to_dict(pg_dsn)
    p = Proxy((str(params.get("host") or "127.0.0.1"), int(params.get("port") or 5432)))
    p.up()
    yield p
    p.down()


def test_the_store_recovers_when_the_server_comes_back(pg_schema: Callable[[], str],
                                                       proxy: Proxy) -> None:
    via_proxy = make_conninfo(pg_schema(), host="127.0.0.1", port=str(proxy.port))
    store = PostgresStore(via_proxy, connect_timeout=2)
    run_id = store.begin_run(RunInfo(SOURCE, {}, 0))
    engine = SessionEngine(STATEFUL, 0, track_state=True)
    store.apply_batch(run_id, SOURCE, [(0, engine.process([ev("u", 0, "a")]), 1)])
    assert len(store.active_sessions("u")) == 1

    proxy.down()  # every connection cut, and nothing listens any more
    batch = [(0, engine.process([ev("u", 1, "b")]), 2)]
    started = time.monotonic()
    with pytest.raises(StoreError, match=f"127.0.0.1:{proxy.port}") as err:
        store.apply_batch(run_id, SOURCE, batch)
    assert "nothing of it was written" in str(err.value)
    with pytest.raises(StoreError, match=r"scripts/services\.sh up pg"):
        store.active_sessions("u")
    assert time.monotonic() - started < 5

    proxy.up()  # the server is back: the same store object carries on
    store.apply_batch(run_id, SOURCE, batch)
    (session,) = store.active_sessions("u")
    assert session["event_ids"] == ["a", "b"]
    assert canonical(store.load_partition(SOURCE, 0)[0]) == canonical(engine.snapshot())

    proxy.down()  # cut again while idle, back before the next use: recovers without an error
    proxy.up()
    store.apply_batch(run_id, SOURCE, [(0, engine.process([ev("u", 2, "c")]), 3)])
    assert store.active_sessions("u")[0]["event_count"] == 3
    assert store.load_partition(SOURCE, 0)[1] == 3
    store.close()


# ---------------------------------------------------------------------- apply_batch


def _spoil_status(changes: ChangeSet) -> ChangeSet:
    """A row the server refuses (CHECK constraint), after the rest of the batch was sent."""
    rec = changes.upserts[0]
    return dataclasses.replace(changes, upserts=[rec | {"status": "bogus"}, *changes.upserts[1:]])


def _spoil_state(changes: ChangeSet) -> ChangeSet:
    """An engine state the store cannot file (no session id), refused before anything is sent."""
    assert changes.state is not None
    delta = dataclasses.replace(changes.state, sessions=[{"no": "sid"}])
    return dataclasses.replace(changes, state=delta)


def _two_batches() -> tuple[list[tuple[int, ChangeSet, int]], list[tuple[int, ChangeSet, int]]]:
    """Two consumer batches over partitions 3 and 4 of the real events, with state deltas."""
    events = real_partitions()
    engines = {p: SessionEngine(STATEFUL, p, track_state=True) for p in events}
    first, second = [], []
    for p, evs in events.items():
        first.append((p, engines[p].process(evs[:600]), 600))
        engines[p].reject([Rejection(Reason.MALFORMED, b"\x00{oops", "not JSON", offset=1200)])
        second.append((p, engines[p].process(evs[600:1200]), 1201))
    return first, second


@pytest.mark.parametrize("spoil", [_spoil_status, _spoil_state])
def test_a_failing_item_rolls_back_the_whole_batch(pg_store: PostgresStore, spoil: Any) -> None:
    first, second = _two_batches()
    run_id = pg_store.begin_run(RunInfo(SOURCE, {}, 0))
    pg_store.apply_batch(run_id, SOURCE, first)
    before = dump(pg_store)
    before_state = {p: pg_store.load_partition(SOURCE, p) for p, _, _ in first}

    (p3, ch3, o3), (p4, ch4, o4) = second
    assert ch3.retractions or ch4.retractions or ch3.finals  # the batch deletes and closes
    with pytest.raises(StoreError, match="rolled back") as err:
        pg_store.apply_batch(run_id, SOURCE, [(p3, ch3, o3), (p4, spoil(ch4), o4)])
    assert "partitions [3, 4]" in str(err.value)
    assert dump(pg_store) == before  # sessions, rejections, offsets, engine state: all of it
    assert {p: pg_store.load_partition(SOURCE, p) for p, _, _ in first} == before_state

    pg_store.apply_batch(run_id, SOURCE, second)  # usable afterwards
    assert pg_store.offsets(SOURCE) == {3: 1201, 4: 1201}


def test_replaying_a_batch_after_a_rollback_gives_identical_rows(
        pg_schema: Callable[[], str]) -> None:
    first, second = _two_batches()
    replayed, once = PostgresStore(pg_schema()), PostgresStore(pg_schema())
    for s in (replayed, once):
        s.begin_run(RunInfo(SOURCE, {}, 0))
        s.apply_batch(1, SOURCE, first)

    (p3, ch3, o3), (p4, ch4, o4) = second
    with pytest.raises(StoreError):
        replayed.apply_batch(1, SOURCE, [(p3, ch3, o3), (p4, _spoil_status(ch4), o4)])
    replayed.apply_batch(1, SOURCE, second)
    after_one = dump(replayed)
    replayed.apply_batch(1, SOURCE, second)  # the commit's reply was lost: the worker replays
    once.apply_batch(1, SOURCE, second)

    assert without(dump(replayed)) == without(after_one) == without(dump(once))
    assert len(after_one["rejected_events"]) == len(dump(once)["rejected_events"]) > 0
    for s in (replayed, once):
        s.close()


def test_rejections_are_stored_once_per_source_partition_and_offset(
        pg_store: PostgresStore) -> None:
    run_id = pg_store.begin_run(RunInfo(SOURCE, {}, 0))
    late = Rejection(Reason.LATE, {"user_id": "u"}, "late", offset=7, key="u", ts=T0)
    batch = [(0, ChangeSet(rejections=[late]), 8), (1, ChangeSet(rejections=[late]), 8)]
    for _ in range(3):
        pg_store.apply_batch(run_id, SOURCE, batch)
    pg_store.apply_batch(run_id, "other-topic", batch[:1])
    rows = sql_rows(pg_store, 'SELECT source, "partition", "offset", reason FROM rejected_events '
                              'ORDER BY 1, 2')
    assert rows == [("clicks", 0, 7, "late"), ("clicks", 1, 7, "late"),
                    ("other-topic", 0, 7, "late")]
    assert pg_store.rejected_counts(None, None)["late"] == 3


def test_dead_letters_with_nul_characters_are_kept(pg_store: PostgresStore) -> None:
    """PostgreSQL text cannot hold NUL: a dead letter's NULs become U+FFFD, not a failed batch."""
    bad = Rejection(Reason.MALFORMED, b"\x00\x01{", "bad byte \x00", offset=1)
    pg_store.apply_batch(1, SOURCE, [(0, ChangeSet(rejections=[bad]), 2)])
    assert sql_rows(pg_store, "SELECT raw, detail FROM rejected_events") == [
        ("\ufffd\x01{", "bad byte \ufffd")]
    assert pg_store.active_sessions("a\x00b") == []
    assert pg_store.user_sessions("a\x00b", None, None, 5, None) == ([], None)
    assert pg_store.session("a\x00b") is None


def test_engine_state_needs_a_source(pg_store: PostgresStore) -> None:
    engine = SessionEngine(STATEFUL, 0, track_state=True)
    with pytest.raises(StoreError, match="source"):
        pg_store.apply(1, 0, engine.process([ev("u", 0)]))
    assert pg_store.health()["sessions"] == 0


def test_a_20k_session_batch_is_written_in_bulk(pg_store: PostgresStore) -> None:
    engine = SessionEngine(STATEFUL, 0, track_state=True)
    events = [Event(f"user-{i}", T0 + j * 1000 + i % 997, "page_view", page=f"/p/{i % 50}",
                    offset=2 * i + j) for i in range(20_000) for j in range(2)]
    changes = engine.process(events)
    assert len(changes.upserts) == 20_000
    started = time.perf_counter()
    pg_store.apply_batch(1, SOURCE, [(0, changes, len(events))])
    seconds = time.perf_counter() - started
    print(f"\napply_batch: 20,000 sessions + 20,000 engine states in {seconds:.2f} s "
          f"({20_000 / seconds:,.0f} sessions/s)")
    assert pg_store.health()["sessions"] == 20_000
    assert sql_rows(pg_store, "SELECT COUNT(*) FROM engine_sessions") == [(20_000,)]
    assert seconds < 60  # a per-row round trip would not fail this, but a pathology would


# ---------------------------------------------------------------------- engine state


def test_load_partition_restores_the_engine_exactly(pg_store: PostgresStore) -> None:
    """Two partitions of real, disordered events, one consumer batch (both partitions) per
    apply_batch: after every batch the stored state IS the engine's snapshot; an engine restored
    from it at a cut continues exactly as the live one, event for event."""
    events = real_partitions()
    size, cut = 50, 20
    live = {p: SessionEngine(STATEFUL, p, track_state=True) for p in events}
    run_id = pg_store.begin_run(RunInfo(SOURCE, {}, 0))
    assert pg_store.load_partition(SOURCE, 3) == (None, None)
    restored: dict[int, SessionEngine] = {}
    seen = {"retractions": 0, "finals": 0, "late": 0, "duplicate": 0, "unsealed": 0}
    n_batches = max(len(evs) for evs in events.values()) // size + 1
    for b in range(n_batches + 1):
        items = []
        for p, evs in events.items():
            chunk = evs[b * size:(b + 1) * size]
            changes = live[p].process(chunk) if b < n_batches else live[p].flush()
            items.append((p, changes, chunk[-1].offset + 1 if chunk else None))
            if p in restored:
                again = restored[p].process(chunk) if b < n_batches else restored[p].flush()
                assert output(again) == output(changes)
            seen["retractions"] += len(changes.retractions)
            seen["finals"] += len(changes.finals)
            for r in changes.rejections:
                seen[r.reason.value] += 1
            seen["unsealed"] += len(changes.state.unsealed)  # type: ignore[union-attr]
        pg_store.apply_batch(run_id, SOURCE, items)
        for p, _, _ in items:
            state, offset = pg_store.load_partition(SOURCE, p)
            assert canonical(state) == canonical(live[p].snapshot())
            assert offset == min(len(events[p]), (b + 1) * size)
        if b == cut:
            restored = {p: SessionEngine.restore(STATEFUL, pg_store.load_partition(SOURCE, p)[0],
                                                 track_state=True) for p in events}
            for p, engine in restored.items():
                assert canonical(engine.snapshot()) == canonical(live[p].snapshot())
    assert all(n > 0 for n in seen.values()), seen  # the run exercised every kind of change
    for p, engine in restored.items():  # after the flush: the same state again
        assert canonical(engine.snapshot()) == canonical(live[p].snapshot())
        assert engine.counters == live[p].counters


def test_open_sessions_and_stream_time_of_a_partition(pg_store: PostgresStore) -> None:
    events = real_partitions()
    engines = {p: SessionEngine(STATEFUL, p, track_state=True) for p in events}
    pg_store.apply_batch(1, SOURCE, [(p, engines[p].process(evs[:1000]), 1000)
                                     for p, evs in events.items()])
    for p, engine in engines.items():
        expected = sorted(engine.open_sessions(), key=lambda r: (r["start"], r["session_id"]))
        assert expected and {r["status"] for r in expected} == {"open", "inactive"}
        assert pg_store.open_sessions_of_partition(p) == expected
        assert pg_store.stream_time_of(p) == engine.stream_time
    assert pg_store.open_sessions_of_partition(9) == []
    assert pg_store.stream_time_of(9) is None


# ---------------------------------------------------------------------- the API on PostgreSQL


def test_the_api_serves_a_postgres_store(pg_store: PostgresStore) -> None:
    engine = SessionEngine(EngineConfig(gap_ms=10 * MIN))
    pg_store.apply(1, 0, engine.process([ev("u", 0), ev("u", 5), ev("v", 1)]))
    client = TestClient(create_app(pg_store))
    health = client.get("/health").json()
    assert (health["status"], health["store"], health["sessions"]) == ("ok", "postgres", 2)
    body = client.get("/users/u/sessions/active").json()
    assert [s["event_count"] for s in body["sessions"]] == [2]
    assert client.get("/stats/summary").json()["sessions"] == 2
