"""The optional approximate top-k index by cosine over unit-length item factors (SimilarItems, bundle fill).

==================  =========================  ==================================================
array               dtype, shape               meaning
==================  =========================  ==================================================
ann_cosine_index    uint8, [nbytes]            optional, like ``ann_index``: faiss IVF index over
                                               the unit-length item factors
==================  =========================  ==================================================

Metadata in ``extra.ann_cosine``, with the keys of :mod:`recsvc.artifacts.parts.ann`.
"""

from __future__ import annotations

from dataclasses import dataclass

from recsvc.artifacts.parts.ann import SPACE_COSINE, AnnIndexPart

COSINE_ARRAY = "ann_cosine_index"
COSINE_EXTRA = "ann_cosine"


@dataclass(frozen=True, eq=False)
class CosineAnnIndexPart(AnnIndexPart):
    NAME = "ann_cosine"
    REQUIRED = False
    ARRAYS = (COSINE_ARRAY,)
    EXTRA_KEYS = (COSINE_EXTRA,)
    SPACE = SPACE_COSINE
