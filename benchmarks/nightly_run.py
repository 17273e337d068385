"""The nightly run on a grocery chain's shape: ``recsvc train`` end to end against a bare ``implicit`` ALS fit.

Issue 14 measured ``recsvc train`` on a grocery chain's log (1.35M purchase lines, 2,464 households, 65,581
items) at 411 s and 2.8 GB against 5 s for a bare ALS fit; the target is the whole run (models, ranker,
evaluation, report, publish) in 120 s and 1.5 GB on this 2-core machine. That log is not public, so this
benchmark writes one of the same shape from a fixed seed (:func:`write_grocery_log`) and measures, in one
process:

1. ``train`` with the settings ``recsvc train`` uses by default (evaluation and learned ranker on, the gate
   forced so a refusal does not hide the timings), each step's seconds and the peak resident memory during
   that step (sampled every 20 ms; the step boundaries are the trainer's own "step ... done" log lines);
2. a bare ``implicit`` ALS fit (same factors, iterations, regularisation) on the very confidence matrix the
   trainer builds, as ``benchmarks/trainer_vs_bare_als.py`` does.

The synthetic log (all from ``--seed``, default 20261203):

* 65,581 items in 420 categories, item popularity Zipf(0.9) over a random permutation of the catalog, brands
  and price bands as attributes;
* 2,464 households, each with a start day in the first year (so every household has history before the
  evaluation cut-off), a basket rate (log-normal, mean one trip every ~9 days), a basket size (log-normal,
  mean ~11 lines) and 60 staple items drawn from the popularity law: 72 % of a household's lines are its staples
  (repeat-purchase heavy, the staples ranked by a Zipf(0.9) preference), the rest drawn from the whole catalog;
* 600 days ending 2026-11-30, a weekly rhythm (more trips at weekends), each basket one ``order_id`` on one
  channel: ``store`` (home store of 30, most trips), ``web`` or ``app`` by a per-household channel mix;
* 0.4 % of lines returned a few days later; a ``customers`` table with ``age_group``, ``income_band`` and
  ``household_size`` for every household.

Run (about 2-3 minutes for the log the first time; it is cached under ``--work``)::

    python -m benchmarks.nightly_run --work /tmp/recsvc-nightly --results benchmarks/results/nightly_run.json
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import re
import resource
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from benchmarks.trainer_vs_bare_als import bare_als_fit
from recsvc.config import TrainingSettings
from recsvc_training.input import columns as C
from recsvc_training.pipeline import train
from recsvc_training.run_summary import peak_rss_mb

logger = logging.getLogger(__name__)

N_HOUSEHOLDS = 2_464
N_ITEMS = 65_581
TARGET_LINES = 1_350_000
N_DAYS = 600
END_DATE = date(2026, 11, 30)
N_CATEGORIES = 420
N_STORES = 30
STAPLES_PER_HOUSEHOLD = 60
STAPLE_SHARE = 0.72
RETURN_SHARE = 0.004
CHANNELS = ("store", "web", "app")
DEFAULT_SEED = 20261203


def _zipf_weights(n: int, exponent: float) -> np.ndarray:
    weights = 1.0 / np.arange(1, n + 1, dtype=np.float64) ** exponent
    return weights / weights.sum()


def grocery_tables(seed: int = DEFAULT_SEED) -> dict[str, pd.DataFrame]:
    """The synthetic grocery log as input-contract tables (``events``, ``items``, ``customers``)."""
    rng = np.random.default_rng(seed)
    item_ids = np.array([f"P{i:06d}" for i in range(N_ITEMS)])
    # popularity rank -> item: a permutation, so item ids say nothing about popularity
    by_rank = rng.permutation(N_ITEMS)
    popularity = _zipf_weights(N_ITEMS, 0.9)
    category = rng.integers(0, N_CATEGORIES, size=N_ITEMS)
    items = pd.DataFrame({
        C.ITEM_ID: item_ids,
        C.TITLE: [f"product {i}" for i in range(N_ITEMS)],
        C.CATEGORY: [f"cat{c:03d}" for c in category],
        C.PRICE: np.round(np.exp(rng.normal(1.0, 0.8, size=N_ITEMS)), 2),
        "brand": [f"brand{b:04d}" for b in rng.integers(0, 3000, size=N_ITEMS)],
    })
    items["price_band"] = pd.cut(items[C.PRICE], [0, 1.5, 3, 6, 1e9], labels=["low", "mid", "high", "premium"]
                                 ).astype(str)

    h = N_HOUSEHOLDS
    customer_ids = np.array([f"H{i:05d}" for i in range(h)])
    customers = pd.DataFrame({
        C.CUSTOMER_ID: customer_ids,
        "age_group": rng.choice(["19-24", "25-34", "35-44", "45-54", "55-64", "65+"], size=h),
        "income_band": rng.choice(["<35K", "35-74K", "75-124K", "125K+"], size=h, p=[0.3, 0.4, 0.2, 0.1]),
        "household_size": rng.choice(["1", "2", "3", "4", "5+"], size=h, p=[0.3, 0.35, 0.15, 0.12, 0.08]),
    })

    start = rng.integers(0, 365, size=h)
    rate = np.exp(rng.normal(np.log(1 / 9.0), 0.6, size=h))  # baskets per day
    size_mu = rng.normal(np.log(9.0), 0.4, size=h)
    # scale the rates so the expected line count lands on TARGET_LINES
    mean_size = np.exp(size_mu + 0.5 * 0.6 ** 2)
    # (times 1.21: lines repeating an item in the same basket are merged below)
    rate *= 1.21 * TARGET_LINES / float(np.sum(rate * (N_DAYS - start) * mean_size))
    n_baskets = rng.poisson(rate * (N_DAYS - start))
    basket_household = np.repeat(np.arange(h), n_baskets)
    nb = basket_household.size
    # days: uniform after the start, weekends twice as likely (rejection on a 2:1 acceptance)
    days = np.empty(nb, dtype=np.int64)
    todo = np.arange(nb)
    while todo.size:
        hh = basket_household[todo]
        cand = start[hh] + (rng.random(todo.size) * (N_DAYS - start[hh])).astype(np.int64)
        weekend = ((cand + 5) % 7) >= 5
        ok = rng.random(todo.size) < np.where(weekend, 1.0, 0.5)
        days[todo[ok]] = cand[ok]
        todo = todo[~ok]
    sizes = np.maximum(1, np.round(np.exp(size_mu[basket_household] + rng.normal(0, 0.6, size=nb)))
                       ).astype(np.int64)
    mix = rng.dirichlet([6.0, 1.0, 0.7], size=h)  # store, web, app
    channel = (rng.random(nb)[:, None] > np.cumsum(mix[basket_household], axis=1)).sum(axis=1)
    channel = np.minimum(channel, len(CHANNELS) - 1)
    home_store = rng.integers(0, N_STORES, size=h)
    other_store = rng.integers(0, N_STORES, size=nb)
    store = np.where(rng.random(nb) < 0.85, home_store[basket_household], other_store)

    # lines
    line_basket = np.repeat(np.arange(nb), sizes)
    line_household = basket_household[line_basket]
    cdf = np.cumsum(popularity)
    staples = by_rank[np.minimum(np.searchsorted(cdf, rng.random((h, STAPLES_PER_HOUSEHOLD))), N_ITEMS - 1)]
    staple_cdf = np.cumsum(_zipf_weights(STAPLES_PER_HOUSEHOLD, 0.9))
    n_lines = line_basket.size
    pick = np.minimum(np.searchsorted(staple_cdf, rng.random(n_lines)), STAPLES_PER_HOUSEHOLD - 1)
    from_staples = staples[line_household, pick]
    explore = by_rank[np.minimum(np.searchsorted(cdf, rng.random(n_lines)), N_ITEMS - 1)]
    line_item = np.where(rng.random(n_lines) < STAPLE_SHARE, from_staples, explore)
    # one line per (basket, item)
    key = np.unique(line_basket.astype(np.int64) * N_ITEMS + line_item)
    line_basket, line_item = key // N_ITEMS, key % N_ITEMS
    n_lines = line_basket.size
    quantity = 1 + rng.poisson(0.3, size=n_lines)

    seconds = rng.integers(8 * 3600, 21 * 3600, size=nb)
    first_day = pd.Timestamp(END_DATE - timedelta(days=N_DAYS - 1))
    basket_time = first_day + pd.to_timedelta(days, unit="D") + pd.to_timedelta(seconds, unit="s")
    events = pd.DataFrame({
        C.TIMESTAMP: basket_time[line_basket],
        C.CUSTOMER_ID: customer_ids[basket_household[line_basket]],
        C.ITEM_ID: item_ids[line_item],
        C.EVENT: C.PURCHASE,
        C.CHANNEL: np.asarray(CHANNELS)[channel[line_basket]],
        C.STORE_ID: np.where(channel[line_basket] == 0,
                             np.char.add("S", np.char.zfill(store[line_basket].astype(str), 2)), ""),
        C.ORDER_ID: np.char.add("B", line_basket.astype(str)),
        C.QUANTITY: quantity,
    })
    returned = np.flatnonzero(rng.random(n_lines) < RETURN_SHARE)
    returns = events.iloc[returned].copy()
    returns[C.EVENT] = C.RETURN
    returns[C.TIMESTAMP] = returns[C.TIMESTAMP] + pd.to_timedelta(rng.integers(1, 8, size=returned.size),
                                                                    unit="D")
    returns = returns[returns[C.TIMESTAMP] < pd.Timestamp(END_DATE + timedelta(days=1))]
    returns[C.ORDER_ID] = ""
    events = pd.concat([events, returns], ignore_index=True).sort_values(C.TIMESTAMP, kind="stable")
    events[C.TIMESTAMP] = events[C.TIMESTAMP].dt.strftime("%Y-%m-%dT%H:%M:%SZ")
    return {C.EVENTS: events, C.ITEMS: items, C.CUSTOMERS: customers}


def write_grocery_log(folder: Path, seed: int = DEFAULT_SEED) -> Path:
    """Write the synthetic log as CSV files in ``folder`` (once per seed: reused when already there)."""
    folder = Path(folder) / f"grocery-seed{seed}"
    done = folder / "DONE"
    if done.is_file():
        return folder
    folder.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    for name, frame in grocery_tables(seed).items():
        frame.to_csv(folder / f"{name}.csv", index=False)
    done.write_text(json.dumps({"seed": seed, "seconds": round(time.perf_counter() - started, 1)}))
    return folder


class RssSampler:
    """Samples this process's resident memory every ``interval`` seconds and keeps the peak per step.

    A step ends when the trainer logs ``step <name> done`` (the assemble step clock and the pipeline's timed
    steps); the peak between two such lines is that step's.
    """

    _DONE = re.compile(r"^step (\S+) done")

    def __init__(self, interval: float = 0.02) -> None:
        self.interval = interval
        self.per_step: dict[str, float] = {}
        self._current = 0.0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._page_mb = 4096 / 2 ** 20

    def _rss_mb(self) -> float:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * self._page_mb

    def _run(self) -> None:
        while not self._stop.is_set():
            rss = self._rss_mb()
            with self._lock:
                self._current = max(self._current, rss)
            time.sleep(self.interval)

    def step_done(self, name: str) -> None:
        with self._lock:
            self.per_step[name] = round(max(self._current, self._rss_mb()), 1)
            self._current = 0.0

    @contextmanager
    def running(self) -> Iterator[RssSampler]:
        handler = _StepHandler(self)
        root = logging.getLogger("recsvc_training")
        old_level = root.level
        root.setLevel(min(old_level or logging.INFO, logging.INFO))
        root.addHandler(handler)
        self._thread.start()
        try:
            yield self
        finally:
            self._stop.set()
            self._thread.join()
            root.removeHandler(handler)
            root.setLevel(old_level)


class _StepHandler(logging.Handler):
    def __init__(self, sampler: RssSampler) -> None:
        super().__init__(logging.INFO)
        self.sampler = sampler

    def emit(self, record: logging.LogRecord) -> None:
        match = RssSampler._DONE.match(record.getMessage())
        if match:
            self.sampler.step_done(match.group(1))


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def run(work: Path, seed: int, settings: TrainingSettings) -> dict[str, Any]:
    """Generate (or reuse) the log, time the training run per step with its memory, then the bare fit."""
    started = time.perf_counter()
    data_dir = write_grocery_log(work, seed)
    generate_seconds = time.perf_counter() - started
    root = work / "artifacts"
    sampler = RssSampler()
    with sampler.running():
        cpu_started = _cpu_seconds()
        wall_started = time.perf_counter()
        result = train(data_dir, root, settings, force=True)
        wall = time.perf_counter() - wall_started
        cpu = _cpu_seconds() - cpu_started
    peak_train = peak_rss_mb()
    cpu_started = _cpu_seconds()
    bare, shape = bare_als_fit(data_dir, settings)
    bare_cpu = _cpu_seconds() - cpu_started
    manifest = json.loads((Path(result.path) / "manifest.json").read_text())
    extra = manifest.get("extra", {})
    return {
        "command": f"python -m benchmarks.nightly_run --work {work} --seed {seed}",
        "data": {"folder": str(data_dir), "seed": seed, "generate_seconds": round(generate_seconds, 1),
                 **shape},
        "load_average_1min_at_end": round(os.getloadavg()[0], 1),
        "train_seconds": round(wall, 1),
        "train_cpu_seconds": round(cpu, 1),
        "train_peak_rss_mb": round(peak_train, 1),
        "timings": dict(result.timings),
        "peak_rss_mb_per_step": dict(sampler.per_step),
        "bare_als_seconds": round(bare, 2),
        "bare_als_and_ingest_cpu_seconds": round(bare_cpu, 1),
        "ratio_to_bare_als": round(wall / bare, 1),
        "ranker": {k: v for k, v in extra.get("ranker", {}).items() if k != "feature_gain"},
        "evaluation_ranker": extra.get("evaluation_ranker", {}),
        "models_before": extra.get("models_before"),
        "coldstart": extra.get("coldstart", {}),
        "ann": {k: extra.get(k, {}).get("kind") for k in ("ann", "ann_cosine")},
        "evaluation": {k: result.evaluation.get(k) for k in ("default", "ratios", "gate")},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "recsvc-nightly")
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED)
    parser.add_argument("--results", type=Path, help="also write the measurement as JSON here")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(message)s")
    settings = dataclasses.replace(TrainingSettings(), progress=False)
    out = run(args.work, args.seed, settings)
    text = json.dumps(out, indent=2)
    print(text)
    if args.results is not None:
        args.results.parent.mkdir(parents=True, exist_ok=True)
        args.results.write_text(text + "\n")


if __name__ == "__main__":
    main()
