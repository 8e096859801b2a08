"""``python -m bench [--quick]``: every figure, a table, and ``bench/results/latest.json``.

Each figure is measured in the same run as its baseline and reported as a ratio, with its
target and whether it is met. ``--quick`` shrinks every size so the whole run takes about a
minute (CI runs it as a smoke test: it checks that the bench works, never the timings); it
writes ``bench/results/quick.json``, never the full run's ``latest.json``.

``--only`` runs some figure sets and *merges* them into the output file: the sets it ran
replace theirs, the others' figures stay as they were (each figure records its set, and the
file when each set was measured). ``python -m bench.report`` renders docs/performance.md from
``latest.json``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

from bench.common import RESULTS, Figure, machine, measure_set

FIGURES = ("engine", "backfill", "e2e", "lookup", "analytics")


def collect(quick: bool, only: set[str]) -> list[Figure]:
    from bench import services as svc

    services = svc.probe() if only & {"e2e", "lookup", "analytics"} else None
    figures: list[Figure] = []
    for name in FIGURES:
        if name in only:
            figures += _guarded(name, quick, services)
    return figures


def _guarded(name: str, quick: bool, services: object) -> list[Figure]:
    """A figure set measured in a fresh process, so that no set runs beside what the one
    before left behind (the backfill's gigabytes being handed back to the kernel showed up as
    tens of milliseconds of lookup latency); a set that fails is reported as failed, and the
    others still run."""
    from concurrent.futures import ProcessPoolExecutor
    from multiprocessing import get_context

    print(f"[bench] {name} ...", file=sys.stderr, flush=True)
    t = time.perf_counter()
    try:
        with ProcessPoolExecutor(1, mp_context=get_context("spawn")) as pool:
            out = pool.submit(measure_set, name, quick, services).result()
    except Exception as exc:
        out = [Figure(name=name, value=None, unit="", met=False,
                      note=f"failed: {type(exc).__name__}: {exc}"[:500])]
    for f in out:
        f.group = name
    print(f"[bench] {name} done in {time.perf_counter() - t:.1f} s", file=sys.stderr, flush=True)
    return out


def fmt(value: float | None, unit: str) -> str:
    if value is None:
        return "-"
    if unit in ("events/s",):
        return f"{value:,.0f}"
    if unit == "B/session":
        return f"{value:,.0f} B"
    if unit == "ms":
        return f"{value:,.2f} ms"
    return f"{value:,.3g}"


def table(figures: list[Figure]) -> str:
    rows = [("figure", "number", "baseline", "ratio", "target", "met")]
    for f in figures:
        met = "-" if f.met is None else ("yes" if f.met else "NO")
        rows.append((f.name, fmt(f.value, f.unit),
                     f"{fmt(f.baseline_value, f.unit)} ({f.baseline})" if f.baseline else "",
                     "-" if f.ratio is None else f"{f.ratio:,.2f}x", f.target or "-", met))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = []
    for j, r in enumerate(rows):
        lines.append("| " + " | ".join(c.ljust(widths[i]) for i, c in enumerate(r)) + " |")
        if j == 0:
            lines.append("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    notes = [f"- {f.name}: {f.note}" for f in figures if f.note]
    return "\n".join([*lines, "", *notes])


# figures written before each one recorded its set: their set by name
_LEGACY_GROUPS = (("engine throughput", "engine"), ("memory per open session", "engine"),
                  ("backfill", "backfill"), ("end to end", "e2e"), ("API active-session", "lookup"),
                  ("analytics", "analytics"))


def group_of(figure: dict) -> str:
    """The figure set of a figure in a result file (``group``, else guessed from its name)."""
    if figure.get("group"):
        return figure["group"]
    name = figure.get("name", "")
    return next((g for prefix, g in _LEGACY_GROUPS if name.startswith(prefix)), name)


def write_result(figures: list[Figure], quick: bool, out: Path, started: datetime,
                 info: dict, seconds: float, merge: bool = False) -> dict:
    """The run as JSON: when, where, and every figure with its details. With ``merge``, the
    figures of sets this run did not measure are kept from the existing file (same mode only),
    and ``sets`` says when each set was measured."""
    run = {"started": started.isoformat(timespec="seconds"), "quick": quick,
           "seconds": round(seconds, 1),
           "load_average_at_start": info.get("load_average_at_start")}
    ran = {f.group for f in figures}
    kept: list[dict] = []
    sets: dict[str, dict] = {}
    if merge and out.exists():
        try:
            old = json.loads(out.read_text())
        except ValueError:
            old = {}
        if old.get("quick") == quick:
            kept = [f for f in old.get("figures", []) if group_of(f) not in ran]
            old_run = {k: old.get(k) for k in ("started", "quick", "seconds")}
            old_run["load_average_at_start"] = old.get("machine", {}).get("load_average_at_start")
            sets = {g: v for g, v in old.get("sets", {}).items() if g not in ran}
            for f in kept:
                sets.setdefault(group_of(f), old_run)
    sets |= {g: run for g in ran}
    order = {g: i for i, g in enumerate(FIGURES)}
    rows = kept + [f.as_dict() for f in figures]
    rows.sort(key=lambda f: order.get(group_of(f), len(order)))  # stable within a set
    result = {**run, "machine": info, "sets": dict(sorted(sets.items(), key=lambda kv:
                                                          order.get(kv[0], len(order)))),
              "figures": rows}
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1, default=str) + "\n")
    return result


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="small sizes, about a minute")
    p.add_argument("--only", default=",".join(FIGURES),
                   help=f"comma-separated subset of {', '.join(FIGURES)}")
    p.add_argument("--out", default=None,
                   help="where to write JSON (default bench/results/latest.json, with --quick "
                        "bench/results/quick.json)")
    p.add_argument("--strict", action="store_true",
                   help="exit 1 if a figure failed to be measured (for the CI smoke run)")
    args = p.parse_args(argv)
    if args.out is None:
        args.out = str(RESULTS / ("quick.json" if args.quick else "latest.json"))
    only = {x.strip() for x in args.only.split(",") if x.strip()}
    unknown = only - set(FIGURES)
    if unknown:
        p.error(f"unknown figure(s): {', '.join(sorted(unknown))}")
    started = datetime.now(UTC)
    t = time.perf_counter()
    info = machine()
    figures = collect(args.quick, only)
    out = Path(args.out)
    partial = only != set(FIGURES)
    result = write_result(figures, args.quick, out, started, info, time.perf_counter() - t,
                          merge=partial)
    print(table(figures))
    merged = len(result["figures"]) - len(figures)
    print(f"\n{len(figures)} figures in {result['seconds']} s; written to {out}"
          + (f" (with {merged} figures of other sets kept from it)" if merged else ""))
    failed = [f.name for f in figures if f.value is None]
    if args.strict and failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
