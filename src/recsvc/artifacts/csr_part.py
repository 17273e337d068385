"""The shape several artifact parts share: one CSR matrix of item rows with a score each.

For every row of its axis (a catalog item, or a customer) such a part stores a list of item rows, best first,
with a score per entry: three arrays, ``<prefix>_indptr`` (int, ``[n_rows + 1]``), ``<prefix>_items`` (int,
``[nnz]``, rows of the catalog) and ``<prefix>_scores`` (float, ``[nnz]``). Co-purchase, the next-basket lists
and the item-kNN neighbours are parts of this shape (:mod:`recsvc.artifacts.parts`); each declares its array
names (constants in its own module, as every part does) and its row axis, and adds what is its own (more
arrays, manifest ``extra``, stricter checks on the scores) around :meth:`ItemRowsCsr.read_csr`.

The stored lists (:mod:`recsvc.artifacts.parts.stored_lists`) are not of this shape: dense ``[channels,
customers, L]`` lists padded with ``-1``, found by a customer's slot, so they keep their own reader.

The base changes nothing on disk: the arrays are stored under the part's own names, as the part's constructor
got them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import ClassVar, Literal, Self

import numpy as np

from recsvc.artifacts.part import Part, SetContext, array, csr_rows, finite, rows_within
from recsvc.artifacts.parts.catalog import Catalog
from recsvc.artifacts.parts.customers import Customers


@dataclass(frozen=True, eq=False)
class ItemRowsCsr(Part):
    """Base of a part that is one CSR matrix of item rows and scores (subclasses are frozen dataclasses).

    Class attributes (besides :class:`~recsvc.artifacts.part.Part`'s)
    ----------------------------------------------------------------
    INDPTR, ITEMS, SCORES
        The names of the three arrays; the first three of ``ARRAYS``, in this order.
    ROWS
        What a row of the matrix is: ``"items"`` (``n_items + 1`` row pointers) or ``"customers"``
        (``n_customers + 1``).
    FINITE_SCORES
        Whether the scores must be finite (a part whose older sets may hold NaN says False).
    """

    INDPTR: ClassVar[str]
    ITEMS: ClassVar[str]
    SCORES: ClassVar[str]
    ROWS: ClassVar[Literal["items", "customers"]]
    FINITE_SCORES: ClassVar[bool] = True

    #: int, ``[n_rows + 1]``: row ``r``'s entries are ``indptr[r]:indptr[r + 1]``
    indptr: np.ndarray
    #: int, ``[nnz]``: item rows, best first within a row
    items: np.ndarray
    #: float, ``[nnz]``: the entries' scores
    scores: np.ndarray

    def row(self, row: int) -> tuple[np.ndarray, np.ndarray]:
        """Row ``row``'s items and scores, best first (empty for ``-1``, an unknown item or customer); views,
        no copies."""
        if row < 0:
            return self.items[:0], self.scores[:0]
        lo, hi = int(self.indptr[row]), int(self.indptr[row + 1])
        return self.items[lo:hi], self.scores[lo:hi]

    def to_arrays(self) -> dict[str, np.ndarray]:
        return {self.INDPTR: self.indptr, self.ITEMS: self.items, self.SCORES: self.scores}

    @classmethod
    def read_csr(cls, arrays: Mapping[str, np.ndarray], ctx: SetContext) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The three arrays, checked: dtypes and shapes, a valid row pointer over the row axis, item rows within
        the catalog and (if ``FINITE_SCORES``) finite scores.

        Raises
        ------
        ArtifactError
            Naming the array and the rule it breaks.
        """
        n_items = ctx.get(Catalog).n_items
        n_rows = n_items if cls.ROWS == "items" else ctx.get(Customers).n_customers
        indptr = array(arrays, cls.INDPTR, "iu", (n_rows + 1,))
        nnz = csr_rows(cls.INDPTR, indptr)
        items = array(arrays, cls.ITEMS, "iu", (nnz,))
        rows_within(cls.ITEMS, items, n_items)
        scores = array(arrays, cls.SCORES, "f", (nnz,))
        if cls.FINITE_SCORES:
            finite(cls.SCORES, scores)
        return indptr, items, scores

    @classmethod
    def from_arrays(cls, arrays: Mapping[str, np.ndarray], ctx: SetContext) -> Self:
        """The part from its three arrays (:meth:`read_csr`); a part with more to read overrides this."""
        return cls(*cls.read_csr(arrays, ctx))
