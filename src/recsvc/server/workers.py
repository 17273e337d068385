"""Several server processes on one port: use every core despite the GIL.

One Python process ranks about one request at a time (numpy releases the GIL only inside its kernels), so on
a 2-core host ``workers = 2`` runs two full server processes that bind the same port with SO_REUSEPORT; the
kernel spreads incoming connections between them. Each worker runs one BLAS thread
(``OPENBLAS_NUM_THREADS=1`` …, set before numpy is imported), so two workers use two cores instead of four
BLAS threads fighting over them. Memory-mapped artifacts (``mmap_artifacts``) share their pages between the
workers through the page cache.

The parent (:func:`run_workers`) does not import numpy or serve anything: it starts the children with the
same server settings passed as ``RECSVC_SERVER__*`` environment variables, forwards SIGTERM/SIGINT (drain
and stop) and SIGHUP (check ``CURRENT`` now), and exits 0 when every child stopped cleanly (3 when one had
to cut calls). A child that dies on its own takes the group down (the parent stops the others and exits 1),
so systemd or Kubernetes restarts the whole unit and the failure is visible, rather than a half-capacity
server limping on.

In Kubernetes prefer one worker per pod and more replicas: the orchestrator then does what this parent does.
"""

from __future__ import annotations

import dataclasses
import errno
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Mapping
from types import FrameType

from recsvc.config import ENV_PREFIX, ServerSettings, Settings

logger = logging.getLogger(__name__)

#: Set by the parent in each child: its index (0-based); absent when a process runs alone.
WORKER_INDEX_ENV = "RECSVC_WORKER_INDEX"
#: Set by the parent in each child: the parent's pid, which a child signals to reach its siblings.
SUPERVISOR_PID_ENV = "RECSVC_SUPERVISOR_PID"
#: Thread-count variables of the BLAS/OpenMP builds numpy may use.
BLAS_THREAD_VARIABLES = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")

#: Seconds the parent waits beyond ``shutdown_grace_seconds`` before killing a child that does not stop
#: (a worker bounds its own stop to the grace plus about a second, see :func:`recsvc.server.app.stop_server`).
STOP_MARGIN_SECONDS = 5.0
#: A worker's exit code after a stop whose drain was not clean (calls cut, or grpc did not stop in time);
#: the value of :data:`recsvc.server.app.UNCLEAN_STOP_EXIT`, kept here so the parent does not import the server.
UNCLEAN_STOP_EXIT = 3


def limit_blas_threads(env: dict[str, str] | os._Environ[str] | None = None) -> None:
    """Default every BLAS thread-count variable to 1 (an explicit value is kept).

    Only effective before numpy is imported in the process whose environment this is.
    """
    target = os.environ if env is None else env
    for name in BLAS_THREAD_VARIABLES:
        target.setdefault(name, "1")


def worker_index() -> int:
    """This process's index when a worker parent started it, else -1."""
    try:
        return int(os.environ.get(WORKER_INDEX_ENV, "-1"))
    except ValueError:
        return -1


def notify_siblings() -> bool:
    """Ask the worker parent to send SIGHUP to every worker (so all reload); False when running alone.

    Signals only a parent that is still ours: if the parent died, ``getppid()`` is some other process
    (init in a container) that must not get a SIGHUP.
    """
    expected = os.environ.get(SUPERVISOR_PID_ENV)
    if not expected or not expected.isdigit() or int(expected) != os.getppid():
        return False
    os.kill(int(expected), signal.SIGHUP)
    return True


def _env_value(value: object) -> str:
    """A setting as ``load_settings`` reads it back from the environment (tables as JSON)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, Mapping | list | tuple) or dataclasses.is_dataclass(value):
        return json.dumps(value, default=_plain, sort_keys=True)
    return str(value)


def _plain(value: object) -> object:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    if isinstance(value, Mapping):
        return dict(value)
    raise TypeError(f"setting value {value!r} cannot be passed to a worker")


def worker_environment(settings: ServerSettings, index: int, port: int, base: Mapping[str, str]) -> dict[str, str]:
    """The environment of worker ``index``: every server setting spelled out, one BLAS thread."""
    env = {k: v for k, v in base.items() if not k.startswith(ENV_PREFIX + "SERVER__") and k != ENV_PREFIX + "CONFIG"}
    child = dataclasses.replace(
        settings, workers=1, reuse_port=True, port=port,
        metrics_port=settings.metrics_port + index if settings.metrics_port else 0)
    for spec in dataclasses.fields(child):
        env[f"{ENV_PREFIX}SERVER__{spec.name.upper()}"] = _env_value(getattr(child, spec.name))
    env[WORKER_INDEX_ENV] = str(index)
    env[SUPERVISOR_PID_ENV] = str(os.getpid())
    limit_blas_threads(env)
    return env


class ListenError(RuntimeError):
    """The server cannot listen on ``host:port``; the message says why in one line (the command line prints it)."""

    def __init__(self, host: str, port: int, reason: str | None = None) -> None:
        self.host, self.port = host, port
        shown = f"[{host}]" if ":" in host else host
        super().__init__(f"cannot listen on {shown}:{port}: {reason or bind_problem(host, port)}")


def bind_problem(host: str, port: int, error: OSError | None = None) -> str:
    """Why ``host:port`` cannot be bound, in words an operator acts on (tries a plain bind when ``error`` is
    not given: grpc's own message is a multi-line core error that does not say "in use")."""
    if error is None:
        try:
            family = socket.AF_INET6 if ":" in host else socket.AF_INET
            with socket.socket(family, socket.SOCK_STREAM) as probe:
                probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as grpc binds
                probe.bind((host, port))
            return "the address is not available"
        except OSError as exc:
            error = exc
    if isinstance(error, socket.gaierror):
        return f"unknown host {host!r}"
    if error.errno == errno.EADDRINUSE:
        return f"port {port} is in use by another process (choose another with --port, or --port 0 for a free one)"
    if error.errno == errno.EADDRNOTAVAIL:
        return f"{host} is not an address of this host"
    if error.errno == errno.EACCES:
        return f"permission denied (port {port} needs privileges; use a port above 1023)"
    return str(error.strerror or error)


def section_environment(section: str, values: object) -> dict[str, str]:
    """One settings section spelled out as ``RECSVC_<SECTION>__*`` variables, so a config file's ``[events]``
    and ``[training]`` (the live events' validation reads ``default_channel`` and ``earliest_event_date``)
    reach the workers, which read no config file."""
    return {f"{ENV_PREFIX}{section.upper()}__{spec.name.upper()}": _env_value(getattr(values, spec.name))
            for spec in dataclasses.fields(values)}  # type: ignore[arg-type]


def reserve_port(host: str, port: int) -> socket.socket:
    """A bound, not listening, SO_REUSEPORT socket on ``host:port``: turns port 0 into a concrete port the
    workers can share, and fails early when another program holds the port. Close it after the workers stop.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise ListenError(host, port, bind_problem(host, port, exc)) from exc
    return sock


def run_workers(settings: Settings, stop: threading.Event | None = None, log_level: str | None = None,
                log_json: bool | None = None) -> int:
    """Start ``settings.server.workers`` server processes on one port and supervise them until stopped.

    Returns the exit code for the parent: 0 when every worker stopped cleanly after SIGTERM/SIGINT (or
    ``stop``), ``UNCLEAN_STOP_EXIT`` (3) when every worker stopped but one had to cut calls, 1 when a worker
    died on its own or did not stop in time. Signal handlers are installed only
    on the main thread.
    """
    server = settings.server
    logger.info("server settings: %s", settings.describe())
    stop = stop or threading.Event()
    level = log_level or logging.getLevelName(logging.getLogger().getEffectiveLevel())
    json_lines = server.log_json if log_json is None else log_json
    reservation = reserve_port(server.host, server.port)
    port = int(reservation.getsockname()[1])
    command = [sys.executable, "-m", "recsvc", "--log-level", str(level), *(["--log-json"] if json_lines else []),
               "serve"]
    children: list[subprocess.Popen[bytes]] = []
    previous: dict[signal.Signals, object] = {}

    def forward(sig: signal.Signals) -> None:
        for child in children:
            if child.poll() is None:
                child.send_signal(sig)

    def on_stop(signum: int, frame: FrameType | None) -> None:
        logger.info("received %s; stopping %d workers", signal.Signals(signum).name, len(children))
        stop.set()

    def on_hup(signum: int, frame: FrameType | None) -> None:
        logger.info("received SIGHUP; asking every worker to check for a new model")
        forward(signal.SIGHUP)

    if threading.current_thread() is threading.main_thread():
        for sig, handler in ((signal.SIGTERM, on_stop), (signal.SIGINT, on_stop), (signal.SIGHUP, on_hup)):
            previous[sig] = signal.signal(sig, handler)
    failed = False
    try:
        for index in range(server.workers):
            env = (worker_environment(server, index, port, os.environ)
                   | section_environment("events", settings.events)
                   | section_environment("training", settings.training)
                   | section_environment("feedback", settings.feedback)
                   | section_environment("experiments", settings.experiments))
            children.append(subprocess.Popen(command, env=env))
        logger.info("started %d workers on %s:%d (pids %s)", len(children), server.host, port,
                    ", ".join(str(c.pid) for c in children))
        while not stop.wait(timeout=0.2):
            dead = [c for c in children if c.poll() is not None]
            if dead:
                for child in dead:
                    logger.error("worker pid %d exited with code %s; stopping the others", child.pid,
                                 child.returncode)
                failed = True
                break
    finally:
        # SIGTERM each worker: it reports NOT_SERVING, drains within shutdown_grace_seconds and exits 0
        forward(signal.SIGTERM)
        deadline = time.monotonic() + server.shutdown_grace_seconds + STOP_MARGIN_SECONDS
        for child in children:
            try:
                child.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                logger.error("worker pid %d did not stop in time; killing it", child.pid)
                child.kill()
                child.wait()
                failed = True
        reservation.close()
        for sig, saved in previous.items():
            signal.signal(sig, saved)  # type: ignore[arg-type]  # whatever signal.signal returned before
    codes = [c.returncode for c in children]
    logger.info("workers stopped (exit codes %s)", codes)
    if failed or any(code not in (0, UNCLEAN_STOP_EXIT) for code in codes):
        return 1
    return UNCLEAN_STOP_EXIT if UNCLEAN_STOP_EXIT in codes else 0
