"""The optional approximate top-k index by ALS score, for large catalogs (``recsvc.ranking.ann`` reads it).

================  =========================  ==================================================
array             dtype, shape               meaning
================  =========================  ==================================================
ann_index         uint8, [nbytes]            optional, catalogs >= ``ann_min_items``: faiss IVF
                                             index over the L2-augmented item factors,
                                             serialised (``faiss.serialize_index``)
================  =========================  ==================================================

Its metadata is ``extra.ann``: ``kind`` (:data:`KIND_FAISS_IVF`; ``"exact"`` with a ``reason`` when the
trainer shipped no index), ``space``, ``nprobe``, ``nlist``, ``recall_at_10`` and the tuning it measured.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Self

import numpy as np

from recsvc.artifacts.errors import ArtifactError
from recsvc.artifacts.part import Part, SetContext, array

ANN_ARRAY = "ann_index"
ANN_EXTRA = "ann"
#: ``meta["kind"]``: the one index kind servers read (faiss ``IndexIVF``), or the trainer's "no index".
KIND_FAISS_IVF = "faiss-ivf"
KIND_EXACT = "exact"
#: ``meta["space"]``: what the index ranks by. Inner product indexes hold L2-augmented vectors (the query gets
#: a trailing 0); cosine indexes hold unit vectors (the query is scaled to unit length for the lookup).
SPACE_INNER_PRODUCT = "inner_product"
SPACE_COSINE = "cosine"


@dataclass(frozen=True, eq=False)
class AnnIndexPart(Part):
    NAME = "ann"
    REQUIRED = False
    ARRAYS = (ANN_ARRAY,)
    EXTRA_KEYS = (ANN_EXTRA,)
    #: The space an index of this part ranks by when its metadata does not say.
    SPACE: ClassVar[str] = SPACE_INNER_PRODUCT

    serialized: np.ndarray
    meta: Mapping[str, Any] = field(default_factory=dict)

    @property
    def space(self) -> str:
        return str(self.meta.get("space", self.SPACE))

    def to_arrays(self) -> dict[str, np.ndarray]:
        return {self.ARRAYS[0]: self.serialized}

    def to_extra(self) -> dict[str, Any]:
        return {self.EXTRA_KEYS[0]: dict(self.meta)}

    @classmethod
    def from_arrays(cls, arrays: Mapping[str, np.ndarray], ctx: SetContext) -> Self:
        name, key = cls.ARRAYS[0], cls.EXTRA_KEYS[0]
        serialized = array(arrays, name, "u", (None,))
        if serialized.dtype != np.uint8:
            raise ArtifactError(f"an ANN index must be a 1-d uint8 array, got {serialized.dtype}{serialized.shape}")
        meta = ctx.extra.get(key) or {}
        if not isinstance(meta, Mapping):
            raise ArtifactError(f"manifest extra.{key} must be an object, got {type(meta).__name__}")
        if meta.get("space", cls.SPACE) not in (SPACE_INNER_PRODUCT, SPACE_COSINE):
            raise ArtifactError(f"unknown ANN index space {meta.get('space')!r}")
        return cls(serialized, dict(meta))
