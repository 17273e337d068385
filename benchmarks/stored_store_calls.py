"""Store calls on the fast path: what store-specific live ranking gains over the channel's stored list
filtered by the store's stock (issue 16), measured by NDCG@10 on a held-out window of the bundled sample.

Ta Feng has no store ids (one chain, no per-store popularity), so there a store call ranks exactly what the
channel call ranks; the sample retailer has stores, per-store popularity and stock, so it is where the two
can differ. The command::

    python -m benchmarks.stored_store_calls --out benchmarks/results/stored_store_calls.json

writes the sample, trains on everything before the last ``--test-days`` days (stored lists included), and for
every customer who bought in a store in the test window asks Recommend for the store they bought in most,
twice: ranked live (store popularity in the pool, the model without stored lists) and from the stored list of
the ``store`` channel filtered by that store's stock. Truth: the items they bought in the test window. It
also reports how deep into the stored list the stock filter had to read for 10 items (what
``stored_list_length`` must cover) and how many calls ran short and were ranked live.
"""

from __future__ import annotations

import argparse
import dataclasses
import gzip
import json
import shutil
import tempfile
from collections import Counter
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from recsvc.artifacts import load_current
from recsvc.artifacts.parts.stored_lists import StoredLists
from recsvc.config import TrainingSettings
from recsvc.ranking import LoadedModel, RecommendationEngine, RecommendQuery


class _Stock:
    def __init__(self, model: LoadedModel, stock: pd.DataFrame) -> None:
        self._by_store: dict[str, np.ndarray] = {}
        for store, rows in stock.groupby("store_id"):
            mask = np.zeros(model.n_items, dtype=bool)
            found = model.items.lookup(list(rows.loc[rows["quantity_on_hand"].astype(float) > 0, "item_id"]))
            mask[found[found >= 0]] = True
            self._by_store[str(store)] = mask

    def in_stock(self, store_id: str) -> np.ndarray | None:
        return self._by_store.get(store_id)


def ndcg_at_10(ranked: list[int], truth: set[int]) -> float:
    gains = sum(1.0 / np.log2(i + 2) for i, r in enumerate(ranked[:10]) if r in truth)
    ideal = sum(1.0 / np.log2(i + 2) for i in range(min(10, len(truth))))
    return float(gains / ideal) if ideal else 0.0


def main(argv: list[str] | None = None) -> int:
    from recsvc_training.pipeline import train
    from recsvc_training.sample import generate_sample

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="benchmarks/results/stored_store_calls.json")
    parser.add_argument("--customers", type=int, default=1000)
    parser.add_argument("--items", type=int, default=300)
    parser.add_argument("--days", type=int, default=150)
    parser.add_argument("--test-days", type=int, default=14)
    args = parser.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="stored-store-"))
    try:
        full, data = work / "full", work / "train"
        generate_sample(full, n_customers=args.customers, n_items=args.items, days=args.days)
        events = pd.read_csv(full / "events.csv.gz", dtype=str, keep_default_na=False)
        day = pd.to_datetime(events["timestamp"], errors="coerce", utc=True)
        cutoff = day.max().normalize() - pd.Timedelta(days=args.test_days)
        data.mkdir()
        for name in ("customers.csv", "identities.csv", "items.csv", "stock.csv"):
            shutil.copy(full / name, data / name)
        with gzip.open(data / "events.csv.gz", "wt") as out:
            events[~(day >= cutoff)].to_csv(out, index=False)
        test = events[(day >= cutoff) & (events["event"] == "purchase")]
        train(data, work / "art", TrainingSettings(progress=False, evaluate=False))
        served = load_current(work / "art")
        model = LoadedModel(served)
        older = dataclasses.replace(served, arrays={k: v for k, v in served.arrays.items()
                                                    if k not in StoredLists.ARRAYS})
        stock = _Stock(model, pd.read_csv(full / "stock.csv", dtype=str))
        created = datetime.fromisoformat(model.created_at)
        fast = RecommendationEngine(model, clock=lambda: created, stock=stock)
        live = RecommendationEngine(LoadedModel(older), clock=lambda: created, stock=stock)
        lists = model.parts[StoredLists]
        scores: dict[str, list[float]] = {"live_store": [], "stored_filtered": []}
        from_stored = 0
        depths: list[int | None] = []
        for customer, rows in test.groupby("customer_id"):
            row = model.resolve_customer(str(customer))
            in_store = rows[rows["store_id"] != ""]
            if row < 0 or lists.slot(row) < 0 or in_store.empty:
                continue
            store = Counter(in_store["store_id"]).most_common(1)[0][0]
            truth = {int(r) for r in model.items.lookup(list(rows["item_id"])) if r >= 0}
            query = RecommendQuery(customer_id=model.customer_id(row), channel="store", store_id=store, num_items=10)
            a, b = live.recommend(query), fast.recommend(query)
            # how deep into the stored list the stock filter read for the 10 items (None: it ran short)
            stored_items = lists.items[model.channel_row("store"), lists.slot(row)].tolist()
            at = [stored_items.index(r) if r in stored_items else -1
                  for r in (model.items.row(s.item_id) for s in b.items)]
            depths.append(max(at) + 1 if at and min(at) >= 0 else None)
            from_stored += a != b
            for key, result in (("live_store", a), ("stored_filtered", b)):
                scores[key].append(ndcg_at_10([model.items.row(s.item_id) for s in result.items], truth))
        report: dict[str, Any] = {key: round(float(np.mean(v)), 4) for key, v in scores.items()}
        read = np.array([d for d in depths if d is not None])
        report.update(depth_read_p50=float(np.percentile(read, 50)) if read.size else None,
                      depth_read_p99=float(np.percentile(read, 99)) if read.size else None,
                      depth_read_max=int(read.max()) if read.size else None,
                      stored_length=lists.length, fell_back_to_live=sum(d is None for d in depths))
        report.update(customers=len(scores["live_store"]), answers_that_differ=from_stored,
                      loss_share=round(1 - report["stored_filtered"] / report["live_store"], 4)
                      if report["live_store"] else None,
                      command="python -m benchmarks.stored_store_calls " + " ".join(argv or []),
                      sample={"customers": args.customers, "items": args.items, "days": args.days,
                              "test_days": args.test_days})
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(report, indent=2))
        print(json.dumps(report, indent=2))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
