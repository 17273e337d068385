"""The ArtifactStore contract, run against every implementation found (today the local disk; issue 19 adds an
object store, which inherits these tests by subclassing ArtifactStore and registering a factory below)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

import recsvc.artifacts.store as store_module
from recsvc.artifacts import MANIFEST, ArtifactError, ArtifactStore, LocalArtifactStore

#: How to make a fresh, empty store of each implementation in a test's temporary folder.
FACTORIES: dict[type[ArtifactStore], Callable[[Path], ArtifactStore]] = {
    LocalArtifactStore: lambda tmp: LocalArtifactStore(tmp / "root"),
}


def test_every_store_implementation_has_a_factory() -> None:
    found = {obj for obj in vars(store_module).values()
             if isinstance(obj, type) and issubclass(obj, ArtifactStore) and obj is not ArtifactStore}
    assert found == set(FACTORIES)


@pytest.fixture(params=list(FACTORIES), ids=lambda kind: kind.__name__)
def store(request: pytest.FixtureRequest, tmp_path: Path) -> ArtifactStore:
    return FACTORIES[request.param](tmp_path)


def _publish(store: ArtifactStore, version: str, complete: bool = True) -> None:
    with store.staging(version) as folder:
        folder.mkdir()
        (folder / "a.npy").write_bytes(b"x")
        if complete:
            (folder / MANIFEST).write_text("{}")
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
