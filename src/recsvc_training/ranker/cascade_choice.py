"""How many first trees the ranker's cascade needs (:mod:`recsvc.ranking.cascade`), measured on validation pools.

The cascade must not change what customers see. So the trainer builds the pools of the validation window's
held-out customers, as the server would, ranks them with the whole ensemble and with each candidate cascade
(first trees :data:`FIRST_TREES`; rows kept: the stored list's length, so every stored item is ranked by the
whole ensemble, or twice it), and takes the cheapest whose top-10 lists share at least
``ranker_cascade_min_agreement`` of their items with the whole ensemble's. The measurement (agreement and
relative cost per candidate) is kept in the ranker's stats, so an operator can read what was given up for the
speed. The choice reads no clock: the same data choose the same cascade.
"""

from __future__ import annotations

import logging
from itertools import pairwise
from typing import Any

import numpy as np
import pandas as pd

from recsvc.config import TrainingSettings
from recsvc.ranking.cascade import Cascade, CascadeSettings
from recsvc.ranking.features import build_pools
from recsvc.ranking.learned import pool_sources
from recsvc.ranking.model import LoadedModel
from recsvc.ranking.sources import RankingContext
from recsvc.ranking.trees import TreeEnsemble
from recsvc_training.input import columns as C

logger = logging.getLogger(__name__)

#: First-stage sizes tried, smallest first (capped below the ensemble's size).
FIRST_TREES = (10, 15, 20, 30, 50, 75, 100)
#: The depth whose lists must agree: what a request shows by default.
AGREEMENT_K = 10
#: Fewer validation pools than this measure too little: no cascade.
MIN_POOLS = 50
#: What the evaluator spends on a row whatever the trees (sorting its values, the prefix masks), in trees:
#: the cost model is ``(trees + ROW_COST_IN_TREES) x rows`` per evaluation (README, Serving: the cascade).
ROW_COST_IN_TREES = 20


def choose_cascade(model: LoadedModel, ensemble: TreeEnsemble, pool_per_source: int, purchases: pd.DataFrame,
                   settings: TrainingSettings) -> tuple[CascadeSettings | None, dict[str, Any]]:
    """The cascade to serve with (None: every row through every tree) and what was measured.

    ``purchases`` are the held-out validation customers' purchases in the window after ``model``'s data; only
    their customers and channels are read (the agreement is with the whole ensemble, not with the labels).
    """
    floor = settings.ranker_cascade_min_agreement
    report: dict[str, Any] = {"min_agreement": floor, "k": AGREEMENT_K}
    if not settings.ranker_cascade:
        report["skipped"] = "ranker_cascade is off"
        return None, report
    rows = model.customers.lookup(purchases[C.CUSTOMER_ID].to_numpy())
    customers, first = np.unique(rows[rows >= 0], return_index=True)
    channels = purchases[C.CHANNEL].to_numpy()[rows >= 0][first]
    contexts = [RankingContext(customer_row=int(c), channel_row=model.channel_row(str(ch)),
                               today=model.data_end_day, history=model.history(int(c)))
                for c, ch in zip(customers.tolist(), channels.tolist(), strict=True)]
    batch = build_pools(model, contexts, pool_sources(model), pool_per_source) if contexts else None
    if batch is None or batch.bounds.size - 1 < MIN_POOLS:
        report["skipped"] = f"fewer than {MIN_POOLS} validation pools"
        return None, report
    sizes = np.diff(batch.bounds)
    n_rows, n_trees = int(sizes.sum()), ensemble.n_trees
    report.update(pools=int(sizes.size), rows=n_rows)
    full_cost = (n_trees + ROW_COST_IN_TREES) * n_rows
    full_top = _top_k(ensemble.predict(batch.features), batch.bounds)
    tried: list[dict[str, Any]] = []
    chosen: CascadeSettings | None = None
    best_cost = full_cost
    length = max(settings.stored_list_length, AGREEMENT_K)
    for keep in (length, 2 * length):
        kept = int(np.minimum(sizes, keep).sum())
        for trees in (t for t in FIRST_TREES if t < n_trees):
            cost = (trees + ROW_COST_IN_TREES) * n_rows + (n_trees - trees + ROW_COST_IN_TREES) * kept
            if cost >= best_cost:
                continue  # no cheaper than what already agrees (or than no cascade)
            candidate = CascadeSettings(trees, keep)
            top = _top_k(Cascade(ensemble, candidate).scores(batch.features, batch.bounds), batch.bounds)
            agreement = _agreement(full_top, top)
            tried.append({"trees": trees, "keep": keep, "agreement": round(agreement, 5),
                          "cost": round(cost / full_cost, 4)})
            if agreement >= floor:
                chosen, best_cost = candidate, cost
                break  # more first trees only cost more at this keep
    report["tried"] = tried
    if chosen is None:
        report["skipped"] = f"no cascade cheaper than every row through every tree agreed on {floor:.3f} " \
                            f"of the top-{AGREEMENT_K} items"
    else:
        report["cost"] = round(best_cost / full_cost, 4)
    logger.info("ranker cascade: %s on %d validation pools (%s)", chosen, sizes.size, tried)
    return chosen, report


def _top_k(scores: np.ndarray, bounds: np.ndarray) -> list[np.ndarray]:
    """Each pool's top :data:`AGREEMENT_K` row positions by score, ties by position (the ranker's order)."""
    out = []
    for lo, hi in pairwise(bounds.tolist()):
        out.append(np.lexsort((np.arange(hi - lo), -scores[lo:hi]))[:AGREEMENT_K])
    return out


def _agreement(a: list[np.ndarray], b: list[np.ndarray]) -> float:
    """Mean share of the items of ``a``'s lists that ``b``'s lists hold too (1.0: the same lists as sets)."""
    shares = [np.intersect1d(x, y).size / x.size for x, y in zip(a, b, strict=True) if x.size]
    return float(np.mean(shares)) if shares else 1.0
