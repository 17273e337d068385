"""Server assembly: the model holder, the gRPC server (recsvc, health, reflection) and the ``serve`` loop.

``serve(settings)`` loads the artifact set ``CURRENT`` names (refusing to start on a corrupt or missing set),
builds the engine, listens, and on SIGTERM/SIGINT reports NOT_SERVING before stopping with a grace period, so
load balancers stop sending new requests while in-flight ones finish.
"""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Callable
from concurrent import futures
from pathlib import Path
from types import FrameType

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from recsvc.artifacts import ArtifactError, load_current
from recsvc.config import ServerSettings, Settings
from recsvc.errors import ModelUnavailable
from recsvc.ranking import LoadedModel, RecommendationEngine
from recsvc.server.interceptors import ExceptionToStatusInterceptor
from recsvc.server.servicer import RecommenderServicer
from recsvc.v1 import recsvc_pb2, recsvc_pb2_grpc

logger = logging.getLogger(__name__)

#: The fully qualified service name, as health checks and reflection know it.
SERVICE_NAME: str = recsvc_pb2.DESCRIPTOR.services_by_name["Recommender"].full_name


class ModelHolder:
    """Holds the engine requests use, behind one reference that is swapped whole.

    Each request calls :meth:`current` once at its start and keeps that engine to the end, so replacing
    the engine (a future hot reload) never changes a model under a running request: build and check the new
    engine first, then :meth:`swap` — the old one stays alive while requests still hold it. Listeners hear
    ``True`` when an engine is installed and ``False`` when the holder starts draining (shutdown); the
    server wires them to the health service.
    """

    def __init__(self, engine: RecommendationEngine | None = None) -> None:
        self._engine = engine
        self._draining = False
        self._lock = threading.Lock()  # serialises writers and listener calls; readers take no lock
        self._listeners: list[Callable[[bool], None]] = []

    def current(self) -> RecommendationEngine:
        """The engine for one request; raises :class:`~recsvc.errors.ModelUnavailable` before any load."""
        engine = self._engine  # one read of one reference: atomic under the GIL
        if engine is None:
            raise ModelUnavailable("no model is loaded yet; retry shortly")
        return engine

    @property
    def serving(self) -> bool:
        """Whether an engine is installed and the holder is not draining."""
        return self._engine is not None and not self._draining

    def swap(self, engine: RecommendationEngine) -> RecommendationEngine | None:
        """Install ``engine`` for all requests that start from now on; returns the previous engine."""
        with self._lock:
            previous, self._engine = self._engine, engine
            logger.info("serving model %s%s", engine.model_version,
                        f" (was {previous.model_version})" if previous is not None else "")
            self._notify()
        return previous

    def drain(self) -> None:
        """Report not serving (shutdown is near); requests still get the current engine."""
        with self._lock:
            self._draining = True
            self._notify()

    def add_listener(self, listener: Callable[[bool], None]) -> None:
        """Call ``listener(serving)`` now and after every swap or drain."""
        with self._lock:
            self._listeners.append(listener)
            listener(self.serving)

    def _notify(self) -> None:
        for listener in self._listeners:
            listener(self.serving)


def _bind_address(host: str, port: int) -> str:
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"  # a bare IPv6 address
    return f"{host}:{port}"


def build_server(settings: ServerSettings, model_provider: ModelHolder) -> tuple[grpc.Server, int]:
    """A configured, not yet started server and the port it bound (``settings.port`` 0 picks a free one).

    Registers the recommender (behind :class:`ExceptionToStatusInterceptor`), the standard health service
    (``""`` and ``recsvc.v1.Recommender`` follow ``model_provider.serving``) and server reflection.

    Raises
    ------
    RuntimeError
        The address cannot be bound (in use, bad host).
    """
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=settings.max_workers,
                                                    thread_name_prefix="recsvc-rpc"),
                         interceptors=[ExceptionToStatusInterceptor()])
    recsvc_pb2_grpc.add_RecommenderServicer_to_server(RecommenderServicer(model_provider), server)

    health_servicer = health.HealthServicer(
        experimental_non_blocking=True,
        experimental_thread_pool=futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="recsvc-health"))
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)

    def on_serving_change(serving: bool) -> None:
        status = health_pb2.HealthCheckResponse.SERVING if serving else health_pb2.HealthCheckResponse.NOT_SERVING
        for service in ("", SERVICE_NAME):
            health_servicer.set(service, status)

    model_provider.add_listener(on_serving_change)

    reflection.enable_server_reflection((SERVICE_NAME, health.SERVICE_NAME, reflection.SERVICE_NAME), server)

    address = _bind_address(settings.host, settings.port)
    try:
        port = server.add_insecure_port(address)
    except RuntimeError as exc:
        raise RuntimeError(f"cannot listen on {address}: {exc}") from exc
    if port == 0:
        raise RuntimeError(f"cannot listen on {address} (address in use or not available)")
    return server, port


def load_engine(settings: ServerSettings) -> RecommendationEngine:
    """Load the artifact set ``CURRENT`` names and build its engine.

    Raises
    ------
    ArtifactError
        Nothing published, or the set is corrupt (checksum mismatch, bad shapes); the message names the file.
    """
    root = Path(settings.artifact_root)
    try:
        artifacts = load_current(root, verify=settings.verify_checksums)
    except ArtifactError as exc:
        raise ArtifactError(f"refusing to serve from {root}: {exc}") from exc
    return RecommendationEngine(LoadedModel(artifacts), settings)


def serve(settings: Settings, stop: threading.Event | None = None) -> None:
    """Load the current model, serve until SIGTERM/SIGINT (or until ``stop`` is set), then drain and stop.

    On a signal the health service reports NOT_SERVING at once, then ``server.stop`` gives in-flight
    requests ``shutdown_grace_seconds`` to finish. Signal handlers are installed only when called from the
    main thread; an embedding caller (or a test) running ``serve`` in another thread passes ``stop``.

    Raises
    ------
    ArtifactError
        The artifact set cannot be served (the server does not start); the message names the file.
    RuntimeError
        The address cannot be bound.
    """
    server_settings = settings.server
    logger.info("server settings: %s", settings.describe())
    try:
        engine = load_engine(server_settings)
    except ArtifactError as exc:
        logger.error("%s", exc)
        raise
    holder = ModelHolder(engine)
    server, port = build_server(server_settings, holder)
    stop = stop or threading.Event()
    previous: dict[signal.Signals, object] = {}

    def on_signal(signum: int, frame: FrameType | None) -> None:
        logger.info("received %s; draining", signal.Signals(signum).name)
        stop.set()

    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGTERM, signal.SIGINT):
            previous[sig] = signal.signal(sig, on_signal)
    server.start()
    logger.info("listening on %s (model %s, %d items, %d customers)", _bind_address(server_settings.host, port),
                engine.model_version, engine.model.n_items, engine.model.n_customers)
    try:
        while not stop.wait(timeout=1.0):
            pass
    finally:
        holder.drain()  # health says NOT_SERVING before the listener closes, so balancers move on first
        server.stop(server_settings.shutdown_grace_seconds).wait()
        for sig, handler in previous.items():
            signal.signal(sig, handler)  # type: ignore[arg-type]  # whatever signal.signal returned before
        logger.info("stopped")
