"""Cold start: LightFM scores for customers the trainer marked as having little or no history.

The trainer (:mod:`recsvc_training.models.coldstart`) fits a hybrid LightFM model on customer attributes (age group,
area, ...) and item attributes (category, brand, price band) and exports plain arrays: one vector and bias per
customer (the sum of their attribute embeddings), one per item, and ``coldstart_customer``, its choice of who
this source serves. A score is ``customer vector @ item vector + item bias``; an item nobody bought yet scores
through its attributes, so new items can be suggested.
"""

from __future__ import annotations

import logging

import numpy as np

from recsvc.artifacts.parts.coldstart import ColdStart
from recsvc.ranking.model import LoadedModel
from recsvc.ranking.reasons import ReasonKind
from recsvc.ranking.sources import Candidates, CandidateSource, RankingContext, top_k

logger = logging.getLogger(__name__)


class ColdStartSource(CandidateSource):
    """Top-``k`` items by LightFM score for a customer the trainer marked cold; reason CUSTOMERS_LIKE_YOU.

    A model without the cold-start part (:mod:`recsvc.artifacts.parts.coldstart`, validated when the set
    was read) serves nobody (:meth:`serves` is always False).
    """

    name = "coldstart"
    needs_customer = True

    def __init__(self, model: LoadedModel) -> None:
        super().__init__(model)
        part = model.parts.get(ColdStart)
        self._served: np.ndarray | None = None
        if part is None:
            return
        self._users = np.asarray(part.user_embeddings, dtype=np.float32)
        # transposed and contiguous, like the ALS item factors: scoring the catalog is one ``user @ items_t``
        self._items_t = np.ascontiguousarray(np.asarray(part.item_embeddings, dtype=np.float32).T)
        self._item_biases = np.asarray(part.item_biases, dtype=np.float32)
        self._served = part.served

    def serves(self, customer_row: int) -> bool:
        """Whether the trainer chose this source for the customer (attributes known, little history)."""
        return self._served is not None and customer_row >= 0 and bool(self._served[customer_row])

    def candidates(self, ctx: RankingContext, k: int) -> Candidates:
        if self._served is None or ctx.customer_row < 0:
            return Candidates.empty(self.name)
        scores = self._users[ctx.customer_row] @ self._items_t + self._item_biases
        best = top_k(scores, k)
        return Candidates.build(self.name, best, scores[best], ReasonKind.CUSTOMERS_LIKE_YOU)
