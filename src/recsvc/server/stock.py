"""Which stock a serving model filters store answers by: its own training-time stock, or a newer snapshot
pushed for its catalog (formats in :mod:`recsvc.artifacts.stock`).

A model and the stock it was trained with are one artifact set, so they swap (and roll back) together. On top,
``recsvc stock`` pushes snapshots between trainings; each names the catalog it belongs to. For one model
(:class:`ModelStock`) the stock in use is

1. the newest pushed snapshot of the model's catalog, when it is newer than the model's own stock (or the
   model carries none);
2. else the model's own training-time stock;
3. else, for a model published before catalogs were recorded, the newest snapshot that names no catalog
   either (both sides older than the rule: served as they always were);
4. else nothing: no store is filtered.

A snapshot of another catalog is never used, so a new model's stock pushed while a server still serves the
old model, or a rollback to a model of another catalog, cannot empty the store channel.

Servers keep one :class:`StockWatcher` per artifact root and process. It ``stat``s ``<root>/stock/CURRENT``
on every request (a microsecond-scale system call; on object storage, a request to the store, so at most every
``server.stock_poll_seconds``) and, the first time it sees the pointer change, reads the
kept snapshots' manifests again; a snapshot is loaded (and its checksums verified) the first time a model asks
for it. A snapshot that fails to load is logged and the one used before stays in use.

Transport-free (no grpc): the engine gets a :class:`ModelStock` from :func:`recsvc.server.versions.build_engine`.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from datetime import datetime
from typing import ClassVar

import numpy as np

from recsvc.artifacts import ArtifactError, ArtifactStore, IdIndex, read_manifest
from recsvc.artifacts.artifact_set import load_array
from recsvc.artifacts.parts.catalog import ITEM_IDS, catalog_id
from recsvc.artifacts.parts.stock import STOCK_EXTRA
from recsvc.artifacts.stock import (
    StockSnapshot,
    load_stock,
    snapshot_catalogs,
    snapshot_manifest,
    stock_store,
)
from recsvc.artifacts.stock_table import StockError, StockTable
from recsvc.artifacts.store import StoreRoot, is_url, open_store
from recsvc.ranking.model import LoadedModel

logger = logging.getLogger(__name__)


class StockWatcher:
    """The pushed stock snapshots of one artifact root, re-read the first time ``CURRENT`` changes.

    Thread-safe; one watcher per root and process is shared through :meth:`for_root`.
    """

    _registry: ClassVar[dict[str, StockWatcher]] = {}
    _registry_lock: ClassVar[threading.Lock] = threading.Lock()

    def __init__(self, artifact_root: StoreRoot | ArtifactStore, verify: bool = True,
                 poll_seconds: float = 5.0) -> None:
        self.root = open_store(artifact_root)
        self.artifact_root = self.root.location
        self.stock = stock_store(self.root)
        self.verify = verify
        # a local pointer is stat-ed on every request; an object store's at most every poll_seconds
        self.poll_seconds = poll_seconds if self.stock.is_remote else 0.0
        self._checked_at = -float("inf")
        self._signature: str | None = None
        # catalog id (None: any) -> newest snapshot version ("": it failed to load), the loaded snapshots by
        # version, and by catalog id the snapshot handed out last
        self._newest: dict[str | None, str] = {}
        self._loaded: dict[str, StockSnapshot] = {}
        self._in_use: dict[str | None, StockSnapshot] = {}
        self._lock = threading.Lock()

    @classmethod
    def for_root(cls, artifact_root: StoreRoot | ArtifactStore, verify: bool = True,
                 poll_seconds: float = 5.0) -> StockWatcher:
        """The process's watcher of ``artifact_root`` (created on first use)."""
        root: StoreRoot | ArtifactStore
        if isinstance(artifact_root, ArtifactStore):
            key, root = artifact_root.location, artifact_root
        elif is_url(artifact_root):
            key = root = str(artifact_root).rstrip("/")
        else:
            key = root = os.path.abspath(artifact_root)
        with cls._registry_lock:
            watcher = cls._registry.get(key)
            if watcher is None:
                watcher = cls._registry[key] = cls(root, verify, poll_seconds)
            return watcher

    def newest(self, catalog_id: str) -> StockSnapshot | None:
        """The newest pushed snapshot of ``catalog_id`` ("" = snapshots that name no catalog); None when there
        is none. A snapshot that cannot be loaded is logged and the one handed out before is returned."""
        return self._snapshot(catalog_id)

    def newest_any(self) -> StockSnapshot | None:
        """The snapshot pushed last (``CURRENT``), whatever its catalog."""
        return self._snapshot(None)

    def _remote_pointer(self) -> str | None:
        """The pointer's signature on object storage, asked at most every ``poll_seconds`` (lock held)."""
        now = time.monotonic()
        if now - self._checked_at >= self.poll_seconds:
            self._checked_at = now
            try:
                return self.stock.pointer_signature()
            except Exception as exc:  # the store is unreachable: keep what is in use
                logger.warning("cannot check %s for a new stock snapshot: %s", self.stock.location, exc)
        return self._signature

    def _snapshot(self, catalog_id: str | None) -> StockSnapshot | None:
        # a local stat outside the lock, as requests arrive; one request at a time asks an object store
        signature = self.stock.pointer_signature() if self.poll_seconds <= 0 else None
        with self._lock:
            if self.poll_seconds > 0:
                signature = self._remote_pointer()
            if signature is None:
                return None
            if signature != self._signature:
                self._signature = signature
                found = snapshot_catalogs(self.root)  # newest first
                newest: dict[str | None, str] = {None: found[0][0]} if found else {}
                for name, catalog in found:
                    newest.setdefault(catalog, name)
                self._newest = newest
                self._loaded = {v: s for v, s in self._loaded.items() if v in newest.values()}
            version = self._newest.get(catalog_id)
            if not version:
                return self._in_use.get(catalog_id) if version == "" else None
            snapshot = self._loaded.get(version)
            if snapshot is None:
                try:
                    snapshot = load_stock(self.stock.open_version(version), verify=self.verify)
                except (StockError, ArtifactError, OSError) as exc:
                    logger.warning("stock snapshot %s under %s not usable, keeping the previous one: %s",
                                   version, self.artifact_root, exc)
                    self._newest[catalog_id] = ""  # not retried until the pointer changes
                    return self._in_use.get(catalog_id)
                self._loaded[version] = snapshot
                logger.info("stock snapshot %s (catalog %s) in use: %d rows", version, snapshot.catalog_id or "none",
                            len(snapshot.table))
            self._in_use[catalog_id] = snapshot
            return snapshot


def _instant(iso: str) -> datetime | None:
    try:
        return datetime.fromisoformat(iso) if iso else None
    except ValueError:
        return None


def pushed_wins(pushed_created_at: str, own_as_of: str | None) -> bool:
    """Whether a snapshot pushed for the model's catalog replaces its training-time stock (``own_as_of`` None:
    the model carries none): only when it is newer; an unreadable time never replaces the model's own."""
    if own_as_of is None:
        return True
    created, own = _instant(pushed_created_at), _instant(own_as_of)
    return created is not None and own is not None and created > own


class ModelStock:
    """The stock one loaded model filters by (the rules in the module docstring); the engine's stock source.

    :meth:`in_stock` answers per store with a bool mask over the model's item rows, cached per (table, store).
    """

    def __init__(self, watcher: StockWatcher, model: LoadedModel) -> None:
        self.watcher = watcher
        self.items: IdIndex = model.items
        self.catalog_id = model.catalog_id
        self.own = model.training_stock
        # a set from before catalogs were recorded also reads snapshots that name none
        self._legacy = not model.catalog_recorded
        self._masks = _MaskCache(self.items)

    def table(self) -> tuple[str, StockTable] | None:
        """The table in use now and a name for it (snapshot version, or ``model:<version>``)."""
        pushed = self.watcher.newest(self.catalog_id)
        if pushed is not None and pushed_wins(pushed.created_at, self.own.as_of if self.own is not None else None):
            return pushed.version, pushed.table
        if self.own is not None:
            return "model", self.own.table
        if self._legacy:
            legacy = self.watcher.newest("")
            if legacy is not None:
                return legacy.version, legacy.table
        return None

    def in_stock(self, store_id: str) -> np.ndarray | None:
        """Bool per item row: in stock in ``store_id``; None when there is no stock data for that store."""
        if not store_id:
            return None
        found = self.table()
        return None if found is None else self._masks.mask(found[0], found[1], store_id)


def describe_stock(artifact_root: StoreRoot | ArtifactStore, version: str) -> str:
    """Which stock a server will filter ``version`` by (the rules of :class:`ModelStock`), in one phrase for
    ``recsvc rollback``; reads manifests (and, for a set from before catalog ids, its item ids)."""
    store = open_store(artifact_root)
    folder = store.open_version(version)
    manifest = read_manifest(folder)
    recorded = str(manifest.get("catalog_id", ""))
    catalogs = [recorded] if recorded else [catalog_id(load_array(folder, ITEM_IDS)), ""]
    own = (manifest.get("extra") or {}).get(STOCK_EXTRA)
    own_as_of = str(own.get("as_of", "")) if isinstance(own, dict) else None
    newest: dict[str, str] = {}
    for name, snapshot_catalog in snapshot_catalogs(store):
        newest.setdefault(snapshot_catalog, name)
    for catalog in catalogs:
        found = newest.get(catalog)
        if found is None or (catalog == "" and own is not None):
            continue
        created = str(snapshot_manifest(stock_store(store), found).get("created_at", ""))
        if pushed_wins(created, own_as_of):
            return f"stock snapshot {found} (pushed for its catalog {catalog or '(none recorded)'})"
    if own is not None:
        return f"its own training-time stock (as of {own.get('as_of') or 'training'})"
    return "no stock data (stores are not filtered)"


class StockFilter:
    """The last pushed snapshot, whatever its catalog: for engines built without :func:`build_engine`
    (until the engine takes its stock source as an argument); servers use :class:`ModelStock`."""

    def __init__(self, watcher: StockWatcher, items: IdIndex) -> None:
        self.watcher = watcher
        self._masks = _MaskCache(items)

    def in_stock(self, store_id: str) -> np.ndarray | None:
        if not store_id:
            return None
        snapshot = self.watcher.newest_any()
        return None if snapshot is None else self._masks.mask(snapshot.version, snapshot.table, store_id)


class _MaskCache:
    """Masks of one table version by store; a new version drops the old masks."""

    def __init__(self, items: IdIndex) -> None:
        self.items = items
        self._version = ""
        self._masks: dict[str, np.ndarray | None] = {}
        self._lock = threading.Lock()

    def mask(self, version: str, table: StockTable, store_id: str) -> np.ndarray | None:
        with self._lock:
            if version != self._version:
                self._version, self._masks = version, {}
            if store_id in self._masks:
                return self._masks[store_id]
        mask = table.in_stock(store_id, self.items)
        with self._lock:
            if version == self._version:
                self._masks[store_id] = mask
        return mask
