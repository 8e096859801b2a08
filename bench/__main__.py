"""``python -m bench [--quick]``: every figure, a table, and ``bench/results/latest.json``.

Each figure is measured in the same run as its baseline and reported as a ratio, with its
target and whether it is met. ``--quick`` shrinks every size so the whole run takes about a
minute (CI runs it as a smoke test: it checks that the bench works, never the timings).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

from bench.common import RESULTS, Figure, machine

FIGURES = ("engine", "backfill", "e2e", "lookup")


def collect(quick: bool, only: set[str]) -> list[Figure]:
    from bench import services as svc

    figures: list[Figure] = []
    if "engine" in only:
        from bench import engine

        figures += _guarded("engine", lambda: engine.figures(quick))
    if "backfill" in only:
        from bench import batch

        figures += _guarded("backfill", lambda: batch.figures(quick))
    if only & {"e2e", "lookup"}:
        services = svc.probe()
        if "e2e" in only:
            from bench import e2e

            figures += _guarded("e2e", lambda: e2e.figures(quick, services))
        if "lookup" in only:
            from bench import lookup

            figures += _guarded("lookup", lambda: lookup.figures(quick, services))
    return figures


def _guarded(name: str, run) -> list[Figure]:
    """A figure that fails is reported as failed, and the others still run."""
    print(f"[bench] {name} ...", file=sys.stderr, flush=True)
    t = time.perf_counter()
    try:
        out = run()
    except Exception as exc:
        out = [Figure(name=name, value=None, unit="", met=False,
                      note=f"failed: {type(exc).__name__}: {exc}"[:500])]
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


def write_result(figures: list[Figure], quick: bool, out: Path, started: datetime,
                 info: dict, seconds: float) -> dict:
    """The run as JSON: when, where, and every figure with its details."""
    result = {"started": started.isoformat(timespec="seconds"), "quick": quick,
              "seconds": round(seconds, 1), "machine": info,
              "figures": [f.as_dict() for f in figures]}
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1, default=str) + "\n")
    return result


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="small sizes, about a minute")
    p.add_argument("--only", default=",".join(FIGURES),
                   help=f"comma-separated subset of {', '.join(FIGURES)}")
    p.add_argument("--out", default=str(RESULTS / "latest.json"), help="where to write JSON")
    args = p.parse_args(argv)
    only = {x.strip() for x in args.only.split(",") if x.strip()}
    unknown = only - set(FIGURES)
    if unknown:
        p.error(f"unknown figure(s): {', '.join(sorted(unknown))}")
    started = datetime.now(UTC)
    t = time.perf_counter()
    info = machine()
    figures = collect(args.quick, only)
    result = write_result(figures, args.quick, Path(args.out), started, info,
                          time.perf_counter() - t)
    out = Path(args.out)
    print(table(figures))
    print(f"\n{len(figures)} figures in {result['seconds']} s; written to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
