"""Real time end to end: real `recsvc serve` processes, real connections, the real SQLite file and redis-server.

What an event changes must reach every worker and replica within 1 s of RecordEvents returning; a repeat is
applied once; bad events never fail good ones; SIGKILL loses nothing acknowledged; Redis down means
UNAVAILABLE for recording while Recommend and health carry on, and recovery needs no restart.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import threading
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.protobuf.timestamp_pb2 import Timestamp
from grpc_health.v1 import health_pb2, health_pb2_grpc

from recsvc.events.sqlite_store import SqliteEventStore
from recsvc.v1 import admin_pb2, admin_pb2_grpc, events_pb2, events_pb2_grpc, recsvc_pb2, recsvc_pb2_grpc
from tests.conftest import LiveServer, ServeProcess, serve_command
from tests.redis_fixture import RedisServer, free_port, redis_server
from tests.test_lifecycle import wait_for
from tests.toy_model import publish_toy

__all__ = ["redis_server"]

#: The delivery promise: seen everywhere within this many seconds of RecordEvents returning.
WITHIN_SECONDS = 1.0


class Served(ServeProcess):
    """A `recsvc serve` process (the live-server fixture's :class:`ServeProcess`) with ``workers`` workers, the
    event overlay polling fast, a short drain, and a graceful :meth:`stop`."""

    def __init__(self, root: Path, log: Path, env: dict[str, str], workers: int = 1) -> None:
        full = dict(os.environ, RECSVC_SERVER__SHUTDOWN_GRACE_SECONDS="1", RECSVC_SERVER__RELOAD_POLL_SECONDS="0",
                    RECSVC_SERVER__WORKERS=str(workers), RECSVC_EVENTS__POLL_SECONDS="0.05", **env)
        pattern = (r"started \d+ workers on 127\.0\.0\.1:(\d+)" if workers > 1
                   else r"listening on 127\.0\.0\.1:(\d+)")
        super().__init__(serve_command("--artifacts", str(root), "--host", "127.0.0.1", "--port", "0"), log,
                         env=full, port_pattern=pattern)
        _wait(lambda: self.text().count("listening on") >= workers, what="every worker listening")

    def channel(self) -> grpc.Channel:
        """A new connection of its own (the kernel may hand it to any worker)."""
        return grpc.insecure_channel(self.target, options=[("grpc.use_local_subchannel_pool", 1)])

    def stop(self) -> None:
        """SIGTERM, then SIGKILL if it has not stopped within 30 s."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.kill()


def _wait(condition: Callable[[], bool], timeout: float = 30.0, what: str = "condition") -> None:
    wait_for(condition, timeout=timeout, what=what)


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("artifacts")
    publish_toy(folder)
    return folder


def event(event_id: str, customer: str, item: str, kind: str = "purchase", **kwargs: Any) -> events_pb2.Event:
    return events_pb2.Event(event_id=event_id, customer_id=customer, item_id=item, event=kind, **kwargs)


def record(channel: grpc.Channel, *events: events_pb2.Event) -> events_pb2.RecordEventsResponse:
    return events_pb2_grpc.EventsStub(channel).RecordEvents(events_pb2.RecordEventsRequest(events=events), timeout=10)


def profile(channel: grpc.Channel, customer: str) -> recsvc_pb2.CustomerProfile:
    return recsvc_pb2_grpc.RecommenderStub(channel).GetCustomerProfile(
        recsvc_pb2.GetCustomerProfileRequest(customer_id=customer), timeout=10)


def status(channel: grpc.Channel) -> admin_pb2.ServerStatus:
    return admin_pb2_grpc.AdminStub(channel).GetStatus(admin_pb2.GetStatusRequest(), timeout=10)


def every_worker(served: Served, pids: set[int], started: float, shows: Callable[[grpc.Channel], bool],
                 what: str) -> float:
    """Seconds from ``started`` until fresh connections reaching every pid in ``pids`` pass ``shows``."""
    waiting = set(pids)
    while waiting:
        assert time.monotonic() - started < 10, f"{what} not seen by {waiting} after 10 s"
        with served.channel() as channel:
            pid = status(channel).pid
            if pid in waiting and shows(channel):
                waiting.discard(pid)
    return time.monotonic() - started


def seen_everywhere(served: Served, customer: str, item: str, pids: set[int], started: float) -> float:
    """Seconds from ``started`` until fresh connections reaching every pid in ``pids`` show ``item`` first in
    the profile of ``customer``."""
    return every_worker(served, pids, started,
                        lambda channel: profile(channel, customer).recent_purchases[0].item_id == item, item)


def worker_pids(served: Served, n: int) -> set[int]:
    """The pids of the ``n`` workers, from fresh connections."""
    pids: set[int] = set()

    def one_more() -> bool:
        with served.channel() as channel:
            pids.add(status(channel).pid)
        return len(pids) >= n

    _wait(one_more, what=f"{n} workers")
    return pids


# --------------------------------------------------------------------------------------- embedded, 2 workers

def test_two_workers_on_the_embedded_store(root: Path, tmp_path: Path) -> None:
    """An online purchase recorded on one connection is in the profile reached through the loyalty-card alias
    on other connections, on both workers, within 1 s; a repeat is applied once; bad events are rejected with
    reasons while the good ones of the same call land; wrong-sized calls are INVALID_ARGUMENT."""
    served = Served(root, tmp_path / "serve.log", {"RECSVC_EVENTS__SQLITE_PATH": str(tmp_path / "ev.sqlite")},
                    workers=2)
    try:
        pids = worker_pids(served, 2)
        future = Timestamp(seconds=int(time.time()) + 3600)
        with served.channel() as channel:
            answer = record(channel, event("", "C004", "D01"),
                            event("web-77:1", "APP-4", "D01", channel="WEB", price=1.1),
                            event("web-77:2", "APP-4", "D02", "wishlist"),
                            event("web-77:1", "APP-4", "D01", channel="web"),
                            event("web-77:3", "APP-4", "D03", timestamp=future))
            started = time.monotonic()
        assert (answer.accepted, answer.duplicates) == (1, 1)
        assert [(r.index, r.reason) for r in answer.rejected] == [
            (0, "missing_id"), (2, "unknown_event"), (4, "future_timestamp")]
        elapsed = seen_everywhere(served, "LOY-4", "D01", pids, started)
        assert elapsed < WITHIN_SECONDS, f"seen by every worker after {elapsed:.2f} s"

        with served.channel() as channel:
            again = record(channel, event("web-77:1", "C004", "D01"))
            assert (again.accepted, again.duplicates) == (0, 1)
            live = profile(channel, "LOY-4").recent_purchases[0]
            assert (live.item_id, live.channel, live.count, live.title) == ("D01", "web", 1.0, "Milk 1 l")
            info = status(channel)
            assert (info.event_backend, info.overlay_state) == ("sqlite", "up") and info.overlay_events >= 1
            stub = events_pb2_grpc.EventsStub(channel)
            for size in (0, 1001):
                with pytest.raises(grpc.RpcError) as caught:
                    stub.RecordEvents(events_pb2.RecordEventsRequest(
                        events=[event(f"e{i}", "C001", "B01") for i in range(size)]), timeout=10)
                assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
                assert "1 to 1000" in (caught.value.details() or "")
            linked = stub.LinkIdentities(events_pb2.LinkIdentitiesRequest(links=[
                events_pb2.IdentityLink(alias_id="LINE-9", customer_id="LOY-4"),
                events_pb2.IdentityLink(alias_id="LOY-1", customer_id="C004")]), timeout=10)
            assert linked.linked == 1 and [(r.index, r.reason) for r in linked.rejected] == [(1, "identity_conflict")]
        assert SqliteEventStore(tmp_path / "ev.sqlite").count() == 1
    finally:
        served.stop()


# ------------------------------------------------------------------------------------------ SIGKILL

def test_every_acknowledged_event_survives_sigkill(root: Path, tmp_path: Path) -> None:
    path = tmp_path / "ev.sqlite"
    env = {"RECSVC_EVENTS__SQLITE_PATH": str(path)}
    served = Served(root, tmp_path / "serve.log", env)
    acknowledged: list[str] = []
    stop = threading.Event()

    def send() -> None:
        with served.channel() as channel:
            batch = 0
            while not stop.is_set():
                ids = [f"k{batch}:{i}" for i in range(20)]
                try:
                    record(channel, *(event(i, "C001", "B01", "view") for i in ids))
                except grpc.RpcError:
                    return
                acknowledged.extend(ids)
                batch += 1

    sender = threading.Thread(target=send)
    sender.start()
    try:
        _wait(lambda: len(acknowledged) >= 400, what="400 acknowledged events")
        served.process.send_signal(signal.SIGKILL)
        served.process.wait(timeout=10)
    finally:
        stop.set()
        sender.join(timeout=30)
        served.stop()
    stored = {e.event_id for e in SqliteEventStore(path).export(2**62)}
    assert acknowledged and set(acknowledged) <= stored
    restarted = Served(root, tmp_path / "restart.log", env)
    try:
        with restarted.channel() as channel:
            again = record(channel, *(event(i, "C001", "B01", "view") for i in acknowledged[:50]))
            assert (again.accepted, again.duplicates) == (0, 50)
    finally:
        restarted.stop()


# --------------------------------------------------------------------------------------------- Redis

def _redis_env(redis_server: RedisServer, prefix: str) -> dict[str, str]:
    return {"RECSVC_EVENTS__BACKEND": "redis", "RECSVC_EVENTS__REDIS_URL": redis_server.url,
            "RECSVC_EVENTS__REDIS_PREFIX": prefix, "RECSVC_EVENTS__REDIS_TIMEOUT_SECONDS": "0.5"}


def test_two_servers_on_one_redis_are_two_replicas(root: Path, tmp_path: Path, redis_server: RedisServer) -> None:
    env = _redis_env(redis_server, "replicas")
    a = Served(root, tmp_path / "a.log", env)
    b = Served(root, tmp_path / "b.log", env)
    try:
        with a.channel() as on_a, b.channel() as on_b:
            assert record(on_a, event("pos-1:1", "LOY-4", "B04", channel="store", store_id="S01")).accepted == 1
            started = time.monotonic()
            _wait(lambda: profile(on_b, "C004").recent_purchases[0].item_id == "B04", timeout=5, what="replica b")
            assert time.monotonic() - started < WITHIN_SECONDS
            first = profile(on_b, "APP-4").recent_purchases[0]
            assert (first.channel, first.store_id) == ("store", "S01")
            assert record(on_b, event("pos-1:1", "C004", "B04")).duplicates == 1  # dedupe across replicas
            linked = events_pb2_grpc.EventsStub(on_a).LinkIdentities(events_pb2.LinkIdentitiesRequest(
                links=[events_pb2.IdentityLink(alias_id="LOY-NEW", customer_id="NEW-1")]), timeout=10)
            assert linked.linked == 1
            assert record(on_b, event("app-5:1", "NEW-1", "D04", channel="app")).accepted == 1
            _wait(lambda: _profile_items(on_a, "LOY-NEW") == ["D04"], timeout=5, what="a new customer on replica a")
            assert (status(on_a).event_backend, status(on_b).overlay_state) == ("redis", "up")
    finally:
        a.stop()
        b.stop()


def _profile_items(channel: grpc.Channel, customer: str) -> list[str]:
    try:
        return [p.item_id for p in profile(channel, customer).recent_purchases]
    except grpc.RpcError:
        return []


def _metric(port: int, name: str) -> float | None:
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    match = re.search(rf"^{name}(?:{{[^}}]*}})? (\S+)$", text, re.MULTILINE)
    return float(match.group(1)) if match else None


def test_redis_outage(root: Path, tmp_path: Path, redis_server: RedisServer) -> None:
    """Redis down: RecordEvents UNAVAILABLE, Recommend still answers, health SERVING, a metric and a log line
    say the overlay is down; Redis back: recording and the overlay recover without a restart."""
    metrics_port = free_port()
    served = Served(root, tmp_path / "serve.log",
                    {**_redis_env(redis_server, "outage"), "RECSVC_SERVER__METRICS_PORT": str(metrics_port)})
    try:
        with served.channel() as channel:
            assert record(channel, event("o-1:1", "C002", "B03")).accepted == 1
            redis_server.stop()
            try:
                with pytest.raises(grpc.RpcError) as caught:
                    record(channel, event("o-2:1", "C002", "H01"))
                assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
                assert "retry" in (caught.value.details() or "")
                answer = recsvc_pb2_grpc.RecommenderStub(channel).Recommend(
                    recsvc_pb2.RecommendRequest(customer_id="C002", channel="web"), timeout=10)
                assert answer.items
                assert profile(channel, "C002").recent_purchases[0].item_id == "B03"  # what it had, kept
                health = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=5)
                assert health.status == health_pb2.HealthCheckResponse.SERVING
                _wait(lambda: status(channel).overlay_state == "down", timeout=10, what="overlay down")
                assert _metric(metrics_port, "recsvc_events_overlay_up") == 0.0
                assert "event overlay is down" in served.log.read_text()
            finally:
                redis_server.start()
            _wait(lambda: status(channel).overlay_state == "up", timeout=10, what="overlay up again")
            assert record(channel, event("o-2:1", "C002", "H01")).accepted == 1
            assert _metric(metrics_port, "recsvc_events_overlay_up") == 1.0
    finally:
        served.stop()



# ------------------------------------------------------------------------------------------- the write role

def test_the_write_role_records_events_and_read_callers_cannot(root: Path, tmp_path: Path) -> None:
    from recsvc.artifacts import load_current
    from recsvc.config import EventsSettings, ServerSettings, Settings
    from recsvc.ranking import LoadedModel, RecommendationEngine
    from recsvc.server.app import ModelHolder
    from recsvc.server.events import start_events
    from recsvc.server.security import token_sha256

    tokens = tmp_path / "tokens.toml"
    tokens.write_text("".join(f'[[callers]]\nname = "{role}-caller"\nrole = "{role}"\n'
                              f'token_sha256 = "{token_sha256(role + "-token")}"\n\n'
                              for role in ("read", "write", "admin")))
    settings = Settings(server=ServerSettings(host="127.0.0.1", port=0, artifact_root=str(root), max_workers=4,
                                              tokens_file=str(tokens)),
                        events=EventsSettings(sqlite_path=str(tmp_path / "ev.sqlite")))
    model = LoadedModel(load_current(root))
    runtime = start_events(settings, model)
    server = LiveServer(settings.server, holder=ModelHolder(RecommendationEngine(model, settings.server)),
                        events=runtime)
    try:
        with grpc.insecure_channel(server.target) as channel:
            stub = events_pb2_grpc.EventsStub(channel)
            request = events_pb2.RecordEventsRequest(events=[event("tok-1:1", "C001", "B01")])
            for role, code in (("read", grpc.StatusCode.PERMISSION_DENIED), ("", grpc.StatusCode.UNAUTHENTICATED)):
                metadata = (("authorization", f"Bearer {role}-token"),) if role else ()
                with pytest.raises(grpc.RpcError) as caught:
                    stub.RecordEvents(request, metadata=metadata, timeout=10)
                assert caught.value.code() == code
            for i, role in enumerate(("write", "admin")):
                request = events_pb2.RecordEventsRequest(events=[event(f"tok-{i}:1", "C001", "B01")])
                answer = stub.RecordEvents(request, metadata=(("authorization", f"Bearer {role}-token"),),
                                           timeout=10)
                assert answer.accepted == 1
            writer = (("authorization", "Bearer write-token"),)
            recsvc_pb2_grpc.RecommenderStub(channel).GetCustomerProfile(  # write callers may read too
                recsvc_pb2.GetCustomerProfileRequest(customer_id="LOY-1"), metadata=writer, timeout=10)
    finally:
        server.close()
        runtime.close()


def test_a_config_files_training_section_reaches_every_workers_event_validation(root: Path, tmp_path: Path) -> None:
    """Regression: workers read no config file, and the parent passed only [events] on, so an event sent
    without a channel took the built-in default channel in every worker instead of the file's
    ``training.default_channel``. Each worker records one event of its own; both store the file's channel."""
    config = tmp_path / "recsvc.toml"
    config.write_text(f'[training]\ndefault_channel = "app"\n\n[events]\nsqlite_path = "{tmp_path / "ev.sqlite"}"\n')
    served = Served(root, tmp_path / "serve.log", {"RECSVC_CONFIG": str(config)}, workers=2)
    try:
        pids = worker_pids(served, 2)
        recorded: dict[int, str] = {}
        deadline = time.monotonic() + 20
        while set(recorded) != pids:
            assert time.monotonic() < deadline, f"could not reach every worker: {recorded}"
            with served.channel() as channel:
                pid = status(channel).pid
                if pid in recorded:
                    continue
                item = ("D02", "D03")[len(recorded)]
                answer = record(channel, event(f"cfg:{pid}", "APP-4", item))
                assert answer.accepted == 1, answer
                recorded[pid] = item
        started = time.monotonic()

        def both_in_app(channel: grpc.Channel) -> bool:
            bought = {p.item_id: p.channel for p in profile(channel, "APP-4").recent_purchases}
            return all(bought.get(item) == "app" for item in recorded.values())

        every_worker(served, pids, started, both_in_app, "events on the file's default channel")
    finally:
        served.stop()
