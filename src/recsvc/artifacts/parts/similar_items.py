"""Which method answers SimilarItems, as the trainer chose it on a validation window.

No arrays: ``extra.similar_items`` holds ``method`` (one of :data:`SIMILAR_METHODS`) and the validation
numbers behind the choice. A set without it (older, or a run that could not validate) answers with ALS
cosine, as before. A method that needs the item-kNN part is refused when the set lacks it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from recsvc.artifacts.errors import ArtifactError
from recsvc.artifacts.part import Part, SetContext
from recsvc.artifacts.parts.item_neighbours import ItemNeighbours

SIMILAR_EXTRA = "similar_items"
#: ALS cosine of item factors; co-purchase neighbours (the co-purchase part); item-kNN (cosine of buyer
#: sets, the item-neighbours part); their reciprocal-rank blend.
SIMILAR_METHODS = ("als", "copurchase", "item_knn", "blend")
#: Methods that read the item-neighbours part.
NEEDS_KNN = ("item_knn", "blend")
DEFAULT_METHOD = "als"


@dataclass(frozen=True)
class SimilarItemsChoice(Part):
    NAME = "similar_items"
    REQUIRED = False
    ARRAYS = ()
    EXTRA_KEYS = (SIMILAR_EXTRA,)

    method: str = DEFAULT_METHOD
    meta: Mapping[str, Any] = field(default_factory=dict)

    def to_arrays(self) -> dict[str, np.ndarray]:
        return {}

    def to_extra(self) -> dict[str, Any]:
        return {SIMILAR_EXTRA: {**dict(self.meta), "method": self.method}} if self.meta else {}

    @classmethod
    def from_arrays(cls, arrays: Mapping[str, np.ndarray], ctx: SetContext) -> SimilarItemsChoice:
        recorded = ctx.extra.get(SIMILAR_EXTRA)
        if not recorded:
            return cls()
        method = recorded.get("method") if isinstance(recorded, Mapping) else None
        if method not in SIMILAR_METHODS:
            raise ArtifactError(f"extra.{SIMILAR_EXTRA}.method must be one of {', '.join(SIMILAR_METHODS)}, "
                                f"got {method!r}")
        if method in NEEDS_KNN and not ItemNeighbours.present_in(arrays):
            raise ArtifactError(f"extra.{SIMILAR_EXTRA}.method {method!r} needs the item_neighbours part")
        return cls(str(method), dict(recorded))
