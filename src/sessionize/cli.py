"""The ``sessionize`` command: thin. It parses flags, builds a pipeline, prints a summary.

Every SessionizeError becomes a short message and exit status 2; anything else is a bug and
keeps its traceback.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import sys
from collections.abc import Iterator, Sequence
from importlib import resources
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from sessionize.decode.timestamps import format_ms
from sessionize.engine.durations import format_duration
from sessionize.engine.event import Reason, Rejection
from sessionize.engine.fast import engine_for
from sessionize.errors import SessionizeError
from sessionize.pipeline import FilePipeline, JsonLinesWriter, Outputs, RunSummary
from sessionize.settings import Settings, load_settings
from sessionize.sources import Source, open_source

console = Console(stderr=True)
out = Console()


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if not getattr(args, "command", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except SessionizeError as exc:
        console.print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False)
        return 2
    except KeyboardInterrupt:
        console.print("interrupted")
        return 130


# ---------------------------------------------------------------------------- flags

def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="sessionize",
        description="User sessions from activity streams: event-time session windows.")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")

    run = sub.add_parser("run", help="sessionize files (or a Kafka topic) into the store")
    src = run.add_mutually_exclusive_group(required=True)
    src.add_argument("--input", "-i", nargs="+", metavar="PATH",
                     help="input file(s): JSON Lines, CSV/TSV or access logs, optionally gzip'd")
    src.add_argument("--source", metavar="kafka://HOST:PORT/TOPIC",
                     help="consume a Kafka topic as a member of consumer group --group")
    run.add_argument("--group", help="Kafka consumer group (default sessionize)")
    run.add_argument("--instance-id", help="Kafka static membership id: a restarted worker "
                     "with the same id gets its partitions back without a rebalance")
    run.add_argument("--until-idle", type=float, metavar="SECONDS",
                     help="Kafka: stop after this long without a record (bounded replays)")
    run.add_argument("--health-port", type=int, metavar="PORT",
                     help="Kafka: serve the worker's health at http://127.0.0.1:PORT/health")
    run.add_argument("--batch-size", type=int, default=50_000,
                     help="Kafka: at most this many records per batch, one transaction each (a "
                          "poll returns with what arrived within half a second, so a live stream "
                          "commits small batches often and a backlog large ones)")
    run.add_argument("--changelog-topic", metavar="TOPIC",
                     help="Kafka: also publish session changes keyed by session_id "
                          "(tombstones for merged-away sessions)")
    run.add_argument("--dead-letter-topic", metavar="TOPIC",
                     help="Kafka: also publish rejected events with their reason")
    _session_flags(run)
    _input_flags(run)
    run.add_argument("--output", "-o", metavar="FILE", help="also write final sessions as JSONL")
    run.add_argument("--rejected", metavar="FILE", help="also write rejected events as JSONL")
    run.add_argument("--with-event-ids", action="store_true", default=None,
                     help="keep each session's event ids (in --output and the store)")
    run.add_argument("--quiet", "-q", action="store_true", help="no progress bar")
    run.set_defaults(func=cmd_run)

    serve = sub.add_parser("serve", help="serve the REST API over the store")
    _common_flags(serve)
    _api_flags(serve)
    serve.set_defaults(func=cmd_serve)

    produce = sub.add_parser("produce", help="publish a file's events to Kafka, keyed by user")
    produce.add_argument("--input", "-i", required=True, metavar="PATH")
    produce.add_argument("--topic", required=True, help="topic name (created if missing)")
    produce.add_argument("--bootstrap", help="Kafka bootstrap servers (default 127.0.0.1:9092)")
    produce.add_argument("--partitions", type=int, default=4, help="for a new topic (default 4)")
    produce.add_argument("--shuffle-within", metavar="DURATION",
                         help="displace each event's arrival by up to this much, e.g. 10m")
    produce.add_argument("--late-fraction", type=float, default=0.0,
                         help="share of events that arrive --late-by late, e.g. 0.01")
    produce.add_argument("--late-by", metavar="DURATION", default="0s")
    produce.add_argument("--seed", type=int, default=1, help="for the disorder (default 1)")
    produce.add_argument("--config", "-c", metavar="FILE", help="TOML settings (input mapping)")
    _input_flags(produce)
    produce.set_defaults(func=cmd_produce)

    status = sub.add_parser("status", help="the store (and a worker) at a glance")
    _common_flags(status)
    status.add_argument("--worker", metavar="http://127.0.0.1:PORT",
                        help="a worker's health port (its --health-port): health, lag, events")
    status.set_defaults(func=cmd_status)

    backfill = sub.add_parser(
        "backfill", help="historical files to final sessions, columnar (Polars): fast, "
        "same sessions as `run` with an unbounded grace")
    backfill.add_argument("--input", "-i", nargs="+", required=True, metavar="PATH",
                          help="input file(s): JSON Lines, CSV/TSV, Parquet or access logs")
    _session_flags(backfill)
    _input_flags(backfill, formats=["jsonl", "csv", "tsv", "clf", "parquet"])
    backfill.add_argument("--output", "-o", metavar="FILE",
                          help="also write the sessions: .parquet, or JSON Lines otherwise")
    backfill.add_argument("--rejected", metavar="FILE",
                          help="also write rejected records as JSON Lines")
    backfill.add_argument("--no-store", action="store_true",
                          help="do not write the sessions into the store (only --output)")
    backfill.add_argument("--quiet", "-q", action="store_true", help="no spinner")
    backfill.set_defaults(func=cmd_backfill)

    demo = sub.add_parser("demo", help="sessionize a bundled real dataset and serve the API")
    demo.add_argument("--dir", default="sessionize-demo", help="where to put the demo store")
    demo.add_argument("--no-serve", action="store_true", help="stop after printing the results")
    _api_flags(demo)
    demo.set_defaults(func=cmd_demo)
    return p


def _common_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", "-c", metavar="FILE", help="TOML settings file")
    p.add_argument("--db", metavar="PATH", help="SQLite store (default sessionize.db)")
    p.add_argument("--store", metavar="postgresql://...",
                   help="PostgreSQL store instead of SQLite")
    p.add_argument("--cache", metavar="redis://...",
                   help="Redis cache of active sessions (Kafka runs write it, serve reads it)")


def _session_flags(p: argparse.ArgumentParser) -> None:
    _common_flags(p)
    p.add_argument("--gap", help="inactivity gap that ends a session, e.g. 30m (default 30m)")
    p.add_argument("--grace", help="how late an event may be, e.g. 24h, or 'unbounded'")


def _input_flags(p: argparse.ArgumentParser,
                 formats: Sequence[str] = ("jsonl", "csv", "tsv", "clf")) -> None:
    g = p.add_argument_group("input mapping (JSON Lines / CSV)")
    g.add_argument("--format", "-f", choices=list(formats))
    g.add_argument("--key", help="user key field(s), comma-separated (default user_id)")
    g.add_argument("--ts", help="timestamp field(s), comma-separated (default ts)")
    g.add_argument("--ts-format", help="iso, epoch_s, epoch_ms or a strptime pattern")
    g.add_argument("--type", dest="type_field", help="event type field (default type)")
    g.add_argument("--input-tz", help="time zone of timestamps without an offset (default UTC)")


def _api_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--host", help="interface to listen on (default 127.0.0.1)")
    p.add_argument("--port", type=int, help="port (default 8000)")


def _settings(args: argparse.Namespace) -> Settings:
    flags: dict[str, dict[str, Any]] = {
        "session": {"gap": getattr(args, "gap", None), "grace": getattr(args, "grace", None)},
        "input": {"format": getattr(args, "format", None), "key": getattr(args, "key", None),
                  "ts": getattr(args, "ts", None), "ts_format": getattr(args, "ts_format", None),
                  "type": getattr(args, "type_field", None),
                  "input_tz": getattr(args, "input_tz", None)},
        "store": {"db": getattr(args, "db", None), "url": getattr(args, "store", None)},
        "cache": {"url": getattr(args, "cache", None)},
        "kafka": {"group": getattr(args, "group", None),
                  "bootstrap": getattr(args, "bootstrap", None),
                  "instance_id": getattr(args, "instance_id", None)},
        "output": {"sessions": getattr(args, "output", None),
                   "rejected": getattr(args, "rejected", None),
                   "with_event_ids": getattr(args, "with_event_ids", None)},
        "api": {"host": getattr(args, "host", None), "port": getattr(args, "port", None)},
    }
    return load_settings(getattr(args, "config", None), flags)


# ---------------------------------------------------------------------------- commands

def cmd_run(args: argparse.Namespace) -> int:
    settings = _settings(args)
    if args.source:
        return run_kafka(args, settings)
    summaries = [run_file(path, settings, show_progress=not args.quiet)
                 for path in args.input]
    for s in summaries:
        print_summary(s, settings)
    return 0


def run_file(path: str, settings: Settings, show_progress: bool = True) -> RunSummary:
    """Sessionize one file into the configured store (and outputs); the CLI's main job."""
    source = _open(path, settings)
    outputs = Outputs(
        sessions=JsonLinesWriter(settings.sessions_out) if settings.sessions_out else None,
        rejected=JsonLinesWriter(settings.rejected_out) if settings.rejected_out else None,
    )
    store = open_store(settings)
    try:
        pipeline = FilePipeline(engine_for(settings.engine), store, outputs)
        if not show_progress:
            return pipeline.run(source, describe(settings))
        with _progress_bar(source) as update:
            return pipeline.run(source, describe(settings), update)
    finally:
        store.close()


def cmd_backfill(args: argparse.Namespace) -> int:
    settings = _settings(args)
    for path in args.input:
        summary = backfill_file(path, settings, store=not args.no_store, quiet=args.quiet)
        print_summary(summary, settings, title="sessionize backfill")
    return 0


def backfill_file(path: str, settings: Settings, store: bool = True,
                  quiet: bool = False) -> RunSummary:
    """One file through the columnar backfill, into the store and the outputs.

    A file is history: every event in it is known, so the backfill runs with an unbounded grace
    (nothing is late) and, for the rules it supports, gives exactly the sessions ``run`` gives
    with ``--grace unbounded`` (session ids differ: see sessionize.backfill)."""
    import dataclasses
    import time

    from sessionize import backfill
    from sessionize.stores.base import RunInfo

    config = dataclasses.replace(settings.engine, grace_ms=None)
    inp = settings.input
    started = time.perf_counter()
    with console.status(f"backfilling {path} ...") if not quiet else _nothing():
        result = backfill.run(path, config, inp.fields, fmt=inp.format, delimiter=inp.delimiter,
                              clf_key=inp.clf_key, skip_assets=inp.skip_assets)
    sessions = result.sessions
    c = result.counters
    summary = RunSummary(source=path, received=c["received"], counted=c["counted"],
                         skipped=c["skipped"], sessions=len(sessions),
                         rejected={r.value: c[r.value] for r in Reason})
    if len(sessions):
        summary.stream_time = int(sessions["end"].max())
    if settings.sessions_out:
        out_path = settings.sessions_out
        if out_path.endswith((".parquet", ".pq")):
            sessions.write_parquet(out_path)
        else:
            sessions.write_ndjson(out_path)
    if settings.rejected_out:
        result.rejections.write_ndjson(settings.rejected_out)
    if store:
        _store_backfill(settings, path, result, summary, RunInfo)
    summary.seconds = time.perf_counter() - started
    return summary


def _store_backfill(settings: Settings, path: str, result: Any, summary: RunSummary,
                    run_info: Any) -> None:
    """Final sessions and rejections into the store in batches, as a file run writes them."""
    import time

    from sessionize.engine.engine import ChangeSet

    store = open_store(settings)
    try:
        info = run_info(source=path, config=describe(settings) | {"backfill": True},
                        started_at_ms=int(time.time() * 1000))
        run_id = store.begin_run(info)
        records = result.sessions.iter_rows(named=True)
        while batch := list(itertools.islice(records, 20_000)):
            store.apply(run_id, 0, ChangeSet(finals=batch, counted=sum(r["event_count"] for r in batch),
                                             stream_time=summary.stream_time))
        rejections = [Rejection(reason=Reason(r["reason"]), raw=r["raw"], detail=r["detail"] or "",
                                offset=r["offset"], key=r["key"], event_id=r["event_id"],
                                ts=r["ts"])
                      for r in result.rejections.iter_rows(named=True)]
        for i in range(0, len(rejections), 20_000):
            store.apply(run_id, 0, ChangeSet(rejections=rejections[i:i + 20_000]))
        info.finished_at_ms = int(time.time() * 1000)
        info.counters = summary.as_dict()
        store.finish_run(run_id, info)
    finally:
        store.close()


@contextlib.contextmanager
def _nothing() -> Iterator[None]:
    yield


def open_store(settings: Settings) -> Any:
    """PostgreSQL when a store URL is configured, else the embedded SQLite file."""
    if settings.store_url:
        from sessionize.stores.postgres import PostgresStore

        return PostgresStore(settings.store_url)
    from sessionize.stores.sqlite import SqliteStore

    return SqliteStore(settings.db)


def open_cache(settings: Settings) -> Any:
    if not settings.cache_url:
        return None
    from sessionize.caches.redis import RedisCache

    e = settings.engine
    return RedisCache(settings.cache_url, max_gap_ms=e.max_gap_ms, grace_ms=e.grace_ms)


def run_kafka(args: argparse.Namespace, settings: Settings) -> int:
    """A consumer-group worker: Kafka -> engine -> PostgreSQL (+ Redis), exactly-once effect."""
    import logging
    import signal

    from sessionize.health import serve_health
    from sessionize.sources.kafka import KafkaSource, parse_kafka_url
    from sessionize.worker import StreamWorker

    if not settings.store_url:
        raise SessionizeError("a Kafka run needs a PostgreSQL store: add --store "
                              "postgresql://USER@HOST:PORT/DB (it holds the offsets and state "
                              "that make restarts exactly-once)")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    bootstrap, topic = parse_kafka_url(args.source)
    store, cache = open_store(settings), open_cache(settings)
    changelog = None
    if args.changelog_topic or args.dead_letter_topic:
        from sessionize.changelog import KafkaChangelog

        changelog = KafkaChangelog(bootstrap, args.changelog_topic, args.dead_letter_topic)
    worker = StreamWorker(
        settings.engine, store, cache,
        lambda **cb: KafkaSource(bootstrap, topic, settings.kafka_group, settings.input.fields,
                                 extra=kafka_options(settings), **cb),
        batch_size=args.batch_size, run_config=describe(settings), changelog=changelog)
    if args.health_port:
        serve_health("127.0.0.1", args.health_port,
                     lambda: (worker.health.ok, worker.health.as_dict()))
    signal.signal(signal.SIGTERM, lambda *_: worker.stop())
    console.print(f"consuming {topic} on {bootstrap} as group {settings.kafka_group!r} "
                  f"into {settings.store_url}" + (f" + {settings.cache_url}" if cache else ""))
    try:
        worker.run(until_idle=args.until_idle)
    except KeyboardInterrupt:
        worker.stop()
    h = worker.health
    console.print(f"stopped: {h.events:,} events, {h.counted:,} counted, rejected {h.rejected}")
    return 0


def kafka_options(settings: Settings) -> dict[str, Any]:
    opts = dict(settings.kafka_consumer)
    if settings.kafka_instance_id:
        opts["group.instance.id"] = settings.kafka_instance_id
    return opts


def cmd_produce(args: argparse.Namespace) -> int:
    from sessionize.engine.durations import parse_duration
    from sessionize.produce import Disorder, produce

    settings = _settings(args)
    if not 0 <= args.late_fraction <= 1:
        raise SessionizeError("--late-fraction must be between 0 and 1")
    disorder = Disorder(
        shuffle_within_ms=parse_duration(args.shuffle_within or 0, name="--shuffle-within"),
        late_fraction=args.late_fraction,
        late_by_ms=parse_duration(args.late_by, name="--late-by"), seed=args.seed)
    counts = produce(_open(args.input, settings), settings.kafka_bootstrap, args.topic,
                     args.partitions, disorder)
    out.print(f"published {counts['total']:,} records to {args.topic} on "
              f"{settings.kafka_bootstrap} ({counts['events']:,} events, "
              f"{counts['unreadable']:,} unreadable lines passed on for the dead letters)")
    return 0


def _open(path: str, settings: Settings) -> Source:
    inp = settings.input
    options: dict[str, Any] = {}
    fmt = inp.format
    if fmt == "clf" or (fmt is None and _looks_like_log(path)):
        options = {"key": inp.clf_key, "skip_assets": inp.skip_assets}
    elif inp.delimiter is not None:
        options["delimiter"] = inp.delimiter
    return open_source(path, fmt, inp.fields, **options)


def _looks_like_log(path: str) -> bool:
    from sessionize.sources import detect_format

    return detect_format(path) == "clf"


class _progress_bar:
    """A rich progress bar over the bytes of the input, with events/s and sessions."""

    def __init__(self, source: Source) -> None:
        self.source = source
        self.progress = Progress(
            TextColumn("[bold]{task.description}"), BarColumn(),
            TextColumn("{task.percentage:>5.1f}%"), TextColumn("{task.fields[rate]}"),
            TimeElapsedColumn(), console=console, transient=True,
        )

    def __enter__(self):
        self.progress.start()
        total = self.source.total_bytes or None
        self.task = self.progress.add_task(Path(self.source.name).name, total=total, rate="")
        return self.update

    def update(self, summary: RunSummary, source: Source) -> None:
        self.progress.update(
            self.task, completed=source.bytes_read,
            rate=f"{summary.received:,} events  {summary.events_per_second:,.0f}/s  "
                 f"{summary.sessions:,} sessions")

    def __exit__(self, *exc: object) -> None:
        self.progress.stop()


def describe(settings: Settings) -> dict[str, Any]:
    """The settings that decide the result, stored with each run for later reading."""
    e = settings.engine
    return {"gap": format_duration(e.gap_ms), "grace": format_duration(e.grace_ms),
            "gap_by_type": e.gap_by_type, "max_duration": e.max_duration_ms,
            "split_at_midnight": e.midnight_tz, "dedup": e.dedup,
            "campaign_split": e.campaign_split, "input_format": settings.input.format}


def print_summary(s: RunSummary, settings: Settings, title: str = "sessionize run") -> None:
    t = Table(title=f"{title}: {Path(s.source).name}", show_header=False,
              title_justify="left")
    t.add_column(style="bold")
    t.add_column(justify="right")
    t.add_row("events read", f"{s.received + s.skipped:,}")
    if s.skipped:
        t.add_row("  skipped (static assets)", f"{s.skipped:,}")
    t.add_row("  counted", f"{s.counted:,}")
    t.add_row("  rejected", f"{s.rejected_total:,}")
    for reason, n in s.rejected.items():
        if n:
            t.add_row(f"    {reason}", f"{n:,}")
    t.add_row("sessions", f"{s.sessions:,}")
    t.add_row("time taken", f"{s.seconds:.2f} s ({s.events_per_second:,.0f} events/s)")
    t.add_row("stream time", format_ms(s.stream_time) or "-")
    t.add_row("store", settings.db)
    if settings.sessions_out:
        t.add_row("sessions file", settings.sessions_out)
    if settings.rejected_out:
        t.add_row("rejected file", settings.rejected_out)
    out.print(t)


def cmd_serve(args: argparse.Namespace) -> int:
    settings = _settings(args)
    serve(settings)
    return 0


def serve(settings: Settings) -> None:
    import uvicorn

    from sessionize.api.app import create_app

    if not settings.store_url and not Path(settings.db).exists():
        raise SessionizeError(f"store {settings.db} does not exist yet; fill it first with "
                              f"`sessionize run --input FILE --db {settings.db}`")
    from sessionize.stores.columnar import ColumnarAnalytics

    # analytics from a columnar copy of the store, loaded and then refreshed in the background
    # (the store's SQL answers until the first copy is there); active sessions from the cache
    reads = ColumnarAnalytics(open_store(settings))
    reads.start()
    queries: Any = reads
    cache = open_cache(settings)
    if cache is not None:
        from sessionize.api.queries import CachedQueries

        queries = CachedQueries(reads, cache)
    app = create_app(queries)
    host, port = settings.host, settings.port
    console.print(f"dashboard on http://{host}:{port}/  (API docs: http://{host}:{port}/docs)")
    uvicorn.run(app, host=host, port=port, log_level="warning")


def cmd_status(args: argparse.Namespace) -> int:
    """Sessions by status, rejected by reason, stream time per partition, the cache and a
    worker's health, as tables. Exit 0 when everything asked about is healthy, 1 if not."""
    from sessionize.status import show_status

    settings = _settings(args)
    if not settings.store_url and not Path(settings.db).exists():
        raise SessionizeError(f"store {settings.db} does not exist; give --db PATH of a store "
                              "that `sessionize run` filled, or --store postgresql://...")
    store = open_store(settings)
    try:
        return show_status(out, store, open_cache(settings), args.worker)
    finally:
        store.close()


def cmd_demo(args: argparse.Namespace) -> int:
    data = resources.files("sessionize") / "demo_data"
    folder = Path(args.dir)
    folder.mkdir(parents=True, exist_ok=True)
    db = folder / "demo.db"
    for suffix in ("", "-wal", "-shm"):
        Path(f"{db}{suffix}").unlink(missing_ok=True)
    with resources.as_file(data / "rees46.toml") as cfg, \
            resources.as_file(data / "rees46-2019-Oct-head5000.csv") as csv_path:
        settings = load_settings(cfg, {
            "store": {"db": str(db)},
            "output": {"sessions": str(folder / "sessions.jsonl"), "with_event_ids": True},
            "api": {"host": args.host, "port": args.port}})
        out.print("[bold]sessionize demo[/]: real e-commerce clicks from the REES46 / Open CDP "
                  "dataset (first 4,999 events of 2019-Oct; attribution in "
                  "sessionize/demo_data/ATTRIBUTION.md)\n")
        summary = run_file(str(csv_path), settings)
    print_summary(summary, settings)
    _show_demo_findings(str(db), settings)
    if args.no_serve:
        return 0
    serve(settings)
    return 0


def _show_demo_findings(db: str, settings: Settings) -> None:
    from sessionize.stores.sqlite import SqliteStore

    store = SqliteStore(db)
    try:
        s = store.summary(None, None)
        out.print(
            f"\n[bold]What the sessions say[/]: {s['sessions']:,} sessions of {s['users']:,} users; "
            f"median {s['median_duration_ms'] / 1000:.0f} s, mean {s['mean_duration_ms'] / 1000:.0f} s; "
            f"bounce rate {s['bounce_rate']:.1%}; conversion rate {s['conversion_rate']:.2%}; "
            f"{s['events_per_session']:.2f} events per session.")
        key, sessions = _interesting_user(store)
        t = Table(title=f"sessions of user {key}", title_justify="left")
        for col in ("start (UTC)", "length", "events", "buys", "revenue", "path"):
            t.add_column(col, overflow="fold")
        for r in sessions:
            t.add_row((format_ms(r["start"]) or "")[:19].replace("T", " "),
                      f"{r['duration_ms'] // 1000} s", str(r["event_count"]),
                      str(r["conversions"]), f"{r['revenue']:.2f}", compact_path(r["path"]))
        out.print(t)
        base = f"http://{settings.host}:{settings.port}"
        out.print(f"\nTry: {base}/docs   {base}/users/{key}/sessions   {base}/stats/summary\n")
    finally:
        store.close()


def _interesting_user(store: Any) -> tuple[str, list[dict[str, Any]]]:
    """Among the busiest users, one with several sessions and a purchase, to show off merging
    of metrics; falls back to the busiest."""
    best: tuple[tuple[int, int], str, list[dict[str, Any]]] | None = None
    for row in store.top_keys(50):
        sessions, _ = store.user_sessions(row["key"], None, None, 20, None)
        score = (min(len(sessions), 3) + (2 if any(s["conversions"] for s in sessions) else 0),
                 row["events"])
        if best is None or score > best[0]:
            best = (score, row["key"], sessions)
    assert best is not None
    return best[1], best[2]


def compact_path(path: list[str], limit: int = 6) -> str:
    """``view > view > view > cart`` as ``view x3 > cart``: readable at a glance."""
    runs: list[list[Any]] = []
    for step in path:
        if runs and runs[-1][0] == step:
            runs[-1][1] += 1
        else:
            runs.append([step, 1])
    parts = [f"{name} x{n}" if n > 1 else name for name, n in runs[:limit]]
    return " > ".join(parts) + (" > ..." if len(runs) > limit else "")


if __name__ == "__main__":
    sys.exit(main())
