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

from recsvc.ranking.recommender import RecommendationEngine
from recsvc.ranking.results import RecommendQuery, RecommendResult

#: Customers per chunk: bounds the memory of one step, whatever the audience's size.
CHUNK = 4096

Progress = Callable[[int], None]


@dataclass(frozen=True)
class RankedRows:
    """Top ``n`` item rows per customer on one channel: ``items[i]`` for ``customer_rows[i]``, best first,
    ``-1`` where fewer than ``n`` items could be ranked; ``scores`` beside them (NaN at padding)."""

    customer_rows: np.ndarray  # int64 [m]
    items: np.ndarray          # int32 [m, n]
    scores: np.ndarray         # float32 [m, n]


def rank_rows(engine: RecommendationEngine, customer_rows: np.ndarray, channel: str, n: int,
              progress: Progress | None = None) -> RankedRows:
    """What ``Recommend`` ranks first for each customer row on ``channel`` (no store, no exclusions, no
    context, no live events): the stored-list contract. ``channel`` must be non-empty."""
    model = engine.model
    rows = np.asarray(customer_rows, dtype=np.int64)
    items = np.full((rows.size, n), -1, dtype=np.int32)
    scores = np.full((rows.size, n), np.nan, dtype=np.float32)
    for start in range(0, rows.size, CHUNK):
        chunk = rows[start:start + CHUNK]
        for offset, result in enumerate(recommend_many(engine, [model.customer_id(int(r)) for r in chunk],
                                                       channel, n)):
            found = model.items.lookup([s.item_id for s in result.items])
            items[start + offset, :found.size] = found
            scores[start + offset, :found.size] = [s.score for s in result.items]
        if progress is not None:
            progress(min(rows.size, start + CHUNK))
    return RankedRows(rows, items, scores)


def recommend_many(engine: RecommendationEngine, customer_ids: Sequence[str], channel: str, n: int,
                   store_id: str = "", progress: Progress | None = None) -> Iterator[RecommendResult]:
    """``Recommend`` for each customer id (or alias) on ``channel``, in order, as the server would answer it
    with no context and no live events. Raises what :meth:`RecommendationEngine.recommend` raises."""
    done = 0
    for customer_id in customer_ids:
        yield engine.recommend(RecommendQuery(customer_id=customer_id, channel=channel, store_id=store_id,
                                              num_items=n))
        done += 1
        if progress is not None and done % CHUNK == 0:
            progress(done)
    if progress is not None and done % CHUNK:
        progress(done)
