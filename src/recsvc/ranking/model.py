"""The loaded model: one artifact set, indexed and precomputed for ranking, read-only after load.

:class:`LoadedModel` is built once per artifact set (the server builds a new one for each version it loads)
and then only read, so any number of request threads may share it without locks. Every array it exposes is a
read-only view (writing raises), ids are looked up through :class:`~recsvc.artifacts.IdIndex` (sorted
arrays, no Python dict over the catalog), and the work that does not depend on a request — normalised item
factors, popularity orders, category codes — happens here, at load, not per request.
"""

from __future__ import annotations

import logging
import math
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np

from recsvc.artifacts import ArtifactSet, IdIndex, Parts, read_parts
from recsvc.artifacts.part import frozen
from recsvc.artifacts.parts.als import AlsFactors
from recsvc.artifacts.parts.ann import AnnIndexPart
from recsvc.artifacts.parts.ann_cosine import CosineAnnIndexPart
from recsvc.artifacts.parts.catalog import Catalog, catalog_id
from recsvc.artifacts.parts.copurchase import CoPurchase
from recsvc.artifacts.parts.customers import Customers
from recsvc.artifacts.parts.history import PurchaseHistory
from recsvc.artifacts.parts.popularity import Popularity
from recsvc.artifacts.parts.repurchase import Repurchase
from recsvc.artifacts.parts.stock import TrainingStock
from recsvc.artifacts.parts.stores import Stores
from recsvc.ranking.ann import AnnIndex, load_ann

logger = logging.getLogger(__name__)



_frozen = frozen


#: Bytes of item-factor rows handled per block by :func:`_row_divisors` and :func:`_transposed_factors`
#: (16,384 rows at 64 float32 factors): a block's rows, their squares and their transposed copies stay in
#: cache; larger blocks were slower on a 1M-item model (benchmarks/model_load.py measures the load).
_FACTOR_BLOCK_BYTES = 4 << 20


def _row_divisors(item_factors: np.ndarray) -> np.ndarray:
    """The divisor of each row of ``item_factors`` ([n, f] float32): its norm, 1 for a zero row ([n] float32).

    In blocks of rows, with no [n, f] temporary: per block ``sqrt`` of the sum of squares along each row, the
    same reduction in the same order as ``np.linalg.norm(F, axis=1)`` on a C-contiguous ``F``, so bit-identical
    to it. Norms summed over axis 0 of a transposed copy would add the squares in another order (the last bit
    differs for ~half the items), so they are not used; for the same reason a non-C-contiguous ``F`` (a
    Fortran-order array, say), whose row sums numpy orders differently, gets its norms from ``np.linalg.norm``
    over the whole array.
    """
    n, f = item_factors.shape
    divisors = np.empty(n, dtype=np.float32)
    all_norms = None if item_factors.flags.c_contiguous else np.linalg.norm(item_factors, axis=1)
    block = max(1, _FACTOR_BLOCK_BYTES // max(1, f * item_factors.itemsize))
    for lo in range(0, n, block):
        hi = min(lo + block, n)
        rows = item_factors[lo:hi]
        norms = np.sqrt(np.add.reduce(rows * rows, axis=1)) if all_norms is None else all_norms[lo:hi]
        divisors[lo:hi] = np.where(norms > 0, norms, np.float32(1.0))
    return divisors


def _transposed_factors(item_factors: np.ndarray, divisors: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``item_factors`` ([n, f] float32) transposed, and transposed with unit-length rows (each row divided by
    its ``divisors`` entry, from :func:`_row_divisors`): two new [f, n] C-contiguous float32 arrays.
    Rows of zeros (items never interacted with) stay zero: cosine 0 to everything, never NaN.

    Built in blocks of rows rather than as ``np.ascontiguousarray(F.T)`` plus ``(F / norms).T`` copied in a
    second full pass: a whole-array transposed copy strides through all of ``F`` for every output row
    (cache-hostile), and the normalisation went through more [n, f] temporaries. Per block, the rows are
    copied transposed into the preallocated output and the transposed block is divided by the rows'
    divisors. Bit-identical to the whole-array version; with the norms, 0.39 -> 0.13 s for 1M x 64 (min of 5,
    2-core shared host), and no [n, f] temporary.
    """
    n, f = item_factors.shape
    factors_t = np.empty((f, n), dtype=np.float32)
    normed_t = np.empty((f, n), dtype=np.float32)
    block = max(1, _FACTOR_BLOCK_BYTES // max(1, f * item_factors.itemsize))
    for lo in range(0, n, block):
        hi = min(lo + block, n)
        factors_t[:, lo:hi] = item_factors[lo:hi].T
        np.divide(factors_t[:, lo:hi], divisors[lo:hi], out=normed_t[:, lo:hi])
    return factors_t, normed_t


def positions_in(values: np.ndarray, queries: np.ndarray) -> np.ndarray:
    """Index into ``values`` (unique, any order) of each of ``queries`` (int64), ``-1`` where absent."""
    queries = np.asarray(queries, dtype=np.int64)
    if values.size == 0 or queries.size == 0:
        return np.full(queries.shape, -1, dtype=np.int64)
    order = np.argsort(values, kind="stable")
    sorted_values = values[order]
    pos = np.minimum(np.searchsorted(sorted_values, queries), sorted_values.size - 1)
    return np.where(sorted_values[pos] == queries, order[pos], -1).astype(np.int64)


@dataclass(frozen=True)
class CustomerHistory:
    """One customer's purchased items (read-only views into the history CSR arrays).

    Every array has one entry per distinct item the customer bought (net of returns). ``last_channel`` is
    a channel index (``-1`` unknown) and ``last_store`` a row of the store ids (``-1`` none or unknown);
    days are days since 1970-01-01.
    """

    items: np.ndarray
    count: np.ndarray
    first_day: np.ndarray
    last_day: np.ndarray
    last_channel: np.ndarray
    last_store: np.ndarray

    def __len__(self) -> int:
        return int(self.items.size)

    def positions_of(self, item_rows: np.ndarray) -> np.ndarray:
        """Index into this history of each item row (int64), ``-1`` where the customer never bought it."""
        return positions_in(self.items, item_rows)


class LoadedModel:
    """An :class:`~recsvc.artifacts.ArtifactSet` made ready for ranking; immutable and thread-safe to read.

    Parameters
    ----------
    artifacts
        A validated artifact set (``load_current`` validates; a hand-built set is validated here).
    loaded_at
        When the set was loaded (defaults to now, UTC); reported by ``GetModelInfo``.

    Notes
    -----
    Rows, not ids, flow through the ranking code: ``items.row("A1")`` gives an item's row, ``-1`` when
    unknown, and every per-item array is indexed by that row. Customers are addressed by their own id or by
    any alias (see :meth:`resolve_customer`).
    """

    def __init__(self, artifacts: ArtifactSet, loaded_at: datetime | None = None) -> None:
        a = {name: _frozen(array) for name, array in artifacts.arrays.items()}
        # the one reader validates every part (the manifest's catalog id was checked when the set was loaded);
        # everything below reads the validated parts
        self.parts: Parts = read_parts(a, artifacts.channels, artifacts.extra)
        catalog, customers, history = self.parts[Catalog], self.parts[Customers], self.parts[PurchaseHistory]
        self.version: str = artifacts.version
        self.created_at: str = artifacts.created_at
        self.input_fingerprint: str = artifacts.input_fingerprint
        self.data_end_day: int = int(artifacts.data_end_day)
        self.evaluation: Mapping[str, Any] = dict(artifacts.evaluation)
        self.row_counts: Mapping[str, Any] = dict(artifacts.row_counts)
        self.forced: bool = bool(artifacts.forced)
        self.loaded_at: str = (loaded_at or datetime.now(UTC)).isoformat(timespec="seconds")
        self.channels: tuple[str, ...] = tuple(artifacts.channels)
        #: The catalog's name (recorded in the manifest since schema 1.1, computed for older sets) and whether
        #: the manifest recorded it; stock snapshots are matched by it (``recsvc.server.stock``).
        self.catalog_id: str = artifacts.catalog_id or catalog_id(catalog.item_ids)
        self.catalog_recorded: bool = bool(artifacts.catalog_id)
        #: The stock the model was trained with (None: the set carries none).
        self.training_stock: TrainingStock | None = self.parts.get(TrainingStock)

        self.items = IdIndex(catalog.item_ids)
        self.customers = IdIndex(customers.customer_ids)
        self.aliases = IdIndex(customers.alias_ids)
        self.stores = IdIndex(self.parts[Stores].store_ids)
        self.alias_customer: np.ndarray = customers.alias_customer
        #: Every array of the set, read-only, by name (prefer :attr:`parts`: the validated parts by class).
        self.arrays: Mapping[str, np.ndarray] = a
        #: The manifest's ``extra`` section (metadata of optional parts).
        self.extra: Mapping[str, Any] = dict(artifacts.extra)

        self.item_titles: np.ndarray = catalog.titles
        self.item_categories: np.ndarray = catalog.categories
        self.item_channels: np.ndarray = catalog.channels
        # Categories as small integer codes, so a category filter is one fancy-index, not string compares.
        names, codes = np.unique(np.asarray(catalog.categories), return_inverse=True)
        self.category_names: np.ndarray = _frozen(names)
        self.category_codes: np.ndarray = _frozen(codes.astype(np.int32).reshape(-1))

        als = self.parts[AlsFactors]
        self.user_factors: np.ndarray = als.user_factors
        # Row-major item factors (the stored array: memory-mapped, its pages shared by the worker processes,
        # so no copy) and each row's norm: a request gathers a few hundred scattered items (candidates,
        # history), and a row is one run of cache lines. Scans of the whole catalog (exact scoring when there
        # is no ANN index) use transposed copies, built below only for a model that scans: see
        # ``item_factors_t``.
        item_factors = np.ascontiguousarray(als.item_factors, dtype=np.float32)
        self.item_factors: np.ndarray = _frozen(item_factors)
        self._item_divisors: np.ndarray = _frozen(_row_divisors(item_factors))
        self._transposed: tuple[np.ndarray, np.ndarray] | None = None
        self._transposed_lock = threading.Lock()
        #: Approximate top-k by ALS score for large catalogs (None: score exactly); see recsvc.ranking.ann.
        self.ann: AnnIndex | None = load_ann(self.parts.get(AnnIndexPart), self.item_factors)
        #: The same by cosine over the unit factors (SimilarItems, bundle fill); None: scan the catalog.
        self.ann_cosine: AnnIndex | None = load_ann(self.parts.get(CosineAnnIndexPart), self.item_factors,
                                                    self._item_divisors)
        if self.ann is None or self.ann_cosine is None:
            self._transposed_factors()  # this model scans the catalog: build now, not in its first request

        self.hist_indptr: np.ndarray = history.indptr
        self.hist_items: np.ndarray = history.items
        self.hist_count: np.ndarray = history.count
        self.hist_first_day: np.ndarray = history.first_day
        self.hist_last_day: np.ndarray = history.last_day
        self.hist_last_channel: np.ndarray = history.last_channel
        self.hist_last_store: np.ndarray = history.last_store
        #: Recency-weighted purchase counts (None: a set without them) and their half-life in days.
        self.hist_decayed: np.ndarray | None = history.decayed
        self.hist_decayed_half_life_days: float = history.decayed_half_life_days
        repurchase = self.parts[Repurchase]
        self.item_repurchase_days: np.ndarray = repurchase.days
        self.item_repurchase_rate: np.ndarray = repurchase.rate

        popularity = self.parts[Popularity]
        self.pop_global: np.ndarray = popularity.global_
        self.pop_channel: np.ndarray = popularity.channel
        self.pop_store_items: np.ndarray = popularity.store_items
        self.pop_store_scores: np.ndarray = popularity.store_scores
        #: Weekly popularity trend (None: a set without it).
        self.item_trend: np.ndarray | None = popularity.trend
        # Popularity orders, most popular first, ties broken by global popularity then by row, so a request
        # reads a prefix instead of sorting the catalog.
        #
        # Built with chained stable argsorts, least significant key first, instead of
        # ``np.lexsort((rows, -pop_global, -pop_channel[c]))``: rows are the identity order, so a stable sort
        # by global popularity already breaks its ties by row, and each channel order is that order stably
        # re-sorted by the channel's popularity (gathered in that order). Identical to the lexsort, ties
        # included (checked on data with many ties and signed zeros), and the global sort is shared by every
        # channel, which about halves this step of a 1M-item load (benchmarks/model_load.py).
        global_order = np.argsort(-self.pop_global, kind="stable").astype(np.int64)
        self.pop_order_global: np.ndarray = _frozen(global_order)
        channel_orders = [global_order[np.argsort(-self.pop_channel[c][global_order], kind="stable")]
                          for c in range(len(self.channels))]
        self.pop_order_channel: np.ndarray = _frozen(
            np.stack(channel_orders) if channel_orders else np.zeros((0, self.n_items), dtype=np.int64))

        copurchase = self.parts[CoPurchase]
        self.copurchase_indptr: np.ndarray = copurchase.indptr
        self.copurchase_items: np.ndarray = copurchase.items
        self.copurchase_scores: np.ndarray = copurchase.scores
        self.copurchase_support: np.ndarray = copurchase.support

        self._channel_rows = {name: i for i, name in enumerate(self.channels)}  # a handful of channels
        logger.info("model %s ready: %d items, %d customers, %d aliases, %d stores, channels %s",
                    self.version, self.n_items, self.n_customers, len(self.aliases), len(self.stores),
                    ",".join(self.channels))

    @property
    def n_items(self) -> int:
        return len(self.items)

    @property
    def n_customers(self) -> int:
        return len(self.customers)

    @property
    def n_factors(self) -> int:
        return int(self.item_factors.shape[1])

    @property
    def item_factors_t(self) -> np.ndarray:
        """Item factors transposed, [f, n_items] C-contiguous, for scoring the whole catalog:
        ``user @ item_factors_t`` runs ~1.6x faster than ``item_factors @ user`` on a tall [n_items, f]
        matrix (0.48 vs 0.80 ms for 100k x 64, one thread). Built at load for a model without ANN indexes,
        which scans the catalog; one with both (large catalogs) never does, and builds them only if something
        asks (tests, tools): the two copies would cost it 2 x 244 MB per server process at 1M items x 64."""
        return self._transposed_factors()[0]

    @property
    def item_factors_normed_t(self) -> np.ndarray:
        """:attr:`item_factors_t` with unit-length item rows (zero rows stay zero), built with it."""
        return self._transposed_factors()[1]

    def _transposed_factors(self) -> tuple[np.ndarray, np.ndarray]:
        found = self._transposed
        if found is None:
            with self._transposed_lock:
                if self._transposed is None:
                    factors_t, normed_t = _transposed_factors(self.item_factors, self._item_divisors)
                    self._transposed = (_frozen(factors_t), _frozen(normed_t))
                found = self._transposed
        return found

    def normed_vectors(self, item_rows: np.ndarray) -> np.ndarray:
        """Unit-length ALS factors of ``item_rows``, ``[len(item_rows), f]`` (zero rows for items without)."""
        rows = np.asarray(item_rows, dtype=np.int64)
        vectors: np.ndarray = self.item_factors[rows] / self._item_divisors[rows, None]
        return vectors

    def cosine_to(self, vector: np.ndarray) -> np.ndarray:
        """Dot product of every item's unit factors with ``vector`` — the cosine when ``vector`` has unit length
        (float32 ``[n_items]``; 0 for items without factors). One pass over the catalog's factors."""
        sims: np.ndarray = np.asarray(vector, dtype=np.float32) @ self.item_factors_normed_t
        return sims

    def channel_row(self, channel: str) -> int:
        """Index of ``channel`` on every channel axis, ``-1`` when the model has no data for it."""
        return self._channel_rows.get(channel, -1)

    def channel_name(self, row: int) -> str:
        """Name of a channel index, ``""`` for ``-1`` or out of range."""
        return self.channels[row] if 0 <= row < len(self.channels) else ""

    def store_id(self, row: int) -> str:
        """Id of a store row, ``""`` for ``-1``."""
        return str(self.stores.ids[row]) if 0 <= row < len(self.stores) else ""

    def customer_id(self, row: int) -> str:
        """Id of a customer row, ``""`` for ``-1``."""
        return str(self.customers.ids[row]) if 0 <= row < self.n_customers else ""

    def item_id(self, row: int) -> str:
        return str(self.items.ids[row])

    def item_title(self, row: int) -> str:
        """Display title, falling back to the id when the catalog has none."""
        title = str(self.item_titles[row])
        return title or self.item_id(row)

    def resolve_customer(self, customer_id: str) -> int:
        """Customer row of ``customer_id`` — a customer id or any alias — or ``-1`` when unknown.

        A customer id wins over an alias with the same text; an empty id is unknown.
        """
        if not customer_id:
            return -1
        row = self.customers.row(customer_id)
        if row >= 0:
            return row
        alias = self.aliases.row(customer_id)
        return int(self.alias_customer[alias]) if alias >= 0 else -1

    def history(self, customer_row: int) -> CustomerHistory:
        """The customer's purchase history (empty for ``-1``); views, no copies."""
        if customer_row < 0:
            lo = hi = 0
        else:
            lo, hi = int(self.hist_indptr[customer_row]), int(self.hist_indptr[customer_row + 1])
        return CustomerHistory(
            items=self.hist_items[lo:hi], count=self.hist_count[lo:hi],
            first_day=self.hist_first_day[lo:hi], last_day=self.hist_last_day[lo:hi],
            last_channel=self.hist_last_channel[lo:hi], last_store=self.hist_last_store[lo:hi])

    def channel_mask(self, channel_row: int, item_rows: np.ndarray) -> np.ndarray:
        """Which ``item_rows`` are sellable on the channel; all of them for an unknown channel (``-1``)."""
        if channel_row < 0:
            return np.ones(np.shape(item_rows), dtype=bool)
        mask: np.ndarray = self.item_channels[item_rows, channel_row]
        return mask

    def flat_evaluation(self) -> dict[str, float]:
        """The manifest's evaluation summary as ``dotted.name -> float``, numbers only (bools skipped)."""
        flat: dict[str, float] = {}

        def walk(prefix: str, value: Any) -> None:
            if isinstance(value, Mapping):
                for key, sub in value.items():
                    walk(f"{prefix}.{key}" if prefix else str(key), sub)
            elif isinstance(value, (int, float)) and not isinstance(value, bool) and prefix:
                flat[prefix] = float(value)

        walk("", self.evaluation)
        return flat

    def int_row_counts(self) -> dict[str, int]:
        """The manifest's row counts that are whole numbers."""
        return {str(k): int(v) for k, v in self.row_counts.items()
                if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)}
