"""The stores the training data names (rows of every per-store array).

=================  ==========================  =============================================
array              dtype, shape                meaning
=================  ==========================  =============================================
store_ids          U, [n_stores]               sorted store ids
=================  ==========================  =============================================
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from recsvc.artifacts.part import Part, SetContext, array, sorted_unique

STORE_IDS = "store_ids"


@dataclass(frozen=True, eq=False)
class Stores(Part):
    NAME = "stores"
    REQUIRED = True
    ARRAYS = (STORE_IDS,)

    store_ids: np.ndarray

    @property
    def n_stores(self) -> int:
        return int(self.store_ids.shape[0])

    def to_arrays(self) -> dict[str, np.ndarray]:
        return {STORE_IDS: self.store_ids}

    @classmethod
    def from_arrays(cls, arrays: Mapping[str, np.ndarray], ctx: SetContext) -> Stores:
        ids = array(arrays, STORE_IDS, "U", (None,))
        sorted_unique(STORE_IDS, ids)
        return cls(ids)
