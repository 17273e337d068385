"""Operating the server: draining on SIGTERM, several workers on one port, the concurrency cap, deadlines,
request size limits, metrics and access logs.

Slow requests come from an engine double that blocks on customer ``SLOW`` (warm-up queries never use it),
so every test controls exactly when the work ends; nothing here sleeps longer than a second.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import signal
import socket
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from prometheus_client.parser import text_string_to_metric_families

from recsvc.artifacts import ArtifactSet
from recsvc.config import ServerSettings, Settings, load_settings
from recsvc.logs import JsonFormatter
from recsvc.ranking import RecommendationEngine, RecommendQuery, RecommendResult
from recsvc.server.admission import AdmissionInterceptor
from recsvc.server.app import ModelHolder, build_server, serve
from recsvc.server.versions import build_engine
from recsvc.server.workers import BLAS_THREAD_VARIABLES, worker_environment
from recsvc.v1 import admin_pb2, admin_pb2_grpc, recsvc_pb2, recsvc_pb2_grpc
from tests.conftest import LiveServer, LiveServers, serve_command, settings_for, wait_for
from tests.test_lifecycle import publish_version
from tests.toy_model import VERSION, publish_toy

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING
SLOW = "SLOW"


class SlowEngine(RecommendationEngine):
    """Blocks Recommend for customer ``SLOW`` until ``release`` is set (at most 10 s); counts every call."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.started = threading.Event()
        self.release = threading.Event()
        self.customers: list[str] = []

    def recommend(self, query: RecommendQuery) -> RecommendResult:
        self.customers.append(query.customer_id)
        if query.customer_id == SLOW:
            self.started.set()
            self.release.wait(timeout=10)
        return super().recommend(query)


class SlowFactory:
    """An engine factory that keeps the engines it built."""

    def __init__(self, settings: ServerSettings) -> None:
        self.settings = settings
        self.engines: list[SlowEngine] = []

    def __call__(self, artifacts: ArtifactSet) -> RecommendationEngine:
        engine = SlowEngine(build_engine(artifacts, self.settings).model, self.settings)
        self.engines.append(engine)
        return engine


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("artifacts")
    publish_toy(root)
    return root


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _slow_request(**kwargs: Any) -> recsvc_pb2.RecommendRequest:
    return recsvc_pb2.RecommendRequest(customer_id=SLOW, channel="web", **kwargs)


# ------------------------------------------------------------------------------------- graceful shutdown

def test_stop_drains_an_in_flight_request_after_reporting_not_serving(root: Path,
                                                                     live_server: LiveServers) -> None:
    """serve(stop=...) with a request in flight: health turns NOT_SERVING, the request completes OK, new
    requests are refused, serve returns 0 as soon as the request is done (a health watcher does not keep it
    waiting for the whole grace period)."""
    settings = settings_for(root, shutdown_grace_seconds=20.0)
    factory = SlowFactory(settings)
    server = live_server.serve(settings, engine_factory=factory)
    channel = grpc.insecure_channel(server.target)
    try:
        stub = recsvc_pb2_grpc.RecommenderStub(channel)
        health = health_pb2_grpc.HealthStub(channel)
        wait_for(lambda: _serving(health), what="SERVING")
        watch = health.Watch(health_pb2.HealthCheckRequest(service=""), timeout=10)
        assert next(watch).status == SERVING
        in_flight = stub.Recommend.future(_slow_request(), timeout=10)
        assert factory.engines[0].started.wait(5)
        server.stop()
        assert next(watch).status == NOT_SERVING  # before the listener closes
        time.sleep(0.2)
        with pytest.raises(grpc.RpcError) as info:  # new work is refused while draining
            stub.Recommend(recsvc_pb2.RecommendRequest(channel="web"), timeout=2)
        assert info.value.code() == grpc.StatusCode.UNAVAILABLE
        assert server.is_alive()  # still draining: the slow request holds it
        released = time.monotonic()
        factory.engines[0].release.set()
        assert in_flight.result().model_version == VERSION
        assert server.join(timeout=30) == 0
        # the open health Watch does not hold the stop for the whole 20 s grace period
        assert time.monotonic() - released < 8.0
    finally:
        for engine in factory.engines:
            engine.release.set()
        channel.close()


def _serving(health: health_pb2_grpc.HealthStub) -> bool:
    try:
        return bool(health.Check(health_pb2.HealthCheckRequest(), timeout=1).status == SERVING)
    except grpc.RpcError:
        return False


_SLOW_SERVER = """
import sys, threading, pathlib
from recsvc.config import load_settings
from recsvc.logs import configure_logging
from recsvc.ranking import RecommendationEngine
from recsvc.server.app import serve
from recsvc.server.versions import build_engine

class Slow(RecommendationEngine):
    def recommend(self, query):
        if query.customer_id == "SLOW":
            pathlib.Path(sys.argv[1]).write_text("started")
            threading.Event().wait(0.8)
        return super().recommend(query)

configure_logging("INFO")
settings = load_settings()
sys.exit(serve(settings, engine_factory=lambda a: Slow(build_engine(a, settings.server).model, settings.server)))
"""


def test_sigterm_drains_an_in_flight_request_and_exits_0(root: Path, tmp_path: Path,
                                                          live_server: LiveServers) -> None:
    """A real process and a real SIGTERM while a 0.8 s request runs: the request completes, exit code 0."""
    marker = tmp_path / "started"
    env = dict(os.environ, RECSVC_SERVER__ARTIFACT_ROOT=str(root), RECSVC_SERVER__PORT="0",
               RECSVC_SERVER__HOST="127.0.0.1", RECSVC_SERVER__SHUTDOWN_GRACE_SECONDS="5")
    server = live_server.process([sys.executable, "-c", _SLOW_SERVER, str(marker)], env=env)
    with grpc.insecure_channel(server.target) as channel:
        stub = recsvc_pb2_grpc.RecommenderStub(channel)
        in_flight = stub.Recommend.future(_slow_request(), timeout=10)
        wait_for(marker.exists, what="the slow request to start")
        server.send_signal(signal.SIGTERM)
        assert in_flight.result().model_version == VERSION
    assert server.wait(timeout=30) == 0
    text = server.text()
    assert "received SIGTERM" in text and "stopped" in text


# ------------------------------------------------------------------------------------------------ workers

def test_two_workers_share_the_port_reload_on_sighup_and_stop_cleanly(tmp_path: Path,
                                                                     live_server: LiveServers) -> None:
    """`recsvc serve` with workers=2: two processes answer on one port (SO_REUSEPORT), SIGHUP to the parent
    reaches both, SIGTERM stops both and the parent exits 0."""
    root = tmp_path / "artifacts"
    publish_toy(root)
    env = dict(os.environ, RECSVC_SERVER__WORKERS="2", RECSVC_SERVER__SHUTDOWN_GRACE_SECONDS="1",
               RECSVC_SERVER__RELOAD_POLL_SECONDS="0")
    server = live_server.process(serve_command("--artifacts", str(root), "--host", "127.0.0.1", "--port", "0"),
                                 env=env, port_pattern=r"started 2 workers on 127\.0\.0\.1:(\d+)")
    wait_for(lambda: server.text().count("listening on") == 2, timeout=30, what="both workers")

    def statuses() -> dict[int, str]:
        """pid -> serving version, from up to 40 fresh connections (the kernel picks a worker for each)."""
        found: dict[int, str] = {}
        for _ in range(40):
            with grpc.insecure_channel(server.target, options=[("grpc.use_local_subchannel_pool", 1)]) as channel:
                status = admin_pb2_grpc.AdminStub(channel).GetStatus(admin_pb2.GetStatusRequest(), timeout=5)
                found[status.pid] = status.serving_version
            if len(found) == 2:
                break
        return found

    first = statuses()
    assert len(first) == 2 and server.pid not in first and set(first.values()) == {VERSION}
    publish_version(root, "toy-2")
    server.send_signal(signal.SIGHUP)
    wait_for(lambda: set(statuses().values()) == {"toy-2"}, what="both workers on toy-2")
    server.send_signal(signal.SIGTERM)
    assert server.wait(timeout=30) == 0
    text = server.text()
    assert text.count("stopped") >= 2 and "workers stopped (exit codes [0, 0])" in text


def test_worker_environment_round_trips_every_server_setting(tmp_path: Path) -> None:
    settings = ServerSettings(host="127.0.0.1", port=0, workers=2, metrics_port=9100, log_json=True,
                              reload_poll_seconds=2.5, tokens_file=str(tmp_path / "t.toml"))
    env = worker_environment(settings, index=1, port=50123, base={"PATH": "/bin", "RECSVC_SERVER__PORT": "1",
                                                                   "RECSVC_CONFIG": "/etc/other.toml"})
    child = load_settings(env=env).server
    assert child == dataclasses.replace(settings, workers=1, reuse_port=True, port=50123, metrics_port=9101)
    assert all(env[name] == "1" for name in BLAS_THREAD_VARIABLES)
    assert env["RECSVC_WORKER_INDEX"] == "1" and "RECSVC_CONFIG" not in env and env["PATH"] == "/bin"


def test_a_second_single_server_cannot_take_a_used_port(root: Path) -> None:
    """grpc shares ports by default; without `workers` two servers on one port must be an error."""
    first = LiveServer(settings_for(root))
    try:
        with pytest.raises(RuntimeError, match="cannot listen"):
            build_server(settings_for(root, port=first.port), ModelHolder())
    finally:
        first.close()


# --------------------------------------------------------------------------------- limits under load

@pytest.fixture
def slow_server(root: Path) -> Iterator[tuple[LiveServer, SlowFactory]]:
    settings = settings_for(root, max_workers=4, max_concurrent_rpcs=1)
    factory = SlowFactory(settings)
    server = LiveServer(settings, engine_factory=factory, metrics=True)
    yield server, factory
    for engine in factory.engines:
        engine.release.set()
    server.close()


def test_calls_beyond_the_cap_get_resource_exhausted_at_once(slow_server: tuple[LiveServer, SlowFactory]
                                                             ) -> None:
    server, factory = slow_server
    engine = factory.engines[0]
    in_flight = server.stub.Recommend.future(_slow_request(), timeout=10)
    assert engine.started.wait(5)
    start = time.monotonic()
    with pytest.raises(grpc.RpcError) as info:
        server.stub.Recommend(recsvc_pb2.RecommendRequest(customer_id="LOY-1", channel="web"), timeout=5)
    assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED and "server busy" in info.value.details()
    assert time.monotonic() - start < 3.0  # refused at once, not queued until the slow call ends
    # health and the admin API are not capped: an operator and a kubelet still get through
    assert server.health.Check(health_pb2.HealthCheckRequest(), timeout=5).status == SERVING
    status = server.admin.GetStatus(admin_pb2.GetStatusRequest(), timeout=5)
    assert (status.in_flight_rpcs, status.max_concurrent_rpcs) == (1, 1)
    engine.release.set()
    assert in_flight.result().model_version == VERSION
    assert server.stub.Recommend(recsvc_pb2.RecommendRequest(customer_id="LOY-1", channel="web"), timeout=5).items


def test_a_call_past_its_deadline_is_not_ranked(root: Path) -> None:
    """One thread, busy: a call that waits past its deadline never reaches the engine; a call whose deadline
    passes during ranking is counted as DEADLINE_EXCEEDED (what its caller saw)."""
    settings = settings_for(root, max_workers=1, max_concurrent_rpcs=0)
    factory = SlowFactory(settings)
    server = LiveServer(settings, engine_factory=factory, metrics=True)
    engine = factory.engines[0]
    try:
        engine.customers.clear()
        in_flight = server.stub.Recommend.future(_slow_request(), timeout=10)
        assert engine.started.wait(5)
        with pytest.raises(grpc.RpcError) as info:
            server.stub.Recommend(recsvc_pb2.RecommendRequest(customer_id="LATE", channel="web"), timeout=0.2)
        assert info.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
        engine.release.set()
        in_flight.result()
        assert "LATE" not in engine.customers
        # the deadline passes while the engine works: the caller gets DEADLINE_EXCEEDED, and so do the metrics
        engine.release.clear()
        threading.Timer(0.5, engine.release.set).start()
        with pytest.raises(grpc.RpcError) as info:
            server.stub.Recommend(_slow_request(), timeout=0.2)
        assert info.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
        assert server.metrics is not None
        wait_for(lambda: _sample(server.registry(), "recsvc_requests_total",
                                 rpc="Recommend", code="DEADLINE_EXCEEDED") == 1.0, what="the deadline counted")
    finally:
        engine.release.set()
        server.close()


class _ExpiredContext:
    """The parts of a grpc context the admission check reads, with the deadline already passed."""

    def __init__(self) -> None:
        self.aborted: tuple[grpc.StatusCode, str] | None = None

    def is_active(self) -> bool:
        return True

    def time_remaining(self) -> float:
        return 0.0

    def abort(self, code: grpc.StatusCode, details: str) -> None:
        self.aborted = (code, details)
        raise RuntimeError("aborted")


def test_admission_answers_deadline_exceeded_before_any_work() -> None:
    """The check itself, for the window grpc does not cover (the deadline passes between grpc and us)."""
    calls: list[object] = []
    wrapped = AdmissionInterceptor(4)._wrap(lambda request, context: calls.append(request))
    context = _ExpiredContext()
    with pytest.raises(RuntimeError, match="aborted"):
        wrapped("request", context)
    assert calls == [] and context.aborted is not None
    assert context.aborted[0] == grpc.StatusCode.DEADLINE_EXCEEDED


def test_requests_larger_than_the_limit_are_refused(root: Path) -> None:
    server = LiveServer(settings_for(root, max_request_bytes=2000))
    try:
        small = recsvc_pb2.RecommendRequest(channel="web", exclude_item_ids=["B01"] * 10)
        assert server.stub.Recommend(small, timeout=5).items
        big = recsvc_pb2.RecommendRequest(channel="web", exclude_item_ids=[f"ITEM-{i:06d}" for i in range(500)])
        assert big.ByteSize() > 2000
        with pytest.raises(grpc.RpcError) as info:
            server.stub.Recommend(big, timeout=5)
        assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    finally:
        server.close()


# ------------------------------------------------------------------------------------ metrics, access log

def _sample(registry: Any, name: str, **labels: str) -> float | None:
    for family in registry.collect():
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                return float(sample.value)
    return None


def test_metrics_endpoint_exposes_requests_latency_fallbacks_model_and_reloads(root: Path, tmp_path: Path) -> None:
    artifact_root = tmp_path / "artifacts"
    publish_toy(artifact_root)
    server = LiveServer(settings_for(artifact_root), metrics=True)
    assert server.metrics is not None
    endpoint = server.metrics.serve_http("127.0.0.1", 0)
    try:
        for customer in ("LOY-1", "C002"):
            server.stub.Recommend(recsvc_pb2.RecommendRequest(customer_id=customer, channel="web"), timeout=5)
        server.stub.Recommend(recsvc_pb2.RecommendRequest(customer_id="nobody", channel="kiosk"), timeout=5)
        with pytest.raises(grpc.RpcError):
            server.stub.Recommend(recsvc_pb2.RecommendRequest(customer_id="LOY-1"), timeout=5)  # no channel
        server.stub.SimilarItems(recsvc_pb2.SimilarItemsRequest(item_id="D01"), timeout=5)
        publish_version(artifact_root, "toy-2")
        assert server.reload().outcome.name == "SWAPPED"
        with urllib.request.urlopen(f"http://127.0.0.1:{endpoint.port}/metrics", timeout=5) as response:
            text = response.read().decode()
    finally:
        endpoint.close()
        server.close()
    samples = {(s.name, tuple(sorted(s.labels.items()))): s.value
               for family in text_string_to_metric_families(text) for s in family.samples}

    def value(name: str, **labels: str) -> float | None:
        return samples.get((name, tuple(sorted(labels.items()))))

    assert value("recsvc_requests_total", rpc="Recommend", code="OK") == 3
    assert value("recsvc_requests_total", rpc="Recommend", code="INVALID_ARGUMENT") == 1
    assert value("recsvc_request_errors_total", rpc="Recommend", code="INVALID_ARGUMENT") == 1
    assert value("recsvc_requests_total", rpc="SimilarItems", code="OK") == 1
    assert value("recsvc_request_latency_seconds_count", rpc="Recommend", channel="web") == 2
    assert value("recsvc_request_latency_seconds_count", rpc="Recommend", channel="other") == 1  # "kiosk"
    assert value("recsvc_request_latency_seconds_count", rpc="Recommend", channel="none") == 1
    assert value("recsvc_recommend_policy_total", policy="blend") == 2
    assert value("recsvc_recommend_policy_total", policy="popular") == 1
    assert value("recsvc_model_info", version="toy-2", created_at="2026-05-08T03:00:00+00:00") == 1
    assert not any(name == "recsvc_model_info" and ("version", VERSION) in labels for name, labels in samples)
    age = value("recsvc_model_age_seconds")
    assert age is not None and age > 0
    assert value("recsvc_model_reloads_total", result="success") == 1
    assert value("recsvc_model_reloads_total", result="failure") == 0
    assert value("recsvc_in_flight_requests") == 0
    assert any(name == "process_resident_memory_bytes" for name, _ in samples)


def test_serve_exposes_metrics_on_the_configured_port(root: Path) -> None:
    port, metrics_port = _free_port(), _free_port()
    settings = settings_for(root, port=port, metrics_port=metrics_port)
    stop = threading.Event()
    thread = threading.Thread(target=serve, args=(Settings(server=settings),), kwargs={"stop": stop})
    thread.start()
    try:
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            wait_for(lambda: _serving(health_pb2_grpc.HealthStub(channel)), what="SERVING")
            recsvc_pb2_grpc.RecommenderStub(channel).Recommend(recsvc_pb2.RecommendRequest(channel="web"), timeout=5)
        with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5) as response:
            text = response.read().decode()
        assert 'recsvc_requests_total{code="OK",rpc="Recommend"} 1.0' in text
    finally:
        stop.set()
        thread.join(timeout=10)


class _Broken(RecommendationEngine):
    def recommend(self, query: RecommendQuery) -> RecommendResult:
        if query.customer_id == "BOOM":
            raise ZeroDivisionError("secret")
        return super().recommend(query)


def test_json_access_log_has_one_line_per_request_with_its_request_id(root: Path,
                                                                       caplog: pytest.LogCaptureFixture) -> None:
    settings = settings_for(root, log_json=True)
    server = LiveServer(settings, engine_factory=lambda a: _Broken(build_engine(a, settings).model, settings))
    try:
        with caplog.at_level(logging.INFO, logger="recsvc.access"):
            server.stub.Recommend(recsvc_pb2.RecommendRequest(customer_id="LOY-1", channel="web"), timeout=5,
                                  metadata=[("x-request-id", "req-7")])
            with pytest.raises(grpc.RpcError) as info:
                server.stub.Recommend(recsvc_pb2.RecommendRequest(customer_id="BOOM", channel="app"), timeout=5)
        lines = [json.loads(JsonFormatter().format(r)) for r in caplog.records if r.name == "recsvc.access"]
    finally:
        server.close()
    assert len(lines) == 2
    ok, failed = lines
    assert (ok["rpc"], ok["code"], ok["channel"], ok["request_id"]) == ("Recommend", "OK", "web", "req-7")
    assert isinstance(ok["latency_ms"], float) and ok["latency_ms"] > 0 and ok["peer"]
    assert failed["code"] == "INTERNAL" and failed["channel"] == "app"
    # no id sent: the generated one is the id the INTERNAL message and the error log name
    assert info.value.details().endswith(f"request id {failed['request_id']}")
