"""Is the rebuy-due audience better than a naive one? Precision and lift on Ta Feng and Online Retail.

As of a cut-off day, the purchase history of everything before it is built by the trainer's own code
(ingest, id maps, :func:`recsvc_training.models.repurchase.build_repurchase`: the arrays the artifact set
carries), and the campaign's due rule (:func:`recsvc_training.campaigns.rules.due_pairs`) flags the (customer,
item) pairs due within the next ``--window`` (14) days. Truth: the customer buys the item in the ``window``
days from the cut-off on. Audiences compared, on the same history:

* **due** — the campaign's due rule in its default form (the customer's own rhythm, at most half an interval
  overdue) and variants (:data:`VARIANTS`: the overdue bound, the item's interval as a fallback or alone);
* **everyone who bought it before** — every (customer, item) pair of the history;
* **random sample of them** — as many pairs as the due audience, drawn uniformly from the history's pairs;
* **random past buyers of the same items** — for each item, as many of its past buyers as a due audience
  holds, drawn at random (the naive campaign for those items, of the same size; computed for every variant).

Precision is the share of an audience's pairs bought in the window; lift is a due audience's precision over
the baseline's. The same at category level (customer, category) where the data has categories (Ta Feng).

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
#: The due rule's variants measured; the first is the default of a spec's due rule.
DEFAULT = "own rhythm, ≤ 0.5 interval overdue (default)"
VARIANTS: dict[str, dict[str, Any]] = {
    DEFAULT: {"rhythm": "own", "max_overdue": 0.5},
    "own rhythm, ≤ 0.25 overdue": {"rhythm": "own", "max_overdue": 0.25},
    "own rhythm, ≤ 1 interval overdue": {"rhythm": "own", "max_overdue": 1.0},
    "own rhythm, else the item's interval": {"rhythm": "own_or_item", "max_overdue": 0.5},
    "the item's interval only": {"rhythm": "item", "max_overdue": 0.5},
}


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

    def matched_random(keys: np.ndarray, naive: np.ndarray, unit: int) -> np.ndarray:
        """For each item (or category), as many of its past buyers as ``keys`` holds, drawn at random."""
        per_unit = np.bincount(keys % unit, minlength=unit)
        naive_unit = naive % unit
        order = np.argsort(naive_unit, kind="stable")
        bounds = np.searchsorted(naive_unit[order], np.arange(unit + 1))
        picked = [rng.choice(naive[order[bounds[u]:bounds[u + 1]]], size=int(per_unit[u]), replace=False)
                  for u in np.flatnonzero(per_unit)]
        return np.concatenate(picked) if picked else naive[:0]

    def block(level: str, variants: dict[str, np.ndarray], naive: np.ndarray, truth: np.ndarray,
              unit: int) -> dict[str, Any]:
        main = variants[DEFAULT]
        p_main = _precision(main, truth)
        random = rng.choice(naive, size=min(main.size, naive.size), replace=False)
        rows: dict[str, Any] = {}
        for name, keys in variants.items():
            p = _precision(keys, truth)
            p_matched = _precision(matched_random(keys, naive, unit), truth)
            rows[name] = {"size": int(keys.size), "precision": p,
                          "matched_random_precision": p_matched,
                          "lift_over_matched_random": p / p_matched if p_matched > 0 else float("nan")}
        p_naive, p_random = _precision(naive, truth), _precision(random, truth)
        repeat_truth = truth[np.isin(truth, naive)]
        return {"level": level, "due": rows,
                "everyone who bought it before": {"size": int(naive.size), "precision": p_naive,
                                                  "lift_of_due": p_main / p_naive},
                "random sample of them (same size as due)": {"size": int(random.size), "precision": p_random,
                                                             "lift_of_due": p_main / p_random},
                "repeat purchases in the window flagged (recall)": float(np.isin(repeat_truth, main).mean())}

    t = time.perf_counter()
    variants: dict[str, np.ndarray] = {}
    cat_variants: dict[str, np.ndarray] = {}
    for name, kwargs in VARIANTS.items():
        pairs = due_pairs(purchases, today, within_days=window, **kwargs)
        variants[name] = pairs.customer * n_items + pairs.item
        if n_categories > 1:
            cat = due_pairs(purchases, today, within_days=window, by_category=True, **kwargs)
            cat_keys = cat.customer * n_categories + codes[cat.item]
            cat_variants[name] = cat_keys[names[codes[cat.item]] != ""]
    out["item"] = block("item", variants, all_pairs, truth_item, n_items)
    if n_categories > 1:
        naive_cat = np.unique(owner * n_categories + codes[purchases.items])
        naive_cat = naive_cat[names[naive_cat % n_categories] != ""]
        out["category"] = block("category", cat_variants, naive_cat, truth_cat, n_categories)
    out["seconds_due_rule"] = round(time.perf_counter() - t, 2)
    return out


def markdown(results: dict[str, Any]) -> str:
    lines = ["| data set (cut-off) | level | audience | pairs | precision | lift |", "|---|---|---|---:|---:|---:|"]
    for name, r in results.items():
        for level in ("item", "category"):
            if level not in r:
                continue
            b = r[level]
            main = b["due"][DEFAULT]
            where = f"{name} ({r['cutoff']})"
            for audience, v in b["due"].items():
                lines.append(f"| {where} | {level} | due: {audience} | {v['size']:,} | {v['precision']:.4f} | "
                             f"{v['lift_over_matched_random']:.2f}× over random past buyers of the same items "
                             f"({v['matched_random_precision']:.4f}) |")
            for audience in ("everyone who bought it before", "random sample of them (same size as due)"):
                v = b[audience]
                lines.append(f"| {where} | {level} | {audience} | {v['size']:,} | {v['precision']:.4f} | "
                             f"due {v['lift_of_due']:.2f}× |")
            lines.append(f"| {where} | {level} | recall of due: repeat purchases in the window it flagged | | "
                         f"{b['repeat purchases in the window flagged (recall)']:.4f} | |")
            del main
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
