"""The learned blend: candidates from every source, ranked by a tree ensemble the trainer fitted.

A weighted sum of raw scores from different sources rarely works (their scales and meanings differ); the
recipe that wins in retail recommendation is to generate candidates from several sources and rank them with a
learned ranker on features such as purchase count, recency against the customer's usual interval, ALS score,
co-purchase score and popularity. The trainer learns the ensemble (LightGBM learning to rank) on a validation window
that ends before the evaluation window, so the data decides whether repeat or discovery matters more; the
server evaluates it in numpy (:mod:`recsvc.ranking.trees`). Every item keeps the reason of the source that put
it in the pool (history first, then co-purchase, ALS, popularity).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from recsvc.artifacts import ArtifactError
from recsvc.artifacts.parts.ranker import RankerPart
from recsvc.ranking.als import AlsSource
from recsvc.ranking.cascade import Cascade, CascadeSettings
from recsvc.ranking.copurchase import CoPurchaseSource
from recsvc.ranking.features import FEATURE_NAMES, CandidatePool, build_pools
from recsvc.ranking.model import LoadedModel
from recsvc.ranking.next_basket import NextBasketSource
from recsvc.ranking.popularity import PopularitySource
from recsvc.ranking.repurchase import RepurchaseSource
from recsvc.ranking.sources import CandidateSource, RankingContext
from recsvc.ranking.trees import TreeEnsemble

logger = logging.getLogger(__name__)

#: Candidates each source proposes to the pool (history items are all kept, up to this many).
DEFAULT_POOL_PER_SOURCE = 100


class HistorySource(RepurchaseSource):
    """The customer's whole purchase history as candidates (no minimum score): the ranker decides."""

    name = "repurchase"
    min_score = -np.inf


class BasketNeighbourSource(CoPurchaseSource):
    """Co-purchase neighbours of a longer stretch of the history than the rank blend uses: with a ranker to
    weigh them, more seeds mean more of the customer's next basket in the pool (item-kNN-like recall)."""

    recent_items = 30


def pool_sources(model: LoadedModel) -> tuple[CandidateSource, ...]:
    """The pool's sources, in reason-priority order."""
    return (HistorySource(model), NextBasketSource(model), BasketNeighbourSource(model), AlsSource(model),
            PopularitySource(model))


@dataclass(frozen=True)
class RankedPool:
    """The pool and its order: ``order`` indexes ``pool.items`` best first, ``scores`` are the ranker's."""

    pool: CandidatePool
    order: np.ndarray
    scores: np.ndarray


class LearnedRanker:
    """Scores a request's candidate pool with the trained ensemble.

    Built once per loaded model; thread-safe (no per-request state).
    """

    def __init__(self, model: LoadedModel, ensemble: TreeEnsemble,
                 pool_per_source: int = DEFAULT_POOL_PER_SOURCE, cascade: CascadeSettings | None = None) -> None:
        if tuple(ensemble.feature_names) != FEATURE_NAMES:
            raise ArtifactError(
                f"model {model.version}: the ranker was trained on features {list(ensemble.feature_names)}, "
                f"this server computes {list(FEATURE_NAMES)}; retrain with this version of recsvc")
        self.model = model
        self.ensemble = ensemble
        self.pool_per_source = pool_per_source
        self.sources = pool_sources(model)
        #: Two-stage scoring (:mod:`recsvc.ranking.cascade`) when the trainer chose it; else every row, every tree.
        self.cascade = Cascade(ensemble, cascade) if cascade is not None else None

    @classmethod
    def from_model(cls, model: LoadedModel) -> LearnedRanker | None:
        """The model's learned ranker, or None when the artifact set holds none (the engine then blends by
        rank); a malformed ranker was refused with the set (:mod:`recsvc.artifacts.parts.ranker`)."""
        part = model.parts.get(RankerPart)
        if part is None:
            return None
        pool_per_source = int(part.stats.get("pool_per_source", DEFAULT_POOL_PER_SOURCE))
        return cls(model, TreeEnsemble.from_part(part), pool_per_source, CascadeSettings.from_stats(part.stats))

    def rank(self, ctx: RankingContext) -> RankedPool:
        """The pool for ``ctx`` ordered by the ranker (ties by lower item row): :meth:`rank_many` of one."""
        return self.rank_many([ctx])[0]

    def rank_many(self, contexts: Sequence[RankingContext]) -> list[RankedPool]:
        """:meth:`rank` for each context: the pools built together (:func:`~recsvc.ranking.features.build_pools`)
        and the ensemble evaluated once over all their rows (a tree evaluation's cost is mostly per call, and a
        row's score does not depend on the other rows, so each pool gets the scores it gets alone)."""
        batch = build_pools(self.model, contexts, self.sources, self.pool_per_source)
        if batch.features.shape[0] == 0:
            return [RankedPool(pool, np.zeros(0, dtype=np.int64), np.zeros(0)) for pool in batch.pools]
        scores = (self.cascade.scores(batch.features, batch.bounds) if self.cascade is not None
                  else self.ensemble.predict(batch.features))
        bounds = batch.bounds.tolist()
        return [self._ordered(pool, scores[lo:hi]) if hi > lo else
                RankedPool(pool, np.zeros(0, dtype=np.int64), np.zeros(0))
                for pool, lo, hi in zip(batch.pools, bounds[:-1], bounds[1:], strict=True)]

    @staticmethod
    def _ordered(pool: CandidatePool, scores: np.ndarray) -> RankedPool:
        order = np.lexsort((pool.items, -scores))
        return RankedPool(pool, order.astype(np.int64), scores[order])
