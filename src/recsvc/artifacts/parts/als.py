"""Implicit ALS factors: one vector per customer and per item (score = their dot product).

=================  ==========================  =============================================
array              dtype, shape                meaning
=================  ==========================  =============================================
als_user_factors   float32, [n_customers, f]   customer factors
als_item_factors   float32, [n_items, f]       item factors
=================  ==========================  =============================================
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from recsvc.artifacts.errors import ArtifactError
from recsvc.artifacts.part import Part, SetContext, array, finite
from recsvc.artifacts.parts.catalog import Catalog
from recsvc.artifacts.parts.customers import Customers

ALS_USER_FACTORS = "als_user_factors"
ALS_ITEM_FACTORS = "als_item_factors"


@dataclass(frozen=True, eq=False)
class AlsFactors(Part):
    NAME = "als"
    REQUIRED = True
    ARRAYS = (ALS_USER_FACTORS, ALS_ITEM_FACTORS)

    user_factors: np.ndarray
    item_factors: np.ndarray

    def to_arrays(self) -> dict[str, np.ndarray]:
        return {ALS_USER_FACTORS: self.user_factors, ALS_ITEM_FACTORS: self.item_factors}

    @classmethod
    def from_arrays(cls, arrays: Mapping[str, np.ndarray], ctx: SetContext) -> AlsFactors:
        users = array(arrays, ALS_USER_FACTORS, "f", (ctx.get(Customers).n_customers, None))
        items = array(arrays, ALS_ITEM_FACTORS, "f", (ctx.get(Catalog).n_items, None))
        if users.shape[1] != items.shape[1]:
            raise ArtifactError("ALS customer and item factors differ in width")
        finite(ALS_USER_FACTORS, users)
        finite(ALS_ITEM_FACTORS, items)
        return cls(users, items)
