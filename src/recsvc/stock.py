"""Per-store stock snapshots: published beside the model, replaceable at any time without retraining.

Stock changes by the hour, the model by the day, so stock is not part of an artifact set. This module owns
the snapshot format, as :mod:`recsvc.artifacts` owns the model's::

    <root>/stock/versions/<version>/manifest.json     schema, version, created_at, source, counts, files
    <root>/stock/versions/<version>/store_ids.npy     U  [n_rows]  store of each row
    <root>/stock/versions/<version>/item_ids.npy      U  [n_rows]  item of each row
    <root>/stock/versions/<version>/quantities.npy    float32 [n_rows] quantity on hand
    <root>/stock/CURRENT                              name of the snapshot servers use

Rows are sorted by store, then item, one row per (store, item). Publishing follows the artifact discipline:
write into a staging folder, verify every sha256 by reading it back, rename into ``versions/``, then swap
``CURRENT`` with ``os.replace``, so a reader sees the old snapshot or the whole new one. Arrays are saved
and loaded with ``allow_pickle=False``.

Writers: the trainer publishes the ``stock`` table of its data folder after each run, and
``recsvc stock --artifacts ROOT --file stock.csv`` publishes a new file at any time. Readers: servers keep a
:class:`StockWatcher` that ``stat``s ``CURRENT`` on every request (a microsecond-scale system call) and loads a
new snapshot the first time it sees the pointer change; a snapshot that fails to load is logged and the
previous one stays in use.

Semantics (what :meth:`StockFilter.in_stock` gives the engine): in a store with at least one row, an item is
in stock when its row has ``quantity > 0``; an item without a row there is out of stock. A store without any
row is not filtered (no stock data is not "everything is sold out").

No pandas here: the server imports this module.
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import io
import json
import logging
import math
import os
import shutil
import tempfile
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from recsvc.artifacts import (
    CURRENT,
    MANIFEST,
    VERSIONS,
    IdIndex,
    current_version,
    new_version_name,
    prune_versions,
    set_current,
    string_array,
)

logger = logging.getLogger(__name__)

STOCK_DIR = "stock"
STOCK_SCHEMA_VERSION = "1.0"
#: Columns of a stock file (the trainer's ``stock`` table: ``recsvc_training.input.columns.STOCK_COLUMNS``).
STOCK_COLUMNS: tuple[str, str, str] = ("store_id", "item_id", "quantity_on_hand")
_ARRAYS = ("store_ids", "item_ids", "quantities")


class StockError(Exception):
    """A stock file or snapshot is missing, unreadable or inconsistent; the message says which and why."""


def _sha256(path: Path) -> str:
    with path.open("rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()


@dataclass(frozen=True)
class StockTable:
    """Quantities on hand, one row per (store, item), sorted by store then item (see the module docstring)."""

    store_ids: np.ndarray
    item_ids: np.ndarray
    quantities: np.ndarray

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

    def __len__(self) -> int:
        return int(self.store_ids.size)

    def arrays(self) -> dict[str, np.ndarray]:
        return {"store_ids": self.store_ids, "item_ids": self.item_ids, "quantities": self.quantities}


@dataclass(frozen=True)
class StockFileReport:
    """What :func:`read_stock_csv` read: rows, rows kept, rows skipped per reason (``missing_id``,
    ``bad_quantity``, ``duplicate``)."""

    rows_read: int
    rows_kept: int
    skipped: dict[str, int] = field(default_factory=dict)

    def __str__(self) -> str:
        skipped = ", ".join(f"{reason} {n}" for reason, n in sorted(self.skipped.items()) if n) or "none"
        return f"{self.rows_kept:,} of {self.rows_read:,} rows kept (skipped: {skipped})"


def read_stock_csv(path: Path) -> tuple[StockTable, StockFileReport]:
    """Read a stock CSV (``store_id,item_id,quantity_on_hand``; ``.csv`` or ``.csv.gz``; UTF-8, a BOM is fine).

    Ids are trimmed strings (leading zeros kept). A row with an empty id or a quantity that is not a finite
    number is skipped and counted, as is a repeated store x item (the first wins).

    Raises
    ------
    StockError
        The file cannot be read or lacks one of the three columns.
    """
    path = Path(path)
    try:
        raw = path.read_bytes()
        text = gzip.decompress(raw).decode("utf-8-sig") if path.name.endswith(".gz") else raw.decode("utf-8-sig")
    except (OSError, UnicodeDecodeError, EOFError, gzip.BadGzipFile) as exc:
        raise StockError(f"{path}: cannot read the stock file: {exc}") from exc
    reader = csv.DictReader(io.StringIO(text))
    header = [name.strip() for name in reader.fieldnames or []]
    missing = [c for c in STOCK_COLUMNS if c not in header]
    if missing:
        raise StockError(f"{path}: missing column(s) {missing}; the file has {header}, a stock file needs "
                         f"{list(STOCK_COLUMNS)}")
    reader.fieldnames = header
    stores: list[str] = []
    items: list[str] = []
    quantities: list[float] = []
    skipped = {"missing_id": 0, "bad_quantity": 0}
    rows = 0
    for row in reader:
        rows += 1
        store, item = (row.get("store_id") or "").strip(), (row.get("item_id") or "").strip()
        if not store or not item:
            skipped["missing_id"] += 1
            continue
        try:
            quantity = float((row.get("quantity_on_hand") or "").strip())
        except ValueError:
            quantity = math.nan
        if not math.isfinite(quantity):
            skipped["bad_quantity"] += 1
            continue
        stores.append(store)
        items.append(item)
        quantities.append(quantity)
    table, duplicates = StockTable.from_rows(stores, items, quantities)
    skipped["duplicate"] = duplicates
    return table, StockFileReport(rows_read=rows, rows_kept=len(table), skipped=skipped)


def stock_root(artifact_root: Path) -> Path:
    """Folder of the stock snapshots under an artifact root."""
    return Path(artifact_root) / STOCK_DIR


def publish_stock(artifact_root: Path, table: StockTable, source: str = "", keep: int = 5) -> Path:
    """Publish ``table`` as the current stock snapshot under ``artifact_root`` (atomically); return its folder.

    ``source`` is recorded in the manifest (e.g. the file it came from). At most ``keep`` snapshots are kept.
    """
    base = stock_root(artifact_root)
    (base / VERSIONS).mkdir(parents=True, exist_ok=True)
    version = new_version_name()
    final = base / VERSIONS / version
    if final.exists():
        raise StockError(f"stock snapshot {version} already exists under {base}")
    staging = Path(tempfile.mkdtemp(prefix=f".staging-{version}-", dir=base))
    try:
        folder = staging / "set"
        folder.mkdir()
        files: dict[str, dict[str, Any]] = {}
        for name, array in table.arrays().items():
            path = folder / f"{name}.npy"
            np.save(path, np.ascontiguousarray(array), allow_pickle=False)
            files[name] = {"sha256": _sha256(path), "dtype": array.dtype.str, "shape": list(array.shape)}
        manifest = {"schema_version": STOCK_SCHEMA_VERSION, "version": version,
                    "created_at": datetime.now(UTC).isoformat(timespec="seconds"), "source": source,
                    "rows": len(table), "stores": int(np.unique(table.store_ids).size), "files": files}
        (folder / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True))
        load_stock(folder)  # read back and verify before anyone can see it
        os.rename(folder, final)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    set_current(base, version)  # the model's pointer discipline, on the stock folder: os.replace of CURRENT
    prune_versions(base, keep)
    logger.info("published stock snapshot %s under %s: %d rows, %d stores", version, base, len(table),
                manifest["stores"])
    return final


@dataclass(frozen=True)
class StockSnapshot:
    """One loaded snapshot: the table plus its manifest facts, and where each store's rows are."""

    table: StockTable
    version: str
    created_at: str = ""
    source: str = ""
    #: Sorted store ids and, per store, where its rows start (plus the end): derived from ``table``.
    stores: IdIndex = field(init=False, repr=False)
    bounds: np.ndarray = field(init=False, repr=False)

    def __post_init__(self) -> None:
        stores, first = np.unique(self.table.store_ids, return_index=True)
        object.__setattr__(self, "stores", IdIndex(stores))
        object.__setattr__(self, "bounds", np.append(first, len(self.table)).astype(np.int64))

    def store_rows(self, store_id: str) -> slice | None:
        """The rows of ``store_id``, or None when the snapshot has none for it."""
        row = self.stores.row(store_id)
        if row < 0:
            return None
        return slice(int(self.bounds[row]), int(self.bounds[row + 1]))


def load_stock(folder: Path, verify: bool = True) -> StockSnapshot:
    """Load and check one snapshot folder; raises :class:`StockError` naming the file and the problem."""
    folder = Path(folder)
    try:
        manifest = json.loads((folder / MANIFEST).read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise StockError(f"{folder}: no readable {MANIFEST} ({exc})") from exc
    if str(manifest.get("schema_version", "")).split(".")[0] != STOCK_SCHEMA_VERSION.split(".")[0]:
        raise StockError(f"{folder}: stock schema {manifest.get('schema_version')!r} is not readable "
                         f"(expects {STOCK_SCHEMA_VERSION})")
    arrays: dict[str, np.ndarray] = {}
    for name in _ARRAYS:
        meta = manifest.get("files", {}).get(name)
        path = folder / f"{name}.npy"
        if meta is None or not path.is_file():
            raise StockError(f"{folder}: {name}.npy is missing")
        if verify and _sha256(path) != meta["sha256"]:
            raise StockError(f"{path}: checksum mismatch (file is corrupt or was changed after publish)")
        try:
            array = np.load(path, allow_pickle=False)
        except ValueError as exc:
            raise StockError(f"{path}: not a plain numpy array ({exc})") from exc
        if array.dtype.str != meta["dtype"] or list(array.shape) != list(meta["shape"]) or array.ndim != 1:
            raise StockError(f"{path}: dtype/shape {array.dtype.str}{array.shape} differ from the manifest")
        arrays[name] = array
    if not arrays["store_ids"].shape == arrays["item_ids"].shape == arrays["quantities"].shape:
        raise StockError(f"{folder}: stock arrays differ in length")
    if arrays["store_ids"].dtype.kind != "U" or arrays["item_ids"].dtype.kind != "U" \
            or arrays["quantities"].dtype != np.float32:
        raise StockError(f"{folder}: stock arrays must be unicode ids and float32 quantities")
    table = StockTable(arrays["store_ids"], arrays["item_ids"], arrays["quantities"])
    stores, items = table.store_ids, table.item_ids
    same_store = stores[1:] == stores[:-1]
    if not (np.all(stores[1:] >= stores[:-1]) and np.all(items[1:][same_store] > items[:-1][same_store])):
        raise StockError(f"{folder}: stock rows must be sorted by store and item, one row per pair")
    return StockSnapshot(table, version=str(manifest.get("version", folder.name)),
                         created_at=str(manifest.get("created_at", "")), source=str(manifest.get("source", "")))


def load_current_stock(artifact_root: Path, verify: bool = True) -> StockSnapshot | None:
    """The snapshot ``<root>/stock/CURRENT`` names, or None when none was published."""
    base = stock_root(artifact_root)
    version = current_version(base)
    return None if version is None else load_stock(base / VERSIONS / version, verify=verify)


class StockWatcher:
    """The current stock snapshot of one artifact root, picked up on the first request after it changes.

    :meth:`current` ``stat``s the ``CURRENT`` pointer (inode, size, mtime) on every call and reloads only when
    that changed. A snapshot that fails to load is logged once and the previous one is kept. Thread-safe; one
    watcher per root and process is shared through :meth:`for_root`.
    """

    _registry: ClassVar[dict[Path, StockWatcher]] = {}
    _registry_lock: ClassVar[threading.Lock] = threading.Lock()

    def __init__(self, artifact_root: Path, verify: bool = True) -> None:
        self.pointer = stock_root(artifact_root) / CURRENT
        self.artifact_root = Path(artifact_root)
        self.verify = verify
        self._signature: tuple[int, int, int] | None = None
        self._snapshot: StockSnapshot | None = None
        self._lock = threading.Lock()

    @classmethod
    def for_root(cls, artifact_root: Path, verify: bool = True) -> StockWatcher:
        """The process's watcher of ``artifact_root`` (created on first use)."""
        key = Path(os.path.abspath(artifact_root))
        with cls._registry_lock:
            watcher = cls._registry.get(key)
            if watcher is None:
                watcher = cls._registry[key] = cls(key, verify)
            return watcher

    def current(self) -> StockSnapshot | None:
        """The snapshot to use for this request (None when no stock was ever published)."""
        try:
            st = os.stat(self.pointer)
        except OSError:
            return None
        signature = (st.st_ino, st.st_size, st.st_mtime_ns)
        if signature == self._signature:
            return self._snapshot
        with self._lock:
            if signature != self._signature:
                try:
                    snapshot = load_current_stock(self.artifact_root, verify=self.verify)
                    if snapshot is not None and (self._snapshot is None or snapshot.version != self._snapshot.version):
                        logger.info("stock snapshot %s in use (%d rows)", snapshot.version, len(snapshot.table))
                    self._snapshot = snapshot
                except (StockError, OSError) as exc:
                    logger.warning("stock snapshot under %s not usable, keeping the previous one: %s",
                                   self.artifact_root, exc)
                self._signature = signature
            return self._snapshot


class StockFilter:
    """Which of a model's items are in stock in a store, per snapshot (cached per snapshot and store).

    ``items`` is the model's item index; masks are bool ``[len(items)]``, read-only.
    """

    def __init__(self, watcher: StockWatcher, items: IdIndex) -> None:
        self.watcher = watcher
        self.items = items
        self._version = ""
        self._masks: dict[str, np.ndarray | None] = {}
        self._lock = threading.Lock()

    def in_stock(self, store_id: str) -> np.ndarray | None:
        """Bool per item row: in stock in ``store_id``; None when there is no stock data for that store."""
        snapshot = self.watcher.current()
        if snapshot is None or not store_id:
            return None
        with self._lock:
            if snapshot.version != self._version:
                self._version, self._masks = snapshot.version, {}
            if store_id in self._masks:
                return self._masks[store_id]
        rows = snapshot.store_rows(store_id)
        mask: np.ndarray | None = None
        if rows is not None:
            table = snapshot.table
            item_rows = self.items.lookup(table.item_ids[rows])
            keep = (item_rows >= 0) & (table.quantities[rows] > 0)
            mask = np.zeros(len(self.items), dtype=bool)
            mask[item_rows[keep]] = True
            mask.flags.writeable = False
        with self._lock:
            if snapshot.version == self._version:
                self._masks[store_id] = mask
        return mask
