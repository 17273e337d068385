"""The registry of artifact parts and the one reader that validates a set against it.

Every part of an artifact set is one frozen dataclass in its own module under :mod:`recsvc.artifacts.parts`
(its docstring is the table of its arrays); :data:`PARTS` lists them in read order. :func:`read_parts` is the
only place arrays become parts: required parts must be there, an optional part is read whenever any of its
arrays is, and every part checks its dtypes, its shapes against the parts before it (catalog, customers,
stores), finiteness and CSR row pointers. Adding a part is one new module and one entry below; the contract
test (``tests/test_artifact_parts.py``) finds it here by itself.

Arrays no part owns are loaded and ignored (a set from a newer trainer may carry a part this server does
not know yet; the manifest's minor schema version says so).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from typing import Any, TypeVar

import numpy as np

from recsvc.artifacts.errors import ArtifactError
from recsvc.artifacts.part import Part, SetContext
from recsvc.artifacts.parts.als import AlsFactors
from recsvc.artifacts.parts.ann import AnnIndexPart
from recsvc.artifacts.parts.ann_cosine import CosineAnnIndexPart
from recsvc.artifacts.parts.catalog import Catalog
from recsvc.artifacts.parts.coldstart import ColdStart
from recsvc.artifacts.parts.copurchase import CoPurchase
from recsvc.artifacts.parts.customer_summary import CustomerSummary
from recsvc.artifacts.parts.customers import Customers
from recsvc.artifacts.parts.foldin import FoldInParams
from recsvc.artifacts.parts.history import PurchaseHistory
from recsvc.artifacts.parts.item_neighbours import ItemNeighbours
from recsvc.artifacts.parts.next_basket import NextBasket
from recsvc.artifacts.parts.popularity import Popularity
from recsvc.artifacts.parts.ranker import RankerPart
from recsvc.artifacts.parts.repurchase import Repurchase
from recsvc.artifacts.parts.similar_items import SimilarItemsChoice
from recsvc.artifacts.parts.stock import TrainingStock
from recsvc.artifacts.parts.stored_lists import StoredLists
from recsvc.artifacts.parts.stores import Stores

P = TypeVar("P", bound=Part)

#: Every part, in read order: the id parts first, since the others are checked against their sizes.
PARTS: tuple[type[Part], ...] = (
    Catalog, Customers, Stores, AlsFactors, PurchaseHistory, Repurchase, Popularity, CoPurchase,
    AnnIndexPart, CosineAnnIndexPart, CustomerSummary, ColdStart, RankerPart, FoldInParams, TrainingStock,
    NextBasket, ItemNeighbours, SimilarItemsChoice, StoredLists,
)

#: Arrays every artifact set must hold (those of the required parts, less their optional arrays).
REQUIRED_ARRAYS: tuple[str, ...] = tuple(
    name for part in PARTS if part.REQUIRED for name in part.ARRAYS if name not in part.OPTIONAL_ARRAYS)


class Parts:
    """The validated parts of one set, by class: ``parts[Catalog]`` for a required part, ``parts.get(ColdStart)``
    (None when absent) for an optional one."""

    def __init__(self, found: Mapping[type[Part], Part]) -> None:
        self._found = dict(found)

    def __getitem__(self, kind: type[P]) -> P:
        found = self._found[kind]
        assert isinstance(found, kind)
        return found

    def get(self, kind: type[P]) -> P | None:
        found = self._found.get(kind)
        return found if isinstance(found, kind) else None

    def __contains__(self, kind: type[Part]) -> bool:
        return kind in self._found

    def __iter__(self) -> Iterator[Part]:
        return iter(self._found.values())


def read_parts(arrays: Mapping[str, np.ndarray], channels: Iterable[str], extra: Mapping[str, Any]) -> Parts:
    """Validate ``arrays`` part by part; the parts the set holds.

    Raises
    ------
    ArtifactError
        A required part is missing (all missing arrays named), an optional part is incomplete, or a part
        breaks one of its rules (the message names the array).
    """
    missing = [name for name in REQUIRED_ARRAYS if name not in arrays]
    if missing:
        raise ArtifactError(f"artifact set lacks required arrays: {', '.join(missing)}")
    ctx = SetContext(channels=tuple(channels), extra=extra)
    for kind in PARTS:
        if not (kind.REQUIRED or not kind.ARRAYS or kind.present_in(arrays)):
            continue
        incomplete = kind.missing_from(arrays)
        if incomplete:
            raise ArtifactError(f"the {kind.NAME} part is incomplete: missing {', '.join(incomplete)}")
        ctx.parts[kind] = kind.from_arrays(arrays, ctx)
    return Parts(ctx.parts)


def parts_to_arrays(parts: Iterable[Part]) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """The arrays and manifest ``extra`` entries of ``parts``, as the trainer stores them."""
    arrays: dict[str, np.ndarray] = {}
    extra: dict[str, Any] = {}
    for part in parts:
        arrays.update(part.to_arrays())
        extra.update(part.to_extra())
    return arrays, extra


def owner_of(array_name: str) -> type[Part] | None:
    """The part that owns ``array_name`` (None: no part does)."""
    return next((part for part in PARTS if array_name in part.ARRAYS), None)
