"""Trainer scale: wall time and peak memory of the single-node trainer and of Spark ``local[2]`` on synthetic logs.

The log (:func:`write_synthetic_log`, deterministic from the seed), for ``n`` events:

* customers ``n / 25`` (so ~25 events each), items ``min(n / 100, 50,000)`` in 200 categories, item popularity
  Zipf-like (rank ** -0.9), each customer with a favourite category (half of their items come from it);
* baskets of 1-8 lines (mean ~4), one basket per customer visit; a visit is on ``web`` (45 %), ``app``
  (30 %) or ``store`` (25 %, one of 20 stores, the customer's home store 80 % of the time);
* event types per line: view 40 %, cart 15 %, purchase 43 %, return 2 % (returns in the customer's basket);
  quantity 1-3, a price per item; timestamps uniform over the 365 days ending 2026-11-30;
* ``order_id`` on web and app purchases (none in store: the basket is then customer x day);
* written as ``events.parquet`` (string columns) and ``items.csv``; no customers or identities table.

Both engines then do the same work: ingest and validation, ALS (64 factors, 15 iterations), popularity,
history and rhythm, co-purchase, RFM, publish. The single-node run has the evaluation and the learned ranker off
(``training.evaluate = false``, ``training.learn_ranker = false``), which the Spark engine does not run either;
there is no customers table, so neither builds LightFM. Each run is its own ``recsvc train`` process; peak
memory is the largest sum of RSS over the process and its children (the JVM for Spark), sampled every 0.2 s.

Run::

    python -m benchmarks.trainer_scale --events 1000000 3000000 --work /tmp/trainer_scale

The table goes to ``benchmarks/results/trainer_scale.json`` and ``.md`` (README, Trainer on Spark).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

RESULTS = Path(__file__).resolve().parent / "results"
END = np.datetime64("2026-11-30T23:59:59", "s")
SPAN_DAYS = 365


def write_synthetic_log(out: Path, n_events: int, seed: int = 0) -> Path:
    """Write the synthetic log of ``n_events`` events into ``out`` (see the module docstring); cached by size."""
    import pandas as pd

    out.mkdir(parents=True, exist_ok=True)
    marker = out / "spec.json"
    spec = {"events": n_events, "seed": seed, "version": 1}
    if marker.is_file() and json.loads(marker.read_text()) == spec:
        return out
    rng = np.random.default_rng(seed)
    n_customers = max(n_events // 25, 10)
    n_items = int(min(max(n_events // 100, 50), 50_000))
    n_categories = 200
    item_category = rng.integers(0, n_categories, n_items)
    popularity = (np.arange(1, n_items + 1, dtype=np.float64) ** -0.9)
    rng.shuffle(popularity)
    popularity /= popularity.sum()
    by_category = [np.flatnonzero(item_category == c) for c in range(n_categories)]

    lines_per_basket = rng.integers(1, 9, size=n_events // 4 + 1)
    lines_per_basket = lines_per_basket[np.cumsum(lines_per_basket) <= n_events]
    n_baskets = lines_per_basket.size
    n = int(lines_per_basket.sum())
    basket_of_line = np.repeat(np.arange(n_baskets), lines_per_basket)
    basket_customer = rng.integers(0, n_customers, n_baskets)
    favourite = rng.integers(0, n_categories, n_customers)
    home_store = rng.integers(0, 20, n_customers)
    channel_of_basket = rng.choice(np.array(["web", "app", "store"]), n_baskets, p=[0.45, 0.30, 0.25])
    store_of_basket = np.where(rng.random(n_baskets) < 0.8, home_store[basket_customer],
                               rng.integers(0, 20, n_baskets))
    seconds = rng.integers(0, SPAN_DAYS * 86_400, n_baskets)

    customer = basket_customer[basket_of_line]
    item = rng.choice(n_items, n, p=popularity)
    from_favourite = rng.random(n) < 0.5
    fav = favourite[customer[from_favourite]]
    sizes = np.array([b.size for b in by_category])
    starts = np.r_[0, np.cumsum(sizes)[:-1]]
    flat = np.concatenate(by_category)
    ok = sizes[fav] > 0
    choice = starts[fav] + (rng.random(fav.size) * np.maximum(sizes[fav], 1)).astype(np.int64)
    item_fav = np.where(ok, flat[np.minimum(choice, flat.size - 1)], item[from_favourite])
    item[from_favourite] = item_fav
    event = rng.choice(np.array(["view", "cart", "purchase", "return"]), n, p=[0.40, 0.15, 0.43, 0.02])
    channel = channel_of_basket[basket_of_line]
    in_store = channel == "store"
    store = np.where(in_store, np.char.add("S", np.char.zfill(store_of_basket[basket_of_line].astype(str), 2)), "")
    order = np.where(~in_store & (event == "purchase"), np.char.add("O", basket_of_line.astype(str)), "")
    offset = rng.integers(0, 1800, n)  # lines of a visit within half an hour
    timestamp = END - np.timedelta64(SPAN_DAYS * 86_400, "s") + (seconds[basket_of_line] + offset).astype(
        "timedelta64[s]")
    timestamp = np.minimum(timestamp, END)
    prices = np.round(rng.gamma(2.0, 4.0, n_items) + 0.5, 2)
    events = pd.DataFrame({
        "timestamp": np.datetime_as_string(timestamp, unit="s"),
        "customer_id": np.char.add("C", np.char.zfill(customer.astype(str), 8)),
        "item_id": np.char.add("I", np.char.zfill(item.astype(str), 6)),
        "event": event, "channel": channel, "store_id": store, "order_id": order,
        "quantity": rng.integers(1, 4, n).astype(str), "price": prices[item].astype(str),
    })
    events.to_parquet(out / "events.parquet", index=False)
    pd.DataFrame({"item_id": np.char.add("I", np.char.zfill(np.arange(n_items).astype(str), 6)),
                  "title": [f"Item {i}" for i in range(n_items)],
                  "category": np.char.add("cat", item_category.astype(str)), "price": prices.astype(str)}
                 ).to_csv(out / "items.csv", index=False)
    marker.write_text(json.dumps(spec))
    return out


def _tree_rss_bytes(pid: int, cpu: dict[int, float] | None = None) -> int:
    """RSS of ``pid`` and every descendant (Linux /proc); ``cpu`` collects each one's CPU seconds so far."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            children.setdefault(int(fields[1]), []).append(int(entry))
        except OSError:
            continue
    total, todo = 0, [pid]
    while todo:
        current = todo.pop()
        todo.extend(children.get(current, []))
        try:
            if cpu is not None:
                with open(f"/proc/{current}/stat") as f:
                    ticks = f.read().rsplit(")", 1)[1].split()[11:15]  # utime stime cutime cstime
                cpu[current] = max(cpu.get(current, 0.0), sum(int(t) for t in ticks) / os.sysconf("SC_CLK_TCK"))
            with open(f"/proc/{current}/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1]) * 1024
        except OSError:
            continue
    return total


def run_measured(command: list[str], env: dict[str, str]) -> dict[str, Any]:
    """Run ``command``; wall seconds, peak tree RSS (MiB), exit code and the last lines of its output."""
    started = time.perf_counter()
    with tempfile.TemporaryFile() as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env)
        peak = 0
        cpu: dict[int, float] = {}
        stop = threading.Event()

        def sample() -> None:
            nonlocal peak
            while not stop.is_set():
                peak = max(peak, _tree_rss_bytes(process.pid, cpu))
                stop.wait(0.2)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        code = process.wait()
        stop.set()
        sampler.join()
        log.seek(0)
        tail = log.read().decode(errors="replace").splitlines()[-25:]
    # CPU seconds of the tree as last sampled (up to 0.2 s before the end): on a shared machine the wall time
    # depends on the neighbours, the CPU time much less
    return {"seconds": round(time.perf_counter() - started, 1), "cpu_seconds": round(sum(cpu.values()), 1),
            "peak_rss_mib": round(peak / 2**20),
            "exit_code": code, "tail": tail}


def run_engine(engine: str, data: Path, work: Path, driver_memory: str) -> dict[str, Any]:
    artifacts = work / f"artifacts-{engine}-{data.name}"
    config = work / "scale.toml"
    config.write_text("[training]\nevaluate = false\nlearn_ranker = false\nprogress = false\n")
    env = dict(os.environ, RECSVC_CONFIG=str(config), SPARK_LOCAL_IP=os.environ.get("SPARK_LOCAL_IP", "127.0.0.1"),
               PYSPARK_SUBMIT_ARGS=f"--driver-memory {driver_memory} pyspark-shell", OMP_NUM_THREADS="2")
    command = [sys.executable, "-m", "recsvc", "train", "--data", str(data), "--artifacts", str(artifacts),
               "--no-progress"]
    if engine == "spark":
        command += ["--engine", "spark", "--master", "local[2]"]
    result = run_measured(command, env)
    result["engine"] = "spark local[2]" if engine == "spark" else "single-node"
    return result


def format_table(rows: list[dict[str, Any]]) -> str:
    lines = ["| events | engine | wall time (s) | CPU time (s) | peak memory (MiB) | exit |",
             "|---|---|---|---|---|---|"]
    for row in rows:
        cpu = f"{row['cpu_seconds']:.0f}" if "cpu_seconds" in row else "not measured"
        lines.append(f"| {row['events']:,} | {row['engine']} | {row['seconds']:.0f} | {cpu} | "
                     f"{row['peak_rss_mib']:,} | {row['exit_code']} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, nargs="+", default=[1_000_000, 3_000_000])
    parser.add_argument("--engines", nargs="+", default=["single", "spark"], choices=["single", "spark"])
    parser.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "trainer_scale")
    parser.add_argument("--driver-memory", default="8g", help="Spark driver memory (local mode: all of Spark)")
    parser.add_argument("--out", type=Path, default=RESULTS / "trainer_scale")
    args = parser.parse_args(argv)
    previous = json.loads(args.out.with_suffix(".json").read_text()) if args.out.with_suffix(".json").is_file() else []
    rows: list[dict[str, Any]] = [r for r in previous if not (r["events"] in args.events and
                                  r["engine"].split()[0] in {("spark" if e == "spark" else "single-node")
                                                             for e in args.engines})]
    for n in args.events:
        data = write_synthetic_log(args.work / f"log-{n}", n)
        for engine in args.engines:
            result = run_engine(engine, data, args.work, args.driver_memory)
            result["events"] = n
            rows.append(result)
            print(f"{n:,} events, {result['engine']}: {result['seconds']} s, {result['peak_rss_mib']} MiB, "
                  f"exit {result['exit_code']}", flush=True)
            if result["exit_code"]:
                print("\n".join(result["tail"]), flush=True)
            args.out.parent.mkdir(parents=True, exist_ok=True)
            rows.sort(key=lambda r: (r["events"], r["engine"]))
            args.out.with_suffix(".json").write_text(json.dumps(rows, indent=1))
            args.out.with_suffix(".md").write_text(format_table(rows) + "\n")
    print(format_table(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
