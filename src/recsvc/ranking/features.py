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
    each asked for ``k``) and their features for ``ctx``'s customer: :func:`build_pools` for a batch of one,
    so a live request and the nightly batch compute every feature with the same code."""
    return build_pools(model, [ctx], sources, k).pools[0]


@dataclass(frozen=True)
class PoolBatch:
    """The pools of a batch of requests: ``pools[i]`` for the i-th context, whose feature rows are
    ``features[bounds[i]:bounds[i + 1]]`` (each pool's ``features`` is a view of that slice)."""

    pools: list[CandidatePool]
    features: np.ndarray
    bounds: np.ndarray


def candidate_lists(contexts: Sequence[RankingContext], sources: Sequence[CandidateSource],
                    k: int) -> list[tuple[Candidates, ...]]:
    """Each context's candidate lists, one per source. A source that reads neither the channel nor the store
    (``uses_channel`` False) is asked once per customer, today and context items within the batch: the
    nightly batch ranks every channel of a customer together, and only popularity differs between them."""
    if len(contexts) == 1:  # a live request: nothing to share
        return [tuple(source.candidates(contexts[0], k) for source in sources)]
    shared: dict[tuple[int, int, int, int, int, bytes], Candidates] = {}
    out = []
    for ctx in contexts:
        hist = ctx.history.items
        lists = []
        for i, source in enumerate(sources):
            if source.uses_channel:
                lists.append(source.candidates(ctx, k))
                continue
            key = (i, ctx.customer_row, ctx.today, hist.__array_interface__["data"][0], hist.size,
                   np.asarray(ctx.context_items, dtype=np.int64).tobytes())
            found = shared.get(key)
            if found is None:
                found = shared[key] = source.candidates(ctx, k)
            lists.append(found)
        out.append(tuple(lists))
    return out


def _joined(arrays: list[np.ndarray]) -> np.ndarray:
    """``np.concatenate`` that hands back the one array of a batch of one (no copy: nothing writes to it)."""
    return arrays[0] if len(arrays) == 1 else np.concatenate(arrays)


def _order_within(keys: np.ndarray, groups: np.ndarray, n_groups: int) -> np.ndarray:
    """Indices ordering ``keys`` ascending within each of the (ascending) ``groups``, ties by index: a
    stable argsort when there is one group, the same order as ``np.lexsort((keys, groups))``."""
    if n_groups == 1:
        return np.argsort(keys, kind="stable")
    return np.lexsort((keys, groups))


def _segment_starts(sizes: np.ndarray) -> np.ndarray:
    return (np.cumsum(sizes) - sizes).astype(np.int64)


def build_pools(model: LoadedModel, contexts: Sequence[RankingContext], sources: Sequence[CandidateSource],
                k: int) -> PoolBatch:
    """:func:`build_pool` for many requests at once: the candidate lists per request
    (:func:`candidate_lists`), then every feature column computed once over the concatenated pools (numpy
    over all rows, per-request numbers spread to their rows), not request by request.

    A row's features depend only on its own request, never on the others in the batch (reductions are per
    request segment), so a pool built in a batch equals the pool built alone, bit for bit; the tests check it.
    """
    m = model
    q_count = len(contexts)
    n_features = len(FEATURE_NAMES)
    col = _COLUMNS
    lists_of = candidate_lists(contexts, sources, k)
    n_lists = len(sources)
    sizes = np.array([[len(c) for c in lists] for lists in lists_of], dtype=np.int64).reshape(q_count, n_lists)
    flat_lists = [c for lists in lists_of for c in lists]
    entry_sizes = sizes.reshape(-1)
    if entry_sizes.sum() == 0:
        empty = np.zeros(0, dtype=np.int64)
        feats = np.zeros((0, n_features), dtype=np.float32)
        pools = [CandidatePool(empty, feats, lists, empty, empty) for lists in lists_of]
        return PoolBatch(pools, feats, np.zeros(q_count + 1, dtype=np.int64))
    all_items = _joined([c.items for c in flat_lists])
    all_scores = _joined([c.scores for c in flat_lists])
    entry_q = np.repeat(np.repeat(np.arange(q_count, dtype=np.int64), n_lists), entry_sizes)
    entry_list = np.repeat(np.tile(np.arange(n_lists, dtype=np.int64), q_count), entry_sizes)
    entry_position = np.arange(all_items.size, dtype=np.int64) - np.repeat(_segment_starts(entry_sizes),
                                                                          entry_sizes)
    # One unique over (request, item) keys: each request's pool sorted by item row, the first occurrence in
    # list order winning the reason (lists are in priority order, requests are contiguous).
    n_all = max(m.n_items, 1)
    keys, first, pool_row = np.unique(entry_q * n_all + all_items, return_index=True, return_inverse=True)
    pool_row = pool_row.reshape(-1)
    items = keys % n_all
    row_q = keys // n_all
    reason_list, reason_position = entry_list[first], entry_position[first]
    bounds = np.searchsorted(row_q, np.arange(q_count + 1)).astype(np.int64)
    n = items.size
    feats = np.full((n, n_features), np.nan, dtype=np.float32)

    # Per-request numbers, spread to their rows.
    today = np.array([ctx.today for ctx in contexts], dtype=np.int64)
    customer = np.array([ctx.customer_row for ctx in contexts], dtype=np.int64)
    channel = np.array([ctx.channel_row for ctx in contexts], dtype=np.int64)
    histories = [ctx.history for ctx in contexts]
    hist_len = np.array([len(h) for h in histories], dtype=np.int64)
    row_today = today[row_q]

    # History, concatenated: entry e belongs to request hist_q[e]; a pool row finds its entry by key search.
    h_items = _joined([h.items for h in histories]).astype(np.int64)
    h_count = _joined([h.count for h in histories])
    h_first = _joined([h.first_day for h in histories])
    h_last = _joined([h.last_day for h in histories])
    hist_q = np.repeat(np.arange(q_count, dtype=np.int64), hist_len)
    h_start = _segment_starts(hist_len)
    h_keys = hist_q * n_all + h_items
    if h_keys.size:
        sorter = np.argsort(h_keys, kind="stable")
        sorted_keys = h_keys[sorter]
        pos = np.minimum(np.searchsorted(sorted_keys, keys), sorted_keys.size - 1)
        at = np.where(sorted_keys[pos] == keys, sorter[pos], -1)
    else:
        at = np.full(n, -1, dtype=np.int64)
    bought = at >= 0
    safe = np.maximum(at, 0)
    has_hist = h_keys.size > 0
    count = np.where(bought, h_count[safe] if has_hist else 0.0, 0.0).astype(np.float64)
    days = np.where(bought, row_today - (h_last[safe].astype(np.int64) if has_hist else 0), np.nan)
    span = np.where(bought, (h_last[safe].astype(np.float64) - h_first[safe]) if has_hist else 0, np.nan)
    own = np.where(bought & (count >= 2) & (span > 0), span / np.maximum(count - 1, 1), np.nan)
    item_days = m.item_repurchase_days[items].astype(np.float64)
    interval = np.where(np.isfinite(own), own, item_days)
    feats[:, col["hist_log_count"]] = np.log1p(count)
    feats[:, col["hist_days_since"]] = days
    with np.errstate(divide="ignore", invalid="ignore"):
        feats[:, col["hist_due_ratio"]] = np.where(bought & (interval > 0), days / interval, np.nan)
    feats[:, col["hist_own_interval"]] = own
    since_first = np.where(bought, row_today - (h_first[safe].astype(np.int64) if has_hist else 0), np.nan)
    feats[:, col["hist_days_since_first"]] = since_first
    # NaN where not bought is discarded by the where (fmax treats NaN as missing; exp passes it through)
    feats[:, col["hist_rate_30d"]] = np.where(bought, 30.0 * count / np.fmax(since_first, 1.0), 0.0)
    feats[:, col["hist_recency_count"]] = np.where(bought, np.log1p(count) * np.exp(-days / 30.0), 0.0)
    with_hist = np.flatnonzero(hist_len > 0)
    rows_with_hist = hist_len[row_q] > 0
    decayed = m.hist_decayed
    if decayed is not None and with_hist.size:
        # Stored as of the data's last day; aged to today with the same half-life.
        lo = m.hist_indptr[np.maximum(customer, 0)].astype(np.int64)
        offsets = np.arange(h_items.size, dtype=np.int64) - h_start[hist_q]
        stored = decayed[lo[hist_q] + offsets].astype(np.float64)
        aging = 0.5 ** (np.maximum(0, today - m.data_end_day) / m.hist_decayed_half_life_days)
        total = np.zeros(q_count)
        total[with_hist] = np.add.reduceat(stored, h_start[with_hist])
        row_total = total[row_q]
        feats[:, col["hist_decayed"]] = np.where(rows_with_hist, np.where(bought, stored[safe] * aging[row_q], 0.0),
                                                 np.nan)
        with np.errstate(divide="ignore", invalid="ignore"):
            share = np.where(bought, np.where(row_total > 0, stored[safe] / row_total, 0.0), 0.0)
        feats[:, col["hist_decayed_share"]] = np.where(rows_with_hist, share, np.nan)
        by_own = _order_within(-stored, hist_q, q_count)  # per request, largest first, ties by history order
        order_in_history = np.empty(h_items.size, dtype=np.float64)
        order_in_history[by_own] = np.arange(h_items.size) - h_start[hist_q[by_own]]
        feats[:, col["hist_decayed_rank"]] = np.where(bought, order_in_history[safe], np.nan)
    feats[:, col["item_repurchase_rate"]] = m.item_repurchase_rate[items]
    feats[:, col["item_repurchase_days"]] = item_days

    if m.n_factors:
        known = customer[row_q] >= 0
        if known.any():
            rows = np.flatnonzero(known)
            users = np.asarray(m.user_factors[customer[row_q[rows]]], dtype=np.float32)
            # one dot product per row, summed along the contiguous factor axis: the same per row whatever
            # the batch holds
            als = np.multiply(m.item_factors[items[rows]], users).sum(axis=1, dtype=np.float32)
            feats[rows, col["cf_score"]] = als
            by_score = _order_within(-als, row_q[rows], q_count)  # stable: ties keep pool order
            als_rank = np.empty(rows.size, dtype=np.float32)
            als_rank[by_score] = np.arange(rows.size) - np.searchsorted(row_q[rows], row_q[rows][by_score])
            feats[rows, col["cf_rank"]] = als_rank
        for q in with_hist.tolist():
            lo_row, hi_row = int(bounds[q]), int(bounds[q + 1])
            if hi_row == lo_row:
                continue
            hist = histories[q]
            recent = hist.items[np.argsort(-hist.last_day, kind="stable")[:_HISTORY_FOR_SIMILARITY]]
            pool_items = items[lo_row:hi_row]
            sims = m.normed_vectors(pool_items) @ m.normed_vectors(recent.astype(np.int64)).T
            sims[pool_items[:, None] == recent[None, :]] = -1.0  # an item is not evidence for itself
            feats[lo_row:hi_row, col["cf_max_sim_history"]] = sims.max(axis=1)
    co = _index_of(sources, "copurchase")
    copurchase = np.zeros(n, dtype=np.float32)
    if co >= 0:
        of_list = entry_list == co
        copurchase[pool_row[of_list]] = all_scores[of_list]
    feats[:, col["copurchase_score"]] = copurchase
    tifu = _index_of(sources, "tifu_knn")
    if tifu >= 0 and getattr(sources[tifu], "part", None) is not None:
        tifu_score = np.zeros(n, dtype=np.float32)
        of_list = entry_list == tifu
        tifu_score[pool_row[of_list]] = all_scores[of_list]
        feats[:, col["tifu_score"]] = tifu_score

    if (channel == channel[0]).all():  # one channel for the whole batch (a live request, most batches)
        pop = (m.pop_channel[channel[0]] if channel[0] >= 0 else m.pop_global)[items]
    else:
        row_channel = channel[row_q]
        pop = np.where(row_channel >= 0, m.pop_channel[np.maximum(row_channel, 0), items] if m.pop_channel.size
                       else m.pop_global[items], m.pop_global[items]).astype(m.pop_global.dtype)
    feats[:, col["pop_channel"]] = np.log1p(np.maximum(pop, 0))
    feats[:, col["pop_global"]] = np.log1p(np.maximum(m.pop_global[items], 0))
    trend = m.item_trend
    feats[:, col["item_trend"]] = trend[items] if trend is not None else np.nan
    log_items = np.zeros(q_count)
    since_last = np.full(q_count, np.nan)
    log_count = np.zeros(q_count)
    repeat_share = np.full(q_count, np.nan)
    if with_hist.size:
        starts = h_start[with_hist]
        log_items[with_hist] = np.log1p(hist_len[with_hist])
        since_last[with_hist] = today[with_hist] - np.maximum.reduceat(h_last, starts).astype(np.int64)
        log_count[with_hist] = np.log1p(np.add.reduceat(np.maximum(h_count, 0), starts).astype(np.float64))
        repeat_share[with_hist] = np.add.reduceat((h_count >= 2).astype(np.int64), starts) / hist_len[with_hist]
    feats[:, col["cust_log_items"]] = log_items[row_q]
    feats[:, col["cust_days_since_last"]] = since_last[row_q]
    feats[:, col["cust_log_count"]] = log_count[row_q]
    feats[:, col["cust_repeat_share"]] = repeat_share[row_q]
    for name, source_name in (("rank_history", "repurchase"), ("rank_copurchase", "copurchase"),
                              ("rank_collaborative", "als"), ("rank_popularity", "popularity"),
                              ("rank_tifu", "tifu_knn")):
        i = _index_of(sources, source_name)
        if i >= 0:  # each list's entries sit at known rows of the pool (np.unique's inverse): no search
            of_list = entry_list == i
            feats[pool_row[of_list], col[name]] = entry_position[of_list].astype(np.float32)
    items = items.astype(np.int64)
    reason_list, reason_position = reason_list.astype(np.int64), reason_position.astype(np.int64)
    pools = [CandidatePool(items[lo:hi], feats[lo:hi], lists, reason_list[lo:hi], reason_position[lo:hi])
             for lists, lo, hi in zip(lists_of, bounds[:-1].tolist(), bounds[1:].tolist(), strict=True)]
    return PoolBatch(pools, feats, bounds)


_COLUMNS = {name: i for i, name in enumerate(FEATURE_NAMES)}


def _index_of(sources: Sequence[CandidateSource], name: str) -> int:
    for i, source in enumerate(sources):
        if source.name == name:
            return i
    return -1
