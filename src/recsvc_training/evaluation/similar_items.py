"""SimilarItems measured: does the item a customer bought next appear among the items similar to what they
bought before, and are the similar items of the same category?

Issue 14: on the bundled sample "similar to crispbread" returned a garden hose and a pram (ALS cosine on a
small log). Protocol, for a window of days:

- **pairs**: for every basket in the window, the customer's previous basket (any day before it); every item
  ``a`` of the previous basket with every item ``b`` of this one (``b != a``, both in the catalog), each
  (customer, a, b) once; at most ``max_pairs`` pairs, drawn with a fixed seed;
- **hit_rate@10**: the share of pairs where ``b`` is among the 10 items similar to ``a``;
- **category_match@10**: over the same queries, the share of the similar items in ``a``'s category (items
  without a category are left out; NaN when the catalog has none);
- **answered**: the share of queries with at least one similar item.

Every method is asked through the serving code (:func:`recsvc.ranking.similar.similar_rows`), so the
numbers are those of what SimilarItems would serve. The trainer chooses the method with the highest
hit_rate@10 on the validation window (the ``eval_test_days`` before a set's cut-off) with models built
before it, and records it (``extra.similar_items``); the evaluation also scores every method on its test
window.

Reproduce the README table (choice on the window before the test window, numbers on the test window)::

    python -m recsvc_training.evaluation.similar_items --data /tmp/tafeng
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import math
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp

from recsvc.artifacts import ArtifactSet
from recsvc.artifacts.parts.catalog import ITEM_IDS
from recsvc.artifacts.parts.history import HIST_INDPTR, HIST_ITEMS
from recsvc.artifacts.parts.item_neighbours import ItemNeighbours
from recsvc.artifacts.parts.similar_items import DEFAULT_METHOD, NEEDS_KNN, SIMILAR_EXTRA, SIMILAR_METHODS
from recsvc.config import load_settings
from recsvc.ranking.model import LoadedModel
from recsvc.ranking.similar import similar_rows
from recsvc_training.assemble import build_artifacts
from recsvc_training.input import columns as C
from recsvc_training.input.dataset import TrainingData
from recsvc_training.input.ingest import load_training_data
from recsvc_training.models.item_knn import build_item_neighbours

logger = logging.getLogger(__name__)

K = 10
DEFAULT_MAX_PAIRS = 20_000
_SEED = 0


@dataclass(frozen=True)
class Pairs:
    """(previous-basket item, next-basket item) rows of a model's catalog."""

    a: np.ndarray
    b: np.ndarray

    def __len__(self) -> int:
        return int(self.a.size)


def next_basket_pairs(events: pd.DataFrame, start_day: int, end_day: int, item_ids: np.ndarray,
                      max_pairs: int = DEFAULT_MAX_PAIRS, seed: int = _SEED) -> Pairs:
    """The pairs of the window ``start_day <= day < end_day`` (see the module docstring); ``item_ids`` is the
    model's sorted catalog."""
    bought = events[events[C.EVENT].to_numpy() == C.PURCHASE]
    bought = bought[bought[C.DAY].to_numpy() < end_day]
    query = bought[C.ITEM_ID].astype(str).to_numpy().astype(np.str_)
    pos = np.minimum(np.searchsorted(item_ids, query), max(item_ids.size - 1, 0))
    item = np.where(item_ids[pos] == query, pos, -1) if item_ids.size else np.full(query.size, -1)
    customer = bought[C.CUSTOMER_ID].astype(str).to_numpy()
    basket = (bought[C.BASKET_ID].astype(str).to_numpy() if C.BASKET_ID in bought
              else np.char.add(customer.astype(np.str_), bought[C.DAY].astype(str).to_numpy().astype(np.str_)))
    frame = pd.DataFrame({"c": pd.factorize(customer)[0], "basket": pd.factorize(basket)[0], "i": item,
                          "day": bought[C.DAY].to_numpy(dtype=np.int64)})
    frame = frame[frame["i"] >= 0]
    baskets = frame.groupby("basket").agg(c=("c", "first"), day=("day", "min")).reset_index()
    baskets = baskets.sort_values(["c", "day", "basket"])
    baskets["prev"] = baskets.groupby("c")["basket"].shift(1)
    later = baskets[(baskets["day"] >= start_day) & baskets["prev"].notna()]
    later = later.assign(prev=later["prev"].astype(np.int64))
    now = frame[frame["basket"].isin(later["basket"])].merge(later[["basket", "prev"]], on="basket")
    before = frame[frame["basket"].isin(later["prev"])][["basket", "i"]].rename(columns={"basket": "prev",
                                                                                        "i": "a"})
    pairs = now.merge(before, on="prev")
    pairs = pairs[pairs["a"] != pairs["i"]].drop_duplicates(["c", "a", "i"])
    if len(pairs) > max_pairs:
        pairs = pairs.iloc[np.sort(np.random.default_rng(seed).choice(len(pairs), max_pairs, replace=False))]
    return Pairs(pairs["a"].to_numpy(dtype=np.int64), pairs["i"].to_numpy(dtype=np.int64))


def measure_methods(model: LoadedModel, pairs: Pairs, knn: ItemNeighbours | None,
                    methods: Sequence[str] = SIMILAR_METHODS) -> dict[str, dict[str, float]]:
    """hit_rate@10, category_match@10 and answered per method on ``pairs`` (methods needing ``knn`` are
    skipped without it)."""
    categories = np.asarray(model.item_categories).astype(str)
    has_categories = bool(np.any(categories != ""))
    queries = np.unique(pairs.a)
    out: dict[str, dict[str, float]] = {}
    for method in methods:
        if method in NEEDS_KNN and knn is None:
            continue
        started = time.perf_counter()
        lists = np.full((queries.size, K), -1, dtype=np.int64)
        for q, row in enumerate(queries.tolist()):
            rows = similar_rows(model, row, K, method=method, knn=knn)[0]
            lists[q, : rows.size] = rows
        at = np.searchsorted(queries, pairs.a)
        hits = (lists[at] == pairs.b[:, None]).any(axis=1)
        filled = lists[at] >= 0
        answered = filled.any(axis=1)
        match = math.nan
        if has_categories:
            own = categories[pairs.a]
            same = (categories[np.maximum(lists[at], 0)] == own[:, None]) & filled
            usable = (own != "") & answered
            if usable.any():
                match = float((same[usable].sum(axis=1) / filled[usable].sum(axis=1)).mean())
        out[method] = {f"hit_rate@{K}": float(hits.mean()) if len(pairs) else math.nan,
                       f"category_match@{K}": match, "answered": float(answered.mean()) if len(pairs) else math.nan,
                       "seconds": round(time.perf_counter() - started, 2)}
    return out


def history_neighbours(model: LoadedModel) -> ItemNeighbours | None:
    """Item-kNN neighbours from a loaded model's purchase history."""
    indptr, items = np.asarray(model.hist_indptr), np.asarray(model.hist_items)
    matrix = sp.csr_matrix((np.ones(items.size, dtype=np.float32), items, indptr),
                           shape=(model.n_customers, model.n_items))
    return build_item_neighbours(matrix)


def choose_method(metrics: dict[str, dict[str, float]]) -> str:
    """The method with the highest hit_rate@10 (ties: the earlier of :data:`SIMILAR_METHODS`)."""
    scored = [(m, metrics[m][f"hit_rate@{K}"]) for m in SIMILAR_METHODS
              if m in metrics and math.isfinite(metrics[m][f"hit_rate@{K}"])]
    if not scored:
        return DEFAULT_METHOD
    return max(scored, key=lambda mv: mv[1])[0]


@dataclass(frozen=True)
class SimilarChoice:
    """The method chosen for a set, with the validation window's numbers."""

    method: str
    start_day: int
    pairs: int
    validation: dict[str, dict[str, float]] = field(default_factory=dict)

    def meta(self) -> dict[str, Any]:
        return {"method": self.method, "chosen_by": f"hit_rate@{K}", "validation_start_day": self.start_day,
                "validation_pairs": self.pairs, "validation": self.validation}


def similar_choice_for(day: int, data: TrainingData, model_before: Callable[[int], LoadedModel],
                       window_days: int, first_day: int) -> SimilarChoice | None:
    """Choose the method for a set built from the events before ``day``, on the ``window_days`` before it with
    the models ``model_before(day - window_days)``; None when the log is too short or the window has no pair."""
    start = day - window_days
    if window_days <= 0 or start - first_day < window_days:
        return None
    model = model_before(start)
    pairs = next_basket_pairs(data.before(day).events, start, day, model.items.ids)
    if not len(pairs):
        return None
    metrics = measure_methods(model, pairs, history_neighbours(model))
    method = choose_method(metrics)
    logger.info("SimilarItems: %s chosen on %d pairs from day %d (%s)", method, len(pairs), start,
                {m: round(v[f"hit_rate@{K}"], 4) for m, v in metrics.items()})
    return SimilarChoice(method, start, len(pairs), metrics)


def attach_similar_items(artifacts: ArtifactSet, choice: SimilarChoice) -> None:
    """Record the choice in the set and add the item-kNN part when the method needs it (built from the set's
    purchase history); a set where it cannot be built keeps ALS cosine (recorded)."""
    meta = choice.meta()
    method = choice.method
    if method in NEEDS_KNN:
        arrays = artifacts.arrays
        indptr, items = arrays[HIST_INDPTR], arrays[HIST_ITEMS]
        matrix = sp.csr_matrix((np.ones(items.size, dtype=np.float32), items, indptr),
                               shape=(indptr.size - 1, arrays[ITEM_IDS].size))
        knn = build_item_neighbours(matrix)
        if knn is None:
            meta.update(method=DEFAULT_METHOD, chosen=method, note="item-kNN too large to build for this log")
        else:
            arrays.update(knn.to_arrays())
    artifacts.extra[SIMILAR_EXTRA] = meta


def window_summary(model: LoadedModel, events: pd.DataFrame, start_day: int, end_day: int,
                   choice: SimilarChoice | None) -> dict[str, Any]:
    """Every method scored on the window ``start_day <= day < end_day`` with ``model`` (built before it), and
    the method the set serves: the evaluation's ``similar_items`` block."""
    pairs = next_basket_pairs(events, start_day, end_day, model.items.ids)
    knn = model.parts.get(ItemNeighbours) or (history_neighbours(model) if len(pairs) else None)
    metrics = measure_methods(model, pairs, knn) if len(pairs) else {}
    return {"served": choice.method if choice is not None else DEFAULT_METHOD, "pairs": len(pairs),
            "methods": metrics}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m recsvc_training.evaluation.similar_items", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", required=True, help="data folder in the input contract")
    parser.add_argument("--test-days", type=int, default=None, help="window length (default eval_test_days)")
    parser.add_argument("--json", help="also write the numbers as JSON to this file")
    parser.add_argument("--config", help="TOML settings; RECSVC_TRAINING__<KEY> overrides too")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    settings = dataclasses.replace(load_settings(args.config).training, progress=False)
    days = args.test_days or settings.eval_test_days
    with tempfile.TemporaryDirectory() as quarantine:
        data = load_training_data(Path(args.data), settings, Path(quarantine))
    end = int(data.events[C.DAY].max()) + 1
    first = int(data.events[C.DAY].min())
    cache: dict[int, LoadedModel] = {}

    def model_before(day: int) -> LoadedModel:
        if day not in cache:
            cache[day] = LoadedModel(build_artifacts(data.before(day), settings))
        return cache[day]

    cutoff = end - days
    choice = similar_choice_for(cutoff, data, model_before, days, first)
    model = model_before(cutoff)
    pairs = next_basket_pairs(data.events, cutoff, end, model.items.ids)
    test = measure_methods(model, pairs, history_neighbours(model))
    chosen = choice.method if choice is not None else DEFAULT_METHOD
    print(f"SimilarItems on {len(pairs):,} next-basket pairs of the last {days} days; chosen on the {days} days "
          f"before: {chosen}")
    print(f"| method | hit_rate@{K} | category_match@{K} | answered |")
    print("|---|---:|---:|---:|")
    for method, values in test.items():
        mark = " (chosen)" if method == chosen else ""
        print(f"| {method}{mark} | {values[f'hit_rate@{K}']:.4f} | {values[f'category_match@{K}']:.4f} | "
              f"{values['answered']:.3f} |")
    if args.json:
        Path(args.json).write_text(json.dumps({"chosen": chosen, "validation": choice.meta() if choice else None,
                                               "test_pairs": len(pairs), "test": test}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
