"""One way to run a server in tests (issue 12): the ``live_server`` fixture.

``live_server(settings, ...)`` starts an in-process server on port 0 (``build_server`` with a lifecycle, as
``serve`` assembles it) and returns a :class:`LiveServer` with stubs over one channel;
``live_server.process(command, env)`` starts a real server process (``recsvc serve`` or a script calling
``serve``), waits for its "listening on" line and returns a :class:`ServeProcess`;
``live_server.serve(settings)`` runs ``serve`` itself on a thread (:class:`ServeThread`). Whatever the fixture
started is stopped when the test ends. Module-scoped fixtures that share one server between tests use the
same two classes as context managers.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2_grpc

from recsvc.config import ServerSettings
from recsvc.server.app import admission_for, build_server, stop_server
from recsvc.server.events import EventsRuntime
from recsvc.server.feedback import FeedbackRuntime
from recsvc.server.holder import ModelHolder
from recsvc.server.lifecycle import EngineFactory, ModelLifecycle, ReloadResult
from recsvc.server.metrics import ServerMetrics
from recsvc.v1 import admin_pb2_grpc, recsvc_pb2_grpc

#: What the server logs once it listens (``serve``), and the port in it.
LISTENING = r"listening on [^\s]*:(\d+)"


def wait_for(condition: Callable[[], bool], timeout: float = 10.0, what: str = "condition") -> None:
    """Poll ``condition`` every 20 ms until it holds; fail naming ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


def settings_for(root: Path, **overrides: object) -> ServerSettings:
    """Settings of a test server on 127.0.0.1, port 0, serving ``root``: short grace, no polling."""
    values: dict[str, object] = {"host": "127.0.0.1", "port": 0, "artifact_root": str(root), "max_workers": 8,
                                 "max_concurrent_rpcs": 6, "shutdown_grace_seconds": 1.0,
                                 "reload_poll_seconds": 0.0}
    values.update(overrides)
    return ServerSettings(**values)  # type: ignore[arg-type]


class LiveServer:
    """A started in-process server, stubs over one channel.

    With ``holder`` given, it serves that holder as it is (no lifecycle, no Admin service: a fixed engine,
    or none). Otherwise a lifecycle loads ``CURRENT`` (``engine_factory`` builds the engines; the watcher runs
    when polling is on) and ``results`` collects every load it reports (SWAPPED and REJECTED). ``events``
    adds the Events service and ``feedback`` the experiment arms and served log (the caller closes both).
    """

    def __init__(self, settings: ServerSettings, engine_factory: EngineFactory | None = None,
                 metrics: bool = False, credentials: grpc.ChannelCredentials | None = None,
                 target_host: str = "127.0.0.1", holder: ModelHolder | None = None,
                 events: EventsRuntime | None = None, feedback: FeedbackRuntime | None = None) -> None:
        self.settings = settings
        self.holder = holder if holder is not None else ModelHolder()
        self.metrics = ServerMetrics(self.holder) if metrics else None
        self.results: list[ReloadResult] = []
        self.lifecycle: ModelLifecycle | None = None
        if holder is None:
            self.lifecycle = ModelLifecycle(settings, self.holder, engine_factory=engine_factory,
                                            listener=self._listen)
            self.lifecycle.load_initial()
        self.admission = admission_for(settings)
        self.server, self.port = build_server(settings, self.holder, lifecycle=self.lifecycle,
                                              metrics=self.metrics, admission=self.admission, events=events,
                                              feedback=feedback)
        self.server.start()
        if self.lifecycle is not None:
            self.lifecycle.start()
        self.target = f"{target_host}:{self.port}"
        self.channel = (grpc.secure_channel(self.target, credentials) if credentials is not None
                        else grpc.insecure_channel(self.target))
        self.stub = recsvc_pb2_grpc.RecommenderStub(self.channel)
        self.admin = admin_pb2_grpc.AdminStub(self.channel)
        self.health = health_pb2_grpc.HealthStub(self.channel)
        self._closed = False

    def _listen(self, result: ReloadResult) -> None:
        self.results.append(result)
        if self.metrics is not None:
            self.metrics.record_reload(result)

    def reload(self, force: bool = False) -> ReloadResult:
        """Check ``CURRENT`` now, as a poll would (a server started with a fixed ``holder`` has no lifecycle)."""
        assert self.lifecycle is not None, "this server was started with a fixed holder: nothing to reload"
        return self.lifecycle.reload(force=force)

    def registry(self) -> Any:
        """The Prometheus registry of a server started with ``metrics=True``."""
        assert self.metrics is not None, "start the server with metrics=True"
        return self.metrics.registry

    def version(self) -> str:
        from recsvc.v1 import recsvc_pb2

        return str(self.stub.GetModelInfo(recsvc_pb2.GetModelInfoRequest(), timeout=5).version)

    def close(self) -> None:
        """Stop as ``serve`` does (bounded, see ``stop_server``); closing twice is harmless."""
        if self._closed:
            return
        self._closed = True
        if self.lifecycle is not None:
            self.lifecycle.stop()
        self.channel.close()
        stop_server(self.server, self.admission, 0.2)

    def __enter__(self) -> LiveServer:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self.close()


class ServeProcess:
    """A server running as its own process; stderr goes to ``log``, ``port`` is read from it."""

    def __init__(self, command: Sequence[str], log: Path, env: dict[str, str] | None = None,
                 port_pattern: str = LISTENING, timeout: float = 60.0) -> None:
        self.log = log
        with log.open("w") as err:
            self.process = subprocess.Popen(list(command), stderr=err, stdout=subprocess.DEVNULL,
                                            env=env if env is not None else dict(os.environ))
        self.port = 0
        try:
            wait_for(lambda: re.search(port_pattern, self.text()) is not None or self.process.poll() is not None,
                     timeout=timeout, what=port_pattern)
            match = re.search(port_pattern, self.text())
            if match is None:
                raise AssertionError(f"the server exited ({self.process.returncode}) before listening:\n"
                                     f"{self.text()[-2000:]}")
            self.port = int(match.group(1))
        except BaseException:
            self.kill()
            raise
        self.target = f"127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        return self.process.pid

    def text(self) -> str:
        return self.log.read_text()

    def send_signal(self, sig: signal.Signals) -> None:
        self.process.send_signal(sig)

    def wait(self, timeout: float) -> int:
        return self.process.wait(timeout=timeout)

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    def __enter__(self) -> ServeProcess:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self.kill()


class ServeThread:
    """``serve(settings, stop=...)`` on a thread of this process, on a free port: ``serve``'s own drain and
    exit code, seen from inside. ``stop()`` sets the stop event; ``join()`` waits and returns the exit code."""

    def __init__(self, settings: ServerSettings, engine_factory: EngineFactory | None = None) -> None:
        import dataclasses
        import socket
        import threading

        from recsvc.config import Settings
        from recsvc.server.app import serve

        with socket.socket() as sock:  # serve logs its port, but a test wants it before the thread runs
            sock.bind(("127.0.0.1", 0))
            self.port = int(sock.getsockname()[1])
        self.target = f"127.0.0.1:{self.port}"
        self.settings = dataclasses.replace(settings, port=self.port)
        self._stop = threading.Event()
        self.returned: list[int] = []
        self._thread = threading.Thread(target=lambda: self.returned.append(
            serve(Settings(server=self.settings), stop=self._stop, engine_factory=engine_factory)))
        self._thread.start()

    def is_alive(self) -> bool:
        return self._thread.is_alive()

    def stop(self) -> None:
        self._stop.set()

    def join(self, timeout: float = 30.0) -> int | None:
        """Wait for ``serve`` to return; its exit code, or ``None`` when it is still running."""
        self._thread.join(timeout=timeout)
        return self.returned[0] if self.returned else None


def serve_command(*args: str) -> list[str]:
    """``python -m recsvc serve ARGS`` with this interpreter."""
    return [sys.executable, "-m", "recsvc", "serve", *args]


class LiveServers:
    """The ``live_server`` fixture: starts servers and stops all of them when the test ends."""

    def __init__(self, tmp_path: Path) -> None:
        self._tmp_path = tmp_path
        self._started: list[LiveServer | ServeProcess | ServeThread] = []

    def __call__(self, settings: ServerSettings, **kwargs: Any) -> LiveServer:
        server = LiveServer(settings, **kwargs)
        self._started.append(server)
        return server

    def process(self, command: Sequence[str], env: dict[str, str] | None = None, **kwargs: Any) -> ServeProcess:
        process = ServeProcess(command, self._tmp_path / f"serve-{len(self._started)}.log", env=env, **kwargs)
        self._started.append(process)
        return process

    def serve(self, settings: ServerSettings, engine_factory: EngineFactory | None = None) -> ServeThread:
        thread = ServeThread(settings, engine_factory)
        self._started.append(thread)
        return thread

    def close(self) -> None:
        for started in reversed(self._started):
            if isinstance(started, LiveServer):
                started.close()
            elif isinstance(started, ServeThread):
                started.stop()
                started.join()
            else:
                started.kill()


@pytest.fixture
def live_server(tmp_path: Path) -> Iterator[LiveServers]:
    """Start servers in the test (``live_server(settings)``, ``live_server.process(command)``); all stop after."""
    servers = LiveServers(tmp_path)
    yield servers
    servers.close()
