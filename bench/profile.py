"""Profile the pure-Python SessionEngine on the mildly disordered stream (pyinstrument).

``python -m bench.profile [events]`` prints the top of the call tree and writes it to
``bench/results/profile.txt``; docs/performance.md quotes it.
"""

from __future__ import annotations

import sys

from bench.common import RESULTS
from bench.engine import BATCH, CONFIG, to_events
from bench.generate import Spec, generate
from sessionize.engine import SessionEngine


def profile(n: int = 200_000) -> str:
    from pyinstrument import Profiler

    events = to_events(generate(Spec(events=n, seed=7)))
    engine = SessionEngine(CONFIG)
    profiler = Profiler(interval=0.0005)
    profiler.start()
    for i in range(0, len(events), BATCH):
        engine.process(events[i:i + BATCH])
    engine.flush()
    profiler.stop()
    return profiler.output_text(unicode=False, color=False, show_all=False, short_mode=False)


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 200_000
    text = profile(n)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "profile.txt").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
