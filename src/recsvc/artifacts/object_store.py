"""Artifact sets on object storage (issue 19): an :class:`~recsvc.artifacts.store.ArtifactStore` over fsspec.

A root is a URL (``s3://bucket/prefix``, ``gs://bucket/prefix``, ``file:///srv/artifacts``), with the layout of a
local root::

    <url>/versions/<version>/*.npy, attachments       uploaded first
    <url>/versions/<version>/manifest.json            uploaded after every file: the completion marker
    <url>/CURRENT                                      written last, one object PUT
    <url>/stock/...                                    the stock snapshots, the same layout (``child("stock")``)

Object stores have no rename, so atomicity comes from order: a version counts (:meth:`versions`,
:meth:`has_version`) only once its manifest is there, the manifest is uploaded after every file it lists, and
``CURRENT`` (a single-object PUT, which readers see whole or not at all) only ever names such a version. A
reader that follows ``CURRENT`` therefore finds a whole set, and files without a manifest (a crashed upload)
are ignored. Removing a version deletes its manifest first, so a half-deleted version is not listed either.

Reading downloads a version into a local cache folder (``server.artifact_cache_dir``): the manifest first,
then exactly the files it lists, each hashed while it streams in; a file whose sha256 differs from the
manifest's fails the download (:class:`ArtifactError`) and nothing is left in the cache. A verified copy
appears in the cache by one ``rename``, so concurrent workers sharing the cache never see half of one. The
cache keeps the ``cache_keep`` versions used last; older copies are deleted (on POSIX a process still
memory-mapping one keeps its pages).

Credentials and endpoints are the SDK's own: for S3, botocore's environment (``AWS_ACCESS_KEY_ID``,
``AWS_PROFILE``, ``AWS_ENDPOINT_URL`` for an S3-compatible server, ...), its files (``~/.aws``) and instance or
pod roles; for GCS, Application Default Credentials. fsspec's ``FSSPEC_<PROTOCOL>_<OPTION>`` variables pass
any other option. Nothing is read from the artifact set or from recsvc's settings.

fsspec (and s3fs for ``s3://``) are imported only here, when a URL root is opened: the ``s3`` extra.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import re
import shutil
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from recsvc.artifacts.artifact_set import MANIFEST, listed_files
from recsvc.artifacts.errors import ArtifactError
from recsvc.artifacts.store import CURRENT, VERSIONS, ArtifactStore, check_version_name

logger = logging.getLogger(__name__)

#: Bytes read per call while a file streams in (and is hashed).
CHUNK_BYTES = 4 << 20
#: Download folders left by a process that died are removed once this old (seconds).
STALE_DOWNLOAD_SECONDS = 3600.0


def default_cache_dir() -> Path:
    """Where downloaded versions go when ``server.artifact_cache_dir`` is empty: ``<temp>/recsvc-cache``
    (``/tmp`` is the usual writable mount of a container with a read-only root file system)."""
    return Path(tempfile.gettempdir()) / "recsvc-cache"


def _cache_slug(url: str) -> str:
    """A folder name for one root URL: readable, and unique by a hash of the whole URL."""
    readable = re.sub(r"[^0-9A-Za-z._-]+", "_", url).strip("_")[:80]
    return f"{readable}-{hashlib.sha256(url.encode()).hexdigest()[:10]}"


class FsspecArtifactStore(ArtifactStore):
    """An :class:`ArtifactStore` on any fsspec file system (the layout and promises in the module docstring).

    Parameters
    ----------
    url
        The root, ``<protocol>://<bucket>/<prefix>``.
    cache_dir
        Local folder for downloaded versions (empty: :func:`default_cache_dir`); one sub-folder per root.
    cache_keep
        Downloaded versions kept in the cache, the ones used last (at least 1).
    storage_options
        Passed to fsspec (tests; operators use the SDK's environment instead).
    """

    def __init__(self, url: str, cache_dir: str | Path = "", cache_keep: int = 3,
                 storage_options: dict[str, Any] | None = None) -> None:
        try:
            import fsspec
        except ImportError as exc:  # the server core runs without it on local roots
            raise ArtifactError(f"{url}: an object-storage root needs fsspec (and s3fs for s3://): "
                                "pip install 'recsvc[s3]'") from exc
        self.location = url.rstrip("/")
        self._cache_base = Path(cache_dir) if cache_dir else default_cache_dir()
        self._cache_keep = max(1, cache_keep)
        self._options = dict(storage_options or {})
        try:
            # fsspec shares one client per protocol and options (creating one costs a second); its listings
            # cache would hide versions published later, so every listing and existence check drops it first
            self._fs, self._path = fsspec.core.url_to_fs(self.location, **self._options)
        except ImportError as exc:
            raise ArtifactError(f"{url}: the package for this protocol is missing ({exc}); for s3:// "
                                "pip install 'recsvc[s3]'") from exc
        self._path = self._path.rstrip("/")
        protocols = self._fs.protocol if isinstance(self._fs.protocol, tuple) else (self._fs.protocol,)
        # a local file system may show a half-written object; there, write a temporary file and rename it
        self._local_fs = bool({"file", "local"} & set(protocols))

    @property
    def is_remote(self) -> bool:
        return True

    @property
    def cache_folder(self) -> Path:
        """This root's folder in the local cache."""
        return self._cache_base / _cache_slug(self.location)

    # ------------------------------------------------------------------------------------------- paths

    def _key(self, *parts: str) -> str:
        return "/".join((self._path, *parts))

    def _manifest_key(self, version: str) -> str:
        return self._key(VERSIONS, version, MANIFEST)

    def _exists(self, key: str) -> bool:
        self._fs.invalidate_cache()
        return bool(self._fs.exists(key))

    def _put(self, local: Path, key: str) -> None:
        if self._local_fs:  # object stores have no folders; a local file system needs them
            self._fs.makedirs(key.rsplit("/", 1)[0], exist_ok=True)
        self._fs.put_file(str(local), key)

    def _write(self, key: str, data: bytes) -> None:
        if self._local_fs:
            self._fs.makedirs(key.rsplit("/", 1)[0], exist_ok=True)
            tmp = f"{key}.tmp-{os.getpid()}"
            self._fs.pipe_file(tmp, data)
            self._fs.mv(tmp, key)
        else:
            self._fs.pipe_file(key, data)  # one PUT: readers see the old object or the new one

    # ------------------------------------------------------------------------------------------- writing

    @contextmanager
    def staging(self, version: str) -> Iterator[Path]:
        check_version_name(version)
        staging = Path(tempfile.mkdtemp(prefix=f"recsvc-staging-{version}-"))
        try:
            yield staging / "set"
        finally:
            shutil.rmtree(staging, ignore_errors=True)

    def publish(self, staged: Path, version: str) -> None:
        check_version_name(version)
        staged = Path(staged)
        if not (staged / MANIFEST).is_file():
            raise ArtifactError(f"{staged}: no {MANIFEST}; only a complete set can be published")
        if self._exists(self._manifest_key(version)):
            raise ArtifactError(f"version {version} already exists under {self.location}")
        files = sorted(p for p in staged.rglob("*") if p.is_file() and p.name != MANIFEST)
        for path in files:  # the files first ...
            self._put(path, self._key(VERSIONS, version, path.relative_to(staged).as_posix()))
        # ... the manifest last: from now on the version counts as complete
        self._write(self._manifest_key(version), (staged / MANIFEST).read_bytes())
        logger.info("uploaded version %s to %s (%d files, then %s)", version, self.location, len(files), MANIFEST)

    def set_current(self, version: str) -> None:
        if not self.has_version(version):
            raise ArtifactError(f"no published version {version} under {self.location}")
        self._write(self._key(CURRENT), (version + "\n").encode())

    def remove(self, version: str) -> None:
        check_version_name(version)
        # the manifest first: a version whose files are half deleted is then no longer listed as complete
        with contextlib.suppress(FileNotFoundError):
            self._fs.rm_file(self._manifest_key(version))
        with contextlib.suppress(FileNotFoundError):
            self._fs.rm(self._key(VERSIONS, version), recursive=True)
        self._fs.invalidate_cache()

    def put_folder(self, local: Path, name: str) -> str:
        local = Path(local)
        for path in sorted(p for p in local.rglob("*") if p.is_file()):
            self._put(path, self._key(name, path.relative_to(local).as_posix()))
        return f"{self.location}/{name}"

    # ------------------------------------------------------------------------------------------- reading

    def current(self) -> str | None:
        try:
            name = bytes(self._fs.cat_file(self._key(CURRENT))).decode().strip()
        except FileNotFoundError:
            return None
        return name or None

    def versions(self) -> list[str]:
        self._fs.invalidate_cache()
        found = self._fs.glob(self._key(VERSIONS, "*", MANIFEST))
        names = {str(key).rstrip("/").split("/")[-2] for key in found}
        return sorted(name for name in names if _valid(name))

    def has_version(self, version: str) -> bool:
        return _valid(version) and self._exists(self._manifest_key(version))

    def read_manifest_text(self, version: str) -> str:
        check_version_name(version)
        try:
            return bytes(self._fs.cat_file(self._manifest_key(version))).decode()
        except FileNotFoundError as exc:
            raise ArtifactError(f"{self.where(version)}: no {MANIFEST}; not a published version") from exc
        except UnicodeDecodeError as exc:
            raise ArtifactError(f"{self.where(version)}/{MANIFEST} is not text ({exc})") from exc

    def manifest_signature(self, version: str) -> str | None:
        return self._signature(self._manifest_key(version))

    def pointer_signature(self) -> str | None:
        return self._signature(self._key(CURRENT))

    def _signature(self, key: str) -> str | None:
        self._fs.invalidate_cache()
        try:
            info = self._fs.info(key)
        except FileNotFoundError:
            return None
        tag = info.get("ETag") or info.get("etag") or info.get("md5Hash") or info.get("generation") or ""
        stamp = info.get("LastModified") or info.get("mtime") or info.get("updated") or ""
        return f"{tag}:{stamp}:{info.get('size', '')}"

    def child(self, name: str) -> FsspecArtifactStore:
        return FsspecArtifactStore(f"{self.location}/{name}", cache_dir=self._cache_base,
                                   cache_keep=self._cache_keep, storage_options=self._options)

    def open_version(self, version: str) -> Path:
        """The verified local copy of ``version``, downloaded on first use (see the module docstring).

        Raises
        ------
        ArtifactError
            Not published (no manifest), a listed file missing, or a file whose sha256 differs from the
            manifest's; nothing is cached then.
        """
        check_version_name(version)
        folder = self.cache_folder / VERSIONS / version
        if (folder / MANIFEST).is_file():
            os.utime(folder)  # most recently used: the cache keeps it
            return folder
        folder.parent.mkdir(parents=True, exist_ok=True)
        download = Path(tempfile.mkdtemp(prefix=f".download-{version}-", dir=folder.parent))
        try:
            started = time.perf_counter()
            text = self.read_manifest_text(version)
            try:
                expected = listed_files(json.loads(text))
            except json.JSONDecodeError as exc:
                raise ArtifactError(f"{self.where(version)}/{MANIFEST} is not valid JSON ({exc})") from exc
            size = 0
            for name, sha256 in sorted(expected.items()):
                size += self._download(version, name, download / name, sha256)
            (download / MANIFEST).write_text(text)  # last, as on the store: a cached folder without one is junk
            if folder.exists() and not (folder / MANIFEST).is_file():
                shutil.rmtree(folder, ignore_errors=True)  # e.g. left half-deleted by a prune that was killed
            try:
                os.rename(download, folder)
            except OSError:
                if not (folder / MANIFEST).is_file():  # not "another worker downloaded it meanwhile"
                    raise
            logger.info("downloaded version %s from %s to %s (%d files, %.1f MB, %.2f s, checksums verified)",
                        version, self.location, folder, len(expected), size / 1e6, time.perf_counter() - started)
        except OSError as exc:
            raise ArtifactError(f"{self.where(version)}: download failed ({type(exc).__name__}: {exc})") from exc
        finally:
            shutil.rmtree(download, ignore_errors=True)
        self.prune_cache(keep_also=version)
        return folder

    def _download(self, version: str, name: str, target: Path, sha256: str) -> int:
        key = self._key(VERSIONS, version, name)
        digest = hashlib.sha256()
        size = 0
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            with self._fs.open(key, "rb") as src, target.open("wb") as dst:
                while chunk := src.read(CHUNK_BYTES):
                    digest.update(chunk)
                    dst.write(chunk)
                    size += len(chunk)
        except FileNotFoundError as exc:
            raise ArtifactError(f"{self.where(version)}: {name} is listed in the manifest but missing") from exc
        if digest.hexdigest() != sha256:
            raise ArtifactError(f"{key}: checksum mismatch on download (the object is corrupt or was changed "
                                "after publish); not cached, not served")
        return size

    def prune_cache(self, keep_also: str = "") -> list[str]:
        """Delete cached copies beyond the ``cache_keep`` used last (``keep_also`` always stays) and download
        folders a dead process left; returns the versions removed."""
        base = self.cache_folder / VERSIONS
        if not base.is_dir():
            return []
        now = time.time()
        copies: list[tuple[float, str]] = []
        for entry in base.iterdir():
            try:
                mtime = entry.stat().st_mtime
            except OSError:
                continue
            if entry.name.startswith(".download-"):
                if now - mtime > STALE_DOWNLOAD_SECONDS:
                    shutil.rmtree(entry, ignore_errors=True)
            elif entry.is_dir():
                copies.append((mtime, entry.name))
        copies.sort(reverse=True)  # most recently used first
        removed = [name for _, name in copies[self._cache_keep:] if name != keep_also]
        for name in removed:
            shutil.rmtree(base / name, ignore_errors=True)
        if removed:
            logger.info("artifact cache %s: removed %s", base, ", ".join(sorted(removed)))
        return removed


def _valid(version: str) -> bool:
    try:
        check_version_name(version)
    except ArtifactError:
        return False
    return True
