"""Learn the blend: fit the ranker that orders every source's candidates, on a window the models never saw.

The models (ALS, co-purchase, history, popularity) are built on the events before a label window; each
customer who buys in the window becomes one query whose candidates are the server's own candidate pool
(:func:`recsvc.ranking.features.build_pool`, the very code the server runs) and whose labels are the items they
bought. LightGBM (rank_xendcg) learns from that; the result travels as numpy arrays
(:class:`recsvc.ranking.trees.TreeEnsemble`) and the server evaluates it without LightGBM.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from recsvc.artifacts.parts.ranker import CASCADE_STATS
from recsvc.config import TrainingSettings
from recsvc.ranking.features import FEATURE_NAMES, build_pool
from recsvc.ranking.learned import pool_sources
from recsvc.ranking.model import LoadedModel
from recsvc.ranking.sources import RankingContext
from recsvc.ranking.trees import TreeEnsemble
from recsvc_training.input import columns as C
from recsvc_training.ranker.cascade_choice import choose_cascade
from recsvc_training.ranker.fit import fit_ranker, tree_ensemble_from_lightgbm
from recsvc_training.ranker.selection import select_model, split_validation

logger = logging.getLogger(__name__)

_SEED = 20240601
#: Negatives kept per query (all positives are kept): a ranking objective's cost grows with a query's
#: size, and a random sample of the rest teaches nearly as much.
_NEGATIVES_PER_QUERY = 60


#: Days of history every label window needs whatever the settings say: with less, the models built before it
#: are close to empty and its queries teach nothing.
MIN_WINDOW_HISTORY_DAYS = 7


def label_window_starts(end_day: int, first_day: int, settings: TrainingSettings) -> list[int]:
    """First days of the ranker's label windows ending at ``end_day`` (exclusive), newest first.

    Up to ``settings.ranker_label_windows`` consecutive windows of ``settings.ranker_label_days`` days. The
    newest is used whenever a week of log precedes it; an older one only when at least
    ``settings.ranker_min_history_days`` precede it, because a ranker that learns from customers with a few
    weeks of history learns that history matters little (on a six-week Ta Feng slice the older windows
    pulled Recall@10 below buy-it-again). ``first_day`` is the log's first day (days since epoch).
    """
    days = settings.ranker_label_days
    starts = [end_day - (i + 1) * days for i in range(max(settings.ranker_label_windows, 1))]
    newest, older = starts[0], starts[1:]
    kept = [newest] if newest - first_day >= MIN_WINDOW_HISTORY_DAYS else []
    return kept + [s for s in older if s - first_day >= max(settings.ranker_min_history_days,
                                                            MIN_WINDOW_HISTORY_DAYS)]


def window_purchases(events: pd.DataFrame, start_day: int, days: int) -> pd.DataFrame:
    """Net purchases per (customer, item) in ``[start_day, start_day + days)``, positive only, with each
    customer's main channel in the window (most purchase lines; ties to the first name)."""
    day = events[C.DAY].to_numpy()
    window = events[(day >= start_day) & (day < start_day + days)]
    kinds = window[C.EVENT].to_numpy()
    sign = np.where(kinds == C.PURCHASE, 1.0, np.where(kinds == C.RETURN, -1.0, 0.0))
    frame = pd.DataFrame({C.CUSTOMER_ID: window[C.CUSTOMER_ID].to_numpy(), C.ITEM_ID: window[C.ITEM_ID].to_numpy(),
                          C.CHANNEL: window[C.CHANNEL].to_numpy(), "net": sign * window[C.QUANTITY].to_numpy()})
    frame = frame[sign != 0]
    net = frame.groupby([C.CUSTOMER_ID, C.ITEM_ID], sort=True)["net"].sum().reset_index()
    net = net[net["net"] > 0]
    bought = frame[frame["net"] > 0]
    main = (bought.groupby([C.CUSTOMER_ID, C.CHANNEL]).size().reset_index(name="n")
            .sort_values([C.CUSTOMER_ID, "n", C.CHANNEL], ascending=[True, False, True])
            .drop_duplicates(C.CUSTOMER_ID))
    return net.merge(main[[C.CUSTOMER_ID, C.CHANNEL]], on=C.CUSTOMER_ID, how="left")


@dataclass(frozen=True)
class RankerExamples:
    """Training examples: ``features`` [rows, F], ``labels`` (0/1), ``group_sizes`` (rows per query) and how
    much of the truth the pools hold (``pool_recall``: the ceiling of any ranker on these candidates)."""

    features: np.ndarray
    labels: np.ndarray
    group_sizes: np.ndarray
    queries_total: int
    pool_recall: float


def ranker_examples(model: LoadedModel, purchases: pd.DataFrame, pool_per_source: int,
                    max_customers: int, seed: int = _SEED) -> RankerExamples:
    """One query per customer the model knows who bought something in the label window (sampled down to
    ``max_customers``); queries whose pool holds no bought item teach nothing and are dropped."""
    rows = model.customers.lookup(purchases[C.CUSTOMER_ID].to_numpy())
    items = model.items.lookup(purchases[C.ITEM_ID].to_numpy())
    keep = (rows >= 0) & (items >= 0)
    rows, items, channels = rows[keep], items[keep], purchases[C.CHANNEL].to_numpy()[keep]
    customers, first = np.unique(rows, return_index=True)
    rng = np.random.default_rng(seed)
    if customers.size > max_customers:
        pick = np.sort(rng.choice(customers.size, size=max_customers, replace=False))
        customers, first = customers[pick], first[pick]
    order = np.argsort(rows, kind="stable")
    sorted_rows = rows[order]
    sources = pool_sources(model)
    feats, labels, sizes = [], [], []
    truth_total = truth_in_pool = 0
    for customer, at in zip(customers, first, strict=True):
        lo, hi = np.searchsorted(sorted_rows, [customer, customer + 1])
        truth = items[order[lo:hi]]
        ctx = RankingContext(customer_row=int(customer), channel_row=model.channel_row(str(channels[at])),
                             today=model.data_end_day, history=model.history(int(customer)))
        pool = build_pool(model, ctx, sources, pool_per_source)
        hit = np.isin(pool.items, truth)
        truth_total += truth.size
        truth_in_pool += int(hit.sum())
        if not hit.any():
            continue
        negatives = np.flatnonzero(~hit)
        if negatives.size > _NEGATIVES_PER_QUERY:
            negatives = rng.choice(negatives, size=_NEGATIVES_PER_QUERY, replace=False)
        chosen = np.sort(np.concatenate([np.flatnonzero(hit), negatives]))
        feats.append(pool.features[chosen])
        labels.append(hit[chosen].astype(np.int32))
        sizes.append(chosen.size)
    width = len(FEATURE_NAMES)
    return RankerExamples(
        features=np.concatenate(feats) if feats else np.zeros((0, width), dtype=np.float32),
        labels=np.concatenate(labels) if labels else np.zeros(0, dtype=np.int32),
        group_sizes=np.asarray(sizes, dtype=np.int64), queries_total=int(customers.size),
        pool_recall=truth_in_pool / truth_total if truth_total else 0.0)


#: Ranker examples already drawn, by (label start day, label days, pool per source, customers drawn): see
#: :func:`fit_learned_ranker`'s ``cache``.
ExampleCache = dict[tuple[int, int, int, int], RankerExamples]


def fit_learned_ranker(windows: Sequence[tuple[LoadedModel, int]], events: pd.DataFrame,
                       settings: TrainingSettings, select: bool = True, cache: ExampleCache | None = None
                       ) -> tuple[TreeEnsemble | None, dict[str, Any]]:
    """Fit the ranker on one or more label windows.

    Each window is ``(model, label_start_day)``: the model is built from the events before the window, the
    labels are the purchases of the ``settings.ranker_label_days`` days that start there. Several windows
    give the ranker more queries (the examples are pooled).

    ``cache`` (one per run, with one set of models per day) keeps each window's examples: a window's
    examples depend only on its models, its label days, the pool size and how many customers are drawn
    (a seeded sample), so the published ranker reuses the windows it shares with the evaluation's ranker
    (four of six by default) instead of rebuilding their candidate pools.

    Returns the ensemble (None when the windows hold too few usable queries; the server then blends by rank)
    and statistics for the manifest. With ``select``, a share of the newest window's customers is held out
    of training and validates the model selection (:mod:`recsvc_training.ranker.selection`): its block,
    ``stats["selection"]``, says per channel whether the ranker or a baseline serves, and why.
    """
    started = time.perf_counter()
    ordered = sorted(windows, key=lambda w: w[1])
    # The cap is on all windows together, shared evenly: the fit's cost grows with the rows, and Ta Feng's
    # two published windows (14,528 queries, 925k rows) took 125 s to fit against 26 s for one window.
    per_window = -(-settings.ranker_max_customers // max(len(ordered), 1))
    parts = []
    held_out: pd.DataFrame | None = None
    for model, label_start_day in ordered:
        if model.data_end_day >= label_start_day:
            raise ValueError(f"model data ends on day {model.data_end_day}, inside the label window starting on "
                             f"day {label_start_day}: the ranker would learn from leaked labels")
        validates = select and label_start_day == ordered[-1][1]  # the newest window validates the selection
        purchases = window_purchases(events, label_start_day, settings.ranker_label_days)
        if validates:
            purchases, held_out = split_validation(purchases)
        # a window that validates trains on fewer purchases, so its examples are cached apart
        key = (int(label_start_day), int(settings.ranker_label_days), int(settings.ranker_pool_per_source),
               int(per_window) * (-1 if validates else 1))
        examples = cache.get(key) if cache is not None else None
        if examples is None:
            examples = ranker_examples(model, purchases, settings.ranker_pool_per_source, per_window)
            if cache is not None:
                cache[key] = examples
        parts.append(examples)
    features = np.concatenate([p.features for p in parts])
    labels = np.concatenate([p.labels for p in parts])
    group_sizes = np.concatenate([p.group_sizes for p in parts])
    n_queries = int(group_sizes.size)
    stats: dict[str, Any] = {"label_start_days": [int(w[1]) for w in ordered],
                             "label_days": settings.ranker_label_days, "queries": n_queries,
                             "rows": int(labels.size), "pool_recall": round(parts[-1].pool_recall, 4),
                             "pool_per_source": settings.ranker_pool_per_source}
    if n_queries < 20:
        stats["skipped"] = f"only {n_queries} usable queries in the label windows"
        logger.warning("learned ranker skipped: %s", stats["skipped"])
        return None, stats
    # A fixed number of trees, no early stopping: with a few hundred validation queries the stopping point
    # was noise (it kept a handful of trees on Ta Feng and Online Retail); the default is where it settled on
    # larger validation sets.
    booster = fit_ranker(features, labels, group_sizes, FEATURE_NAMES,
                         params={"num_iterations": settings.ranker_trees})
    ensemble = tree_ensemble_from_lightgbm(booster)
    gains = booster.feature_importance(importance_type="gain")
    if held_out is not None and len(held_out):
        newest_model, newest_start = ordered[-1]
        cascade, stats["cascade_choice"] = choose_cascade(newest_model, ensemble, settings.ranker_pool_per_source,
                                                          held_out, settings)
        if cascade is not None:
            stats[CASCADE_STATS] = cascade.to_stats()
        stats["selection"] = select_model(newest_model, ensemble, settings.ranker_pool_per_source, held_out,
                                          newest_start, cascade=cascade)
    stats.update(trees=ensemble.n_trees, trees_requested=settings.ranker_trees,
                 seconds=round(time.perf_counter() - started, 2),
                 feature_gain={name: round(float(g), 2) for name, g in zip(FEATURE_NAMES, gains, strict=True)})
    logger.info("learned ranker: %d queries (%d rows) from %d window(s), pool recall %.3f, %d trees, %.1fs",
                n_queries, labels.size, len(parts), parts[-1].pool_recall, ensemble.n_trees, stats["seconds"])
    return ensemble, stats
