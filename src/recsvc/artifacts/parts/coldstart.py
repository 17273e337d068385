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
====================  ==========================  =============================================

What the trainer decided (fitted or why not) is ``extra.coldstart``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from recsvc.artifacts.part import Part, SetContext, array, finite
from recsvc.artifacts.parts.catalog import Catalog
from recsvc.artifacts.parts.customers import Customers

LFM_USER_EMBEDDINGS = "lfm_user_embeddings"
LFM_USER_BIASES = "lfm_user_biases"
LFM_ITEM_EMBEDDINGS = "lfm_item_embeddings"
LFM_ITEM_BIASES = "lfm_item_biases"
COLDSTART_CUSTOMER = "coldstart_customer"
COLDSTART_EXTRA = "coldstart"


@dataclass(frozen=True, eq=False)
class ColdStart(Part):
    NAME = "coldstart"
    REQUIRED = False
    ARRAYS = (LFM_USER_EMBEDDINGS, LFM_USER_BIASES, LFM_ITEM_EMBEDDINGS, LFM_ITEM_BIASES, COLDSTART_CUSTOMER)
    EXTRA_KEYS = (COLDSTART_EXTRA,)

    user_embeddings: np.ndarray
    user_biases: np.ndarray
    item_embeddings: np.ndarray
    item_biases: np.ndarray
    served: np.ndarray
    meta: Mapping[str, Any] = field(default_factory=dict)

    def to_arrays(self) -> dict[str, np.ndarray]:
        return {LFM_USER_EMBEDDINGS: self.user_embeddings, LFM_USER_BIASES: self.user_biases,
                LFM_ITEM_EMBEDDINGS: self.item_embeddings, LFM_ITEM_BIASES: self.item_biases,
                COLDSTART_CUSTOMER: self.served}

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
                   dict(ctx.extra.get(COLDSTART_EXTRA) or {}))
        for name, values in part.to_arrays().items():
            if name != COLDSTART_CUSTOMER:
                finite(name, values)
        return part
