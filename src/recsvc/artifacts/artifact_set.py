"""One artifact set: its arrays and manifest in memory (:class:`ArtifactSet`), and on disk as one folder of
``.npy`` files plus ``manifest.json`` (:func:`write_artifact_set`, :func:`load_artifact_set`).

Nothing is pickled: arrays are saved and loaded with ``allow_pickle=False`` and ids are fixed-width unicode
arrays, so loading an artifact can never run code. Every file's sha256, dtype and shape is in the manifest,
which is written last: a folder without one is not a set.

Manifest keys: ``schema_version``, ``version``, ``created_at`` (ISO 8601 UTC), ``data_end_day`` (last event
day in the training data, days since epoch), ``input_fingerprint``, ``catalog_id`` (since 1.1: the catalog's
name, :func:`recsvc.artifacts.parts.catalog.catalog_id`), ``channels`` (list, index order of every channel
axis), ``row_counts``, ``params``, ``evaluation`` (may be empty), ``forced`` (bool), ``extra`` (the parts'
metadata, keys owned by the parts), ``files`` (name -> sha256, dtype, shape) and ``attachments`` (name ->
sha256, size: the evaluation report files, Markdown, JSON and PNG, which people read and servers never load).

Schema versions: readers refuse an unknown major version and read every minor version of theirs; 1.1 added
``catalog_id`` and the training-time stock part. A 1.0 set (no ``catalog_id``) is served as before; it is
only filtered by stock snapshots that name no catalog either (see :mod:`recsvc.server.stock`).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from recsvc.artifacts.errors import ArtifactError
from recsvc.artifacts.parts.catalog import ITEM_IDS, catalog_id
from recsvc.artifacts.schema import Parts, read_parts

SCHEMA_VERSION = "1.1"
MANIFEST = "manifest.json"

_ATTACHMENT_RE = re.compile(r"^[0-9A-Za-z][0-9A-Za-z._-]{0,127}$")


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
    #: The catalog's name as the manifest records it; "" for a set not yet written, or written before 1.1.
    catalog_id: str = ""

    def __getitem__(self, name: str) -> np.ndarray:
        return self.arrays[name]

    def get(self, name: str) -> np.ndarray | None:
        return self.arrays.get(name)

    def validate(self) -> Parts:
        """Check every part (:func:`recsvc.artifacts.schema.read_parts`) and the recorded catalog id; return
        the parts. Raises :class:`ArtifactError` naming the array and the rule."""
        parts = read_parts(self.arrays, self.channels, self.extra)
        if self.catalog_id and self.catalog_id != catalog_id(self.arrays[ITEM_IDS]):
            raise ArtifactError(f"the manifest names catalog {self.catalog_id}, the item ids are catalog "
                                f"{catalog_id(self.arrays[ITEM_IDS])}")
        return parts


def sha256_file(path: Path) -> str:
    with Path(path).open("rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()


def write_artifact_set(artifacts: ArtifactSet, folder: Path) -> dict[str, Any]:
    """Write arrays and manifest into ``folder`` (which must not exist) and return the manifest."""
    artifacts.validate()
    folder = Path(folder)
    folder.mkdir(parents=True)
    files: dict[str, dict[str, Any]] = {}
    for name, array in sorted(artifacts.arrays.items()):
        if array.dtype == object:
            raise ArtifactError(f"array {name} has dtype object; store ids as fixed-width unicode")
        path = folder / f"{name}.npy"
        np.save(path, np.ascontiguousarray(array), allow_pickle=False)
        files[name] = {"sha256": sha256_file(path), "dtype": array.dtype.str, "shape": list(array.shape)}
    attachments: dict[str, dict[str, Any]] = {}
    for name, content in sorted(artifacts.attachments.items()):
        if not _ATTACHMENT_RE.match(name) or name == MANIFEST or name.endswith(".npy"):
            raise ArtifactError(f"bad attachment name {name!r}: a plain file name, not .npy or {MANIFEST}")
        path = folder / name
        path.write_bytes(content)
        attachments[name] = {"sha256": sha256_file(path), "size": len(content)}
    artifacts.catalog_id = catalog_id(artifacts.arrays[ITEM_IDS])
    manifest = {
        "schema_version": SCHEMA_VERSION,
        "version": artifacts.version,
        "created_at": artifacts.created_at or datetime.now(UTC).isoformat(timespec="seconds"),
        "data_end_day": int(artifacts.data_end_day),
        "input_fingerprint": artifacts.input_fingerprint,
        "catalog_id": artifacts.catalog_id,
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


def read_manifest(folder: Path) -> dict[str, Any]:
    """The manifest of a set folder; refuses a missing or unreadable one and an unknown major version."""
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


def listed_files(manifest: dict[str, Any]) -> dict[str, str]:
    """File name -> sha256 of every file a manifest lists: ``files`` (``<name>.npy``) and ``attachments``.
    Stock snapshot manifests list theirs the same way. Object stores download exactly these (a file the
    manifest does not list is not part of the version)."""
    listed: dict[str, str] = {}
    try:
        for name, meta in (manifest.get("files") or {}).items():
            listed[f"{name}.npy"] = str(meta["sha256"])
        for name, meta in (manifest.get("attachments") or {}).items():
            listed[str(name)] = str(meta["sha256"])
    except (AttributeError, KeyError, TypeError) as exc:
        raise ArtifactError(f"manifest lists its files in an unreadable form ({type(exc).__name__}: {exc})") from exc
    for name in listed:
        if not _ATTACHMENT_RE.match(name) or name == MANIFEST:
            raise ArtifactError(f"manifest lists a bad file name {name!r}")
    return listed


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
        if verify and sha256_file(path) != meta["sha256"]:
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
        catalog_id=str(manifest.get("catalog_id", "")),
    )
    artifacts.validate()
    return artifacts


def load_array(folder: Path, name: str, verify: bool = True) -> np.ndarray:
    """One array of a set folder, checked against its manifest entry (for tools that need one part, e.g. the
    catalog's item ids when a stock file is pushed)."""
    folder = Path(folder)
    meta = read_manifest(folder).get("files", {}).get(name)
    path = folder / f"{name}.npy"
    if meta is None or not path.is_file():
        raise ArtifactError(f"{folder}: {path.name} is missing")
    if verify and sha256_file(path) != meta["sha256"]:
        raise ArtifactError(f"{path}: checksum mismatch (file is corrupt or was changed after publish)")
    array: np.ndarray = np.load(path, allow_pickle=False)
    return array


def fingerprint_files(paths: Iterable[Path]) -> str:
    """A short fingerprint of the training inputs (names, sizes, content hashes)."""
    digest = hashlib.sha256()
    for path in sorted(Path(p) for p in paths):
        digest.update(path.name.encode())
        digest.update(sha256_file(path).encode())
    return digest.hexdigest()[:16]
