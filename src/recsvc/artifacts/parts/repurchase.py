"""How often items are bought again: the repurchase cycle the "buy it again" source times itself by.

======================  =========================  =============================================
array                   dtype, shape               meaning
======================  =========================  =============================================
item_repurchase_days    float32, [n_items]         median days between repeat buys (NaN = none)
item_repurchase_rate    float32, [n_items]         share of buyers who bought it again
======================  =========================  =============================================
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from recsvc.artifacts.part import Part, SetContext, array
from recsvc.artifacts.parts.catalog import Catalog

ITEM_REPURCHASE_DAYS = "item_repurchase_days"
ITEM_REPURCHASE_RATE = "item_repurchase_rate"


@dataclass(frozen=True, eq=False)
class Repurchase(Part):
    NAME = "repurchase"
    REQUIRED = True
    ARRAYS = (ITEM_REPURCHASE_DAYS, ITEM_REPURCHASE_RATE)

    days: np.ndarray
    rate: np.ndarray

    def to_arrays(self) -> dict[str, np.ndarray]:
        return {ITEM_REPURCHASE_DAYS: self.days, ITEM_REPURCHASE_RATE: self.rate}

    @classmethod
    def from_arrays(cls, arrays: Mapping[str, np.ndarray], ctx: SetContext) -> Repurchase:
        n = ctx.get(Catalog).n_items
        return cls(array(arrays, ITEM_REPURCHASE_DAYS, "f", (n,)), array(arrays, ITEM_REPURCHASE_RATE, "f", (n,)))
