"""Is the rebuy-due audience better than a naive one? Precision and lift on Ta Feng and Online Retail.

As of a cut-off day, the purchase history of everything before it is built by the trainer's own code
(ingest, id maps, :func:`recsvc_training.models.repurchase.build_repurchase`: the arrays the artifact set
carries), and the campaign's due rule (:func:`recsvc_training.campaigns.rules.due_pairs`) flags the (customer,
item) pairs due within the next ``--window`` (14) days. Truth: the customer buys the item in the ``window``
days from the cut-off on. Audiences compared, on the same history:

* **due** — the campaign's due rule (own rhythm, else the item's interval; at most half an interval overdue);
* **due, own rhythm only** — the same rule with ``rhythm = "own"``;
* **everyone who bought it before** — every (customer, item) pair of the history;
* **random sample of them** — as many pairs as the due audience, drawn uniformly from the history's pairs;
* **random buyers of the same items** — for each item, as many of its past buyers as the due audience holds,
  drawn at random (the naive campaign for that item, of the same size).

Precision is the share of an audience's pairs bought in the window; lift is the due precision over the
baseline's. The same at category level (customer, category) where the data has categories (Ta Feng).

    python -m benchmarks.campaign_due                     # both data sets, cut-off 14 days before the end
    python -m benchmarks.campaign_due --dataset tafeng --as-of 2001-02-01

Imports go to ``--work`` (default ``/tmp/recsvc-campaign-due``) once; results to
``benchmarks/results/campaign_due.json`` and ``.md``.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import numpy as np

from recsvc.config import TrainingSettings
from recsvc.days import day_of_iso, iso_of_day
from recsvc_training.campaigns.rules import PurchaseTable, due_pairs
from recsvc_training.input import columns as C
from recsvc_training.input.id_maps import build_id_maps, event_rows
from recsvc_training.input.importers import IMPORTERS
from recsvc_training.input.ingest import load_training_data
from recsvc_training.models.repurchase import build_repurchase

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
SOURCES = {"tafeng": DATA / "tafeng.csv.gz", "online_retail": DATA / "online_retail.csv.gz"}
RESULTS = Path(__file__).resolve().parent / "results"


def _precision(keys: np.ndarray, truth: np.ndarray) -> float:
    return float(np.isin(keys, truth).mean()) if keys.size else float("nan")


def evaluate(folder: Path, as_of: int | None, window: int, seed: int, work: Path) -> dict[str, Any]:
    data = load_training_data(folder, TrainingSettings(), work / "quarantine")
    end_day = int(data.events[C.DAY].max())
    cutoff = as_of if as_of is not None else end_day - window + 1
    history = data.before(cutoff)
    maps = build_id_maps(history)
    rows = event_rows(history, maps)
    arrays = build_repurchase(rows, maps, end_day=cutoff - 1)
    items = data.items.set_index(C.ITEM_ID).reindex(maps.item_ids)
    categories = items[C.CATEGORY].fillna("").astype(str).to_numpy()
    names, codes = np.unique(categories, return_inverse=True)
    purchases = PurchaseTable(indptr=arrays["hist_indptr"], items=arrays["hist_items"], count=arrays["hist_count"],
                              first_day=arrays["hist_first_day"], last_day=arrays["hist_last_day"],
                              item_interval=arrays["item_repurchase_days"].astype(np.float64),
                              item_category=codes.astype(np.int64), category_names=names)
    today = cutoff - 1  # the campaign runs the morning after the model's last day
    n_items = len(maps.item_ids)
    n_categories = len(names)

    # truth: (customer, item) bought in [cutoff, cutoff + window), customers the history knows
    future = data.events[(data.events[C.DAY] >= cutoff) & (data.events[C.DAY] < cutoff + window)
                         & (data.events[C.EVENT] == C.PURCHASE)]
    cust = np.searchsorted(maps.customer_ids, future[C.CUSTOMER_ID].to_numpy().astype(maps.customer_ids.dtype))
    cust = np.minimum(cust, len(maps.customer_ids) - 1)
    known = maps.customer_ids[cust] == future[C.CUSTOMER_ID].to_numpy()
    item = np.searchsorted(maps.item_ids, future[C.ITEM_ID].to_numpy().astype(maps.item_ids.dtype))
    item = np.minimum(item, n_items - 1)
    known &= maps.item_ids[item] == future[C.ITEM_ID].to_numpy()
    cust, item = cust[known].astype(np.int64), item[known].astype(np.int64)
    truth_item = np.unique(cust * n_items + item)
    truth_cat = np.unique(cust * n_categories + codes[item])

    owner = purchases.owner
    all_pairs = owner * n_items + purchases.items.astype(np.int64)
    rng = np.random.default_rng(seed)
    out: dict[str, Any] = {"cutoff": iso_of_day(cutoff), "window_days": window, "customers": len(maps.customer_ids),
                           "history_pairs": int(all_pairs.size), "truth_pairs": int(truth_item.size)}

    def block(level: str, due_keys: np.ndarray, own_keys: np.ndarray, naive: np.ndarray, truth: np.ndarray,
              unit: int, unit_of: np.ndarray) -> dict[str, Any]:
        p_due = _precision(due_keys, truth)
        random = rng.choice(naive, size=min(due_keys.size, naive.size), replace=False) if due_keys.size else naive[:0]
        # same items (or categories), same number per item, drawn from that item's past buyers
        matched = []
        per_unit = np.bincount(due_keys % unit, minlength=unit)
        naive_unit = naive % unit
        order = np.argsort(naive_unit, kind="stable")
        starts = np.searchsorted(naive_unit[order], np.arange(unit))
        ends = np.searchsorted(naive_unit[order], np.arange(unit), side="right")
        for u in np.flatnonzero(per_unit):
            pool = naive[order[starts[u]:ends[u]]]
            matched.append(rng.choice(pool, size=min(int(per_unit[u]), pool.size), replace=False))
        matched_keys = np.concatenate(matched) if matched else naive[:0]
        rows = {
            "due": (due_keys.size, p_due),
            "due, own rhythm only": (own_keys.size, _precision(own_keys, truth)),
            "everyone who bought it before": (naive.size, _precision(naive, truth)),
            "random sample of them (same size)": (random.size, _precision(random, truth)),
            "random past buyers of the same items (same size)": (matched_keys.size, _precision(matched_keys, truth)),
        }
        recall = float(np.isin(truth, due_keys).mean()) if truth.size else float("nan")
        repeat_truth = truth[np.isin(truth, naive)]
        return {"level": level, "audiences": {k: {"size": int(s), "precision": p,
                                                  "lift_of_due": (p_due / p) if p > 0 else float("nan")}
                                              for k, (s, p) in rows.items()},
                "share_of_repeat_purchases_flagged": float(np.isin(repeat_truth, due_keys).mean())
                if repeat_truth.size else float("nan"), "share_of_all_purchases_flagged": recall}

    t = time.perf_counter()
    due = due_pairs(purchases, today, within_days=window)
    own = due_pairs(purchases, today, within_days=window, rhythm="own")
    out["item"] = block("item", due.customer * n_items + due.item, own.customer * n_items + own.item,
                        all_pairs, truth_item, n_items, purchases.items)
    if n_categories > 1:
        cat_due, cat_own = [], []
        for code in range(n_categories):
            if not names[code]:
                continue
            d = due_pairs(purchases, today, category=code, within_days=window)
            o = due_pairs(purchases, today, category=code, within_days=window, rhythm="own")
            cat_due.append(d.customer * n_categories + code)
            cat_own.append(o.customer * n_categories + code)
        naive_cat = np.unique(owner * n_categories + codes[purchases.items])
        out["category"] = block("category", np.concatenate(cat_due), np.concatenate(cat_own), naive_cat,
                                truth_cat, n_categories, codes)
    out["seconds_due_rule"] = round(time.perf_counter() - t, 2)
    return out


def markdown(results: dict[str, Any]) -> str:
    lines = ["| data set (cut-off) | level | audience | pairs | precision | lift of due |",
             "|---|---|---|---:|---:|---:|"]
    for name, r in results.items():
        for level in ("item", "category"):
            if level not in r:
                continue
            for audience, v in r[level]["audiences"].items():
                lines.append(f"| {name} ({r['cutoff']}) | {level} | {audience} | {v['size']:,} | "
                             f"{v['precision']:.4f} | {v['lift_of_due']:.2f}× |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", choices=[*SOURCES, "all"], default="all")
    parser.add_argument("--as-of", default="", help="cut-off date YYYY-MM-DD (default: window days before the end)")
    parser.add_argument("--window", type=int, default=14)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--work", default="/tmp/recsvc-campaign-due")
    parser.add_argument("--out", default=str(RESULTS / "campaign_due"))
    args = parser.parse_args()
    work = Path(args.work)
    results = {}
    for name in (SOURCES if args.dataset == "all" else [args.dataset]):
        if not SOURCES[name].exists():
            print(f"{name}: {SOURCES[name]} not found, skipped")
            continue
        folder = work / name
        if not (folder / "events.csv.gz").exists() and not (folder / "events.csv").exists():
            print(IMPORTERS[name](SOURCES[name], folder))
        results[name] = evaluate(folder, day_of_iso(args.as_of) if args.as_of else None, args.window, args.seed,
                                 work / f"{name}-run")
        print(json.dumps(results[name], indent=1))
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(results, indent=2) + "\n")
    out.with_suffix(".md").write_text(markdown(results))
    print(markdown(results))


if __name__ == "__main__":
    main()
