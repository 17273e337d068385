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
import sys
import threading
import time
from concurrent import futures
from types import FrameType

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from recsvc.artifacts import ArtifactError, load_current
from recsvc.artifacts.store import store_for
from recsvc.config import ConfigError, ServerSettings, Settings
from recsvc.ranking import RecommendationEngine
from recsvc.server.admin import AdminServicer
from recsvc.server.admission import AdmissionInterceptor
from recsvc.server.events import EVENTS_SERVICE_NAME, EventsRuntime, start_events
from recsvc.server.feedback import FeedbackRuntime, start_feedback
from recsvc.server.holder import ModelHolder
from recsvc.server.interceptors import ExceptionToStatusInterceptor
from recsvc.server.lifecycle import ModelLifecycle
from recsvc.server.metrics import MetricsEndpoint, ObservabilityInterceptor, ServerMetrics
from recsvc.server.reflection import add_reflection
from recsvc.server.security import TokenAuthInterceptor, load_tokens, server_credentials, warn_if_tokens_in_clear
from recsvc.server.servicer import RecommenderServicer
from recsvc.server.versions import EngineFactory, build_engine
from recsvc.server.workers import UNCLEAN_STOP_EXIT, ListenError, notify_siblings, run_workers, worker_index
from recsvc.v1 import admin_pb2, admin_pb2_grpc, recsvc_pb2, recsvc_pb2_grpc

logger = logging.getLogger(__name__)

#: The fully qualified service name, as health checks and reflection know it.
SERVICE_NAME: str = recsvc_pb2.DESCRIPTOR.services_by_name["Recommender"].full_name
#: The operator API's service name (registered when a lifecycle is given to :func:`build_server`).
ADMIN_SERVICE_NAME: str = admin_pb2.DESCRIPTOR.services_by_name["Admin"].full_name
#: Threads of the server's own pool (Admin and reflection calls; ranking has its own, see admission).
CONTROL_THREADS = 4
#: Threads answering health checks (a probe must not wait behind another probe's read).
HEALTH_THREADS = 4
#: The GIL switch interval of a serving process (Python's default is 5 ms): admission decisions, refusals
#: and probes are short Python work that waits for the GIL behind ranking threads; a shorter interval
#: shortens that wait (``python -m benchmarks.admission``).
GIL_SWITCH_SECONDS = 0.001


def _bind_address(host: str, port: int) -> str:
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"  # a bare IPv6 address
    return f"{host}:{port}"


def build_server(settings: ServerSettings, holder: ModelHolder, *, lifecycle: ModelLifecycle | None = None,
                 metrics: ServerMetrics | None = None, admission: AdmissionInterceptor | None = None,
                 events: EventsRuntime | None = None, feedback: FeedbackRuntime | None = None
                 ) -> tuple[grpc.Server, int]:
    """A configured, not yet started server and the port it bound (``settings.port`` 0 picks a free one).

    Registers the recommender, the Admin service (when ``lifecycle`` is given), the standard health service
    (``""``, ``recsvc.v1.Recommender`` and ``recsvc.v1.Admin`` follow ``holder.serving``) and server
    reflection (v1 and v1alpha); listens with TLS/mTLS when the settings name certificate files, and checks
    tokens when they name a tokens file. Limits: ``max_concurrent_rpcs`` ranked at once, decided as each call
    arrives (RESOURCE_EXHAUSTED beyond, :mod:`recsvc.server.admission`), requests up to ``max_request_bytes``.
    Pass the ``admission`` you will hand to :func:`stop_server`.

    Raises
    ------
    ListenError
        The address cannot be bound; the message says why in one line (port in use, address not on this host).
    ConfigError
        TLS or token settings are inconsistent or name a file that cannot be read.
    """
    admission = admission or admission_for(settings)
    if admission.max_concurrent > settings.max_workers:
        logger.warning("max_concurrent_rpcs (%d) is above max_workers (%d): admitted calls may wait for a "
                       "ranking thread", settings.max_concurrent_rpcs, settings.max_workers)
    interceptors: list[grpc.ServerInterceptor] = []
    if metrics is not None or settings.log_json:
        interceptors.append(ObservabilityInterceptor(metrics, access_log=settings.log_json))
    if settings.tokens_file:
        interceptors.append(TokenAuthInterceptor(load_tokens(settings.tokens_file)))
        warn_if_tokens_in_clear(settings)
    if metrics is not None and admission.on_refused is None:
        # a refusal answered at the door skips the interceptors' wrappers; count it as they would have
        admission.on_refused = lambda method, code: metrics.observe(method.rsplit("/", 1)[-1], code, 0.0, "")
    interceptors += [admission, ExceptionToStatusInterceptor()]
    options = [
        # a second server on a taken port must fail, not share it by accident (grpc's default is to share);
        # the worker parent sets reuse_port for its children, which share the port on purpose
        ("grpc.so_reuseport", 1 if settings.reuse_port else 0),
        ("grpc.max_receive_message_length", settings.max_request_bytes),
        *_connection_age_options(settings),
    ]
    # The server's own pool runs Admin, Events and reflection; ranking and refusals run on the admission's
    # pools and health on threads of its own. No maximum_concurrent_rpcs: it counts probes too, and refused
    # them under load (issue 15); admission bounds the ranking work at the door instead.
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=max(CONTROL_THREADS, settings.max_workers),
                                                    thread_name_prefix="recsvc-rpc"),
                         interceptors=interceptors, options=options)
    recsvc_pb2_grpc.add_RecommenderServicer_to_server(
        RecommenderServicer(holder, activity=events.activity if events else None, feedback=feedback), server)
    if feedback is not None and events is not None:
        events.on_recorded = feedback.on_recorded
    services = [SERVICE_NAME]
    if events is not None and events.store is not None:  # recsvc.v1.Events (recsvc.server.events)
        events.register(server, holder)
        services.append(EVENTS_SERVICE_NAME)
    if lifecycle is not None:
        admin = AdminServicer(lifecycle, admission, worker_index=worker_index(), notify_siblings=notify_siblings,
                              serving=lambda: holder.serving,
                              events_status=events.status if events else None)
        admin_pb2_grpc.add_AdminServicer_to_server(admin, server)
        services.append(ADMIN_SERVICE_NAME)

    health_servicer = health.HealthServicer(
        experimental_non_blocking=True,
        experimental_thread_pool=futures.ThreadPoolExecutor(max_workers=HEALTH_THREADS,
                                                            thread_name_prefix="recsvc-health"))
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)

    def on_serving_change(serving: bool) -> None:
        status = health_pb2.HealthCheckResponse.SERVING if serving else health_pb2.HealthCheckResponse.NOT_SERVING
        for service in ("", *services):
            health_servicer.set(service, status)

    holder.add_listener(on_serving_change)

    add_reflection(server, (*services, health.SERVICE_NAME))

    address = _bind_address(settings.host, settings.port)
    credentials = server_credentials(settings)
    try:
        port = (server.add_secure_port(address, credentials) if credentials is not None
                else server.add_insecure_port(address))
    except RuntimeError:
        port = 0
    if port == 0:
        raise ListenError(settings.host, settings.port)
    return server, port


def _connection_age_options(settings: ServerSettings) -> list[tuple[str, int]]:
    """grpc's connection-age options: GOAWAY after ``max_connection_age_seconds``, then a grace to finish.

    Without them a client keeps its first connection for ever, so replicas added later (a scale-up, a
    rollout) get no traffic from it; the client reconnects on GOAWAY, through its own balancing.
    """
    age, grace = settings.max_connection_age_seconds, settings.max_connection_age_grace_seconds
    if age < 0 or grace < 0:
        raise ConfigError(f"server.max_connection_age_seconds ({age}) and server.max_connection_age_grace_seconds "
                          f"({grace}) must be >= 0 (age 0 = no limit)")
    if age == 0:
        return []
    return [("grpc.max_connection_age_ms", max(1, round(age * 1000))),
            ("grpc.max_connection_age_grace_ms", round(grace * 1000))]


def admission_for(settings: ServerSettings) -> AdmissionInterceptor:
    """The admission control the settings ask for (cap, ranking threads, waiting room without a cap)."""
    return AdmissionInterceptor(settings.max_concurrent_rpcs, threads=settings.max_workers,
                                max_waiting=settings.max_queued_rpcs)


def load_engine(settings: ServerSettings) -> RecommendationEngine:
    """Load the artifact set ``CURRENT`` names and build its engine.

    Raises
    ------
    ArtifactError
        Nothing published, or the set is corrupt (checksum mismatch, bad shapes); the message names the file.
    """
    root = store_for(settings)
    try:
        artifacts = load_current(root, verify=settings.verify_checksums, mmap=settings.mmap_artifacts)
    except ArtifactError as exc:
        raise ArtifactError(f"refusing to serve from {root.location}: {exc}") from exc
    return build_engine(artifacts, settings)


#: Once the ranking calls are done, grpc gets this long to finish what is on its way out before it cancels
#: the rest (health ``Watch`` streams, which never end on their own).
DRAIN_SETTLE_SECONDS = 0.05
#: After that, wait at most this long for grpc to release the server before giving up on it.
HARD_STOP_SECONDS = 1.0


def stop_server(server: grpc.Server, admission: AdmissionInterceptor, grace: float) -> bool:
    """Refuse new ranking calls, let those in flight finish within ``grace`` seconds, then stop grpc.

    The drain happens at the admission door, with grpc still running: a new ranking call is answered
    UNAVAILABLE (callers retry elsewhere). Stopping grpc first, as this did before, stops it asking for new
    calls: a call that arrived on an open connection before the client heard the server was going away then
    sat unanswered until the end and was cut CANCELLED (issue 15). Once no ranking call is in flight, grpc
    is stopped with a grace of ``DRAIN_SETTLE_SECONDS`` and the rest (health ``Watch`` streams) cancelled,
    so a watching client never holds the stop for the whole grace.

    Always returns within about ``grace + HARD_STOP_SECONDS``: grpc's own unbounded ``stop(None).wait()``
    never returned after one undecodable reflection frame (issue 15). Returns whether the drain was clean
    (every ranking call finished in time and grpc stopped); the caller exits either way.
    """
    admission.begin_drain()  # from here on a new ranking call is refused UNAVAILABLE at the door
    deadline = time.monotonic() + grace
    while admission.in_flight and time.monotonic() < deadline:
        time.sleep(0.01)
    cut = admission.in_flight
    if cut:
        logger.warning("shutdown grace of %.1f s is over: cutting %d ranking call(s) still running", grace, cut)
    # a short grace, not None: stop(None) blocks inside grpc until the server is released, which may be never;
    # the grace lets refusals already on their way out finish before grpc cancels what is left (Watch streams)
    released = server.stop(DRAIN_SETTLE_SECONDS).wait(DRAIN_SETTLE_SECONDS + HARD_STOP_SECONDS)
    if released:
        admission.close()
    else:
        logger.error("grpc did not release the server within %.1f s of cancelling its calls; stopping anyway",
                     HARD_STOP_SECONDS)
    return released and not cut


def serve(settings: Settings, stop: threading.Event | None = None,
          engine_factory: EngineFactory | None = None) -> int:
    """Load the current model, serve until SIGTERM/SIGINT (or until ``stop`` is set), then drain and stop.

    With ``settings.server.workers > 1`` (and not already a worker) this process becomes the worker parent
    instead (:func:`recsvc.server.workers.run_workers`). Otherwise: on a signal the health service reports
    NOT_SERVING at once, then ``server.stop`` gives in-flight requests ``shutdown_grace_seconds`` to finish.
    SIGHUP checks ``CURRENT`` for a new version now. Signal handlers are installed only when called from the
    main thread; an embedding caller (or a test) running ``serve`` in another thread passes ``stop``.
    ``engine_factory`` builds the engine of each loaded set (default
    :func:`recsvc.server.versions.build_engine`; tests pass slow or failing doubles).

    Returns the process exit code: 0 after a clean stop, ``UNCLEAN_STOP_EXIT`` (3) when the stop had to cut
    ranking calls at the end of the grace or grpc did not stop in time (:func:`stop_server`); the stop ends
    within about the grace either way.

    Raises
    ------
    ArtifactError
        The artifact set cannot be served (the server does not start); the message names the file.
    ListenError
        The address cannot be bound; the message says why in one line.
    """
    server_settings = settings.server
    if server_settings.workers > 1 and worker_index() < 0:
        return run_workers(settings, stop)
    logger.info("server settings: %s", settings.describe())
    sys.setswitchinterval(GIL_SWITCH_SECONDS)
    holder = ModelHolder()
    metrics = ServerMetrics(holder) if server_settings.metrics_port else None
    lifecycle = ModelLifecycle(server_settings, holder, engine_factory=engine_factory,
                               listener=metrics.record_reload if metrics is not None else None)
    try:
        engine = lifecycle.load_initial()
    except ArtifactError as exc:
        logger.error("%s", exc)
        raise
    admission = admission_for(server_settings)
    events = start_events(settings, engine.model)
    feedback = start_feedback(settings, events.store, events.overlay)
    if metrics is not None:
        events.register_metrics(metrics.registry)
        feedback.register_metrics(metrics.registry)
    server, port = build_server(server_settings, holder, lifecycle=lifecycle, metrics=metrics, admission=admission,
                                events=events, feedback=feedback)
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
    clean = False
    try:
        while not stop.wait(timeout=1.0):
            pass
    finally:
        holder.drain()  # health says NOT_SERVING before the listener closes, so balancers move on first
        lifecycle.stop()
        clean = stop_server(server, admission, server_settings.shutdown_grace_seconds)
        feedback.close()  # writes the queued answers while the store is still open
        events.close()
        if endpoint is not None:
            endpoint.close()
        for sig, saved in previous.items():
            signal.signal(sig, saved)  # type: ignore[arg-type]  # whatever signal.signal returned before
        logger.info("stopped" if clean else "stopped (the drain was not clean)")
    return 0 if clean else UNCLEAN_STOP_EXIT
