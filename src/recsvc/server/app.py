"""Server assembly: the model holder, the gRPC server (recsvc, admin, health, reflection) and ``serve``.

``serve(settings)`` loads the artifact set ``CURRENT`` names (refusing to start on a corrupt or missing set),
builds the engine, listens, keeps the model current (:mod:`recsvc.server.lifecycle`: poll, SIGHUP, Admin
API), and on SIGTERM/SIGINT reports NOT_SERVING before stopping with a grace period, so load balancers stop
sending new requests while in-flight ones finish. With ``workers > 1`` it starts that many such processes on
one port instead (:mod:`recsvc.server.workers`).

Interceptors, outermost first: observability (metrics, access log, request id) sees every outcome;
token authentication refuses unknown callers before they cost anything; admission caps concurrent ranking
and refuses expired calls; exception mapping turns errors into statuses.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
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
from recsvc.ranking import RecommendationEngine
from recsvc.server.admin import AdminServicer
from recsvc.server.admission import AdmissionInterceptor
from recsvc.server.events import EVENTS_SERVICE_NAME, EventsRuntime, start_events
from recsvc.server.interceptors import ExceptionToStatusInterceptor
from recsvc.server.lifecycle import EngineFactory, ModelLifecycle, build_engine
from recsvc.server.metrics import MetricsEndpoint, ObservabilityInterceptor, ServerMetrics
from recsvc.server.security import TokenAuthInterceptor, load_tokens, server_credentials, warn_if_tokens_in_clear
from recsvc.server.servicer import RecommenderServicer
from recsvc.server.workers import notify_siblings, run_workers, worker_index
from recsvc.v1 import admin_pb2, admin_pb2_grpc, recsvc_pb2, recsvc_pb2_grpc

logger = logging.getLogger(__name__)

#: The fully qualified service name, as health checks and reflection know it.
SERVICE_NAME: str = recsvc_pb2.DESCRIPTOR.services_by_name["Recommender"].full_name
#: The operator API's service name (registered when a lifecycle is given to :func:`build_server`).
ADMIN_SERVICE_NAME: str = admin_pb2.DESCRIPTOR.services_by_name["Admin"].full_name


class ModelHolder:
    """Holds the engine requests use, behind one reference that is swapped whole.

    Each request calls :meth:`current` once at its start and keeps that engine to the end, so replacing
    the engine (a hot reload, :mod:`recsvc.server.lifecycle`) never changes a model under a running request:
    build and check the new engine first, then :meth:`swap` — the old one stays alive while requests still
    hold it and is freed when the last of them finishes. Listeners hear
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


def build_server(settings: ServerSettings, model_provider: ModelHolder, *, lifecycle: ModelLifecycle | None = None,
                 metrics: ServerMetrics | None = None, admission: AdmissionInterceptor | None = None,
                 events: EventsRuntime | None = None) -> tuple[grpc.Server, int]:
    """A configured, not yet started server and the port it bound (``settings.port`` 0 picks a free one).

    Registers the recommender, the Admin service (when ``lifecycle`` is given), the standard health service
    (``""``, ``recsvc.v1.Recommender`` and ``recsvc.v1.Admin`` follow ``model_provider.serving``) and server
    reflection; listens with TLS/mTLS when the settings name certificate files, and checks tokens when they
    name a tokens file. Limits: ``max_concurrent_rpcs`` ranked at once (RESOURCE_EXHAUSTED beyond),
    ``max_workers + max_queued_rpcs`` calls accepted at all, requests up to ``max_request_bytes``.

    Raises
    ------
    RuntimeError
        The address cannot be bound (in use, bad host).
    ConfigError
        TLS or token settings are inconsistent or name a file that cannot be read.
    """
    admission = admission or AdmissionInterceptor(settings.max_concurrent_rpcs)
    if admission.max_concurrent >= settings.max_workers:
        logger.warning("max_concurrent_rpcs (%d) is not below max_workers (%d): health checks and refusals may "
                       "wait behind ranking work", settings.max_concurrent_rpcs, settings.max_workers)
    interceptors: list[grpc.ServerInterceptor] = []
    if metrics is not None or settings.log_json:
        interceptors.append(ObservabilityInterceptor(metrics, access_log=settings.log_json))
    if settings.tokens_file:
        interceptors.append(TokenAuthInterceptor(load_tokens(settings.tokens_file)))
        warn_if_tokens_in_clear(settings)
    interceptors += [admission, ExceptionToStatusInterceptor()]
    options = [
        # a second server on a taken port must fail, not share it by accident (grpc's default is to share);
        # the worker parent sets reuse_port for its children, which share the port on purpose
        ("grpc.so_reuseport", 1 if settings.reuse_port else 0),
        ("grpc.max_receive_message_length", settings.max_request_bytes),
    ]
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=settings.max_workers,
                                                    thread_name_prefix="recsvc-rpc"),
                         interceptors=interceptors, options=options,
                         maximum_concurrent_rpcs=settings.max_workers + max(0, settings.max_queued_rpcs))
    recsvc_pb2_grpc.add_RecommenderServicer_to_server(
        RecommenderServicer(model_provider, activity=events.activity if events else None), server)
    services = [SERVICE_NAME]
    if events is not None and events.store is not None:  # recsvc.v1.Events (recsvc.server.events)
        events.register(server, model_provider)
        services.append(EVENTS_SERVICE_NAME)
    if lifecycle is not None:
        admin = AdminServicer(lifecycle, admission, worker_index=worker_index(), notify_siblings=notify_siblings,
                              serving=lambda: model_provider.serving,
                              events_status=events.status if events else None)
        admin_pb2_grpc.add_AdminServicer_to_server(admin, server)
        services.append(ADMIN_SERVICE_NAME)

    health_servicer = health.HealthServicer(
        experimental_non_blocking=True,
        experimental_thread_pool=futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="recsvc-health"))
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)

    def on_serving_change(serving: bool) -> None:
        status = health_pb2.HealthCheckResponse.SERVING if serving else health_pb2.HealthCheckResponse.NOT_SERVING
        for service in ("", *services):
            health_servicer.set(service, status)

    model_provider.add_listener(on_serving_change)

    reflection.enable_server_reflection((*services, health.SERVICE_NAME, reflection.SERVICE_NAME), server)

    address = _bind_address(settings.host, settings.port)
    credentials = server_credentials(settings)
    try:
        port = (server.add_secure_port(address, credentials) if credentials is not None
                else server.add_insecure_port(address))
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
        artifacts = load_current(root, verify=settings.verify_checksums, mmap=settings.mmap_artifacts)
    except ArtifactError as exc:
        raise ArtifactError(f"refusing to serve from {root}: {exc}") from exc
    return build_engine(artifacts, settings)


#: After the last ranking call ends, wait this long before cutting the remaining calls (see stop_server).
DRAIN_SETTLE_SECONDS = 0.1


def stop_server(server: grpc.Server, admission: AdmissionInterceptor, grace: float) -> None:
    """Refuse new calls, let in-flight ranking finish within ``grace`` seconds, then end what is left.

    What is left is mostly health ``Watch`` streams: they never end on their own, so a plain
    ``server.stop(grace)`` would take the whole grace period whenever a client watches health. Once no
    ranking call has been in flight for ``DRAIN_SETTLE_SECONDS`` (long enough for a call grpc accepted
    before the stop to reach a thread and be counted), the rest is cancelled. Blocks until stopped.
    """
    stopped = server.stop(grace)  # from here on new calls get UNAVAILABLE
    deadline = time.monotonic() + grace
    quiet_since: float | None = None
    while not stopped.is_set() and time.monotonic() < deadline:
        if admission.in_flight:
            quiet_since = None
        elif quiet_since is None:
            quiet_since = time.monotonic()
        elif time.monotonic() - quiet_since >= DRAIN_SETTLE_SECONDS:
            break
        stopped.wait(0.02)
    server.stop(None).wait()


def serve(settings: Settings, stop: threading.Event | None = None,
          engine_factory: EngineFactory | None = None) -> int:
    """Load the current model, serve until SIGTERM/SIGINT (or until ``stop`` is set), then drain and stop.

    With ``settings.server.workers > 1`` (and not already a worker) this process becomes the worker parent
    instead (:func:`recsvc.server.workers.run_workers`). Otherwise: on a signal the health service reports
    NOT_SERVING at once, then ``server.stop`` gives in-flight requests ``shutdown_grace_seconds`` to finish.
    SIGHUP checks ``CURRENT`` for a new version now. Signal handlers are installed only when called from the
    main thread; an embedding caller (or a test) running ``serve`` in another thread passes ``stop``.
    ``engine_factory`` builds the engine of each loaded set (default
    :func:`recsvc.server.lifecycle.build_engine`; tests pass slow or failing doubles).

    Returns the process exit code (0 after a clean stop).

    Raises
    ------
    ArtifactError
        The artifact set cannot be served (the server does not start); the message names the file.
    RuntimeError
        The address cannot be bound.
    """
    server_settings = settings.server
    if server_settings.workers > 1 and worker_index() < 0:
        return run_workers(settings, stop)
    logger.info("server settings: %s", settings.describe())
    holder = ModelHolder()
    metrics = ServerMetrics(holder) if server_settings.metrics_port else None
    lifecycle = ModelLifecycle(server_settings, holder, engine_factory=engine_factory,
                               listener=metrics.record_reload if metrics is not None else None)
    try:
        engine = lifecycle.load_initial()
    except ArtifactError as exc:
        logger.error("%s", exc)
        raise
    admission = AdmissionInterceptor(server_settings.max_concurrent_rpcs)
    events = start_events(settings, engine.model)
    if metrics is not None:
        events.register_metrics(metrics.registry)
    server, port = build_server(server_settings, holder, lifecycle=lifecycle, metrics=metrics, admission=admission,
                                events=events)
    endpoint: MetricsEndpoint | None = None
    if metrics is not None:
        endpoint = metrics.serve_http(server_settings.host, server_settings.metrics_port)
    stop = stop or threading.Event()
    previous: dict[signal.Signals, object] = {}

    def on_signal(signum: int, frame: FrameType | None) -> None:
        logger.info("received %s; draining", signal.Signals(signum).name)
        stop.set()

    def on_hup(signum: int, frame: FrameType | None) -> None:
        logger.info("received SIGHUP; checking %s for a new version", server_settings.artifact_root)
        lifecycle.request_check()

    if threading.current_thread() is threading.main_thread():
        for sig, handler in ((signal.SIGTERM, on_signal), (signal.SIGINT, on_signal), (signal.SIGHUP, on_hup)):
            previous[sig] = signal.signal(sig, handler)
    server.start()
    lifecycle.start()
    logger.info("listening on %s (model %s, %d items, %d customers%s)",
                _bind_address(server_settings.host, port), engine.model_version, engine.model.n_items,
                engine.model.n_customers, f", worker {worker_index()}" if worker_index() >= 0 else "")
    try:
        while not stop.wait(timeout=1.0):
            pass
    finally:
        holder.drain()  # health says NOT_SERVING before the listener closes, so balancers move on first
        lifecycle.stop()
        stop_server(server, admission, server_settings.shutdown_grace_seconds)
        events.close()
        if endpoint is not None:
            endpoint.close()
        for sig, saved in previous.items():
            signal.signal(sig, saved)  # type: ignore[arg-type]  # whatever signal.signal returned before
        logger.info("stopped")
    return 0
