"""Where artifact sets live: one small interface (:class:`ArtifactStore`) and its local-disk implementation.

Layout of a local store root::

    <root>/versions/<version>/manifest.json + *.npy    one folder per published version
    <root>/CURRENT                                       name of the version servers should load

Publishing (:func:`publish_artifacts`) writes the new version into a staging folder inside the root first,
reads it back and verifies it, then :meth:`ArtifactStore.publish` makes it a version — the files first, the
manifest (the completion marker) last — and only then is ``CURRENT`` moved, written last of all. A reader that
follows ``CURRENT`` therefore sees either the old set or the whole new one, never half of it. On one local
file system the version folder appears by one ``rename`` and ``CURRENT`` is swapped with ``os.replace``; an
object store (issue 19) uploads the files, then the manifest, then the pointer, and lists as versions only
folders with a manifest, keeping the same promise.

Running servers follow ``CURRENT`` (:mod:`recsvc.server.lifecycle`); rolling back is pointing it at an older
version (:func:`set_current`). A published version is never changed in place: servers check its sha256 once,
at load, and may memory-map its files for as long as they serve it. Stock snapshots use the same store under
``<root>/stock/`` (:mod:`recsvc.artifacts.stock`).
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import tempfile
from abc import ABC, abstractmethod
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

from recsvc.artifacts.artifact_set import MANIFEST, ArtifactSet, load_artifact_set, write_artifact_set
from recsvc.artifacts.errors import ArtifactError

logger = logging.getLogger(__name__)

CURRENT = "CURRENT"
VERSIONS = "versions"

_VERSION_RE = re.compile(r"^[0-9A-Za-z._-]{1,64}$")


def new_version_name(now: datetime | None = None) -> str:
    """A sortable version name: UTC time to the microsecond, so newer publishes sort later."""
    now = now or datetime.now(UTC)
    return now.strftime("%Y%m%dT%H%M%S%fZ")


def check_version_name(version: str) -> str:
    if not _VERSION_RE.match(version):
        raise ArtifactError(f"bad version name {version!r}")
    return version


class ArtifactStore(ABC):
    """Versions of artifact sets (or stock snapshots) and the ``CURRENT`` pointer, behind one interface.

    Readers see a version only once it is complete (its manifest written), and ``CURRENT`` only ever names a
    complete version. Version names sort by publish time (:func:`new_version_name`).
    """

    @abstractmethod
    @contextmanager
    def staging(self, version: str) -> Iterator[Path]:
        """A fresh local folder to write version ``version`` into (removed afterwards, published or not)."""

    @abstractmethod
    def publish(self, staged: Path, version: str) -> None:
        """Make the staged folder (manifest included) the version ``version``: files first, manifest last.
        ``CURRENT`` does not move. Raises :class:`ArtifactError` if the version exists."""

    @abstractmethod
    def current(self) -> str | None:
        """The version ``CURRENT`` names, or None when nothing was published yet."""

    @abstractmethod
    def set_current(self, version: str) -> None:
        """Point ``CURRENT`` at an existing, complete version (written last of a publish)."""

    @abstractmethod
    def versions(self) -> list[str]:
        """Complete versions (with a manifest), oldest first."""

    @abstractmethod
    def remove(self, version: str) -> None:
        """Delete one version (never the current one; :meth:`prune` checks)."""

    @abstractmethod
    def open_version(self, version: str) -> Path:
        """A local folder holding the version's files, to read (a local store: the version folder itself)."""

    def prune(self, keep: int) -> list[str]:
        """Delete the oldest versions beyond ``keep``, never the current one; returns what was removed."""
        keep = max(1, keep)
        versions = self.versions()
        current = self.current()
        removable = [v for v in versions if v != current]
        removed = removable[:max(0, len(versions) - keep)]
        for version in removed:
            self.remove(version)
        return removed


class LocalArtifactStore(ArtifactStore):
    """An :class:`ArtifactStore` in a folder of the local file system (the layout in the module docstring)."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def version_folder(self, version: str) -> Path:
        return self.root / VERSIONS / version

    @contextmanager
    def staging(self, version: str) -> Iterator[Path]:
        # inside the root, so publishing is a rename on the same file system
        check_version_name(version)
        self.root.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".staging-{version}-", dir=self.root))
        try:
            yield staging / "set"
        finally:
            shutil.rmtree(staging, ignore_errors=True)

    def publish(self, staged: Path, version: str) -> None:
        final = self.version_folder(check_version_name(version))
        if final.exists():
            raise ArtifactError(f"version {version} already exists under {self.root}")
        if not (Path(staged) / MANIFEST).is_file():
            raise ArtifactError(f"{staged}: no {MANIFEST}; only a complete set can be published")
        final.parent.mkdir(parents=True, exist_ok=True)
        os.rename(staged, final)  # files and manifest appear together

    def current(self) -> str | None:
        path = self.root / CURRENT
        if not path.is_file():
            return None
        name = path.read_text().strip()
        return name or None

    def set_current(self, version: str) -> None:
        if not (self.version_folder(version) / MANIFEST).is_file():
            raise ArtifactError(f"no published version {version} under {self.root}")
        tmp = self.root / f".{CURRENT}.tmp"
        tmp.write_text(version + "\n")
        os.replace(tmp, self.root / CURRENT)

    def versions(self) -> list[str]:
        base = self.root / VERSIONS
        if not base.is_dir():
            return []
        return sorted(p.name for p in base.iterdir() if (p / MANIFEST).is_file())

    def remove(self, version: str) -> None:
        shutil.rmtree(self.version_folder(version), ignore_errors=True)

    def open_version(self, version: str) -> Path:
        return self.version_folder(version)


def publish_artifacts(artifacts: ArtifactSet, root: Path, keep: int = 5) -> Path:
    """Write ``artifacts`` as a new version under ``root`` and point ``CURRENT`` at it, atomically.

    Returns the published version folder. At most ``keep`` versions are kept (the current one always).
    """
    store = LocalArtifactStore(root)
    version = check_version_name(artifacts.version or new_version_name())
    if version in store.versions() or store.version_folder(version).exists():
        raise ArtifactError(f"version {version} already exists under {root}")
    artifacts.version = version
    with store.staging(version) as folder:
        write_artifact_set(artifacts, folder)
        load_artifact_set(folder)  # read back and verify before anyone can see it
        store.publish(folder, version)
    store.set_current(version)
    store.prune(keep)
    logger.info("published artifact set %s under %s", version, root)
    return store.open_version(version)


def set_current(root: Path, version: str) -> None:
    """Point ``CURRENT`` at an existing version (used by publish and by rollback)."""
    LocalArtifactStore(root).set_current(version)


def list_versions(root: Path) -> list[str]:
    """Published versions (folders with a manifest), oldest first."""
    return LocalArtifactStore(root).versions()


def current_version(root: Path) -> str | None:
    """The version ``CURRENT`` names, or None when nothing was published yet."""
    return LocalArtifactStore(root).current()


def prune_versions(root: Path, keep: int) -> list[str]:
    """Delete the oldest versions beyond ``keep``, never the current one; returns what was removed."""
    return LocalArtifactStore(root).prune(keep)


def load_current(root: Path, verify: bool = True, mmap: bool = False) -> ArtifactSet:
    """Load the version ``CURRENT`` names under ``root``; raise ArtifactError with the reason if unusable."""
    store = LocalArtifactStore(root)
    version = store.current()
    if version is None:
        raise ArtifactError(f"{root}: nothing published yet (no {CURRENT} file); run `recsvc train` first")
    return load_artifact_set(store.open_version(version), verify=verify, mmap=mmap)
