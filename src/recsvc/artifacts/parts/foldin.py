"""The fold-in parameters: the ALS knobs the server's request-time fold-in repeats (``recsvc.ranking.foldin``).

No arrays: ``extra.foldin`` holds the five numbers of :class:`FoldInParams`. A set without them (older than
the fold-in) gets :data:`FoldInParams.DEFAULT`, the trainer's defaults (a test pins the two together).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from typing import Any, ClassVar

import numpy as np

from recsvc.artifacts.errors import ArtifactError
from recsvc.artifacts.part import Part, SetContext

FOLDIN_EXTRA = "foldin"


@dataclass(frozen=True)
class FoldInParams(Part):
    """ALS regularization and confidence scale, how much a purchase and a context item (counted like a cart
    add) weigh, and the recency half-life of purchase weights."""

    NAME = "foldin"
    REQUIRED = False
    ARRAYS = ()
    EXTRA_KEYS = (FOLDIN_EXTRA,)
    DEFAULT: ClassVar[FoldInParams]

    regularization: float
    alpha: float
    purchase_weight: float
    context_weight: float
    half_life_days: float

    def as_dict(self) -> dict[str, float]:
        return asdict(self)

    def to_arrays(self) -> dict[str, np.ndarray]:
        return {}

    def to_extra(self) -> dict[str, Any]:
        return {FOLDIN_EXTRA: self.as_dict()}

    @classmethod
    def from_extra(cls, extra: Mapping[str, Any]) -> FoldInParams:
        """The parameters the trainer recorded in the manifest; :data:`DEFAULT` for a set without them."""
        recorded = extra.get(FOLDIN_EXTRA)
        if recorded is None:
            return cls.DEFAULT
        try:
            return cls(**{f.name: float(recorded[f.name]) for f in fields(cls)})
        except (KeyError, TypeError, ValueError) as exc:
            raise ArtifactError(f"manifest extra.{FOLDIN_EXTRA} is not a set of fold-in parameters: {exc}") from exc

    @classmethod
    def from_arrays(cls, arrays: Mapping[str, np.ndarray], ctx: SetContext) -> FoldInParams:
        return cls.from_extra(ctx.extra)


FoldInParams.DEFAULT = FoldInParams(regularization=0.05, alpha=8.0, purchase_weight=10.0, context_weight=4.0,
                                    half_life_days=60.0)
