"""Where artifact sets live: one small interface (:class:`ArtifactStore`) and its local-disk implementation.

Layout of a local store root::

    <root>/versions/<version>/manifest.json + *.npy    one folder per published version
    <root>/CURRENT                                       name of the version servers should load

Publishing (:func:`publish_artifacts`) writes the new version into a staging folder inside the root first,
reads it back and verifies it, then :meth:`ArtifactStore.publish` makes it a version — the files first, the
manifest (the completion marker) last — and only then is ``CURRENT`` moved, written last of all. A reader that
follows ``CURRENT`` therefore sees either the old set or the whole new one, never half of it. On one local
file system the version folder appears by one ``rename`` and ``CURRENT`` is swapped with ``os.replace``; an
object store (:mod:`recsvc.artifacts.object_store`, issue 19) uploads the files, then the manifest, then the
pointer, and lists as versions only folders with a manifest, keeping the same promise. :func:`open_store` picks
the implementation from the root: a folder, or a URL (``s3://bucket/prefix``).

Running servers follow ``CURRENT`` (:mod:`recsvc.server.lifecycle`); rolling back is pointing it at an older
version (:func:`set_current`). A published version is never changed in place: servers check its sha256 once,
at load, and may memory-map its files for as long as they serve it. Stock snapshots use the same store under
``<root>/stock/`` (:mod:`recsvc.artifacts.stock`).
"""

from __future__ import annotations

import json
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
from typing import TYPE_CHECKING, Any

from recsvc.artifacts.artifact_set import MANIFEST, ArtifactSet, load_artifact_set, write_artifact_set
from recsvc.artifacts.errors import ArtifactError

if TYPE_CHECKING:
    from recsvc.config import ServerSettings

logger = logging.getLogger(__name__)

CURRENT = "CURRENT"
VERSIONS = "versions"

_VERSION_RE = re.compile(r"^[0-9A-Za-z._-]{1,64}$")
_URL_RE = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")


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
    complete version. Version names sort by publish time (:func:`new_version_name`). Implementations: the
    local disk (:class:`LocalArtifactStore`) and object storage through fsspec
    (:class:`recsvc.artifacts.object_store.FsspecArtifactStore`); :func:`open_store` picks one from a root.
    """

    #: Where the store lives, as an operator writes it (a folder, or a URL such as ``s3://bucket/prefix``).
    location: str

    @property
    def is_remote(self) -> bool:
        """Whether versions are downloaded before they are read (object storage), not read in place."""
        return False

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
    def has_version(self, version: str) -> bool:
        """Whether ``version`` is published and complete (its manifest is there)."""

    @abstractmethod
    def remove(self, version: str) -> None:
        """Delete one version (never the current one; :meth:`prune` checks)."""

    @abstractmethod
    def open_version(self, version: str) -> Path:
        """A local folder holding the version's files, to read (a local store: the version folder itself; an
        object store: a verified copy in its local cache). Raises :class:`ArtifactError` when the version is
        not published or its copy does not match its manifest."""

    @abstractmethod
    def read_manifest_text(self, version: str) -> str:
        """The text of a version's manifest, without fetching its files (gate, rollback, stock catalogs).
        Raises :class:`ArtifactError` when there is none."""

    @abstractmethod
    def manifest_signature(self, version: str) -> str | None:
        """A cheap token that changes when the version's manifest is rewritten (None: no manifest); the
        lifecycle uses it to retry a refused version only once it changed."""

    @abstractmethod
    def pointer_signature(self) -> str | None:
        """A cheap token that changes when ``CURRENT`` is rewritten (None: no pointer); the stock watcher
        compares it on requests to notice a push."""

    @abstractmethod
    def child(self, name: str) -> ArtifactStore:
        """The store under ``<root>/<name>`` (the stock snapshots: ``child("stock")``), of the same kind."""

    @abstractmethod
    def put_folder(self, local: Path, name: str) -> str:
        """Copy a local folder to ``<root>/<name>`` (run by-products such as quarantine files, which are not
        versions and have no atomicity promise); returns where it landed."""

    def where(self, version: str) -> str:
        """Where a version lives, for messages (a folder or a URL)."""
        return f"{self.location.rstrip('/')}/{VERSIONS}/{version}"

    def manifest(self, version: str) -> dict[str, Any]:
        """A version's manifest as JSON (no schema check: artifact sets and stock snapshots differ)."""
        text = self.read_manifest_text(version)
        try:
            manifest: dict[str, Any] = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ArtifactError(f"{self.where(version)}/{MANIFEST} is not valid JSON ({exc})") from exc
        return manifest

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
        self.location = str(self.root)

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
        if not self.has_version(version):
            raise ArtifactError(f"no published version {version} under {self.root}")
        tmp = self.root / f".{CURRENT}.tmp"
        tmp.write_text(version + "\n")
        os.replace(tmp, self.root / CURRENT)

    def versions(self) -> list[str]:
        base = self.root / VERSIONS
        if not base.is_dir():
            return []
        return sorted(p.name for p in base.iterdir() if (p / MANIFEST).is_file())

    def has_version(self, version: str) -> bool:
        return _VERSION_RE.match(version) is not None and (self.version_folder(version) / MANIFEST).is_file()

    def remove(self, version: str) -> None:
        shutil.rmtree(self.version_folder(version), ignore_errors=True)

    def open_version(self, version: str) -> Path:
        return self.version_folder(check_version_name(version))

    def read_manifest_text(self, version: str) -> str:
        try:
            return (self.version_folder(check_version_name(version)) / MANIFEST).read_text()
        except OSError as exc:
            raise ArtifactError(f"{self.version_folder(version)}: no {MANIFEST}; not a published version") from exc

    def manifest_signature(self, version: str) -> str | None:
        return _stat_signature(self.version_folder(version) / MANIFEST)

    def pointer_signature(self) -> str | None:
        return _stat_signature(self.root / CURRENT)

    def child(self, name: str) -> LocalArtifactStore:
        return LocalArtifactStore(self.root / name)

    def put_folder(self, local: Path, name: str) -> str:
        target = self.root / name
        if Path(local).resolve() != target.resolve():
            shutil.copytree(local, target, dirs_exist_ok=True)
        return str(target)

    def where(self, version: str) -> str:
        return str(self.version_folder(version))


def _stat_signature(path: Path) -> str | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    # the inode too: CURRENT is replaced by a rename, which may keep size and (coarse) mtime
    return f"{st.st_ino}:{st.st_size}:{st.st_mtime_ns}"


#: What an artifact root may be: a folder, or a URL fsspec opens (``s3://``, ``gs://``, ``file://`` ...).
StoreRoot = str | Path


def is_url(root: StoreRoot | ArtifactStore) -> bool:
    """Whether ``root`` is a URL (``scheme://...``) rather than a local folder."""
    return not isinstance(root, (Path, ArtifactStore)) and _URL_RE.match(str(root)) is not None


def open_store(root: StoreRoot | ArtifactStore, cache_dir: str | Path = "", cache_keep: int = 3) -> ArtifactStore:
    """The store of an artifact root: :class:`LocalArtifactStore` for a folder, an object store for a URL.

    A URL (``s3://bucket/prefix``, ``gs://bucket/prefix``, ``file:///srv/artifacts``) opens
    :class:`~recsvc.artifacts.object_store.FsspecArtifactStore`, which needs fsspec and the protocol's package
    (the ``s3`` extra: s3fs); they are imported only then, so a server on local disk never needs them.
    Credentials and the endpoint come from each SDK's standard environment and files (README, Object storage).
    ``cache_dir`` (empty: ``<temp>/recsvc-cache``) holds downloaded versions, ``cache_keep`` of them.
    An :class:`ArtifactStore` is returned as it is.
    """
    if isinstance(root, ArtifactStore):
        return root
    if is_url(root):
        from recsvc.artifacts.object_store import FsspecArtifactStore

        return FsspecArtifactStore(str(root), cache_dir=cache_dir, cache_keep=cache_keep)
    return LocalArtifactStore(Path(root))


def store_for(settings: ServerSettings) -> ArtifactStore:
    """The store of ``settings.artifact_root``, with the cache settings (``artifact_cache_dir``, ``_keep``)."""
    return open_store(settings.artifact_root, cache_dir=settings.artifact_cache_dir,
                      cache_keep=settings.artifact_cache_keep)


@contextmanager
def run_folder(store: ArtifactStore, name: str) -> Iterator[tuple[Path, str]]:
    """A local folder for a run's by-products that belong at ``<root>/<name>`` (quarantine files), and where
    they end up.

    On local disk it is that folder itself. On object storage it is a temporary folder uploaded beside the
    versions when the block ends, also when it raises (a run refused later by the gate still leaves its
    quarantine files where operators look), then removed.
    """
    if isinstance(store, LocalArtifactStore):
        yield store.root / name, str(store.root / name)
        return
    local = Path(tempfile.mkdtemp(prefix="recsvc-run-"))
    try:
        yield local / "out", f"{store.location}/{name}"
    finally:
        try:
            if (local / "out").is_dir() and any((local / "out").iterdir()):
                store.put_folder(local / "out", name)
        finally:
            shutil.rmtree(local, ignore_errors=True)


def publish_artifacts(artifacts: ArtifactSet, root: StoreRoot | ArtifactStore, keep: int = 5) -> str:
    """Write ``artifacts`` as a new version under ``root`` and point ``CURRENT`` at it, atomically.

    Returns where the published version lives (a folder, or a URL on object storage). At most ``keep``
    versions are kept (the current one always).
    """
    store = open_store(root)
    version = check_version_name(artifacts.version or new_version_name())
    if version in store.versions() or store.manifest_signature(version) is not None or (
            isinstance(store, LocalArtifactStore) and store.version_folder(version).exists()):
        raise ArtifactError(f"version {version} already exists under {store.location}")
    artifacts.version = version
    with store.staging(version) as folder:
        write_artifact_set(artifacts, folder)
        load_artifact_set(folder)  # read back and verify before anyone can see it
        store.publish(folder, version)
    store.set_current(version)
    store.prune(keep)
    logger.info("published artifact set %s under %s", version, store.location)
    return store.where(version)


def set_current(root: StoreRoot | ArtifactStore, version: str) -> None:
    """Point ``CURRENT`` at an existing version (used by publish and by rollback)."""
    open_store(root).set_current(version)


def list_versions(root: StoreRoot | ArtifactStore) -> list[str]:
    """Published versions (folders with a manifest), oldest first."""
    return open_store(root).versions()


def current_version(root: StoreRoot | ArtifactStore) -> str | None:
    """The version ``CURRENT`` names, or None when nothing was published yet."""
    return open_store(root).current()


def prune_versions(root: StoreRoot | ArtifactStore, keep: int) -> list[str]:
    """Delete the oldest versions beyond ``keep``, never the current one; returns what was removed."""
    return open_store(root).prune(keep)


def load_current(root: StoreRoot | ArtifactStore, verify: bool = True, mmap: bool = False) -> ArtifactSet:
    """Load the version ``CURRENT`` names under ``root``; raise ArtifactError with the reason if unusable."""
    store = open_store(root)
    version = store.current()
    if version is None:
        raise ArtifactError(f"{store.location}: nothing published yet (no {CURRENT} file); run `recsvc train` first")
    return load_artifact_set(store.open_version(version), verify=verify, mmap=mmap)
