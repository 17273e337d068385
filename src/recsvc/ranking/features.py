"""Candidate pool and features for the learned ranker: one code path for training and serving.

The trainer learns the ranker on exactly the features the server computes, because both call
:func:`build_pool` on a :class:`~recsvc.ranking.model.LoadedModel`; a feature can never mean one thing at
training time and another at serving time. The pool is the union of every candidate source's list (the
customer's whole recent history, the TIFU-KNN next-basket list, co-purchase neighbours, ALS, popularity), and each item
keeps the reason of the first source, in priority order, that proposed it.

Features are numbers on the scales the sources produce; the tree ranker does not need them comparable. NaN
means "does not apply" (e.g. days since last purchase of an item never bought) and is learned as such.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from recsvc.ranking.model import LoadedModel
from recsvc.ranking.sources import Candidates, CandidateSource, RankingContext

#: Column order of the feature matrix; stored with the ranker and checked at load, so a ranker trained on
#: another feature set is refused rather than fed the wrong columns. The names are part of every published
#: ranker, so the ALS features keep their stored names (``cf_*``, ``rank_collaborative``): renaming them would
#: make every server refuse every model trained before the rename.
FEATURE_NAMES: tuple[str, ...] = (
    "hist_log_count",          # log1p(net purchases of this item by this customer), 0 if never bought
    "hist_days_since",         # days since the customer last bought it (NaN: never)
    "hist_due_ratio",          # days since / usual interval (own rhythm, else the item's), NaN unknown
    "hist_own_interval",       # the customer's own interval for this item in days (NaN: < 2 purchases)
    "hist_recency_count",      # log1p(count) * exp(-days since / 30)
    "hist_days_since_first",   # days since the customer first bought it (NaN: never)
    "hist_rate_30d",           # purchases per 30 days since the first purchase (0: never)
    "hist_decayed",            # recency-weighted purchase count, the buy-it-again score (NaN: not stored)
    "hist_decayed_share",      # its share of the customer's total recency-weighted purchases
    "hist_decayed_rank",       # its rank in the customer's buy-it-again order (0 = first; NaN: never bought)
    "item_repurchase_rate",    # share of the item's buyers who bought it again
    "item_repurchase_days",    # the item's median repurchase interval (NaN: none)
    "cf_score",                # ALS customer . item
    "cf_max_sim_history",      # max cosine of the item to the customer's recent purchases (ALS item factors)
    "cf_rank",                 # rank of cf_score within this pool (0 = best)
    "copurchase_score",        # co-purchase evidence from recent purchases and context items
    "pop_channel",             # log1p(channel popularity), global when the channel is unknown
    "pop_global",              # log1p(global popularity)
    "item_trend",              # log1p(buyers last 7 days x 4) - log1p(buyers last 28 days) (NaN: not stored)
    "cust_log_items",          # log1p(distinct items the customer bought)
    "cust_days_since_last",    # days since the customer's last purchase (NaN: none)
    "cust_log_count",          # log1p(total net purchases)
    "cust_repeat_share",       # share of the customer's items bought more than once (NaN: no history)
    "rank_history",            # position in each source's list (NaN: not proposed by that source)
    "rank_copurchase",
    "rank_collaborative",
    "rank_popularity",
    "tifu_score",              # TIFU-KNN score in the customer's stored list, 0 below it (NaN: no lists stored)
    "rank_tifu",               # position in that list (NaN: not in it)
)

_HISTORY_FOR_SIMILARITY = 50


@dataclass(frozen=True)
class CandidatePool:
    """All candidates for one request: ``items`` (int64 rows, unique), ``features`` (float32 ``[n, F]`` in
    :data:`FEATURE_NAMES` order), and for each item the list (``reason_list``, index into ``lists``) and
    position (``reason_position``) its reason comes from."""

    items: np.ndarray
    features: np.ndarray
    lists: tuple[Candidates, ...]
    reason_list: np.ndarray
    reason_position: np.ndarray

    def __len__(self) -> int:
        return int(self.items.size)


def build_pool(model: LoadedModel, ctx: RankingContext, sources: Sequence[CandidateSource],
               k: int) -> CandidatePool:
    """Candidates from ``sources`` (in reason-priority order: history, co-purchase, ALS, popularity;
    each asked for ``k``) and their features for ``ctx``'s customer."""
    lists = tuple(source.candidates(ctx, k) for source in sources)
    sizes = [len(c) for c in lists]
    if sum(sizes) == 0:
        empty = np.zeros(0, dtype=np.int64)
        return CandidatePool(empty, np.zeros((0, len(FEATURE_NAMES)), dtype=np.float32), lists, empty, empty)
    all_items = np.concatenate([c.items for c in lists])
    list_of = np.repeat(np.arange(len(lists)), sizes)
    position = np.concatenate([np.arange(s) for s in sizes])
    # The first occurrence in list order wins the reason: lists are in priority order.
    items, first, pool_row = np.unique(all_items, return_index=True, return_inverse=True)
    reason_list, reason_position = list_of[first], position[first]
    offsets = np.cumsum([0, *sizes])

    m = model
    n = items.size
    feats = np.full((n, len(FEATURE_NAMES)), np.nan, dtype=np.float32)
    col = {name: i for i, name in enumerate(FEATURE_NAMES)}

    hist = ctx.history
    at = hist.positions_of(items)
    bought = at >= 0
    safe = np.maximum(at, 0)
    count = np.where(bought, hist.count[safe] if len(hist) else 0.0, 0.0).astype(np.float64)
    days = np.where(bought, ctx.today - (hist.last_day[safe].astype(np.int64) if len(hist) else 0), np.nan)
    span = np.where(bought, (hist.last_day[safe].astype(np.float64) - hist.first_day[safe]) if len(hist) else 0,
                    np.nan)
    own = np.where(bought & (count >= 2) & (span > 0), span / np.maximum(count - 1, 1), np.nan)
    item_days = m.item_repurchase_days[items].astype(np.float64)
    interval = np.where(np.isfinite(own), own, item_days)
    feats[:, col["hist_log_count"]] = np.log1p(count)
    feats[:, col["hist_days_since"]] = days
    with np.errstate(divide="ignore", invalid="ignore"):
        feats[:, col["hist_due_ratio"]] = np.where(bought & (interval > 0), days / interval, np.nan)
    feats[:, col["hist_own_interval"]] = own
    since_first = np.where(bought, ctx.today - (hist.first_day[safe].astype(np.int64) if len(hist) else 0), np.nan)
    feats[:, col["hist_days_since_first"]] = since_first
    # NaN where not bought is discarded by the where (fmax treats NaN as missing; exp passes it through)
    feats[:, col["hist_rate_30d"]] = np.where(bought, 30.0 * count / np.fmax(since_first, 1.0), 0.0)
    feats[:, col["hist_recency_count"]] = np.where(bought, np.log1p(count) * np.exp(-days / 30.0), 0.0)
    decayed = m.hist_decayed
    if decayed is not None and len(hist):
        # Stored as of the data's last day; aged to today with the same half-life.
        lo = int(m.hist_indptr[ctx.customer_row])
        half_life = m.hist_decayed_half_life_days
        aging = 0.5 ** (max(0, ctx.today - m.data_end_day) / half_life)
        own = decayed[lo: lo + len(hist)].astype(np.float64)
        feats[:, col["hist_decayed"]] = np.where(bought, own[safe] * aging, 0.0)
        total = float(own.sum())
        feats[:, col["hist_decayed_share"]] = np.where(bought, own[safe] / total if total > 0 else 0.0, 0.0)
        order_in_history = np.empty(len(hist), dtype=np.float64)
        order_in_history[np.argsort(-own, kind="stable")] = np.arange(len(hist))
        feats[:, col["hist_decayed_rank"]] = np.where(bought, order_in_history[safe], np.nan)
    feats[:, col["item_repurchase_rate"]] = m.item_repurchase_rate[items]
    feats[:, col["item_repurchase_days"]] = item_days

    if ctx.customer_row >= 0 and m.n_factors:
        user = np.asarray(m.user_factors[ctx.customer_row], dtype=np.float32)
        als = m.item_factors[items] @ user  # rows, not columns of the transposed copy: one cache run per item
        feats[:, col["cf_score"]] = als
        als_rank = np.empty(n, dtype=np.float32)
        als_rank[np.argsort(-als, kind="stable")] = np.arange(n)
        feats[:, col["cf_rank"]] = als_rank
    if len(hist) and m.n_factors:
        recent = hist.items[np.argsort(-hist.last_day, kind="stable")[:_HISTORY_FOR_SIMILARITY]]
        sims = m.normed_vectors(items) @ m.normed_vectors(recent.astype(np.int64)).T
        sims[items[:, None] == recent[None, :]] = -1.0  # an item is not evidence for itself
        feats[:, col["cf_max_sim_history"]] = sims.max(axis=1)
    co = _index_of(sources, "copurchase")
    copurchase = np.zeros(n, dtype=np.float32)
    if co >= 0:
        copurchase[pool_row[offsets[co]:offsets[co + 1]]] = lists[co].scores
    feats[:, col["copurchase_score"]] = copurchase
    tifu = _index_of(sources, "tifu_knn")
    if tifu >= 0 and getattr(sources[tifu], "part", None) is not None:
        tifu_score = np.zeros(n, dtype=np.float32)
        tifu_score[pool_row[offsets[tifu]:offsets[tifu + 1]]] = lists[tifu].scores
        feats[:, col["tifu_score"]] = tifu_score

    pop = m.pop_channel[ctx.channel_row] if ctx.channel_row >= 0 else m.pop_global
    feats[:, col["pop_channel"]] = np.log1p(np.maximum(pop[items], 0))
    feats[:, col["pop_global"]] = np.log1p(np.maximum(m.pop_global[items], 0))
    trend = m.item_trend
    feats[:, col["item_trend"]] = trend[items] if trend is not None else np.nan
    if len(hist):
        feats[:, col["cust_log_items"]] = np.log1p(len(hist))
        feats[:, col["cust_days_since_last"]] = ctx.today - int(hist.last_day.max())
        feats[:, col["cust_log_count"]] = np.log1p(float(np.maximum(hist.count, 0).sum()))
        feats[:, col["cust_repeat_share"]] = np.count_nonzero(hist.count >= 2) / len(hist)
    else:
        feats[:, col["cust_log_items"]] = 0.0
        feats[:, col["cust_log_count"]] = 0.0
    for name, source_name in (("rank_history", "repurchase"), ("rank_copurchase", "copurchase"),
                              ("rank_collaborative", "als"), ("rank_popularity", "popularity"),
                              ("rank_tifu", "tifu_knn")):
        i = _index_of(sources, source_name)
        if i >= 0:  # each list's items sit at known rows of the pool (np.unique's inverse): no search
            feats[pool_row[offsets[i]:offsets[i + 1]], col[name]] = np.arange(sizes[i], dtype=np.float32)
    return CandidatePool(items.astype(np.int64), feats, lists, reason_list.astype(np.int64),
                         reason_position.astype(np.int64))


def _index_of(sources: Sequence[CandidateSource], name: str) -> int:
    for i, source in enumerate(sources):
        if source.name == name:
            return i
    return -1
