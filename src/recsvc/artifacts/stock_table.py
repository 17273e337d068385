"""Quantities on hand per (store, item): the table both stock formats hold (a snapshot under
``<root>/stock/``, :mod:`recsvc.artifacts.stock`, and a model's training-time stock, the part
:mod:`recsvc.artifacts.parts.stock`).

Semantics (what the serving stock filter gives the engine): in a store with at least one row, an item is in
stock when its row has ``quantity > 0``; an item without a row there is out of stock. A store without any row
is not filtered (no stock data is not "everything is sold out").
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np

from recsvc.artifacts.errors import ArtifactError
from recsvc.artifacts.values import IdIndex, string_array


class StockError(ArtifactError):
    """A stock file or snapshot is missing, unreadable or inconsistent; the message says which and why."""


@dataclass(frozen=True, eq=False)
class StockTable:
    """Quantities on hand, one row per (store, item), sorted by store then item.

    Derived at construction: the sorted store ids and where each store's rows start (:meth:`store_rows`).
    """

    store_ids: np.ndarray
    item_ids: np.ndarray
    quantities: np.ndarray
    stores: IdIndex = field(init=False, repr=False)
    bounds: np.ndarray = field(init=False, repr=False)

    def __post_init__(self) -> None:
        stores, first = np.unique(self.store_ids, return_index=True)
        object.__setattr__(self, "stores", IdIndex(stores))
        object.__setattr__(self, "bounds", np.append(first, self.store_ids.size).astype(np.int64))

    @classmethod
    def from_rows(cls, store_ids: Iterable[str], item_ids: Iterable[str], quantities: Iterable[float]
                  ) -> tuple[StockTable, int]:
        """Sort and de-duplicate rows (the first row of a repeated store x item wins, as in ingest).

        Returns the table and the number of duplicate rows dropped. Raises :class:`StockError` when the
        columns differ in length, an id is empty or a quantity is not a finite number.
        """
        stores, items = string_array(store_ids), string_array(item_ids)
        qty = np.asarray(list(quantities), dtype=np.float64).reshape(-1)
        if not stores.size == items.size == qty.size:
            raise StockError(f"stock columns differ in length: {stores.size} stores, {items.size} items, "
                             f"{qty.size} quantities")
        if stores.size and (np.any(stores == "") or np.any(items == "")):
            raise StockError("stock rows need a store_id and an item_id")
        if not np.all(np.isfinite(qty)):
            raise StockError("stock quantities must be finite numbers")
        order = np.lexsort((np.arange(stores.size), items, stores))  # stable: the first of a pair comes first
        stores, items, qty = stores[order], items[order], qty[order]
        first = np.ones(stores.size, dtype=bool)
        first[1:] = (stores[1:] != stores[:-1]) | (items[1:] != items[:-1])
        table = cls(stores[first], items[first], qty[first].astype(np.float32))
        return table, int((~first).sum())

    @classmethod
    def checked(cls, store_ids: np.ndarray, item_ids: np.ndarray, quantities: np.ndarray, where: str) -> StockTable:
        """A table from stored arrays, refused (:class:`StockError` naming ``where``) unless they are 1-D
        unicode ids and float32 quantities of one length, sorted by store and item, one row per pair."""
        if not (store_ids.ndim == item_ids.ndim == quantities.ndim == 1
                and store_ids.shape == item_ids.shape == quantities.shape):
            raise StockError(f"{where}: stock arrays differ in length or are not 1-D")
        if store_ids.dtype.kind != "U" or item_ids.dtype.kind != "U" or quantities.dtype != np.float32:
            raise StockError(f"{where}: stock arrays must be unicode ids and float32 quantities")
        same = store_ids[1:] == store_ids[:-1]
        if not (np.all(store_ids[1:] >= store_ids[:-1]) and np.all(item_ids[1:][same] > item_ids[:-1][same])):
            raise StockError(f"{where}: stock rows must be sorted by store and item, one row per pair")
        if not np.all(np.isfinite(quantities)):
            raise StockError(f"{where}: stock quantities hold NaN or infinite values")
        return cls(store_ids, item_ids, quantities)

    def __len__(self) -> int:
        return int(self.store_ids.size)

    @property
    def n_stores(self) -> int:
        return len(self.stores)

    def store_rows(self, store_id: str) -> slice | None:
        """The rows of ``store_id``, or None when the table has none for it."""
        row = self.stores.row(store_id)
        if row < 0:
            return None
        return slice(int(self.bounds[row]), int(self.bounds[row + 1]))

    def in_stock(self, store_id: str, items: IdIndex) -> np.ndarray | None:
        """Bool per row of ``items``: in stock in ``store_id`` (read-only); None when the table has no rows
        for that store. Items the table names but ``items`` does not know are simply absent."""
        rows = self.store_rows(store_id) if store_id else None
        if rows is None:
            return None
        item_rows = items.lookup(self.item_ids[rows])
        keep = (item_rows >= 0) & (self.quantities[rows] > 0)
        mask = np.zeros(len(items), dtype=bool)
        mask[item_rows[keep]] = True
        mask.flags.writeable = False
        return mask
