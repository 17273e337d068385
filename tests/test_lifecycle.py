"""The model lifecycle: hot reload under load, refusing corrupt and half-written sets, rollback, SIGHUP.

Everything runs on the toy model (tests/toy_model.py) published into a temporary artifact root, over a real
server on 127.0.0.1 port 0. New versions are the toy set under another version name.
"""

from __future__ import annotations

import os
import shutil
import signal
import threading
import time
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2

from recsvc.artifacts import (
    CURRENT,
    MANIFEST,
    VERSIONS,
    ArtifactError,
    current_version,
    publish_artifacts,
    set_current,
)
from recsvc.cli import main
from recsvc.ranking import RecommendationEngine, RecommendQuery, RecommendResult
from recsvc.server.app import ModelHolder
from recsvc.server.lifecycle import ModelLifecycle, Outcome
from recsvc.server.versions import build_engine, previous_version, rollback_current
from recsvc.v1 import admin_pb2, recsvc_pb2, recsvc_pb2_grpc
from tests.conftest import LiveServer, LiveServers, serve_command, settings_for, wait_for
from tests.toy_model import VERSION, build_toy_artifacts, publish_toy

SERVING = health_pb2.HealthCheckResponse.SERVING


def publish_version(root: Path, version: str) -> Path:
    """Publish the toy set under ``version`` (CURRENT points at it)."""
    artifacts = build_toy_artifacts()
    artifacts.version = version
    return Path(publish_artifacts(artifacts, root))


@pytest.fixture
def root(tmp_path: Path) -> Path:
    root = tmp_path / "artifacts"
    publish_toy(root)
    return root


@pytest.fixture
def live(root: Path, live_server: LiveServers) -> LiveServer:
    return live_server(settings_for(root))


def _corrupt_copy_as(root: Path, scratch: Path, version: str) -> None:
    """Publish ``version`` elsewhere, flip one byte of a factor file, copy it into ``root`` and point
    CURRENT at it: a set that became corrupt after publish (bad disk, a partial copy between volumes)."""
    folder = publish_version(scratch, version)
    target = folder / "als_item_factors.npy"
    data = bytearray(target.read_bytes())
    data[-1] ^= 0xFF
    target.write_bytes(bytes(data))
    shutil.copytree(folder, root / VERSIONS / version)
    set_current(root, version)


# ------------------------------------------------------------------------------------- reload under load

def test_reload_under_load_fails_no_request_and_switches_versions(root: Path) -> None:
    """4 client threads hammer Recommend while toy-2 and toy-3 are published and picked up by the poll:
    zero failed requests, every thread sees the versions in publish order, and ends on toy-3."""
    server = LiveServer(settings_for(root, reload_poll_seconds=0.05))
    stop = threading.Event()
    failures: list[str] = []
    seen: list[list[str]] = [[] for _ in range(4)]

    def hammer(i: int) -> None:
        customers = ("LOY-1", "nobody", "C002", "C005")
        n = 0
        while not stop.is_set() and n < 20_000:  # bounded even if the test below hangs
            n += 1
            try:
                response = server.stub.Recommend(recsvc_pb2.RecommendRequest(
                    customer_id=customers[n % 4], channel="web", num_items=5), timeout=5)
                seen[i].append(response.model_version)
            except grpc.RpcError as exc:
                failures.append(f"{exc.code().name}: {exc.details()}")

    threads = [threading.Thread(target=hammer, args=(i,)) for i in range(4)]
    try:
        for thread in threads:
            thread.start()
        wait_for(lambda: all(len(s) >= 5 for s in seen), what="first responses")
        for version in ("toy-2", "toy-3"):
            publish_version(root, version)
            wait_for(lambda v=version: all(bool(s) and s[-1] == v for s in seen),  # type: ignore[misc]
                     what=f"every thread on {version}")
        time.sleep(0.05)
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=10)
        server.close()
    assert failures == []
    order = {VERSION: 0, "toy-2": 1, "toy-3": 2}
    for versions in seen:
        ranks = [order[v] for v in versions]
        assert ranks == sorted(ranks), "a thread saw an older version after a newer one"
        assert versions[0] == VERSION and versions[-1] == "toy-3"
    assert [r.outcome for r in server.results] == [Outcome.SWAPPED, Outcome.SWAPPED]


def test_model_info_reports_the_new_version_and_load_time(live: LiveServer, root: Path) -> None:
    before = live.stub.GetModelInfo(recsvc_pb2.GetModelInfoRequest(), timeout=5)
    publish_version(root, "toy-2")
    result = live.reload()
    assert result.outcome is Outcome.SWAPPED and result.previous_version == VERSION
    after = live.stub.GetModelInfo(recsvc_pb2.GetModelInfoRequest(), timeout=5)
    assert (before.version, after.version) == (VERSION, "toy-2") and after.loaded_at
    assert live.reload().outcome is Outcome.UNCHANGED


# ------------------------------------------------------------------------------ refusing bad artifact sets

def test_a_corrupt_version_is_refused_remembered_and_the_old_one_keeps_serving(live: LiveServer, root: Path,
                                                                              tmp_path: Path) -> None:
    _corrupt_copy_as(root, tmp_path / "scratch", "toy-2")
    result = live.reload()
    assert result.outcome is Outcome.REJECTED and result.serving_version == VERSION
    assert "als_item_factors.npy" in result.error and "checksum" in result.error
    assert live.version() == VERSION
    assert live.stub.Recommend(recsvc_pb2.RecommendRequest(customer_id="LOY-1", channel="web"), timeout=5).items
    assert live.health.Check(health_pb2.HealthCheckRequest(), timeout=5).status == SERVING
    # remembered: the next poll does not load it again ...
    assert live.reload().outcome is Outcome.SKIPPED
    assert len(live.results) == 1
    status = live.admin.GetStatus(admin_pb2.GetStatusRequest(), timeout=5)
    assert status.serving_version == VERSION and status.current_version == "toy-2"
    assert [f.version for f in status.failed_versions] == ["toy-2"] and status.reloads_failed == 1
    # ... unless an operator forces it
    forced = live.admin.ReloadModel(admin_pb2.ReloadModelRequest(force=True), timeout=30)
    assert forced.outcome == admin_pb2.RELOAD_OUTCOME_REJECTED and "checksum" in forced.error
    assert forced.serving_version == VERSION and len(live.results) == 2


def test_a_version_without_manifest_is_refused_until_its_manifest_appears(live: LiveServer, root: Path,
                                                                          tmp_path: Path) -> None:
    """A half-copied version folder (arrays, no manifest yet) named by CURRENT: refused, and tried again
    once the copy completes (its manifest's signature changed)."""
    complete = publish_version(tmp_path / "scratch", "toy-3")
    half = root / VERSIONS / "toy-3"
    shutil.copytree(complete, half, ignore=shutil.ignore_patterns(MANIFEST))
    (root / CURRENT).write_text("toy-3\n")  # a foreign tool, not set_current (which insists on a manifest)
    result = live.reload()
    assert result.outcome is Outcome.REJECTED and "no manifest.json" in result.error
    assert live.version() == VERSION
    assert live.reload().outcome is Outcome.SKIPPED
    shutil.copy(complete / MANIFEST, half / MANIFEST)
    assert live.reload().outcome is Outcome.SWAPPED
    assert live.version() == "toy-3"


def test_current_naming_a_missing_version_keeps_serving(live: LiveServer, root: Path) -> None:
    (root / CURRENT).write_text("never-published\n")
    result = live.reload()
    assert result.outcome is Outcome.REJECTED and live.version() == VERSION


class _FailsOnUnknownCustomers(RecommendationEngine):
    def recommend(self, query: RecommendQuery) -> RecommendResult:
        if query.customer_id.startswith("recsvc-warm-up"):
            raise IndexError("index 12 is out of bounds")
        return super().recommend(query)


def test_a_version_failing_its_warm_up_queries_is_refused(live: LiveServer, root: Path) -> None:
    publish_version(root, "toy-2")
    settings = live.settings
    lifecycle = ModelLifecycle(settings, live.holder,
                               engine_factory=lambda a: _FailsOnUnknownCustomers(build_engine(a, settings).model,
                                                                                 settings))
    result = lifecycle.reload()
    assert result.outcome is Outcome.REJECTED
    assert "warm-up query 'recommend for an unknown customer' failed" in result.error
    assert live.version() == VERSION


def test_the_server_refuses_to_start_without_a_good_set(tmp_path: Path) -> None:
    root = tmp_path / "artifacts"
    _corrupt_copy_as(root, tmp_path / "scratch", "toy-2")
    lifecycle = ModelLifecycle(settings_for(root), ModelHolder())
    with pytest.raises(ArtifactError, match=r"refusing to serve from .*checksum"):
        lifecycle.load_initial()


# ---------------------------------------------------------------------------------------------- rollback

def test_rollback_repoints_current_and_servers_follow(live: LiveServer, root: Path) -> None:
    publish_version(root, "toy-2")
    assert live.reload().outcome is Outcome.SWAPPED
    assert previous_version(root) == VERSION
    assert rollback_current(root) == ("toy-2", VERSION)
    assert current_version(root) == VERSION
    assert live.reload().outcome is Outcome.SWAPPED and live.version() == VERSION


def test_rollback_command(root: Path, capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert main(["rollback", "--artifacts", str(root)]) == 1  # nothing older than the only version
    assert "no published version older" in capsys.readouterr().err
    publish_version(root, "toy-2")
    assert main(["rollback", "--artifacts", str(root)]) == 0
    assert f"toy-2 -> {VERSION}" in capsys.readouterr().out and current_version(root) == VERSION
    assert main(["rollback", "--artifacts", str(root), "--to", "toy-2"]) == 0
    assert current_version(root) == "toy-2"
    assert main(["rollback", "--artifacts", str(root), "--to", "nope"]) == 1
    assert "no published version 'nope'" in capsys.readouterr().err
    # a corrupt target is refused before CURRENT moves
    _corrupt_copy_as(root, tmp_path / "scratch", "toy-3")
    set_current(root, "toy-2")
    assert main(["rollback", "--artifacts", str(root), "--to", "toy-3"]) == 1
    assert "checksum" in capsys.readouterr().err and current_version(root) == "toy-2"


def test_admin_rollback_and_reload(live: LiveServer, root: Path) -> None:
    publish_version(root, "toy-2")
    reloaded = live.admin.ReloadModel(admin_pb2.ReloadModelRequest(), timeout=30)
    assert reloaded.outcome == admin_pb2.RELOAD_OUTCOME_SWAPPED and reloaded.serving_version == "toy-2"
    assert reloaded.previous_version == VERSION and reloaded.load_seconds > 0
    again = live.admin.ReloadModel(admin_pb2.ReloadModelRequest(), timeout=30)
    assert again.outcome == admin_pb2.RELOAD_OUTCOME_UNCHANGED
    back = live.admin.RollbackModel(admin_pb2.RollbackModelRequest(), timeout=30)
    assert back.outcome == admin_pb2.RELOAD_OUTCOME_SWAPPED and back.serving_version == VERSION
    assert current_version(root) == VERSION and live.version() == VERSION
    with pytest.raises(grpc.RpcError) as info:
        live.admin.RollbackModel(admin_pb2.RollbackModelRequest(to_version="nope"), timeout=5)
    assert info.value.code() == grpc.StatusCode.NOT_FOUND and "nope" in info.value.details()
    with pytest.raises(grpc.RpcError) as info:  # toy-1 is the oldest
        live.admin.RollbackModel(admin_pb2.RollbackModelRequest(), timeout=5)
    assert info.value.code() == grpc.StatusCode.NOT_FOUND
    status = live.admin.GetStatus(admin_pb2.GetStatusRequest(), timeout=5)
    assert status.serving_version == VERSION and list(status.available_versions) == [VERSION, "toy-2"]
    assert status.reloads_succeeded == 2 and status.pid == os.getpid() and status.worker_index == -1
    assert status.max_concurrent_rpcs == 6 and status.serving


def test_admin_rollback_to_a_corrupt_version_changes_nothing(live: LiveServer, root: Path, tmp_path: Path) -> None:
    _corrupt_copy_as(root, tmp_path / "scratch", "toy-0")
    set_current(root, VERSION)
    result = live.admin.RollbackModel(admin_pb2.RollbackModelRequest(to_version="toy-0"), timeout=30)
    assert result.outcome == admin_pb2.RELOAD_OUTCOME_REJECTED and "checksum" in result.error
    assert current_version(root) == VERSION and live.version() == VERSION



def test_rolling_back_a_refused_version_only_repoints_current(live: LiveServer, root: Path, tmp_path: Path) -> None:
    """The nightly set was refused, the old one serves: rolling back repoints CURRENT without a load."""
    _corrupt_copy_as(root, tmp_path / "scratch", "toy-2")
    assert live.reload().outcome is Outcome.REJECTED
    back = live.admin.RollbackModel(admin_pb2.RollbackModelRequest(), timeout=30)
    assert back.outcome == admin_pb2.RELOAD_OUTCOME_UNCHANGED and back.serving_version == VERSION
    assert current_version(root) == VERSION and len(live.results) == 1


# ------------------------------------------------------------------------------------ SIGHUP, as a process

def test_sighup_loads_the_new_version_in_a_running_process(root: Path, live_server: LiveServers) -> None:
    """`recsvc serve` with polling off: a new version is served only after SIGHUP."""
    env = dict(os.environ, RECSVC_SERVER__SHUTDOWN_GRACE_SECONDS="1", RECSVC_SERVER__RELOAD_POLL_SECONDS="0")
    server = live_server.process(serve_command("--artifacts", str(root), "--host", "127.0.0.1", "--port", "0"),
                                 env=env)
    with grpc.insecure_channel(server.target) as channel:
        stub = recsvc_pb2_grpc.RecommenderStub(channel)

        def version() -> str:
            return str(stub.GetModelInfo(recsvc_pb2.GetModelInfoRequest(), timeout=5).version)

        publish_version(root, "toy-2")
        time.sleep(0.3)
        assert version() == VERSION  # polling is off
        server.send_signal(signal.SIGHUP)
        wait_for(lambda: version() == "toy-2", what="toy-2 after SIGHUP")
    server.send_signal(signal.SIGTERM)
    assert server.wait(timeout=30) == 0
    assert "received SIGHUP" in server.text()

