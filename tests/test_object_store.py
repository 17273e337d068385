"""Artifacts on object storage (issue 19), end to end against a real S3-compatible server on loopback (moto's
standalone server, tests/s3_fixture.py): publish, serve, a half-uploaded set, a corrupt download, rollback,
stock and the trainer, all with an ``s3://`` artifact root. The store contract itself (every implementation,
local and fsspec) is tests/test_artifact_store.py."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from recsvc.artifacts import load_current, publish_artifacts
from recsvc.artifacts.object_store import FsspecArtifactStore
from recsvc.artifacts.stock import current_catalog, load_current_stock
from recsvc.artifacts.store import open_store
from recsvc.cli import main as cli_main
from recsvc.config import ServerSettings, TrainingSettings
from recsvc.server.lifecycle import Outcome
from recsvc.server.stock import StockWatcher
from recsvc.v1 import admin_pb2, recsvc_pb2
from recsvc_training.evaluation.gate import previous_evaluation
from recsvc_training.input.dataset import TrainingData
from recsvc_training.pipeline import train
from tests.conftest import LiveServers, serve_command, settings_for, wait_for
from tests.s3_fixture import S3Server, s3_root, s3_server
from tests.test_pipeline import FAST, shop_data
from tests.toy_model import VERSION, build_toy_artifacts

__all__ = ["s3_root", "s3_server"]

pytest.importorskip("s3fs", reason="the s3 extra (fsspec, s3fs) is not installed")
fsspec = pytest.importorskip("fsspec")


def publish(root: str, version: str) -> str:
    """Publish the toy set as ``version`` under ``root`` (CURRENT points at it)."""
    artifacts = build_toy_artifacts()
    artifacts.version = version
    return publish_artifacts(artifacts, root)


def s3_settings(root: str, cache: Path, **overrides: object) -> ServerSettings:
    return settings_for(Path("unused"), artifact_root=root, artifact_cache_dir=str(cache), **overrides)


def served_version(live: object) -> str:
    stub = live.stub  # type: ignore[attr-defined]
    response = stub.Recommend(recsvc_pb2.RecommendRequest(customer_id="C001", channel="web"), timeout=5)
    return str(response.model_version)


def _key(root: str, *parts: str) -> str:
    return "/".join((root.removeprefix("s3://"), *parts))


def test_publish_uploads_files_then_manifest_then_current(s3_root: str) -> None:
    where = publish(s3_root, VERSION)
    assert where == f"{s3_root}/versions/{VERSION}"
    fs = fsspec.filesystem("s3")
    fs.invalidate_cache()
    assert fs.cat_file(_key(s3_root, "CURRENT")).decode().strip() == VERSION
    uploaded = {key.rsplit("/", 1)[-1] for key in fs.find(_key(s3_root, "versions", VERSION))}
    manifest = json.loads(fs.cat_file(_key(s3_root, "versions", VERSION, "manifest.json")))
    assert uploaded == {"manifest.json", *(f"{name}.npy" for name in manifest["files"])}
    # the object-store copy, downloaded and verified, is the same set
    assert load_current(s3_root).version == VERSION


def test_a_server_serves_from_s3_through_its_cache_and_swaps_on_a_new_version(
        s3_root: str, tmp_path: Path, live_server: LiveServers) -> None:
    publish(s3_root, VERSION)
    live = live_server(s3_settings(s3_root, tmp_path / "cache", artifact_cache_keep=2))
    assert served_version(live) == VERSION
    store = live.lifecycle.store  # type: ignore[union-attr]
    assert isinstance(store, FsspecArtifactStore)
    cached = store.cache_folder / "versions"
    assert sorted(p.name for p in cached.iterdir()) == [VERSION]
    status = live.admin.GetStatus(admin_pb2.GetStatusRequest(), timeout=5)
    assert status.artifact_root == s3_root and status.current_version == VERSION

    for version in ("toy-2", "toy-3"):
        publish(s3_root, version)
        assert live.reload().outcome is Outcome.SWAPPED
        assert served_version(live) == version
    # the cache keeps the two versions used last (artifact_cache_keep = 2)
    assert sorted(p.name for p in cached.iterdir()) == ["toy-2", "toy-3"]


def test_half_uploaded_sets_are_ignored(s3_root: str, tmp_path: Path, live_server: LiveServers) -> None:
    publish(s3_root, VERSION)
    live = live_server(s3_settings(s3_root, tmp_path / "cache"))
    fs = fsspec.filesystem("s3")

    # 1. a publish that died after some files: files, no manifest, CURRENT untouched
    staged = tmp_path / "half"
    staged.mkdir()
    (staged / "item_ids.npy").write_bytes(b"partial")
    fs.put_file(str(staged / "item_ids.npy"), _key(s3_root, "versions", "toy-2", "item_ids.npy"))
    assert open_store(s3_root).versions() == [VERSION]
    assert live.reload().outcome is Outcome.UNCHANGED and served_version(live) == VERSION

    # 2. a publish that died after the manifest, before CURRENT: a complete version nobody is pointed at
    other = tmp_path / "other"
    publish(str(other), "toy-3")
    store = open_store(s3_root)
    store.publish(other / "versions" / "toy-3", "toy-3")
    assert store.versions() == [VERSION, "toy-3"] and store.current() == VERSION
    assert live.reload().outcome is Outcome.UNCHANGED and served_version(live) == VERSION

    # 3. a broken writer pointed CURRENT at the files without a manifest: refused, the old model serves
    fs.pipe_file(_key(s3_root, "CURRENT"), b"toy-2\n")
    result = live.reload()
    assert result.outcome is Outcome.REJECTED and "no manifest.json" in result.error
    assert served_version(live) == VERSION


def test_a_corrupt_download_is_never_served_nor_cached(s3_root: str, tmp_path: Path,
                                                       live_server: LiveServers) -> None:
    publish(s3_root, VERSION)
    live = live_server(s3_settings(s3_root, tmp_path / "cache"))
    publish(s3_root, "toy-2")
    # one factor file changes on the bucket after publish (a bad copy, a hand edit): same name, other bytes
    fs = fsspec.filesystem("s3")
    key = _key(s3_root, "versions", "toy-2", "als_item_factors.npy")
    data = bytearray(fs.cat_file(key))
    data[-1] ^= 0xFF
    fs.pipe_file(key, bytes(data))
    result = live.reload()
    assert result.outcome is Outcome.REJECTED and "checksum mismatch on download" in result.error
    assert served_version(live) == VERSION
    store = live.lifecycle.store  # type: ignore[union-attr]
    assert isinstance(store, FsspecArtifactStore)
    assert [p.name for p in (store.cache_folder / "versions").iterdir()] == [VERSION]  # nothing of toy-2 kept
    assert live.reload().outcome is Outcome.SKIPPED  # not downloaded again at every poll


def test_rollback_on_s3(s3_root: str, tmp_path: Path, live_server: LiveServers,
                        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("RECSVC_SERVER__ARTIFACT_CACHE_DIR", str(tmp_path / "cli-cache"))
    publish(s3_root, VERSION)
    publish(s3_root, "toy-2")
    live = live_server(s3_settings(s3_root, tmp_path / "cache"))
    assert served_version(live) == "toy-2"
    assert cli_main(["rollback", "--artifacts", s3_root]) == 0
    assert f"CURRENT under {s3_root}: toy-2 -> {VERSION}" in capsys.readouterr().out
    assert open_store(s3_root).current() == VERSION
    assert live.reload().outcome is Outcome.SWAPPED and served_version(live) == VERSION
    # and the Admin API's rollback repoints the pointer on the bucket too
    live.admin.RollbackModel(admin_pb2.RollbackModelRequest(to_version="toy-2"), timeout=30)
    assert open_store(s3_root).current() == "toy-2" and served_version(live) == "toy-2"


def test_stock_push_to_s3_is_used_by_servers(s3_root: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("RECSVC_SERVER__ARTIFACT_CACHE_DIR", str(tmp_path / "cli-cache"))
    publish(s3_root, VERSION)
    watcher = StockWatcher(s3_root, poll_seconds=0.2)
    catalog = current_catalog(s3_root).catalog_id
    own = watcher.newest(catalog)  # nothing pushed yet
    assert own is None
    csv = tmp_path / "stock.csv"
    csv.write_text("store_id,item_id,quantity_on_hand\nS01,B02,0\nS01,B01,2\n")
    assert cli_main(["stock", "--artifacts", s3_root, "--file", str(csv)]) == 0
    assert f"under {s3_root}/stock" in capsys.readouterr().out
    snapshot = load_current_stock(s3_root)
    assert snapshot is not None and snapshot.table.quantities.tolist() == [2.0, 0.0]
    # a server's watcher notices the push at its next check (at most every stock_poll_seconds)
    wait_for(lambda: watcher.newest(catalog) is not None, timeout=5, what="the pushed snapshot")
    pushed = watcher.newest(catalog)
    assert pushed is not None and pushed.version == snapshot.version
    assert np.array_equal(pushed.table.quantities, snapshot.table.quantities)


def test_train_publishes_to_s3_and_uploads_quarantine_beside(s3_root: str, tmp_path: Path) -> None:
    def load(data_dir: Path, settings: TrainingSettings, quarantine_dir: Path) -> TrainingData:
        quarantine_dir.mkdir(parents=True)
        (quarantine_dir / "events.csv").write_text("reason,row\nduplicate,1\n")
        return shop_data()

    def gate(data: TrainingData, artifacts: object) -> None:
        artifacts.evaluation["recall@10"] = 0.25  # type: ignore[attr-defined]

    result = train(tmp_path / "data", s3_root, FAST, loader=load, before_publish=gate)
    assert result.path == f"{s3_root}/versions/{result.version}"
    assert result.quarantine_dir == f"{s3_root}/quarantine/{result.version}"
    fs = fsspec.filesystem("s3")
    fs.invalidate_cache()
    assert fs.cat_file(_key(s3_root, "quarantine", result.version, "events.csv")).startswith(b"reason")
    assert open_store(s3_root).current() == result.version
    assert previous_evaluation(s3_root) == {"recall@10": 0.25}  # the next run's gate reads the bucket
    store = open_store(s3_root)
    assert isinstance(store, FsspecArtifactStore)
    assert not store.cache_folder.exists()  # publishing, the gate and the stock's catalog download nothing
    assert load_current(s3_root).version == result.version
    assert load_current_stock(s3_root) is not None  # the data folder's stock went to the bucket too


def test_recsvc_serve_process_on_s3_follows_current(s3_root: str, s3_server: S3Server, tmp_path: Path,
                                                    live_server: LiveServers) -> None:
    """A real ``recsvc serve --artifacts s3://...`` process, pointed at the server by AWS_ENDPOINT_URL only."""
    publish(s3_root, VERSION)
    env = {**os.environ, **s3_server.env, "RECSVC_EVENTS__BACKEND": "off",
           "RECSVC_SERVER__ARTIFACT_CACHE_DIR": str(tmp_path / "cache"), "RECSVC_SERVER__RELOAD_POLL_SECONDS": "0"}
    process = live_server.process(serve_command("--artifacts", s3_root, "--host", "127.0.0.1", "--port", "0"),
                                  env=env)
    import grpc

    from recsvc.v1 import recsvc_pb2_grpc

    with grpc.insecure_channel(f"127.0.0.1:{process.port}") as channel:
        stub = recsvc_pb2_grpc.RecommenderStub(channel)

        def version() -> str:
            request = recsvc_pb2.RecommendRequest(customer_id="C001", channel="web")
            return str(stub.Recommend(request, timeout=5).model_version)

        assert version() == VERSION
        publish(s3_root, "toy-2")
        process.send_signal(signal.SIGHUP)
        wait_for(lambda: version() == "toy-2", timeout=20, what="the process to serve toy-2")
    assert "downloaded version toy-2" in process.text()


def test_a_local_root_needs_no_fsspec_and_a_url_root_says_what_to_install(tmp_path: Path) -> None:
    """The server core imports fsspec only for a URL root: with fsspec made unimportable, a server process loads
    and warms up a local set, and a URL root is refused with the extra to install."""
    script = f"""
import sys
sys.modules["fsspec"] = None  # import fsspec now raises ImportError
from recsvc.artifacts import ArtifactError
from recsvc.artifacts.store import open_store, store_for
from recsvc.config import ServerSettings
from recsvc.server import app  # noqa: F401  (the whole server imports)
from recsvc.server.versions import load_version
from tests.toy_model import publish_toy
root = {str(tmp_path / "art")!r}
publish_toy(root)
settings = ServerSettings(artifact_root=root)
store = store_for(settings)
print("served", load_version(store, store.current(), settings).model_version)
try:
    open_store("s3://bucket/prefix")
except ArtifactError as exc:
    print("refused:", exc)
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120,
                          cwd=Path(__file__).resolve().parents[1])
    assert done.returncode == 0, done.stderr
    assert f"served {VERSION}" in done.stdout
    assert "pip install 'recsvc[s3]'" in done.stdout


def test_recsvc_train_command_takes_an_s3_root(s3_root: str, tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    """`recsvc train --artifacts s3://...` as an operator runs it, on default event settings: the embedded
    (sqlite) store has no file on a URL root, so there are no live events to take in, and the run publishes."""
    for name, value in {"RECSVC_TRAINING__EVALUATE": "false", "RECSVC_TRAINING__LEARN_RANKER": "false",
                        "RECSVC_TRAINING__ALS_FACTORS": "4", "RECSVC_TRAINING__ALS_ITERATIONS": "2",
                        "RECSVC_TRAINING__PROGRESS": "false",
                        "RECSVC_SERVER__ARTIFACT_CACHE_DIR": str(tmp_path / "cache")}.items():
        monkeypatch.setenv(name, value)
    data = tmp_path / "data"
    assert cli_main(["sample", "--out", str(data), "--customers", "60", "--items", "80"]) == 0
    assert cli_main(["train", "--data", str(data), "--artifacts", s3_root]) == 0
    out = capsys.readouterr().out
    version = open_store(s3_root).current()
    assert version is not None and f"now CURRENT under {s3_root}" in out and f"{s3_root}/versions/{version}" in out
    assert load_current(s3_root).version == version
