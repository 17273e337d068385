"""The gRPC server end to end: a real server on 127.0.0.1, port 0, over a real channel, on the toy model."""

from __future__ import annotations

import json
import logging
import os
import re
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import ProtoReflectionDescriptorDatabase

from recsvc.artifacts import ArtifactError, load_current
from recsvc.config import ServerSettings, Settings
from recsvc.ranking import LoadedModel, ReasonKind, RecommendationEngine, RecommendQuery, RecommendResult
from recsvc.server.app import SERVICE_NAME, ModelHolder, load_engine, serve
from recsvc.v1 import recsvc_pb2
from tests.conftest import LISTENING, LiveServer, LiveServers, serve_command, wait_for
from tests.toy_model import CREATED_AT, VERSION, publish_toy

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


@pytest.fixture(scope="module")
def artifact_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("artifacts")
    publish_toy(root)
    return root


def _settings(root: Path) -> ServerSettings:
    return ServerSettings(host="127.0.0.1", port=0, artifact_root=str(root), max_workers=4,
                          shutdown_grace_seconds=1.0)


@pytest.fixture(scope="module")
def running(artifact_root: Path) -> Iterator[LiveServer]:
    settings = _settings(artifact_root)
    # a fixed clock: "today" is the toy data's last day, however long after 2026-05-08 the tests run
    engine = RecommendationEngine(LoadedModel(load_current(artifact_root)), settings, clock=lambda: CREATED_AT)
    with LiveServer(settings, holder=ModelHolder(engine)) as server:
        yield server


def _status(stub: health_pb2_grpc.HealthStub, service: str = "") -> int:
    return stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=5).status


# ------------------------------------------------------------------------------------------------- the RPCs

def test_recommend(running: LiveServer) -> None:
    response = running.stub.Recommend(recsvc_pb2.RecommendRequest(customer_id="LOY-1", channel="web", num_items=5),
                                      timeout=5)
    assert response.model_version == VERSION
    assert response.known_customer and response.resolved_customer_id == "C001" and response.policy == "blend"
    first = response.items[0]
    assert first.item_id == "H04" and first.title == "Laundry detergent" and first.category == "household"
    assert first.reason.kind == recsvc_pb2.REASON_KIND_BOUGHT_BEFORE
    assert first.reason.source_item_ids == ["H04"]
    assert first.reason.text == "You buy this every ~30 days; last bought 27 days ago"
    assert first.reason.days_since_last_purchase == 27
    assert first.reason.typical_interval_days == pytest.approx(30.0)
    assert len(response.items) == 5


def test_recommend_unknown_customer_and_ids(running: LiveServer) -> None:
    response = running.stub.Recommend(recsvc_pb2.RecommendRequest(
        customer_id="nobody", channel="store", store_id="S01", num_items=3, exclude_item_ids=["B01", "zzz"]),
        timeout=5)
    assert not response.known_customer and response.policy == "popular" and response.resolved_customer_id == ""
    assert [i.item_id for i in response.items] == ["B02", "H04", "D01"]
    assert response.items[0].reason.kind == recsvc_pb2.REASON_KIND_POPULAR_IN_STORE
    assert list(response.unknown_item_ids) == ["zzz"]


def test_recommend_bundle(running: LiveServer) -> None:
    response = running.stub.RecommendBundle(recsvc_pb2.RecommendBundleRequest(
        basket_item_ids=["B01", "nope"], num_items=4), timeout=5)
    assert response.model_version == VERSION
    assert [i.item_id for i in response.items][:3] == ["D01", "B04", "D02"]
    assert response.items[0].reason.source_item_ids == ["B01"]
    assert response.bundle.anchor_item_id == "B01"
    assert [i.item_id for i in response.bundle.items] == ["D01", "D02"]
    assert response.bundle.score == pytest.approx(1.2)
    assert list(response.unknown_item_ids) == ["nope"]
    none_known = running.stub.RecommendBundle(recsvc_pb2.RecommendBundleRequest(basket_item_ids=["nope"]), timeout=5)
    assert not none_known.HasField("bundle") and len(none_known.items) == 10


def test_similar_items(running: LiveServer) -> None:
    response = running.stub.SimilarItems(recsvc_pb2.SimilarItemsRequest(item_id="D01", num_items=2), timeout=5)
    assert [i.item_id for i in response.items] == ["D04", "D03"]
    assert response.items[0].reason.kind == recsvc_pb2.REASON_KIND_SIMILAR_ITEM
    assert response.model_version == VERSION
    in_store = running.stub.SimilarItems(recsvc_pb2.SimilarItemsRequest(item_id="D01", channel="store"), timeout=5)
    assert "D04" not in [i.item_id for i in in_store.items]


def test_get_model_info(running: LiveServer) -> None:
    info = running.stub.GetModelInfo(recsvc_pb2.GetModelInfoRequest(), timeout=5)
    assert info.version == VERSION and info.created_at == CREATED_AT.isoformat()
    assert info.input_fingerprint == "toy0123456789abc" and info.loaded_at
    assert dict(info.evaluation) == {"ndcg@10.blend": 0.5, "ndcg@10.popular": 0.25, "users": 5.0}
    assert dict(info.row_counts) == {"events": 42, "items": 12, "customers": 5}
    assert (info.num_items, info.num_customers) == (12, 5)
    assert list(info.channels) == ["app", "store", "web"] and not info.forced


def test_reason_kind_mirrors_the_proto_enum() -> None:
    proto = {v.name: v.number for v in recsvc_pb2.DESCRIPTOR.enum_types_by_name["ReasonKind"].values}
    assert proto == {f"REASON_KIND_{k.name}": k.value for k in ReasonKind}


# ------------------------------------------------------------------------------------------------ the errors

@pytest.mark.parametrize(("request_kwargs", "field"), [
    ({"customer_id": "C001"}, "channel"),
    ({"channel": "web", "num_items": 500}, "num_items"),
    ({"channel": "web", "context_item_ids": [""]}, "context_item_ids"),
    ({"channel": "web", "exclude_item_ids": [f"x{i}" for i in range(1001)]}, "exclude_item_ids"),
])
def test_bad_recommend_requests_are_invalid_argument(running: LiveServer, request_kwargs: dict, field: str) -> None:
    with pytest.raises(grpc.RpcError) as info:
        running.stub.Recommend(recsvc_pb2.RecommendRequest(**request_kwargs), timeout=5)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert info.value.details().startswith(f"{field}:")


def test_bad_bundle_request_is_invalid_argument(running: LiveServer) -> None:
    for request, field in ((recsvc_pb2.RecommendBundleRequest(), "basket_item_ids"),
                           (recsvc_pb2.RecommendBundleRequest(basket_item_ids=["B01"], bundle_size=9), "bundle_size")):
        with pytest.raises(grpc.RpcError) as info:
            running.stub.RecommendBundle(request, timeout=5)
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert info.value.details().startswith(f"{field}:")


def test_unknown_item_in_similar_items_is_not_found(running: LiveServer) -> None:
    with pytest.raises(grpc.RpcError) as info:
        running.stub.SimilarItems(recsvc_pb2.SimilarItemsRequest(item_id="NO-SUCH-ITEM"), timeout=5)
    assert info.value.code() == grpc.StatusCode.NOT_FOUND
    assert "NO-SUCH-ITEM" in info.value.details()


class _BrokenEngine(RecommendationEngine):
    def recommend(self, query: RecommendQuery) -> RecommendResult:
        raise ZeroDivisionError("secret internal detail")


def test_unexpected_errors_are_internal_with_a_request_id(artifact_root: Path, caplog: pytest.LogCaptureFixture,
                                                          live_server: LiveServers) -> None:
    settings = _settings(artifact_root)
    broken = _BrokenEngine(LoadedModel(load_current(artifact_root)), settings)
    server = live_server(settings, holder=ModelHolder(broken))
    with caplog.at_level(logging.ERROR, logger="recsvc.server.interceptors"), \
            pytest.raises(grpc.RpcError) as info:
        server.stub.Recommend(recsvc_pb2.RecommendRequest(channel="web"), timeout=5,
                              metadata=[("x-request-id", "req-42")])
    assert info.value.code() == grpc.StatusCode.INTERNAL
    assert info.value.details() == "internal error; see server log, request id req-42"
    assert "secret" not in info.value.details()
    record = next(r for r in caplog.records if "req-42" in r.getMessage())
    assert record.exc_info is not None and record.exc_info[0] is ZeroDivisionError
    # other RPCs of the same engine still work
    assert server.stub.SimilarItems(recsvc_pb2.SimilarItemsRequest(item_id="D01"), timeout=5).items


def test_no_model_means_unavailable_and_not_serving(artifact_root: Path, live_server: LiveServers) -> None:
    holder = ModelHolder()
    server = live_server(_settings(artifact_root), holder=holder)
    assert _status(server.health) == NOT_SERVING
    assert _status(server.health, SERVICE_NAME) == NOT_SERVING
    with pytest.raises(grpc.RpcError) as info:
        server.stub.GetModelInfo(recsvc_pb2.GetModelInfoRequest(), timeout=5)
    assert info.value.code() == grpc.StatusCode.UNAVAILABLE
    holder.swap(load_engine(_settings(artifact_root)))
    assert _status(server.health) == SERVING and _status(server.health, SERVICE_NAME) == SERVING
    assert server.stub.GetModelInfo(recsvc_pb2.GetModelInfoRequest(), timeout=5).version == VERSION
    holder.drain()
    assert _status(server.health) == NOT_SERVING


# ---------------------------------------------------------------------------------------- health, reflection

def test_health_is_serving(running: LiveServer) -> None:
    assert _status(running.health) == SERVING
    assert _status(running.health, "recsvc.v1.Recommender") == SERVING


def test_reflection_lists_the_services(running: LiveServer) -> None:
    services = ProtoReflectionDescriptorDatabase(running.channel).get_services()
    assert {"recsvc.v1.Recommender", "grpc.health.v1.Health"} <= set(services)


# ----------------------------------------------------------------------------------------- loading, serving

def _corrupt_copy(tmp_path: Path) -> tuple[Path, str]:
    root = tmp_path / "artifacts"
    folder = publish_toy(root)
    target = folder / "als_item_factors.npy"
    data = bytearray(target.read_bytes())
    data[-1] ^= 0xFF  # flip the last byte (a factor value), after publish verified the set
    target.write_bytes(bytes(data))
    return root, target.name


def test_a_corrupt_artifact_is_refused_naming_the_file(tmp_path: Path) -> None:
    root, name = _corrupt_copy(tmp_path)
    with pytest.raises(ArtifactError, match=re.escape(name)):
        load_current(root)
    with pytest.raises(ArtifactError, match=re.escape(name)) as info:
        serve(Settings(server=_settings(root)), stop=threading.Event())
    assert "refusing to serve" in str(info.value) and "checksum" in str(info.value)


def test_nothing_published_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ArtifactError, match="nothing published"):
        serve(Settings(server=_settings(tmp_path)), stop=threading.Event())


def test_serve_runs_until_stopped(artifact_root: Path, caplog: pytest.LogCaptureFixture) -> None:
    stop = threading.Event()
    caplog.set_level(logging.INFO, logger="recsvc.server.app")
    thread = threading.Thread(target=serve, args=(Settings(server=_settings(artifact_root)),), kwargs={"stop": stop})
    thread.start()
    try:
        def logged() -> str:
            return "\n".join(r.getMessage() for r in caplog.records)

        wait_for(lambda: re.search(LISTENING, logged()) is not None, timeout=30, what="the server's port")
        port = int(re.search(LISTENING, logged()).group(1))  # type: ignore[union-attr]
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            assert _status(health_pb2_grpc.HealthStub(channel)) == SERVING
    finally:
        stop.set()
        thread.join(timeout=30)
    assert not thread.is_alive()
    assert any("server settings" in r.getMessage() for r in caplog.records)


def test_sigterm_drains_and_exits_cleanly(artifact_root: Path, live_server: LiveServers) -> None:
    """`recsvc serve` as a process: SIGTERM -> NOT_SERVING, stop with grace, exit code 0."""
    env = dict(os.environ, RECSVC_SERVER__SHUTDOWN_GRACE_SECONDS="1")
    server = live_server.process(serve_command("--artifacts", str(artifact_root), "--host", "127.0.0.1",
                                               "--port", "0"), env=env)
    with grpc.insecure_channel(server.target) as channel:
        assert _status(health_pb2_grpc.HealthStub(channel)) == SERVING
    server.send_signal(signal.SIGTERM)
    assert server.wait(timeout=30) == 0
    text = server.text()
    assert "received SIGTERM" in text and "stopped" in text


def test_server_imports_only_serving_dependencies() -> None:
    """The serving image has numpy, grpcio and protobuf only; the ranking core does not even need grpc."""
    code = ("import json, sys, recsvc.ranking; core = set(sys.modules); import recsvc.server.app; "
            "top = lambda mods: sorted({m.split('.')[0] for m in mods}); "
            "print(json.dumps([top(core), top(sys.modules)]))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    core, server = json.loads(out)
    assert "grpc" not in core and "google" not in core
    assert not {"pandas", "scipy", "implicit", "recsvc_training", "lightgbm", "pyarrow"} & set(server)
