"""The optional nightly ranking: per channel, the learned ranker's top list for every ranked customer.

The trainer (``recsvc_training.ranker.stored_lists``) ranks, with the served engine's own code, the top
``L`` items per channel for each customer it chose (those with history, or active in a window), and the
server answers a customer with no live events and no context ids from that list, the request's filters
applied at request time (:mod:`recsvc.ranking.stored`). Arrays are plain numbers, memory-mapped by the
server, so every worker process shares their pages.

=====================  ===================================  ================================================
array                  dtype, shape                         meaning
=====================  ===================================  ================================================
stored_customers       int32, [m]                           customer rows with a list, sorted ascending
stored_items           int32, [n_channels, m, L]            item rows, best first, sellable on the channel;
                                                            ``-1`` pads a shorter list
stored_scores          float32, [n_channels, m, L]          the ranker's scores (NaN at padding)
stored_source          int8, [n_channels, m, L]             the candidate source the item's reason comes
                                                            from: 0 history, 1 co-purchase, 2 ALS,
                                                            3 popularity (:data:`SOURCES`); ``-1`` padding
stored_anchor          int32, [n_channels, m, L]            the item row behind a co-purchase reason (the
                                                            seed it was bought with); ``-1`` otherwise
=====================  ===================================  ================================================

``extra.stored_lists`` records ``day`` (the reference day, days since 1970-01-01, the lists were ranked as
of), ``length`` (``L``), the ranked ``channels`` (the manifest's, in order) and the build's timing. Reasons are
built at request time for the returned items only, from the source code, the anchor and the customer's
history (the same numbers the live candidate lists carry).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from recsvc.artifacts.errors import ArtifactError
from recsvc.artifacts.part import Part, SetContext, array, rows_within, sorted_unique
from recsvc.artifacts.parts.catalog import Catalog
from recsvc.artifacts.parts.customers import Customers

STORED_CUSTOMERS = "stored_customers"
STORED_ITEMS = "stored_items"
STORED_SCORES = "stored_scores"
STORED_SOURCE = "stored_source"
STORED_ANCHOR = "stored_anchor"
STORED_EXTRA = "stored_lists"

#: Source codes of ``stored_source``, in the learned pool's reason-priority order.
SOURCES: tuple[str, ...] = ("repurchase", "copurchase", "als", "popularity", "tifu_knn")


@dataclass(frozen=True, eq=False)
class StoredLists(Part):
    NAME = "stored_lists"
    REQUIRED = False
    ARRAYS = (STORED_CUSTOMERS, STORED_ITEMS, STORED_SCORES, STORED_SOURCE, STORED_ANCHOR)
    EXTRA_KEYS = (STORED_EXTRA,)

    customers: np.ndarray
    items: np.ndarray
    scores: np.ndarray
    source: np.ndarray
    anchor: np.ndarray
    meta: Mapping[str, Any] = field(default_factory=dict)

    @property
    def length(self) -> int:
        """``L``: items stored per customer and channel."""
        return int(self.items.shape[2])

    @property
    def day(self) -> int:
        """The reference day the lists were ranked as of (days since 1970-01-01)."""
        return int(self.meta.get("day", -1))

    def slot(self, customer_row: int) -> int:
        """Index of ``customer_row`` into the lists' customer axis, ``-1`` when it has no list."""
        rows = self.customers
        at = int(np.searchsorted(rows, customer_row))
        return at if at < rows.size and int(rows[at]) == customer_row else -1

    def to_arrays(self) -> dict[str, np.ndarray]:
        return {STORED_CUSTOMERS: self.customers, STORED_ITEMS: self.items, STORED_SCORES: self.scores,
                STORED_SOURCE: self.source, STORED_ANCHOR: self.anchor}

    def to_extra(self) -> dict[str, Any]:
        return {STORED_EXTRA: dict(self.meta)}

    @classmethod
    def from_arrays(cls, arrays: Mapping[str, np.ndarray], ctx: SetContext) -> StoredLists:
        n_customers, n_items = ctx.get(Customers).n_customers, ctx.get(Catalog).n_items
        customers = array(arrays, STORED_CUSTOMERS, "i", (None,))
        items = array(arrays, STORED_ITEMS, "i", (ctx.n_channels, customers.size, None))
        shape = items.shape
        part = cls(customers, items, array(arrays, STORED_SCORES, "f", shape),
                   array(arrays, STORED_SOURCE, "i", shape), array(arrays, STORED_ANCHOR, "i", shape),
                   dict(ctx.extra.get(STORED_EXTRA) or {}))
        sorted_unique(STORED_CUSTOMERS, customers)
        rows_within(STORED_CUSTOMERS, customers, n_customers)
        # Bounds by min/max only (one pass each): a full check of every entry's padding would read the
        # arrays several times at load, and the serving code treats any negative row as padding.
        rows_within(STORED_ITEMS, items, n_items, allow_missing=True)
        rows_within(STORED_ANCHOR, part.anchor, n_items, allow_missing=True)
        rows_within(STORED_SOURCE, part.source, len(SOURCES), allow_missing=True)
        recorded = part.meta.get("channels")
        if recorded is not None and list(recorded) != list(ctx.channels):
            raise ArtifactError(f"{STORED_EXTRA}: ranked for channels {list(recorded)}, the set has "
                                f"{list(ctx.channels)}")
        return part
