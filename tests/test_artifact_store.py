"""The ArtifactStore contract, run against every implementation found: the local disk, and object storage
through fsspec (issue 19) on a ``file://`` URL and on a real S3-compatible server (moto, tests/s3_fixture.py).
A new implementation inherits these tests by subclassing ArtifactStore and registering a factory below."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path

import pytest

import recsvc.artifacts.object_store as object_store_module
import recsvc.artifacts.store as store_module
from recsvc.artifacts import MANIFEST, ArtifactError, ArtifactStore, LocalArtifactStore, read_manifest
from recsvc.artifacts.object_store import FsspecArtifactStore
from recsvc.artifacts.store import open_store
from tests.s3_fixture import s3_server

__all__ = ["s3_server"]

#: How to make a fresh, empty store of each implementation in a test's temporary folder: (id, class, factory).
FACTORIES: list[tuple[str, type[ArtifactStore], Callable[[Path, pytest.FixtureRequest], ArtifactStore]]] = [
    ("local", LocalArtifactStore, lambda tmp, request: LocalArtifactStore(tmp / "root")),
    ("fsspec-file", FsspecArtifactStore,
     lambda tmp, request: open_store(f"file://{tmp}/root", cache_dir=tmp / "cache")),
    ("fsspec-s3", FsspecArtifactStore,
     lambda tmp, request: open_store(f"s3://{request.getfixturevalue('s3_server').new_bucket()}/root",
                                     cache_dir=tmp / "cache")),
]


def test_every_store_implementation_has_a_factory() -> None:
    found = {obj for module in (store_module, object_store_module) for obj in vars(module).values()
             if isinstance(obj, type) and issubclass(obj, ArtifactStore) and obj is not ArtifactStore}
    assert found == {kind for _, kind, _ in FACTORIES}


@pytest.fixture(params=FACTORIES, ids=lambda factory: factory[0])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> ArtifactStore:
    _, kind, factory = request.param
    if kind is FsspecArtifactStore:
        pytest.importorskip("fsspec", reason="the s3 extra (fsspec, s3fs) is not installed")
    made = factory(tmp_path, request)
    assert type(made) is kind
    return made


def _publish(store: ArtifactStore, version: str, complete: bool = True) -> None:
    with store.staging(version) as folder:
        folder.mkdir()
        (folder / "a.npy").write_bytes(b"x")
        if complete:  # the manifest lists the files of the version (an object store downloads exactly those)
            (folder / MANIFEST).write_text(json.dumps({"files": {"a": {"sha256": hashlib.sha256(b"x").hexdigest()}}}))
        store.publish(folder, version)


def test_a_published_version_is_listed_but_current_moves_only_when_set(store: ArtifactStore) -> None:
    assert store.current() is None and store.versions() == []
    _publish(store, "v1")
    assert store.versions() == ["v1"] and store.current() is None  # the pointer is written last, separately
    store.set_current("v1")
    assert store.current() == "v1"
    assert (store.open_version("v1") / "a.npy").read_bytes() == b"x"


def test_only_complete_versions_are_published_and_pointed_at(store: ArtifactStore) -> None:
    with pytest.raises(ArtifactError, match="complete"):
        _publish(store, "half", complete=False)
    assert store.versions() == []
    with pytest.raises(ArtifactError, match="no published version"):
        store.set_current("half")
    _publish(store, "v1")
    with pytest.raises(ArtifactError, match="already exists"):
        _publish(store, "v1")
    with pytest.raises(ArtifactError, match="bad version name"):
        _publish(store, "../escape")


def test_prune_keeps_the_newest_and_never_the_current_one(store: ArtifactStore) -> None:
    for version in ("v1", "v2", "v3", "v4"):
        _publish(store, version)
    store.set_current("v1")  # e.g. after a rollback
    assert store.prune(2) == ["v2", "v3"]
    assert store.versions() == ["v1", "v4"] and store.current() == "v1"


def test_files_without_a_manifest_are_not_a_version(store: ArtifactStore, tmp_path: Path) -> None:
    """A crashed upload leaves files but no manifest: not listed, not openable, not pointable."""
    _publish(store, "v1")
    store.set_current("v1")
    half = tmp_path / "half"
    half.mkdir()
    (half / "a.npy").write_bytes(b"y")
    store.put_folder(half, "versions/v2")  # the files of v2 land, its manifest never does
    assert store.versions() == ["v1"] and not store.has_version("v2")
    with pytest.raises(ArtifactError):
        store.set_current("v2")
    with pytest.raises(ArtifactError, match=f"no {MANIFEST}"):
        read_manifest(store.open_version("v2"))  # an object store refuses to open it, a local one to read it
    assert store.current() == "v1" and store.manifest_signature("v2") is None


def test_manifest_and_signatures_are_read_without_opening(store: ArtifactStore) -> None:
    assert store.pointer_signature() is None
    with store.staging("v1") as folder:
        folder.mkdir()
        (folder / "a.npy").write_bytes(b"x")
        (folder / MANIFEST).write_text('{"version": "v1", "files": {}}')
        store.publish(folder, "v1")
    assert store.manifest("v1") == {"version": "v1", "files": {}}
    assert store.manifest_signature("v1") is not None
    store.set_current("v1")
    before = store.pointer_signature()
    assert before is not None
    _publish(store, "v2")
    store.set_current("v2")
    assert store.pointer_signature() != before


def test_child_stores_live_under_the_root(store: ArtifactStore) -> None:
    stock = store.child("stock")
    _publish(stock, "s1")
    assert stock.versions() == ["s1"] and store.versions() == []
    assert stock.location == store.location.rstrip("/") + "/stock"
