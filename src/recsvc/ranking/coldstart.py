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

from recsvc.artifacts import ArtifactError
from recsvc.ranking.model import LoadedModel
from recsvc.ranking.reasons import ReasonKind
from recsvc.ranking.sources import Candidates, CandidateSource, RankingContext, top_k

logger = logging.getLogger(__name__)

#: The optional arrays this source reads (see :mod:`recsvc.artifacts`).
COLDSTART_ARRAYS: tuple[str, ...] = ("lfm_user_embeddings", "lfm_user_biases", "lfm_item_embeddings",
                                     "lfm_item_biases", "coldstart_customer")


class ColdStartSource(CandidateSource):
    """Top-``k`` items by LightFM score for a customer the trainer marked cold; reason CUSTOMERS_LIKE_YOU.

    A model without the cold-start arrays serves nobody (:meth:`serves` is always False).

    Raises
    ------
    ArtifactError
        At construction, when the arrays are present but their shapes or dtypes do not fit the model (the
        set is refused rather than served with wrong rows).
    """

    name = "coldstart"
    needs_customer = True

    def __init__(self, model: LoadedModel) -> None:
        super().__init__(model)
        arrays = model.arrays
        present = [name for name in COLDSTART_ARRAYS if name in arrays]
        self._served: np.ndarray | None = None
        if not present:
            return
        if len(present) != len(COLDSTART_ARRAYS):
            missing = sorted(set(COLDSTART_ARRAYS) - set(present))
            raise ArtifactError(f"model {model.version}: cold-start arrays incomplete, missing {missing}")
        users, items = arrays["lfm_user_embeddings"], arrays["lfm_item_embeddings"]
        expect = {"lfm_user_embeddings": (model.n_customers, users.shape[-1]),
                  "lfm_user_biases": (model.n_customers,),
                  "lfm_item_embeddings": (model.n_items, users.shape[-1]),
                  "lfm_item_biases": (model.n_items,), "coldstart_customer": (model.n_customers,)}
        for name, shape in expect.items():
            if arrays[name].shape != shape:
                raise ArtifactError(f"model {model.version}: {name} has shape {arrays[name].shape}, expected {shape}")
        if arrays["coldstart_customer"].dtype != np.bool_:
            raise ArtifactError(f"model {model.version}: coldstart_customer must be bool")
        self._users = np.asarray(users, dtype=np.float32)
        # transposed and contiguous, like the ALS item factors: scoring the catalog is one ``user @ items_t``
        self._items_t = np.ascontiguousarray(np.asarray(items, dtype=np.float32).T)
        self._item_biases = np.asarray(arrays["lfm_item_biases"], dtype=np.float32)
        self._served = arrays["coldstart_customer"]

    def serves(self, customer_row: int) -> bool:
        """Whether the trainer chose this source for the customer (attributes known, little history)."""
        return self._served is not None and customer_row >= 0 and bool(self._served[customer_row])

    def candidates(self, ctx: RankingContext, k: int) -> Candidates:
        if self._served is None or ctx.customer_row < 0:
            return Candidates.empty(self.name)
        scores = self._users[ctx.customer_row] @ self._items_t + self._item_biases
        best = top_k(scores, k)
        return Candidates.build(self.name, best, scores[best], ReasonKind.CUSTOMERS_LIKE_YOU)
