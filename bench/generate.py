"""Realistic synthetic activity, vectorised with NumPy, deterministic by seed.

The shape follows what e-commerce clickstreams look like (REES46, Snowplow dumps):

- users differ a lot in how active they are: each user's activity weight is lognormal, so a few
  users have many sessions and most have one or two (heavy-tailed sessions per user);
- events per session are 1 + lognormal (mean about 6, a long tail into the hundreds);
- sessions start at a diurnal time of day over ``days`` days; events inside a session are a
  lognormal number of seconds apart (median 30 s, capped below the 30 min gap);
- event types view / cart / purchase (92 / 6 / 2 %), pages are products drawn Zipf-like from a
  catalogue, each product has a lognormal price carried on every event (as REES46 does);
- the first event of a session may carry a referrer and a utm campaign; every event carries the
  user's user agent (2 % of users are bots);
- arrival order is event time disturbed like a real pipeline disturbs it: ``disorder`` of the
  events arrive up to ``disorder_ms`` late, ``late`` of them ``late_ms`` (hours) late, and
  ``duplicates`` of them are delivered twice (same event id, a little later).

``generate`` returns a Polars DataFrame in arrival order with the default JSON field names of
the README (``user_id, ts, type, event_id, page, referrer, user_agent, revenue, utm_*``), so
``sessionize run --input events.jsonl`` reads the JSON Lines output without a config.
Ten million events take a few seconds.
"""

from __future__ import annotations

import gzip
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl

MINUTE = 60_000
HOUR = 60 * MINUTE
DAY = 24 * HOUR

REFERRERS = [None, "https://www.google.com/", "https://www.bing.com/", "https://www.facebook.com/",
             "https://t.co/", "https://news.ycombinator.com/", "https://mail.example.com/"]
REFERRER_P = [0.42, 0.33, 0.05, 0.09, 0.04, 0.02, 0.05]
CAMPAIGNS = [("newsletter", "email", "spring_sale"), ("google", "cpc", "brand"),
             ("facebook", "social", "retargeting"), ("partner", "affiliate", "summer")]
AGENTS = [
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    "Version/17.1 Safari/605.1.15",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_1 like Mac OS X) AppleWebKit/605.1.15 Mobile/15E148",
    "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 Chrome/119.0 Mobile Safari/537.36",
    "Mozilla/5.0 (X11; Linux x86_64; rv:121.0) Gecko/20100101 Firefox/121.0",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:121.0) Gecko/20100101 Firefox/121.0",
]
BOT_AGENTS = ["Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
              "Mozilla/5.0 (compatible; bingbot/2.0; +http://www.bing.com/bingbot.htm)"]
TYPES = ["view", "cart", "purchase"]
TYPE_P = [0.92, 0.06, 0.02]


@dataclass(frozen=True)
class Spec:
    """What to generate. The defaults are the bench's "mildly disordered" stream."""

    events: int = 1_000_000
    users: int | None = None  # default: events / 20
    seed: int = 1
    start_ms: int = 1_709_251_200_000  # 2024-03-01T00:00:00Z
    days: int = 30
    disorder: float = 0.05  # share of events displaced ...
    disorder_ms: int = 10 * MINUTE  # ... by up to this much
    late: float = 0.005  # share of events that arrive hours late ...
    late_ms: tuple[int, int] = (1 * HOUR, 6 * HOUR)  # ... by this much (uniform)
    duplicates: float = 0.001  # share of events delivered twice
    products: int = 50_000

    @property
    def n_users(self) -> int:
        return self.users if self.users is not None else max(1, self.events // 20)


def generate(spec: Spec = Spec()) -> pl.DataFrame:
    """``spec.events`` events (duplicates included) in arrival order, as a DataFrame."""
    rng = np.random.default_rng(spec.seed)
    n = spec.events
    n_dups = round(n * spec.duplicates)
    base_n = n - n_dups

    # sessions and their sizes: 1 + lognormal events, capped
    mean_len = 1 + np.exp(1.2 + 0.5)
    n_sess = int(base_n / mean_len * 1.3) + 16
    lengths = np.minimum(1 + np.floor(rng.lognormal(1.2, 1.0, n_sess)), 400).astype(np.int64)
    ends = np.cumsum(lengths)
    n_sess = int(np.searchsorted(ends, base_n) + 1)
    lengths = lengths[:n_sess]
    lengths[-1] -= int(ends[n_sess - 1] - base_n)
    if lengths[-1] <= 0:  # defensive: the cut fell exactly on a boundary
        lengths = lengths[:-1]
        n_sess -= 1
    first = np.concatenate(([0], np.cumsum(lengths)[:-1]))

    # heavy-tailed activity per user
    weights = rng.lognormal(0.0, 1.4, spec.n_users)
    user_of_session = rng.choice(spec.n_users, size=n_sess, p=weights / weights.sum())
    day = rng.integers(0, spec.days, n_sess)
    tod = (rng.normal(15.0, 4.5, n_sess) % 24.0) * HOUR
    start = spec.start_ms + day * DAY + tod.astype(np.int64)

    sess = np.repeat(np.arange(n_sess), lengths)
    step = np.minimum(rng.lognormal(np.log(30_000), 1.2, base_n), 25 * MINUTE).astype(np.int64)
    step[first] = 0
    csum = np.cumsum(step)
    ts = start[sess] + csum - csum[first][sess]
    position = np.arange(base_n) - first[sess]
    is_first = position == 0

    etype = rng.choice(len(TYPES), size=base_n, p=TYPE_P)
    popularity = 1.0 / np.arange(1, spec.products + 1) ** 1.1  # Zipf-like catalogue
    product = np.searchsorted(np.cumsum(popularity) / popularity.sum(), rng.random(base_n))
    product = np.minimum(product, spec.products - 1)
    prices = np.round(rng.lognormal(3.5, 1.0, spec.products), 2)
    referrer = np.where(is_first, rng.choice(len(REFERRERS), size=base_n, p=REFERRER_P), 0)
    campaign = np.where(is_first & (rng.random(base_n) < 0.15),
                        rng.integers(1, len(CAMPAIGNS) + 1, base_n), 0)
    user = user_of_session[sess]
    user_bot = rng.random(spec.n_users) < 0.02
    user_agent = np.where(user_bot[user], rng.integers(0, len(BOT_AGENTS), spec.n_users)[user],
                          len(BOT_AGENTS) + rng.integers(0, len(AGENTS), spec.n_users)[user])

    # disorder: displaced a little, late by hours; duplicates re-delivered shortly after
    arrival = ts.astype(np.float64)
    displaced = rng.random(base_n) < spec.disorder
    arrival[displaced] += rng.uniform(0, spec.disorder_ms, int(displaced.sum()))
    late = rng.random(base_n) < spec.late
    arrival[late] += rng.uniform(spec.late_ms[0], spec.late_ms[1], int(late.sum()))
    event_idx = np.arange(base_n)
    if n_dups:
        dup_of = rng.choice(base_n, size=n_dups, replace=False)
        event_idx = np.concatenate((event_idx, dup_of))
        arrival = np.concatenate((arrival, arrival[dup_of] + rng.uniform(0, 2 * MINUTE, n_dups)))
    order = event_idx[np.argsort(arrival, kind="stable")]

    # unique sort keys (arrival ms, then position), so any sort gives the same order
    arrival_ms = np.floor(arrival).astype(np.int64)
    sort_key = (arrival_ms - arrival_ms.min()) * (1 << 24) + np.arange(len(arrival_ms))
    order = event_idx[pl.Series(sort_key).arg_sort().to_numpy()]

    def pick(table: list[str | None], idx: np.ndarray) -> pl.Series:
        return pl.Series(table, dtype=pl.String).gather(pl.Series(idx))

    camp_table = [(None, None, None), *CAMPAIGNS]
    users = (pl.Series(np.arange(spec.n_users)).cast(pl.String).str.pad_start(8, "0"))
    pages = "/p/" + pl.Series(np.arange(spec.products)).cast(pl.String)
    return pl.DataFrame({
        "user_id": ("u" + users).gather(pl.Series(user[order])),
        "ts": pl.Series(ts[order]),
        "type": pick(TYPES, etype[order]),
        "event_id": "e" + pl.Series(order).cast(pl.String),
        "page": pages.gather(pl.Series(product[order])),
        "referrer": pick(REFERRERS, referrer[order]),
        "user_agent": pick(BOT_AGENTS + AGENTS, user_agent[order]),
        "revenue": pl.Series(prices[product[order]]),
        **{name: pick([c[i] for c in camp_table], campaign[order])
           for i, name in enumerate(("utm_source", "utm_medium", "utm_campaign"))},
    })


def iso_ts(frame: pl.DataFrame) -> pl.DataFrame:
    """``ts`` as ISO-8601 UTC text with milliseconds (``2024-03-01T12:00:00.123Z``)."""
    return frame.with_columns(
        pl.from_epoch("ts", "ms").dt.strftime("%Y-%m-%dT%H:%M:%S%.3fZ").alias("ts"))


def write_jsonl(frame: pl.DataFrame, path: str | Path, *, ts: str = "iso",
                gzip_level: int | None = None) -> Path:
    """JSON Lines; ``ts`` as ``iso`` text or ``epoch_ms`` numbers; optionally gzip'd."""
    path = Path(path)
    out = iso_ts(frame) if ts == "iso" else frame
    if gzip_level is None:
        out.write_ndjson(path)
        return path
    tmp = path.with_suffix(path.suffix + ".tmp")
    out.write_ndjson(tmp)
    with tmp.open("rb") as src, gzip.open(path, "wb", compresslevel=gzip_level) as dst:
        shutil.copyfileobj(src, dst, 1 << 22)
    tmp.unlink()
    return path


def write_parquet(frame: pl.DataFrame, path: str | Path) -> Path:
    """Parquet with ``ts`` as a UTC timestamp column (milliseconds)."""
    path = Path(path)
    frame.with_columns(pl.from_epoch("ts", "ms").dt.replace_time_zone("UTC")).write_parquet(
        path, compression="zstd", row_group_size=1 << 20)
    return path


def main() -> None:  # pragma: no cover - a convenience for trying the generator by hand
    import argparse
    import time

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--events", type=int, default=1_000_000)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--out", default="events")
    p.add_argument("--gzip", action="store_true")
    args = p.parse_args()
    t = time.perf_counter()
    frame = generate(Spec(events=args.events, seed=args.seed))
    print(f"generated {len(frame):,} events in {time.perf_counter() - t:.2f} s")
    write_jsonl(frame, f"{args.out}.jsonl" + (".gz" if args.gzip else ""),
                gzip_level=1 if args.gzip else None)
    write_parquet(frame, f"{args.out}.parquet")
    print(f"written in {time.perf_counter() - t:.2f} s")


if __name__ == "__main__":  # pragma: no cover
    main()
