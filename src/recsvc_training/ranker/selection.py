"""Model selection: per channel, the learned ranker or the best servable baseline, chosen on a validation window.

The validation window is the newest label window of a ranker fit: the models were built from the events
before it, and a seeded share of its customers (:func:`split_validation`) is held out of the ranker's
training, so neither the models nor the ranker saw what those customers bought there. Each held-out customer
is ranked by the learned ranker and by every baseline the server can serve
(:data:`recsvc.ranking.paths.SERVABLE_BASELINES`: TIFU-KNN lists, buy it again by count, buy it again, ALS,
popularity) through the serving code (:class:`recsvc.ranking.paths.RankingPaths`), cut to the items sellable on
the customer's channel and filled with that channel's popular items, and scored by NDCG@10 against what
they bought.

The rule (:func:`choose`): on each channel with at least :data:`MIN_CHANNEL_CUSTOMERS` held-out customers, and
over all of them (the choice for the other channels), the learned ranker serves only where it beats the best
baseline; otherwise that baseline does. With fewer held-out customers than that over all channels (a small
log: MovieLens 100k's newest 14-day window holds about 70 buyers) the ranker keeps serving: a choice on a
dozen customers is noise. The choice and its numbers travel with the ranker
(``extra["ranker"]["selection"]``); the server reads them (:func:`recsvc.ranking.paths.model_selection`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp

from recsvc.ranking.blend import BlendWeights
from recsvc.ranking.cascade import CascadeSettings
from recsvc.ranking.learned import LearnedRanker
from recsvc.ranking.model import LoadedModel
from recsvc.ranking.paths import ANY_CHANNEL, SERVABLE_BASELINES, RankingPaths
from recsvc.ranking.policies import ChannelPolicies
from recsvc.ranking.results import POLICY_LEARNED
from recsvc.ranking.sources import RankingContext
from recsvc.ranking.trees import TreeEnsemble
from recsvc_training.evaluation.metrics import ranking_metrics
from recsvc_training.input import columns as C

logger = logging.getLogger(__name__)

#: Share of the validation window's customers held out of the ranker's training, and at most this many.
VALIDATION_SHARE = 0.2
MAX_VALIDATION_CUSTOMERS = 1000
#: A channel with fewer held-out customers follows the choice over all channels (too few to decide on).
MIN_CHANNEL_CUSTOMERS = 50
#: The validation's cut-off: what the evaluation's gate and the README targets are judged on.
SELECTION_K = 10
SELECTION_METRIC = f"ndcg@{SELECTION_K}"
_SEED = 20241203


def split_validation(purchases: pd.DataFrame, seed: int = _SEED) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``purchases`` (one label window's, :func:`~recsvc_training.ranker.learned_blend.window_purchases`)
    split by customer: (for training, held out for validation); a seeded :data:`VALIDATION_SHARE`, at most
    :data:`MAX_VALIDATION_CUSTOMERS`, held out."""
    customers = np.unique(purchases[C.CUSTOMER_ID].to_numpy())
    n = min(round(customers.size * VALIDATION_SHARE), MAX_VALIDATION_CUSTOMERS)
    held = np.random.default_rng(seed).choice(customers, size=n, replace=False) if n else customers[:0]
    mask = purchases[C.CUSTOMER_ID].isin(held).to_numpy()
    return purchases[~mask], purchases[mask]


def _top_items(ranked: np.ndarray, allowed: np.ndarray, popular: np.ndarray, k: int) -> np.ndarray:
    """The first ``k`` of ``ranked`` that ``allowed`` (a mask over item rows) lets through, filled from
    ``popular`` (the engine's order: ranked list, then popularity)."""
    first = ranked[allowed[ranked]][:k]
    if first.size < k:
        rest = popular[allowed[popular]]
        rest = rest[~np.isin(rest, first)][: k - first.size]
        first = np.concatenate([first, rest])
    out = np.full(k, -1, dtype=np.int64)
    out[: first.size] = first
    return out


def validate_policies(model: LoadedModel, ensemble: TreeEnsemble, pool_per_source: int,
                      purchases: pd.DataFrame, cascade: CascadeSettings | None = None,
                      ) -> tuple[dict[str, dict[str, float]], dict[str, int]]:
    """NDCG@10 of the learned ranker and of every servable baseline on ``purchases`` (held-out customers of a
    window after ``model``'s data), per main channel and over all (:data:`ANY_CHANNEL`); and the customers
    each covers."""
    rows = model.customers.lookup(purchases[C.CUSTOMER_ID].to_numpy())
    items = model.items.lookup(purchases[C.ITEM_ID].to_numpy())
    keep = (rows >= 0) & (items >= 0)
    rows, items, channels = rows[keep], items[keep], purchases[C.CHANNEL].to_numpy()[keep]
    customers, first = np.unique(rows, return_index=True)
    if customers.size == 0:
        return {}, {}
    query = np.searchsorted(customers, rows)
    truth = sp.csr_matrix((np.ones(rows.size), (query, items)), shape=(customers.size, model.n_items))
    truth.data[:] = 1.0
    learned = LearnedRanker(model, ensemble, pool_per_source, cascade)  # scored as it will be served
    weights = BlendWeights()
    paths = RankingPaths(model, (), weights, ChannelPolicies({}, weights, model.channels), learned)
    names = (POLICY_LEARNED, *SERVABLE_BASELINES)
    recs = {name: np.full((customers.size, SELECTION_K), -1, dtype=np.int64) for name in names}
    customer_channel = np.array([str(channels[at]) for at in first])
    everywhere = np.ones(model.n_items, dtype=bool)
    width = max(3 * SELECTION_K, 50)
    for q, (customer, channel) in enumerate(zip(customers.tolist(), customer_channel.tolist(), strict=True)):
        channel_row = model.channel_row(channel)
        ctx = RankingContext(customer_row=int(customer), channel_row=channel_row, today=model.data_end_day,
                             history=model.history(int(customer)))
        allowed = model.item_channels[:, channel_row] if channel_row >= 0 else everywhere
        popular = model.pop_order_channel[channel_row] if channel_row >= 0 else model.pop_order_global
        popular = popular[: 4 * width]
        ranked = learned.rank(ctx)
        recs[POLICY_LEARNED][q] = _top_items(ranked.pool.items[ranked.order], allowed, popular, SELECTION_K)
        for name in SERVABLE_BASELINES:
            recs[name][q] = _top_items(paths.rank_baseline(ctx, name, width).items, allowed, popular, SELECTION_K)
    scores: dict[str, dict[str, float]] = {}
    counts: dict[str, int] = {}
    for group in (ANY_CHANNEL, *sorted(set(customer_channel.tolist()))):
        mask = np.ones(customers.size, dtype=bool) if group == ANY_CHANNEL else customer_channel == group
        counts[group] = int(mask.sum())
        scores[group] = {name: round(ranking_metrics(recs[name][mask], truth[mask], SELECTION_K)[SELECTION_METRIC], 6)
                         for name in names}
    return scores, counts


def choose(scores: Mapping[str, Mapping[str, float]], counts: Mapping[str, int],
           min_customers: int = MIN_CHANNEL_CUSTOMERS) -> tuple[dict[str, str], dict[str, str]]:
    """The policy per channel (and :data:`ANY_CHANNEL`) and why: the learned ranker where it beats the best
    baseline, else that baseline; a channel with fewer than ``min_customers`` follows ``*``, and with fewer
    than that over all channels the ranker serves everywhere."""
    chosen: dict[str, str] = {}
    reasons: dict[str, str] = {}
    for group in sorted(scores, key=lambda g: g != ANY_CHANNEL):  # "*" first: the small channels follow it
        values = scores[group]
        if group == ANY_CHANNEL and counts.get(group, 0) < min_customers:
            chosen[group] = POLICY_LEARNED
            reasons[group] = (f"{counts.get(group, 0)} validation customers (< {min_customers}): too few "
                              "to overrule the learned ranker")
            continue
        if group != ANY_CHANNEL and counts.get(group, 0) < min_customers:
            chosen[group] = chosen.get(ANY_CHANNEL, POLICY_LEARNED)
            reasons[group] = (f"{counts.get(group, 0)} validation customers (< {min_customers}): "
                              f"follows the choice over all channels")
            continue
        baselines = {name: v for name, v in values.items() if name != POLICY_LEARNED}
        best = max(baselines, key=lambda name: (baselines[name], name == "tifu_knn"))
        ours = values.get(POLICY_LEARNED, float("-inf"))
        if ours > baselines[best]:
            chosen[group] = POLICY_LEARNED
            reasons[group] = (f"learned ranker {SELECTION_METRIC} {ours:.4f} beats the best baseline {best} "
                              f"{baselines[best]:.4f} on {counts.get(group, 0)} validation customers")
        else:
            chosen[group] = best
            reasons[group] = (f"baseline {best} {SELECTION_METRIC} {baselines[best]:.4f} is not beaten by the "
                              f"learned ranker's {ours:.4f} on {counts.get(group, 0)} validation customers")
    return chosen, reasons


def select_model(model: LoadedModel, ensemble: TreeEnsemble, pool_per_source: int, purchases: pd.DataFrame,
                 label_start_day: int, min_customers: int = MIN_CHANNEL_CUSTOMERS,
                 cascade: CascadeSettings | None = None) -> dict[str, Any]:
    """The selection block (``extra["ranker"]["selection"]``): chosen policy and reason per channel, the
    validation scores and customer counts. Empty choice (the ranker serves) without held-out customers."""
    started = time.perf_counter()
    scores, counts = validate_policies(model, ensemble, pool_per_source, purchases, cascade)
    chosen, reasons = choose(scores, counts, min_customers)
    block = {"chosen": chosen, "reasons": reasons, "metric": SELECTION_METRIC, "validation": scores,
             "customers": counts, "label_start_day": int(label_start_day),
             "seconds": round(time.perf_counter() - started, 2)}
    for group, reason in reasons.items():
        logger.info("model selection %s: %s (%s)", group, chosen[group], reason)
    return block


def selection_summary(ranker_stats: Mapping[str, Any]) -> dict[str, Any]:
    """The manifest ``evaluation`` view of a ranker's selection block, per channel (``*``: all channels):
    ``chosen.<policy>`` 1.0, ``validation.<policy>`` the NDCG@10 it was chosen on, ``customers``, and the
    ``reason`` (text). Numbers reach ``GetModelInfo``'s evaluation map as ``model_selection.…`` keys; empty
    without a selection."""
    block = ranker_stats.get("selection") or {}
    out: dict[str, Any] = {}
    for group, policy in (block.get("chosen") or {}).items():
        out[group] = {f"chosen.{policy}": 1.0,
                      **{f"validation.{name}": value for name, value in (block.get("validation") or {})
                         .get(group, {}).items()},
                      "customers": (block.get("customers") or {}).get(group, 0),
                      "reason": (block.get("reasons") or {}).get(group, "")}
    return out


def selection_markdown(ranker_stats: Mapping[str, Any]) -> str:
    """The report's "Model selection" section (empty without a selection)."""
    block = ranker_stats.get("selection") or {}
    chosen = block.get("chosen") or {}
    if not chosen:
        return ""
    names = list(next(iter((block.get("validation") or {}).values()), {}))
    lines = ["", "## Model selection", "",
             f"Chosen per channel on the validation window (label window from day {block.get('label_start_day')}, "
             f"held-out customers, {block.get('metric')}); `*` is every channel together and serves channels "
             "without their own choice.", "",
             "| channel | customers | chosen | " + " | ".join(names) + " | why |",
             "|---|---:|---|" + "---:|" * len(names) + "---|"]
    for group, policy in chosen.items():
        values = (block.get("validation") or {}).get(group, {})
        lines.append(f"| {group} | {(block.get('customers') or {}).get(group, 0)} | **{policy}** | "
                     + " | ".join(f"{values.get(n, float('nan')):.4f}" for n in names)
                     + f" | {(block.get('reasons') or {}).get(group, '')} |")
    return "\n".join(lines) + "\n"
