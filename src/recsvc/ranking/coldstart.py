"""Cold start: the answer for customers the trainer marked as having little or no history.

The trainer (:mod:`recsvc_training.models.coldstart`) fits a hybrid LightFM model on customer attributes (age group,
area, ...) and item attributes (category, brand, price band) and exports plain arrays: one vector and bias per
customer (the sum of their attribute embeddings), one per item, and ``coldstart_customer``, its choice of who
this source serves. A score is ``customer vector @ item vector + item bias``; an item nobody bought yet scores
through its attributes, so new items can be suggested.

When the set also carries the attribute groups' lists (``coldstart_group*``) and ``extra.coldstart.choice``,
the trainer chose, on the new customers of a validation window, how to blend three lists by weighted
reciprocal rank (:func:`fuse_cold_lists`): LightFM's top items, the customer's attribute group's most bought
items, and the newcomer popular list of the channel (:mod:`recsvc.ranking.popularity`). The server fuses the
same lists with the same function, so the answer is the one that was validated; such a set serves cold
customers from this source alone (:mod:`recsvc.ranking.paths`).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from recsvc.artifacts.parts.coldstart import ColdStart
from recsvc.ranking.model import LoadedModel
from recsvc.ranking.popularity import newcomer_orders
from recsvc.ranking.reasons import ReasonKind
from recsvc.ranking.sources import Candidates, CandidateSource, RankingContext, group_by_key, top_k

logger = logging.getLogger(__name__)

#: Items taken from each list before fusing (the trainer validates with the same depth).
COLD_LIST_DEPTH = 100
#: The reciprocal-rank offset of the fusion.
COLD_RANK_OFFSET = 60.0
#: The lists a choice weighs, in this order.
COLD_LISTS = ("lightfm", "attribute", "newcomer")


def fuse_cold_lists(lists: Sequence[np.ndarray], weights: Sequence[float]) -> tuple[np.ndarray, np.ndarray,
                                                                                     np.ndarray]:
    """Weighted reciprocal rank fusion of item-row lists (best first; ``-1`` entries ignored).

    Each list contributes ``weight / (COLD_RANK_OFFSET + rank)`` for its first :data:`COLD_LIST_DEPTH` items.
    Returns ``(items, scores, source)`` best first (ties by lower row), ``source`` the index of the list that
    contributed most to each item.
    """
    parts = []
    for i, (items, weight) in enumerate(zip(lists, weights, strict=True)):
        head = np.asarray(items, dtype=np.int64)[:COLD_LIST_DEPTH]
        head = head[head >= 0]
        if weight > 0 and head.size:
            parts.append((i, head, float(weight)))
    if not parts:
        empty = np.zeros(0, dtype=np.int64)
        return empty, np.zeros(0), empty
    items = np.concatenate([h for _, h, _ in parts])
    contrib = np.concatenate([w / (COLD_RANK_OFFSET + np.arange(1, h.size + 1, dtype=np.float64))
                              for _, h, w in parts])
    source = np.concatenate([np.full(h.size, i, dtype=np.int64) for i, h, _ in parts])
    grouped = group_by_key(items, contrib)
    order = np.lexsort((grouped.keys, -grouped.sums))
    return grouped.keys[order], grouped.sums[order], source[grouped.best[order]]


def choice_weights(choice: Mapping[str, Any]) -> tuple[float, float, float]:
    """The weights of :data:`COLD_LISTS` recorded in a choice (missing ones are 0)."""
    weights = choice.get("weights") or {}
    return tuple(float(weights.get(name, 0.0)) for name in COLD_LISTS)  # type: ignore[return-value]


class ColdStartSource(CandidateSource):
    """The cold-start answer for a customer the trainer marked cold; reason CUSTOMERS_LIKE_YOU (items from the
    newcomer popular list: POPULAR_ON_CHANNEL).

    A model without the cold-start part (:mod:`recsvc.artifacts.parts.coldstart`, validated when the set
    was read) serves nobody (:meth:`serves` is always False).
    """

    name = "coldstart"
    needs_customer = True

    def __init__(self, model: LoadedModel) -> None:
        super().__init__(model)
        part = model.parts.get(ColdStart)
        self._served: np.ndarray | None = None
        self._choice: tuple[float, float, float] | None = None
        if part is None:
            return
        self._users = np.asarray(part.user_embeddings, dtype=np.float32)
        # transposed and contiguous, like the ALS item factors: scoring the catalog is one ``user @ items_t``
        self._items_t = np.ascontiguousarray(np.asarray(part.item_embeddings, dtype=np.float32).T)
        self._item_biases = np.asarray(part.item_biases, dtype=np.float32)
        self._served = part.served
        if part.choice is not None and part.group is not None and part.group_items is not None:
            self._choice = choice_weights(part.choice)
            self._group = part.group
            self._group_items = part.group_items
            # the blend's own popular list when the trainer chose one for it, else the unknown customer's
            self._newcomer: tuple[np.ndarray, np.ndarray] | None = None
            if part.newcomer_items is not None:
                lists = np.asarray(part.newcomer_items, dtype=np.int64)
                self._newcomer = (lists[:-1], lists[-1])
            elif (orders := newcomer_orders(model)) is not None:
                self._newcomer = (orders[0][:, :COLD_LIST_DEPTH].copy(), orders[2][:COLD_LIST_DEPTH].copy())

    @property
    def chosen(self) -> bool:
        """Whether the set carries a blend chosen on validation (then cold customers get this source alone)."""
        return self._choice is not None

    def serves(self, customer_row: int) -> bool:
        """Whether the trainer chose this source for the customer (attributes known, little history)."""
        return self._served is not None and customer_row >= 0 and bool(self._served[customer_row])

    def lightfm_top(self, customer_row: int, k: int) -> tuple[np.ndarray, np.ndarray]:
        """LightFM's top-``k`` item rows for a customer row and their scores."""
        scores = self._users[customer_row] @ self._items_t + self._item_biases
        best = top_k(scores, k)
        return best, scores[best]

    def candidates(self, ctx: RankingContext, k: int) -> Candidates:
        if self._served is None or ctx.customer_row < 0:
            return Candidates.empty(self.name)
        if self._choice is None:
            best, scores = self.lightfm_top(ctx.customer_row, k)
            return Candidates.build(self.name, best, scores, ReasonKind.CUSTOMERS_LIKE_YOU)
        weights = self._choice
        lightfm = self.lightfm_top(ctx.customer_row, COLD_LIST_DEPTH)[0] if weights[0] > 0 else np.zeros(0, np.int64)
        group = self._group_items[int(self._group[ctx.customer_row])]
        newcomer = np.zeros(0, dtype=np.int64)
        if self._newcomer is not None and weights[2] > 0:
            newcomer = self._newcomer[0][ctx.channel_row] if ctx.channel_row >= 0 else self._newcomer[1]
        items, scores, source = fuse_cold_lists((lightfm, group, newcomer), weights)
        kinds = np.where(source == 2, ReasonKind.POPULAR_ON_CHANNEL if ctx.channel_row >= 0 else ReasonKind.POPULAR,
                         ReasonKind.CUSTOMERS_LIKE_YOU).astype(np.int8)
        return Candidates.build(self.name, items[:k], scores[:k].astype(np.float32), kinds[:k])
