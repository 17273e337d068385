"""The optional cold-start model: LightFM vectors for customers the trainer marked as having little history.

====================  ==========================  =============================================
array                 dtype, shape                meaning
====================  ==========================  =============================================
lfm_user_embeddings   float32, [n_customers, d]   LightFM vector (sum of the customer's
                                                  attribute embeddings)
lfm_user_biases       float32, [n_customers]      LightFM user bias
lfm_item_embeddings   float32, [n_items, d]       LightFM item vector
lfm_item_biases       float32, [n_items]          LightFM item bias
coldstart_customer    bool, [n_customers]         the trainer's choice of customers served by
                                                  the cold-start source
coldstart_group       int32, [n_customers]        optional: each customer's attribute group, a
                                                  row of ``coldstart_group_items`` (the last row
                                                  is everyone: no group, or a small one)
coldstart_group_      int32, [n_groups + 1, d]    optional: items by distinct buyers within the
items                                             group, best first (-1 pads)
coldstart_newcomer_   int32, [n_ch + 1, d]        optional: the popular list the blend uses, per
items                                             channel (last row: unknown channel; -1 pads)
====================  ==========================  =============================================

What the trainer decided (fitted or why not) is ``extra.coldstart``; with the group arrays,
``extra.coldstart.choice`` holds the blend chosen on a validation window (weights of the LightFM list, the
attribute group's list and the newcomer popular list; ``recsvc.ranking.coldstart.fuse_cold_lists``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from recsvc.artifacts.errors import ArtifactError
from recsvc.artifacts.part import Part, SetContext, array, finite, optional_array, rows_within
from recsvc.artifacts.parts.catalog import Catalog
from recsvc.artifacts.parts.customers import Customers

LFM_USER_EMBEDDINGS = "lfm_user_embeddings"
LFM_USER_BIASES = "lfm_user_biases"
LFM_ITEM_EMBEDDINGS = "lfm_item_embeddings"
LFM_ITEM_BIASES = "lfm_item_biases"
COLDSTART_CUSTOMER = "coldstart_customer"
COLDSTART_GROUP = "coldstart_group"
COLDSTART_GROUP_ITEMS = "coldstart_group_items"
COLDSTART_NEWCOMER_ITEMS = "coldstart_newcomer_items"
COLDSTART_EXTRA = "coldstart"


@dataclass(frozen=True, eq=False)
class ColdStart(Part):
    NAME = "coldstart"
    REQUIRED = False
    ARRAYS = (LFM_USER_EMBEDDINGS, LFM_USER_BIASES, LFM_ITEM_EMBEDDINGS, LFM_ITEM_BIASES, COLDSTART_CUSTOMER,
              COLDSTART_GROUP, COLDSTART_GROUP_ITEMS, COLDSTART_NEWCOMER_ITEMS)
    OPTIONAL_ARRAYS = (COLDSTART_GROUP, COLDSTART_GROUP_ITEMS, COLDSTART_NEWCOMER_ITEMS)
    EXTRA_KEYS = (COLDSTART_EXTRA,)

    user_embeddings: np.ndarray
    user_biases: np.ndarray
    item_embeddings: np.ndarray
    item_biases: np.ndarray
    served: np.ndarray
    meta: Mapping[str, Any] = field(default_factory=dict)
    group: np.ndarray | None = None
    group_items: np.ndarray | None = None
    newcomer_items: np.ndarray | None = None

    @property
    def choice(self) -> Mapping[str, Any] | None:
        """The blend chosen on validation (``meta["choice"]``), or None: serve LightFM in the rank blend."""
        found = self.meta.get("choice")
        return found if isinstance(found, Mapping) and self.group is not None else None

    def to_arrays(self) -> dict[str, np.ndarray]:
        arrays = {LFM_USER_EMBEDDINGS: self.user_embeddings, LFM_USER_BIASES: self.user_biases,
                  LFM_ITEM_EMBEDDINGS: self.item_embeddings, LFM_ITEM_BIASES: self.item_biases,
                  COLDSTART_CUSTOMER: self.served}
        if self.group is not None and self.group_items is not None:
            arrays[COLDSTART_GROUP] = self.group
            arrays[COLDSTART_GROUP_ITEMS] = self.group_items
        if self.newcomer_items is not None:
            arrays[COLDSTART_NEWCOMER_ITEMS] = self.newcomer_items
        return arrays

    def to_extra(self) -> dict[str, Any]:
        return {COLDSTART_EXTRA: dict(self.meta)}

    @classmethod
    def from_arrays(cls, arrays: Mapping[str, np.ndarray], ctx: SetContext) -> ColdStart:
        n_customers, n_items = ctx.get(Customers).n_customers, ctx.get(Catalog).n_items
        users = array(arrays, LFM_USER_EMBEDDINGS, "f", (n_customers, None))
        part = cls(users, array(arrays, LFM_USER_BIASES, "f", (n_customers,)),
                   array(arrays, LFM_ITEM_EMBEDDINGS, "f", (n_items, users.shape[1])),
                   array(arrays, LFM_ITEM_BIASES, "f", (n_items,)),
                   array(arrays, COLDSTART_CUSTOMER, "b", (n_customers,)),
                   dict(ctx.extra.get(COLDSTART_EXTRA) or {}),
                   optional_array(arrays, COLDSTART_GROUP, "iu", (n_customers,)),
                   optional_array(arrays, COLDSTART_GROUP_ITEMS, "iu", (None, None)),
                   optional_array(arrays, COLDSTART_NEWCOMER_ITEMS, "iu", (ctx.n_channels + 1, None)))
        if part.newcomer_items is not None:
            rows_within(COLDSTART_NEWCOMER_ITEMS, part.newcomer_items, n_items, allow_missing=True)
        if (part.group is None) != (part.group_items is None):
            raise ArtifactError(f"{COLDSTART_GROUP} and {COLDSTART_GROUP_ITEMS} come together or not at all")
        if part.group is not None and part.group_items is not None:
            rows_within(COLDSTART_GROUP, part.group, part.group_items.shape[0])
            rows_within(COLDSTART_GROUP_ITEMS, part.group_items, n_items, allow_missing=True)
        for name in (LFM_USER_EMBEDDINGS, LFM_USER_BIASES, LFM_ITEM_EMBEDDINGS, LFM_ITEM_BIASES):
            finite(name, part.to_arrays()[name])
        return part
