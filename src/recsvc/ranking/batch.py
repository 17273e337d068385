"""Ranking many customers at once: the one batch path of the nightly stored lists and of campaigns.

Both the serving fast path (a per-customer list ranked nightly and stored in the artifact set) and campaign
exports (suggestions for every customer of an audience) need what ``Recommend`` would answer, for many
customers, without a request each. They call this module and nothing else, so a stored list, a campaign's
list and a live ``Recommend`` for a customer without fresh events and without context are the same list by
construction (tests check it item for item).

Two shapes of the same answer:

* :func:`rank_rows` — item rows and scores as arrays (``[customers, n]``, ``-1`` padding), what an artifact
  part stores;
* :func:`recommend_many` — one :class:`~recsvc.ranking.results.RecommendResult` per customer, with reasons,
  what a campaign writes out.

Customers are processed in chunks so memory stays bounded for millions of customers; ``progress`` (when
given) is called with the number of customers done after each chunk.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np

from recsvc.artifacts.parts.stored_lists import SOURCES
from recsvc.errors import InvalidRequest
from recsvc.ids import clean_channel
from recsvc.ranking.paths import Ranked
from recsvc.ranking.recommender import RecommendationEngine
from recsvc.ranking.results import RecommendQuery, RecommendResult

#: Customers per chunk: bounds the memory of one step, whatever the audience's size.
CHUNK = 4096
#: Customers whose pools go through one tree evaluation (a few thousand candidate rows): large enough that
#: the ensemble's per-call cost is shared, small enough that its scratch stays in cache.
TREE_BATCH = 32

Progress = Callable[[int], None]


@dataclass(frozen=True)
class RankedRows:
    """Top ``n`` item rows per customer on one channel: ``items[i]`` for ``customer_rows[i]``, best first,
    ``-1`` where fewer than ``n`` items could be ranked; ``scores`` beside them (NaN at padding).

    :func:`stored_rows` also gives, per entry, the candidate source its reason comes from (``source``, codes
    of :data:`recsvc.artifacts.parts.stored_lists.SOURCES`, ``-1`` padding) and the item behind a co-purchase
    reason (``anchor``, ``-1`` otherwise); :func:`rank_rows` leaves them None."""

    customer_rows: np.ndarray  # int64 [m]
    items: np.ndarray          # int32 [m, n]
    scores: np.ndarray         # float32 [m, n]
    source: np.ndarray | None = None  # int8 [m, n]
    anchor: np.ndarray | None = None  # int32 [m, n]


def _channel_row(engine: RecommendationEngine, channel: str) -> int:
    if not channel:
        raise InvalidRequest("channel: required; name the channel to rank for")
    return engine.model.channel_row(clean_channel(channel))


def _pools(engine: RecommendationEngine, rows: np.ndarray, channel_row: int) -> Iterator[tuple[int, Ranked | None]]:
    """(index into ``rows``, the customer's ranked pool or None) for every row, trees batched."""
    for start in range(0, rows.size, TREE_BATCH):
        batch = rows[start:start + TREE_BATCH].tolist()
        yield from enumerate(engine.ranked_pools(batch, channel_row), start)


def stored_rows(engine: RecommendationEngine, customer_rows: np.ndarray, channel: str, length: int,
                progress: Progress | None = None) -> tuple[RankedRows, np.ndarray]:
    """The stored-list rows: each customer's ranked pool on ``channel`` (items sellable there, best first, no
    popularity fill), cut to ``length``, with the reason source and anchor of every entry; and a bool per
    customer, whether the learned ranker ranks them (False rows are all padding: they are served live)."""
    rows = np.asarray(customer_rows, dtype=np.int64)
    channel_row = _channel_row(engine, channel)
    items = np.full((rows.size, length), -1, dtype=np.int32)
    scores = np.full((rows.size, length), np.nan, dtype=np.float32)
    source = np.full((rows.size, length), -1, dtype=np.int8)
    anchor = np.full((rows.size, length), -1, dtype=np.int32)
    ranked = np.zeros(rows.size, dtype=bool)
    done = 0
    for i, pool in _pools(engine, rows, channel_row):
        if pool is not None:
            ranked[i] = True
            k = min(length, pool.items.size)
            items[i, :k] = pool.items[:k]
            scores[i, :k] = pool.scores[:k]
            source[i, :k] = _source_codes(pool)[pool.source[:k]]
            anchor[i, :k] = _anchors(pool, k)
        done = i + 1
        if progress is not None and (done % CHUNK == 0 or done == rows.size):
            progress(done)
    return RankedRows(rows, items, scores, source, anchor), ranked


def _source_codes(pool: Ranked) -> np.ndarray:
    """The stored code (:data:`~recsvc.artifacts.parts.stored_lists.SOURCES`) of each of ``pool``'s lists."""
    return np.array([SOURCES.index(c.source) for c in pool.lists], dtype=np.int8)


def _anchors(pool: Ranked, k: int) -> np.ndarray:
    """The first reason item of the co-purchase entries among the first ``k`` of ``pool`` (``-1`` others)."""
    out = np.full(k, -1, dtype=np.int32)
    source, position = pool.source[:k], pool.position[:k]
    for list_index in np.unique(source).tolist():
        candidates = pool.lists[list_index]
        if candidates.source == "copurchase":
            at = np.flatnonzero(source == list_index)
            out[at] = candidates.reason_items[position[at], 0]
    return out


def rank_rows(engine: RecommendationEngine, customer_rows: np.ndarray, channel: str, n: int,
              progress: Progress | None = None) -> RankedRows:
    """What ``Recommend`` ranks first for each customer row on ``channel`` (no store, no exclusions, no
    context, no live events): the stored-list contract. ``channel`` must be non-empty.

    Customers on the learned path are ranked in batches (:meth:`RecommendationEngine.ranked_pools`, one tree
    evaluation per :data:`TREE_BATCH` customers); the others (rank fusion, cold start, a policy that hides
    items, a pool the popularity fill would have to complete, an unknown channel) go through
    :meth:`RecommendationEngine.recommend` one by one, so every row is what ``Recommend`` answers."""
    model = engine.model
    rows = np.asarray(customer_rows, dtype=np.int64)
    channel_row = _channel_row(engine, channel)
    items = np.full((rows.size, n), -1, dtype=np.int32)
    scores = np.full((rows.size, n), np.nan, dtype=np.float32)
    done = 0
    for i, pool in _pools(engine, rows, channel_row):
        if pool is not None and pool.items.size >= n:
            items[i] = pool.items[:n]
            scores[i] = pool.scores[:n]
        else:
            result = engine.recommend(RecommendQuery(customer_id=model.customer_id(int(rows[i])), channel=channel,
                                                     num_items=n))
            found = model.items.lookup([s.item_id for s in result.items])
            items[i, :found.size] = found
            scores[i, :found.size] = [s.score for s in result.items]
        done = i + 1
        if progress is not None and (done % CHUNK == 0 or done == rows.size):
            progress(done)
    return RankedRows(rows, items, scores)


def recommend_many(engine: RecommendationEngine, customer_ids: Sequence[str], channel: str, n: int,
                   store_id: str = "", progress: Progress | None = None) -> Iterator[RecommendResult]:
    """``Recommend`` for each customer id (or alias) on ``channel``, in order, as the server would answer it
    with no context and no live events. Raises what :meth:`RecommendationEngine.recommend` raises.

    A model with stored lists answers most customers from them (the engine's fast path: the same answer,
    without ranking); the rest are ranked live."""
    done = 0
    for customer_id in customer_ids:
        yield engine.recommend(RecommendQuery(customer_id=customer_id, channel=channel, store_id=store_id,
                                              num_items=n))
        done += 1
        if progress is not None and done % CHUNK == 0:
            progress(done)
    if progress is not None and done % CHUNK:
        progress(done)
