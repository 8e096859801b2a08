"""What every figure shares: the result record, timing, memory, percentiles, the machine."""

from __future__ import annotations

import gc
import os
import platform
import resource
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"


@dataclass
class Figure:
    """One line of the table: a number, the baseline measured in the same run, their ratio,
    and the target it is judged against. ``value`` None means not measured (see ``note``)."""

    name: str
    value: float | None
    unit: str
    baseline: str = ""
    baseline_value: float | None = None
    ratio: float | None = None
    target: str = ""
    met: bool | None = None
    note: str = ""
    details: dict[str, Any] = field(default_factory=dict)
    group: str = ""  # the figure set it belongs to (engine, backfill, e2e, lookup, analytics)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def ratio(a: float | None, b: float | None) -> float | None:
    if a is None or b is None or b == 0:
        return None
    return a / b


class Timer:
    """Wall and process CPU seconds of a block (CPU tells contention apart on a shared box)."""

    def __enter__(self) -> Timer:
        gc.collect()
        self.wall0, self.cpu0 = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc: object) -> None:
        self.wall = time.perf_counter() - self.wall0
        self.cpu = time.process_time() - self.cpu0


def best_of(runs: int, fn: Callable[[], Any]) -> tuple[float, Any]:
    """Best wall time of ``runs`` calls (the least disturbed by other processes), and the
    result of the last call."""
    best, out = float("inf"), None
    for _ in range(runs):
        with Timer() as t:
            out = fn()
        best = min(best, t.wall)
    return best, out


def rss_bytes() -> int:
    """Current resident set size of this process."""
    with open("/proc/self/statm") as fh:
        pages = int(fh.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE")


def peak_rss_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def percentiles(values: Sequence[float], ps: Sequence[float] = (50, 90, 99, 99.9)) -> dict[str, float]:
    if not values:
        return {f"p{p:g}": float("nan") for p in ps}
    s = sorted(values)
    out = {}
    for p in ps:
        k = min(len(s) - 1, max(0, round(p / 100 * (len(s) - 1))))
        out[f"p{p:g}"] = s[k]
    return out


def machine() -> dict[str, Any]:
    """What the numbers were measured on."""
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = 0
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                mem = int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        load = os.getloadavg()
    except OSError:
        load = (0.0, 0.0, 0.0)
    versions = {}
    for name in ("polars", "duckdb", "numpy"):
        try:
            versions[name] = __import__(name).__version__
        except ImportError:
            versions[name] = None
    return {"nproc": os.cpu_count(), "cpu_model": model, "memory_bytes": mem,
            "python": sys.version.split()[0], "platform": platform.platform(),
            "load_average_at_start": [round(x, 2) for x in load], **versions}


def run_json(code: str, timeout: float = 900) -> dict[str, Any]:
    """Run ``code`` in a fresh interpreter (for clean memory figures) and parse the JSON it
    prints as its last line."""
    import json

    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=timeout, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})
    if proc.returncode != 0:
        raise RuntimeError(f"subprocess failed ({proc.returncode}): {proc.stderr[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def measure_set(name: str, quick: bool, services: object) -> list[Figure]:
    """One figure set's figures (``python -m bench`` runs each set in a
    process of its own: this is what that process calls)."""
    import importlib

    module = importlib.import_module(f"bench.{'batch' if name == 'backfill' else name}")
    if name in ("engine", "backfill"):
        return module.figures(quick)
    return module.figures(quick, services)
