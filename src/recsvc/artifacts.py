"""The artifact set: the one contract between the trainer (writer) and the server (reader).

An artifact set is a folder of ``.npy`` arrays plus ``manifest.json``. The manifest carries the schema
version, creation time, input fingerprint, row counts, training parameters, evaluation summary and a sha256,
dtype and shape for every array. Nothing here is pickled: arrays are saved and loaded with
``allow_pickle=False`` and ids are fixed-width unicode arrays, so loading an artifact can never run code.

Layout of an artifact root::

    <root>/versions/<version>/manifest.json + *.npy    one folder per published version
    <root>/CURRENT                                       name of the version servers should load

Publishing writes the new version into ``<root>/.staging-<version>`` first, verifies it, renames the folder
into ``versions/`` (atomic on one file system) and only then swaps ``CURRENT`` with ``os.replace``; a reader
therefore sees either the old set or the whole new one, never half of it.

Running servers follow ``CURRENT`` (:mod:`recsvc.server.lifecycle`: poll, SIGHUP, Admin API), verifying each
new version before it serves; rolling back is pointing ``CURRENT`` at an older version (:func:`set_current`,
``recsvc rollback``). A published version is therefore never changed in place: servers check its sha256 once,
at load, and may memory-map its files for as long as they serve it.

Arrays (``n_items`` = catalog size, ``n_customers`` = resolved customers, ``f`` = ALS factors). Item and
customer ids are stored **sorted**, so an id's row is found with ``np.searchsorted`` (see :class:`IdIndex`)
instead of a Python dict on the hot path.

=============================  =========================  ==========================================
name                           dtype, shape               meaning
=============================  =========================  ==========================================
item_ids                       U, [n_items]               sorted item ids
item_titles                    U, [n_items]               display titles
item_categories                U, [n_items]               category
item_prices                    float32, [n_items]         catalog price (NaN = unknown)
item_channels                  bool, [n_items, n_ch]      sellable on channel ``manifest.channels[c]``
customer_ids                   U, [n_customers]           sorted resolved customer ids
alias_ids                      U, [n_aliases]             sorted alias ids (loyalty card, app id ...)
alias_customer                 int32, [n_aliases]         row in ``customer_ids`` of each alias
als_user_factors               float32, [n_customers, f]  implicit ALS customer factors
als_item_factors               float32, [n_items, f]      implicit ALS item factors
hist_indptr                    int64, [n_customers + 1]   CSR rows: each customer's purchased items
hist_items                     int32, [nnz]               item row
hist_count                     float32, [nnz]             net purchases (returns subtracted), > 0
hist_first_day                 int32, [nnz]               first purchase, days since 1970-01-01
hist_last_day                  int32, [nnz]               last purchase, days since 1970-01-01
hist_last_channel              int16, [nnz]               channel index of the last purchase
hist_last_store                int32, [nnz]               row in ``store_ids`` of the last purchase, -1
hist_decayed                   float32, [nnz]             optional: recency-weighted purchase count at
                                                          ``data_end_day`` (half-life in
                                                          ``extra.hist_decayed_half_life_days``)
item_repurchase_days           float32, [n_items]         median days between repeat buys (NaN = none)
item_repurchase_rate           float32, [n_items]         share of buyers who bought it again
store_ids                      U, [n_stores]              sorted store ids
pop_global                     float32, [n_items]         recency-decayed popularity, all channels
pop_channel                    float32, [n_ch, n_items]   recency-decayed popularity per channel
item_trend                     float32, [n_items]         optional: log1p(distinct buyers in the last 7
                                                          days x 4) - log1p(those in the last 28), as of
                                                          ``data_end_day`` (> 0 rising)
pop_store_items                int32, [n_stores, k]       most popular items per store (-1 = pad)
pop_store_scores               float32, [n_stores, k]     their scores
copurchase_indptr              int64, [n_items + 1]       CSR rows: items bought with each item
copurchase_items               int32, [nnz]               neighbour item row, best first per row
copurchase_scores              float32, [nnz]             estimate of P(b | a) in [0, 1): the Wilson
                                                          lower bound (``copurchase_confidence_z``);
                                                          older sets hold n_ab / (n_a + 5), which the
                                                          server reads alike (same dtype and range)
copurchase_support             int32, [nnz]               number of baskets holding both
ann_index                      uint8, [nbytes]            optional, catalogs >= ``ann_min_items``: faiss
                                                          IVF index over the item factors, serialised
                                                          (``recsvc.ranking.ann``); ``extra.ann`` holds
                                                          its kind, nprobe and measured recall@10
ann_cosine_index               uint8, [nbytes]            optional, likewise: the same over unit-length
                                                          item factors (SimilarItems, bundle fill);
                                                          metadata in ``extra.ann_cosine``
rfm_scores                     int8, [n_customers, 3]     optional: recency, frequency, monetary score
                                                          1..5 (0 = no purchase); rule in
                                                          ``recsvc_training.models.rfm``
rfm_segment                    int8, [n_customers]        optional: index into ``extra.rfm_segments``
                                                          (-1 = no purchase)
cust_monetary                  float32, [n_customers]     optional: net spend, returns subtracted
cust_channels                  bool, [n_customers, n_ch]  optional: any event on channel ``c``
lfm_user_embeddings            float32, [n_customers, d]  optional, cold start: LightFM vector (sum of
                                                          the customer's attribute embeddings)
lfm_user_biases                float32, [n_customers]     optional, cold start: LightFM user bias
lfm_item_embeddings            float32, [n_items, d]      optional, cold start: LightFM item vector
lfm_item_biases                float32, [n_items]         optional, cold start: LightFM item bias
coldstart_customer             bool, [n_customers]        optional: the trainer's choice of customers
                                                          served by the cold-start source
=============================  =========================  ==========================================

Optional arrays are checked where they are read: the customer summary by ``recsvc.ranking.profile``, the
cold-start arrays by ``recsvc.ranking.coldstart`` (a set whose shapes do not fit is refused at load).
``extra.foldin`` holds the ALS knobs the server's context fold-in repeats (``recsvc.ranking.foldin``). Stock
is not part of a set: it is a snapshot of its own under ``<root>/stock/`` (format in ``recsvc.stock``).

Manifest keys: ``schema_version``, ``version``, ``created_at`` (ISO 8601 UTC), ``data_end_day`` (last
event day in the training data, days since epoch), ``input_fingerprint``, ``channels`` (list, index order
of every channel axis), ``row_counts``, ``params``, ``evaluation`` (may be empty), ``forced`` (bool) and
``files`` (name -> sha256, dtype, shape) and ``attachments`` (name -> sha256, size: the evaluation report
files, Markdown, JSON and PNG, which people read and servers never load). Readers reject an unknown major
schema version.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
import tempfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

logger = logging.getLogger(__name__)

SCHEMA_VERSION = "1.0"
MANIFEST = "manifest.json"
CURRENT = "CURRENT"
VERSIONS = "versions"

#: Arrays every artifact set must hold; others (e.g. a learned ranker) are optional and named in the manifest.
REQUIRED_ARRAYS: tuple[str, ...] = (
    "item_ids", "item_titles", "item_categories", "item_prices", "item_channels",
    "customer_ids", "alias_ids", "alias_customer",
    "als_user_factors", "als_item_factors",
    "hist_indptr", "hist_items", "hist_count", "hist_first_day", "hist_last_day",
    "hist_last_channel", "hist_last_store",
    "item_repurchase_days", "item_repurchase_rate",
    "store_ids", "pop_global", "pop_channel", "pop_store_items", "pop_store_scores",
    "copurchase_indptr", "copurchase_items", "copurchase_scores", "copurchase_support",
)

_VERSION_RE = re.compile(r"^[0-9A-Za-z._-]{1,64}$")
_ATTACHMENT_RE = re.compile(r"^[0-9A-Za-z][0-9A-Za-z._-]{0,127}$")


class ArtifactError(Exception):
    """An artifact set is missing, corrupt or inconsistent; the message says which file and why."""


@dataclass(frozen=True)
class IdIndex:
    """Maps external string ids to rows through a sorted array (no Python dict on the hot path)."""

    ids: np.ndarray

    def lookup(self, values: Iterable[str]) -> np.ndarray:
        """Rows of ``values`` (int64), ``-1`` where an id is unknown."""
        texts = list(values)
        query = np.asarray(texts, dtype=np.str_)
        if self.ids.size == 0 or query.size == 0:
            return np.full(query.shape, -1, dtype=np.int64)
        fits: np.ndarray | bool = True
        if query.dtype.itemsize > self.ids.dtype.itemsize:
            # A query wider than the ids would make searchsorted copy the whole id array to the query's
            # width (17 ms per lookup over 1M customer ids; found by benchmarks/load.py). An id longer than
            # every stored id cannot match one, so only the others are cast down — never cut "c10" to "c1"
            # and serve an unknown customer as somebody else.
            fits = np.char.str_len(query) <= self.ids.dtype.itemsize // np.dtype("U1").itemsize
            query = query.astype(self.ids.dtype)
        pos = np.searchsorted(self.ids, query)
        pos_clipped = np.minimum(pos, self.ids.size - 1)
        found = (self.ids[pos_clipped] == query) & fits
        if any(text.endswith("\x00") for text in texts):
            # numpy drops trailing NULs, so "C001\x00" would read as "C001" (somebody else); no stored id
            # ends in NUL, so such a query is unknown (found by tests/test_fuzz.py).
            found &= np.array([not text.endswith("\x00") for text in texts])
        return np.where(found, pos_clipped, -1).astype(np.int64)

    def row(self, value: str) -> int:
        """Row of one id, ``-1`` when unknown."""
        return int(self.lookup([value])[0])

    def __len__(self) -> int:
        return int(self.ids.size)


@dataclass
class ArtifactSet:
    """Arrays plus manifest metadata, as the trainer builds it and the server loads it."""

    arrays: dict[str, np.ndarray]
    channels: list[str]
    data_end_day: int
    input_fingerprint: str = ""
    row_counts: dict[str, int] = field(default_factory=dict)
    params: dict[str, Any] = field(default_factory=dict)
    evaluation: dict[str, Any] = field(default_factory=dict)
    forced: bool = False
    version: str = ""
    created_at: str = ""
    extra: dict[str, Any] = field(default_factory=dict)
    #: Files people read (evaluation report, charts), by file name; checksummed like the arrays.
    attachments: dict[str, bytes] = field(default_factory=dict)

    def __getitem__(self, name: str) -> np.ndarray:
        return self.arrays[name]

    def get(self, name: str) -> np.ndarray | None:
        return self.arrays.get(name)

    def validate(self) -> None:
        """Check presence, dtypes and the shapes that tie arrays together; raise ArtifactError."""
        missing = [name for name in REQUIRED_ARRAYS if name not in self.arrays]
        if missing:
            raise ArtifactError(f"artifact set lacks required arrays: {', '.join(missing)}")
        a = self.arrays
        n_items = a["item_ids"].shape[0]
        n_customers = a["customer_ids"].shape[0]
        n_ch = len(self.channels)
        n_stores = a["store_ids"].shape[0]
        expect: dict[str, tuple[int | None, ...]] = {
            "item_titles": (n_items,), "item_categories": (n_items,), "item_prices": (n_items,),
            "item_channels": (n_items, n_ch),
            "alias_customer": (a["alias_ids"].shape[0],),
            "als_user_factors": (n_customers, None), "als_item_factors": (n_items, None),
            "hist_indptr": (n_customers + 1,),
            "item_repurchase_days": (n_items,), "item_repurchase_rate": (n_items,),
            "pop_global": (n_items,), "pop_channel": (n_ch, n_items),
            "pop_store_items": (n_stores, None), "pop_store_scores": (n_stores, None),
            "copurchase_indptr": (n_items + 1,),
        }
        for name, shape in expect.items():
            got = a[name].shape
            if len(got) != len(shape) or any(s is not None and s != g for s, g in zip(shape, got, strict=True)):
                raise ArtifactError(f"array {name} has shape {got}, expected {shape}")
        if a["als_user_factors"].shape[1] != a["als_item_factors"].shape[1]:
            raise ArtifactError("ALS customer and item factors differ in width")
        for prefix, cols in (("hist", ("items", "count", "first_day", "last_day", "last_channel", "last_store")),
                             ("copurchase", ("items", "scores", "support"))):
            indptr = a[f"{prefix}_indptr"]
            nnz = int(indptr[-1]) if indptr.size else 0
            if indptr.size and (indptr[0] != 0 or np.any(np.diff(indptr) < 0)):
                raise ArtifactError(f"{prefix}_indptr is not a valid CSR row pointer")
            for col in cols:
                if a[f"{prefix}_{col}"].shape != (nnz,):
                    raise ArtifactError(f"{prefix}_{col} has {a[f'{prefix}_{col}'].shape}, expected ({nnz},)")
        if "hist_decayed" in a and a["hist_decayed"].shape != a["hist_items"].shape:
            raise ArtifactError(f"hist_decayed has {a['hist_decayed'].shape}, expected {a['hist_items'].shape}")
        if "item_trend" in a and a["item_trend"].shape != (n_items,):
            raise ArtifactError(f"item_trend has {a['item_trend'].shape}, expected ({n_items},)")
        for name, bound in (("hist_items", n_items), ("copurchase_items", n_items),
                            ("alias_customer", n_customers)):
            arr = a[name]
            if arr.size and (arr.min() < 0 or arr.max() >= bound):
                raise ArtifactError(f"{name} holds rows outside [0, {bound})")
        for name in ("item_ids", "customer_ids", "alias_ids", "store_ids"):
            ids = a[name]
            if ids.size > 1 and not np.all(ids[1:] > ids[:-1]):
                raise ArtifactError(f"{name} must be sorted and unique")
        for name in ("als_user_factors", "als_item_factors", "pop_channel", "pop_global"):
            if not np.all(np.isfinite(a[name])):
                raise ArtifactError(f"{name} holds NaN or infinite values")


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def new_version_name(now: datetime | None = None) -> str:
    """A sortable version name: UTC time to the microsecond, so newer publishes sort later."""
    now = now or datetime.now(UTC)
    return now.strftime("%Y%m%dT%H%M%S%fZ")


def write_artifact_set(artifacts: ArtifactSet, folder: Path) -> dict[str, Any]:
    """Write arrays and manifest into ``folder`` (which must not exist) and return the manifest."""
    artifacts.validate()
    folder.mkdir(parents=True)
    files: dict[str, dict[str, Any]] = {}
    for name, array in sorted(artifacts.arrays.items()):
        if array.dtype == object:
            raise ArtifactError(f"array {name} has dtype object; store ids as fixed-width unicode")
        path = folder / f"{name}.npy"
        np.save(path, np.ascontiguousarray(array), allow_pickle=False)
        files[name] = {"sha256": _sha256(path), "dtype": array.dtype.str, "shape": list(array.shape)}
    attachments: dict[str, dict[str, Any]] = {}
    for name, content in sorted(artifacts.attachments.items()):
        if not _ATTACHMENT_RE.match(name) or name == MANIFEST or name.endswith(".npy"):
            raise ArtifactError(f"bad attachment name {name!r}: a plain file name, not .npy or {MANIFEST}")
        path = folder / name
        path.write_bytes(content)
        attachments[name] = {"sha256": _sha256(path), "size": len(content)}
    manifest = {
        "schema_version": SCHEMA_VERSION,
        "version": artifacts.version,
        "created_at": artifacts.created_at or datetime.now(UTC).isoformat(timespec="seconds"),
        "data_end_day": int(artifacts.data_end_day),
        "input_fingerprint": artifacts.input_fingerprint,
        "channels": list(artifacts.channels),
        "row_counts": artifacts.row_counts,
        "params": artifacts.params,
        "evaluation": artifacts.evaluation,
        "forced": bool(artifacts.forced),
        "extra": artifacts.extra,
        "files": files,
        "attachments": attachments,
    }
    tmp = folder / (MANIFEST + ".tmp")
    tmp.write_text(json.dumps(manifest, indent=2, sort_keys=True, default=_json_default))
    os.replace(tmp, folder / MANIFEST)  # the manifest lands last: a folder without one is not a set
    return manifest


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def publish_artifacts(artifacts: ArtifactSet, root: Path, keep: int = 5) -> Path:
    """Write ``artifacts`` as a new version under ``root`` and point ``CURRENT`` at it, atomically.

    Returns the published version folder. At most ``keep`` versions are kept (the current one always).
    """
    root = Path(root)
    (root / VERSIONS).mkdir(parents=True, exist_ok=True)
    version = artifacts.version or new_version_name()
    if not _VERSION_RE.match(version):
        raise ArtifactError(f"bad version name {version!r}")
    if (root / VERSIONS / version).exists():
        raise ArtifactError(f"version {version} already exists under {root}")
    artifacts.version = version
    staging = Path(tempfile.mkdtemp(prefix=f".staging-{version}-", dir=root))
    try:
        folder = staging / "set"
        write_artifact_set(artifacts, folder)
        load_artifact_set(folder)  # read back and verify before anyone can see it
        final = root / VERSIONS / version
        os.rename(folder, final)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    set_current(root, version)
    prune_versions(root, keep)
    logger.info("published artifact set %s under %s", version, root)
    return final


def set_current(root: Path, version: str) -> None:
    """Point ``CURRENT`` at an existing version (used by publish and by rollback)."""
    if not (Path(root) / VERSIONS / version / MANIFEST).is_file():
        raise ArtifactError(f"no published version {version} under {root}")
    tmp = Path(root) / f".{CURRENT}.tmp"
    tmp.write_text(version + "\n")
    os.replace(tmp, Path(root) / CURRENT)


def list_versions(root: Path) -> list[str]:
    """Published versions (folders with a manifest), oldest first."""
    base = Path(root) / VERSIONS
    if not base.is_dir():
        return []
    return sorted(p.name for p in base.iterdir() if (p / MANIFEST).is_file())


def current_version(root: Path) -> str | None:
    """The version ``CURRENT`` names, or None when nothing was published yet."""
    path = Path(root) / CURRENT
    if not path.is_file():
        return None
    name = path.read_text().strip()
    return name or None


def prune_versions(root: Path, keep: int) -> list[str]:
    """Delete the oldest versions beyond ``keep``, never the current one; returns what was removed."""
    keep = max(1, keep)
    versions = list_versions(root)
    current = current_version(root)
    removable = [v for v in versions if v != current]
    excess = len(versions) - keep
    removed = removable[:max(0, excess)]
    for version in removed:
        shutil.rmtree(Path(root) / VERSIONS / version, ignore_errors=True)
    return removed


def read_manifest(folder: Path) -> dict[str, Any]:
    path = Path(folder) / MANIFEST
    try:
        manifest: dict[str, Any] = json.loads(path.read_text())
    except FileNotFoundError as exc:
        raise ArtifactError(f"{folder}: no {MANIFEST}; not a published artifact set") from exc
    except json.JSONDecodeError as exc:
        raise ArtifactError(f"{path}: manifest is not valid JSON ({exc})") from exc
    major = str(manifest.get("schema_version", "")).split(".")[0]
    if major != SCHEMA_VERSION.split(".")[0]:
        raise ArtifactError(
            f"{path}: schema version {manifest.get('schema_version')!r} is not readable by this server "
            f"(expects {SCHEMA_VERSION})")
    return manifest


def load_artifact_set(folder: Path, verify: bool = True, mmap: bool = False) -> ArtifactSet:
    """Load and check one artifact set folder.

    ``verify`` recomputes every sha256 (the default; a corrupt file raises ArtifactError naming it).
    ``mmap`` memory-maps the arrays, so large factor matrices page in on demand.
    """
    folder = Path(folder)
    manifest = read_manifest(folder)
    arrays: dict[str, np.ndarray] = {}
    for name, meta in manifest.get("files", {}).items():
        path = folder / f"{name}.npy"
        if not path.is_file():
            raise ArtifactError(f"{folder}: {path.name} is listed in the manifest but missing")
        if verify and _sha256(path) != meta["sha256"]:
            raise ArtifactError(f"{path}: checksum mismatch (file is corrupt or was changed after publish)")
        try:
            array = np.load(path, allow_pickle=False, mmap_mode="r" if mmap else None)
        except ValueError as exc:
            raise ArtifactError(f"{path}: cannot be read as a plain numpy array ({exc})") from exc
        if array.dtype.str != meta["dtype"] or list(array.shape) != list(meta["shape"]):
            raise ArtifactError(f"{path}: dtype/shape {array.dtype.str}{array.shape} differ from the manifest")
        arrays[name] = array
    attachments: dict[str, bytes] = {}
    for name, meta in manifest.get("attachments", {}).items():
        path = folder / name
        if not _ATTACHMENT_RE.match(name) or not path.is_file():
            raise ArtifactError(f"{folder}: attachment {name!r} is listed in the manifest but missing")
        content = path.read_bytes()
        if verify and hashlib.sha256(content).hexdigest() != meta["sha256"]:
            raise ArtifactError(f"{path}: checksum mismatch (file is corrupt or was changed after publish)")
        attachments[name] = content
    artifacts = ArtifactSet(
        arrays=arrays,
        channels=list(manifest["channels"]),
        data_end_day=int(manifest["data_end_day"]),
        input_fingerprint=manifest.get("input_fingerprint", ""),
        row_counts=manifest.get("row_counts", {}),
        params=manifest.get("params", {}),
        evaluation=manifest.get("evaluation", {}),
        forced=bool(manifest.get("forced", False)),
        version=manifest.get("version", folder.name),
        created_at=manifest.get("created_at", ""),
        extra=manifest.get("extra", {}),
        attachments=attachments,
    )
    artifacts.validate()
    return artifacts


def load_current(root: Path, verify: bool = True, mmap: bool = False) -> ArtifactSet:
    """Load the version ``CURRENT`` names under ``root``; raise ArtifactError with the reason if unusable."""
    version = current_version(root)
    if version is None:
        raise ArtifactError(f"{root}: nothing published yet (no {CURRENT} file); run `recsvc train` first")
    return load_artifact_set(Path(root) / VERSIONS / version, verify=verify, mmap=mmap)


def fingerprint_files(paths: Iterable[Path]) -> str:
    """A short fingerprint of the training inputs (names, sizes, content hashes)."""
    digest = hashlib.sha256()
    for path in sorted(Path(p) for p in paths):
        digest.update(path.name.encode())
        digest.update(_sha256(path).encode())
    return digest.hexdigest()[:16]


def string_array(values: Iterable[str] | Mapping[Any, str]) -> np.ndarray:
    """A fixed-width unicode array (never dtype object, which would need pickle)."""
    items = list(values)
    if not items:
        return np.zeros(0, dtype="U1")
    return np.asarray([str(v) for v in items], dtype=np.str_)
