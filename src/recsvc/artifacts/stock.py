"""Stock snapshots pushed between trainings: the format, the file operators push, and which catalog each
belongs to. Serving (which snapshot a running model uses) is :mod:`recsvc.server.stock`.

Stock changes by the hour, the model by the day: a model carries the stock it was trained with (the part
:mod:`recsvc.artifacts.parts.stock`), and ``recsvc stock --file stock.csv`` pushes newer quantities at any
time, as a snapshot of its own::

    <root>/stock/versions/<version>/manifest.json     schema, version, created_at, source, catalog_id,
                                                      model_version, counts, files
    <root>/stock/versions/<version>/store_ids.npy     U  [n_rows]  store of each row
    <root>/stock/versions/<version>/item_ids.npy      U  [n_rows]  item of each row
    <root>/stock/versions/<version>/quantities.npy    float32 [n_rows] quantity on hand
    <root>/stock/CURRENT                              the snapshot pushed last

Rows are sorted by store, then item, one row per (store, item) (:class:`StockTable`). Publishing uses the
artifact store's discipline, through the root's own store (:func:`stock_store`: ``<root>/stock`` on local disk or
on object storage): staging folder, read back and verify every sha256, publish, then move ``CURRENT``.

A snapshot belongs to a catalog (schema 1.1): the catalog id of the model ``CURRENT`` names at push time,
recorded in its manifest with that model's version. A file that names mostly items that catalog does not know
is refused (it belongs to another catalog). A server uses a snapshot only for a model of the same catalog; a
1.0 snapshot names no catalog and is used only by 1.0 models, which name none either.

No pandas here: the server imports this module.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import logging
import math
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from recsvc.artifacts.artifact_set import MANIFEST, ArtifactSet, load_array, read_manifest, sha256_file
from recsvc.artifacts.errors import ArtifactError
from recsvc.artifacts.parts.catalog import ITEM_IDS, catalog_id
from recsvc.artifacts.stock_table import StockError, StockTable
from recsvc.artifacts.store import ArtifactStore, StoreRoot, new_version_name, open_store
from recsvc.artifacts.values import IdIndex

logger = logging.getLogger(__name__)

STOCK_DIR = "stock"
STOCK_SCHEMA_VERSION = "1.1"
#: Columns of a stock file (the trainer's ``stock`` table: ``recsvc_training.input.columns.STOCK_COLUMNS``).
STOCK_COLUMNS: tuple[str, str, str] = ("store_id", "item_id", "quantity_on_hand")
SNAPSHOT_STORE_IDS = "store_ids"
SNAPSHOT_ITEM_IDS = "item_ids"
SNAPSHOT_QUANTITIES = "quantities"
_ARRAYS = (SNAPSHOT_STORE_IDS, SNAPSHOT_ITEM_IDS, SNAPSHOT_QUANTITIES)
#: A pushed file whose distinct items are less than this share of the catalog's is refused.
MIN_KNOWN_SHARE = 0.5


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
    store_col, item_col, qty_col = STOCK_COLUMNS
    stores: list[str] = []
    items: list[str] = []
    quantities: list[float] = []
    skipped = {"missing_id": 0, "bad_quantity": 0}
    rows = 0
    for row in reader:
        rows += 1
        store, item = (row.get(store_col) or "").strip(), (row.get(item_col) or "").strip()
        if not store or not item:
            skipped["missing_id"] += 1
            continue
        try:
            quantity = float((row.get(qty_col) or "").strip())
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


@dataclass(frozen=True)
class StockCatalog:
    """The catalog a pushed snapshot is recorded for: the model ``CURRENT`` named at push time."""

    catalog_id: str
    model_version: str
    items: IdIndex

    def unknown_items(self, table: StockTable) -> int:
        """How many distinct items of ``table`` the catalog does not know (rows of those are ignored).

        Raises :class:`StockError` when they are more than half of the table's items: such a file belongs to
        another catalog, and recording it for this one would empty every store answer.
        """
        distinct = np.unique(table.item_ids)
        unknown = int((self.items.lookup(distinct) < 0).sum())
        if distinct.size and distinct.size - unknown < MIN_KNOWN_SHARE * distinct.size:
            raise StockError(
                f"{unknown:,} of the file's {distinct.size:,} items are not in catalog {self.catalog_id} of "
                f"version {self.model_version} (CURRENT): the file belongs to another catalog; nothing published")
        return unknown


def stock_root(artifact_root: Path) -> Path:
    """Folder of the stock snapshots under a local artifact root (any root: :func:`stock_store`)."""
    return Path(artifact_root) / STOCK_DIR


def stock_store(artifact_root: StoreRoot | ArtifactStore) -> ArtifactStore:
    """The store of the stock snapshots under an artifact root (``<root>/stock``), of the root's kind."""
    return open_store(artifact_root).child(STOCK_DIR)


def current_catalog(artifact_root: StoreRoot | ArtifactStore) -> StockCatalog:
    """The catalog of the model ``CURRENT`` names under ``artifact_root``.

    Raises :class:`StockError` when no model is published there (a snapshot needs a catalog to belong to).
    """
    store = open_store(artifact_root)
    version = store.current()
    if version is None:
        raise StockError(f"{store.location}: no model published (no CURRENT): a stock snapshot belongs to the "
                         "catalog of a model; run `recsvc train` first")
    try:
        folder = store.open_version(version)
        ids = load_array(folder, ITEM_IDS)
        recorded = str(read_manifest(folder).get("catalog_id", ""))
    except ArtifactError as exc:
        raise StockError(f"cannot read the catalog of version {version}: {exc}") from exc
    return StockCatalog(recorded or catalog_id(ids), version, IdIndex(ids))


def catalog_of(artifacts: ArtifactSet) -> StockCatalog:
    """The catalog of a set in memory, e.g. the one the trainer just published (nothing is read back: on
    object storage :func:`current_catalog` would download the set)."""
    ids = artifacts[ITEM_IDS]
    return StockCatalog(artifacts.catalog_id or catalog_id(ids), artifacts.version, IdIndex(ids))


def publish_stock(artifact_root: StoreRoot | ArtifactStore, table: StockTable, source: str = "", keep: int = 5,
                  catalog: StockCatalog | None = None) -> str:
    """Publish ``table`` as the newest stock snapshot under ``artifact_root`` (atomically); return where it lives
    (a folder, or a URL on object storage).

    The snapshot belongs to ``catalog`` (default: the catalog of the model ``CURRENT`` names; ``recsvc
    stock`` first checks the file against it with :meth:`StockCatalog.unknown_items`). ``source`` is recorded
    in the manifest (e.g. the file it came from). At most ``keep`` snapshots are kept.
    """
    catalog = catalog or current_catalog(artifact_root)
    store = stock_store(artifact_root)
    version = new_version_name()
    with store.staging(version) as folder:
        folder.mkdir()
        files: dict[str, dict[str, object]] = {}
        for name, values in zip(_ARRAYS, (table.store_ids, table.item_ids, table.quantities), strict=True):
            path = folder / f"{name}.npy"
            np.save(path, np.ascontiguousarray(values), allow_pickle=False)
            files[name] = {"sha256": sha256_file(path), "dtype": values.dtype.str, "shape": list(values.shape)}
        manifest = {"schema_version": STOCK_SCHEMA_VERSION, "version": version,
                    "created_at": datetime.now(UTC).isoformat(timespec="microseconds"), "source": source,
                    "catalog_id": catalog.catalog_id, "model_version": catalog.model_version,
                    "rows": len(table), "stores": table.n_stores, "files": files}
        (folder / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True))
        load_stock(folder)  # read back and verify before anyone can see it
        store.publish(folder, version)
    store.set_current(version)
    store.prune(keep)
    logger.info("published stock snapshot %s under %s for catalog %s: %d rows, %d stores", version,
                store.location, catalog.catalog_id, len(table), table.n_stores)
    return store.where(version)


@dataclass(frozen=True)
class StockSnapshot:
    """One loaded snapshot: the table plus its manifest facts (``catalog_id`` "" for a 1.0 snapshot)."""

    table: StockTable
    version: str
    created_at: str = ""
    source: str = ""
    catalog_id: str = ""

    def store_rows(self, store_id: str) -> slice | None:
        """The rows of ``store_id``, or None when the snapshot has none for it."""
        return self.table.store_rows(store_id)


def read_snapshot_manifest(folder: Path) -> dict[str, object]:
    """A snapshot's manifest; refuses a missing or unreadable one and an unknown major schema version."""
    folder = Path(folder)
    try:
        text = (folder / MANIFEST).read_text()
    except OSError as exc:
        raise StockError(f"{folder}: no readable {MANIFEST} ({exc})") from exc
    return _checked_snapshot_manifest(str(folder), text)


def snapshot_manifest(stock: ArtifactStore, version: str) -> dict[str, object]:
    """The manifest of snapshot ``version`` of a stock store, read without fetching the snapshot."""
    try:
        text = stock.read_manifest_text(version)
    except (ArtifactError, OSError) as exc:
        raise StockError(f"{stock.where(version)}: no readable {MANIFEST} ({exc})") from exc
    return _checked_snapshot_manifest(stock.where(version), text)


def _checked_snapshot_manifest(folder: str, text: str) -> dict[str, object]:
    try:
        manifest: dict[str, object] = json.loads(text)
    except json.JSONDecodeError as exc:
        raise StockError(f"{folder}: no readable {MANIFEST} ({exc})") from exc
    if str(manifest.get("schema_version", "")).split(".")[0] != STOCK_SCHEMA_VERSION.split(".")[0]:
        raise StockError(f"{folder}: stock schema {manifest.get('schema_version')!r} is not readable "
                         f"(expects {STOCK_SCHEMA_VERSION})")
    return manifest


def load_stock(folder: Path, verify: bool = True) -> StockSnapshot:
    """Load and check one snapshot folder; raises :class:`StockError` naming the file and the problem."""
    folder = Path(folder)
    manifest = read_snapshot_manifest(folder)
    files = manifest.get("files")
    arrays: dict[str, np.ndarray] = {}
    for name in _ARRAYS:
        meta = files.get(name) if isinstance(files, dict) else None
        path = folder / f"{name}.npy"
        if meta is None or not path.is_file():
            raise StockError(f"{folder}: {name}.npy is missing")
        if verify and sha256_file(path) != meta["sha256"]:
            raise StockError(f"{path}: checksum mismatch (file is corrupt or was changed after publish)")
        try:
            array = np.load(path, allow_pickle=False)
        except ValueError as exc:
            raise StockError(f"{path}: not a plain numpy array ({exc})") from exc
        if array.dtype.str != meta["dtype"] or list(array.shape) != list(meta["shape"]):
            raise StockError(f"{path}: dtype/shape {array.dtype.str}{array.shape} differ from the manifest")
        arrays[name] = array
    table = StockTable.checked(arrays[SNAPSHOT_STORE_IDS], arrays[SNAPSHOT_ITEM_IDS], arrays[SNAPSHOT_QUANTITIES],
                               str(folder))
    return StockSnapshot(table, version=str(manifest.get("version", folder.name)),
                         created_at=str(manifest.get("created_at", "")), source=str(manifest.get("source", "")),
                         catalog_id=str(manifest.get("catalog_id", "")))


def load_current_stock(artifact_root: StoreRoot | ArtifactStore, verify: bool = True) -> StockSnapshot | None:
    """The snapshot pushed last (``<root>/stock/CURRENT``), or None when none was published."""
    store = stock_store(artifact_root)
    version = store.current()
    return None if version is None else load_stock(store.open_version(version), verify=verify)


def snapshot_catalogs(artifact_root: StoreRoot | ArtifactStore) -> list[tuple[str, str]]:
    """``(version, catalog_id)`` of every kept snapshot, newest first (unreadable manifests skipped). Reads
    the manifests only (on object storage: no snapshot is downloaded)."""
    store = stock_store(artifact_root)
    found = []
    for version in reversed(store.versions()):
        try:
            manifest = snapshot_manifest(store, version)
        except StockError as exc:
            logger.warning("stock snapshot %s skipped: %s", version, exc)
            continue
        found.append((version, str(manifest.get("catalog_id", ""))))
    return found
