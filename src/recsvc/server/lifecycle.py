"""The model lifecycle: notice a newly published artifact set, load it beside the serving one, check it, swap.

The nightly job publishes while traffic flows (see :mod:`recsvc.artifacts`: a version folder appears whole,
then ``CURRENT`` is repointed with one rename). A server process notices the new version in three ways:

* a watcher thread reads ``CURRENT`` every ``reload_poll_seconds`` (one small file read, or one GET on object
  storage; 0 turns it off),
* SIGHUP (``serve`` wires it to :meth:`ModelLifecycle.request_check`),
* the Admin API (``ReloadModel``, ``RollbackModel``), which runs :meth:`ModelLifecycle.reload` and answers
  with the outcome.

Whatever the trigger, one path loads the new version (:mod:`recsvc.server.versions`) from the root's
:class:`~recsvc.artifacts.ArtifactStore` (on object storage: downloaded to ``server.artifact_cache_dir`` and
checked against the manifest's sha256 first, the cache pruned to ``artifact_cache_keep`` versions):
:func:`load_artifact_set` (sha256 of every file, dtypes, shapes, id order — refuses a corrupt or half-written
set), a new :class:`~recsvc.ranking.RecommendationEngine`, and a few warm-up queries through it (a known customer, an
unknown one, a bundle, similar items) that must answer without error and name the new version. Only then does
:meth:`~recsvc.server.holder.ModelHolder.swap` install it, so in-flight requests finish on the engine they took
at their start and no request ever sees a half-loaded model.

The load — checksum verification included — runs on the watcher (or admin) thread while request threads go
on serving the old model: hashing releases the GIL, so verifying a ~500 MB set costs serving little, and
serving never waits for it. A set that fails is logged, remembered with the state of its manifest (so the
poll does not reload it every few seconds) and skipped until its manifest changes or an operator forces a
reload; the serving model stays. Both models are in memory during a load: budget twice the model's size.

Rolling back is repointing ``CURRENT`` at an earlier version (:func:`rollback_current`, ``recsvc rollback``);
running servers then pick it up like any new version. ``CURRENT`` stays the one source of truth, so a poll
never "undoes" a rollback. A model's stock comes with it (the set carries its training-time stock, and the
engine's :class:`~recsvc.server.stock.ModelStock` only takes newer snapshots of the same catalog), so a swap or
a rollback changes model and stock in one step.

This module is transport-free (no grpc): the Admin servicer and ``serve`` call it.
"""

from __future__ import annotations

import enum
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from recsvc.artifacts import ArtifactError, ArtifactStore
from recsvc.artifacts.store import store_for
from recsvc.config import ServerSettings
from recsvc.errors import NotFound
from recsvc.ranking import RecommendationEngine
from recsvc.server.holder import ModelHolder
from recsvc.server.versions import EngineFactory, build_engine, load_version, manifest_signature, previous_version

logger = logging.getLogger(__name__)



class Outcome(enum.Enum):
    """What a reload did; values mirror ``recsvc.v1.ReloadOutcome`` (``RELOAD_OUTCOME_<name>``)."""

    SWAPPED = 1    # a new version passed every check and now serves
    UNCHANGED = 2  # CURRENT names the version already serving
    REJECTED = 3   # the version failed a check; the serving model stays
    SKIPPED = 4    # the version failed before and its manifest has not changed since


@dataclass(frozen=True)
class ReloadResult:
    """The outcome of one check of ``CURRENT`` (or of one rollback); times in seconds."""

    outcome: Outcome
    version: str
    serving_version: str
    previous_version: str
    error: str = ""
    load_seconds: float = 0.0
    swap_seconds: float = 0.0


@dataclass(frozen=True)
class FailedVersion:
    """A version that failed validation, remembered so the poll does not retry it every few seconds.

    ``signature`` is the store's token of the manifest (:meth:`ArtifactStore.manifest_signature`: inode, size
    and mtime on disk, ETag and time on object storage), or ``None`` when there was none: when it changes (a
    half-copied folder got its manifest, the trainer republished) the version is tried again.
    """

    version: str
    error: str
    failed_at: str
    signature: str | None


@dataclass(frozen=True)
class LifecycleStatus:
    """A snapshot for the Admin API and logs."""

    serving_version: str
    loaded_at: str
    created_at: str
    current_version: str
    available_versions: tuple[str, ...]
    failed_versions: tuple[FailedVersion, ...]
    reloads_succeeded: int
    reloads_failed: int
    last_reload_at: str
    reload_poll_seconds: float


def _now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


class ModelLifecycle:
    """Keeps a process on the version ``CURRENT`` names, never without a working model.

    Parameters
    ----------
    settings
        ``artifact_root``, ``reload_poll_seconds``, ``verify_checksums``, ``mmap_artifacts``.
    holder
        Where engines are installed; requests read it, the lifecycle only swaps.
    engine_factory
        Builds the engine of a loaded set (default :func:`build_engine`); tests pass doubles.
    listener
        Called with every :class:`ReloadResult` that loaded something (SWAPPED or REJECTED), e.g. metrics.

    Notes
    -----
    Loads are serialised by one lock: a poll, a SIGHUP and an admin call arriving together load a version
    once; the later callers find it serving (UNCHANGED). A second, short lock guards the counters and the
    failed versions, so :meth:`status` answers while a load runs. No method is called on request threads.
    """

    def __init__(self, settings: ServerSettings, holder: ModelHolder, engine_factory: EngineFactory | None = None,
                 listener: Callable[[ReloadResult], None] | None = None) -> None:
        self._settings = settings
        self._store = store_for(settings)
        self._root = self._store.location
        self._holder = holder
        self._factory = engine_factory or (lambda a: build_engine(a, settings))
        self._listener = listener
        self._lock = threading.Lock()        # one load at a time
        self._state_lock = threading.Lock()  # counters and failed versions, held for microseconds
        self._failed: dict[str, FailedVersion] = {}
        self._succeeded = 0
        self._failures = 0
        self._last_reload_at = ""
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def root(self) -> str:
        """The artifact root as configured (a folder or a URL)."""
        return self._root

    @property
    def store(self) -> ArtifactStore:
        return self._store

    # ------------------------------------------------------------------------------------------- loading

    def load_initial(self) -> RecommendationEngine:
        """Load the version ``CURRENT`` names and install it; the server does not start without it.

        Raises
        ------
        ArtifactError
            Nothing published or the set is unusable; the message starts "refusing to serve from <root>".
        """
        with self._lock:
            try:
                version = self._store.current()
                if version is None:
                    raise ArtifactError(f"{self._root}: nothing published yet (no CURRENT file); "
                                        "run `recsvc train` first")
                engine = load_version(self._store, version, self._settings, self._factory)
            except (ArtifactError, OSError) as exc:
                raise ArtifactError(f"refusing to serve from {self._root}: {exc}") from exc
            self._holder.swap(engine)
            with self._state_lock:
                self._last_reload_at = _now_iso()
            return engine

    def reload(self, force: bool = False) -> ReloadResult:
        """Bring the process to the version ``CURRENT`` names now (poll, SIGHUP and ``ReloadModel`` use it).

        ``force`` retries a version remembered as failed. Never raises for a bad set: the result says
        REJECTED with the reason, and the serving model stays.
        """
        with self._lock:
            target = self._store.current()
            serving = self._serving_version()
            if target is None:
                return ReloadResult(Outcome.REJECTED, "", serving, serving,
                                    error=f"{self._root}: no CURRENT file; keeping {serving or 'nothing'}")
            if target == serving:
                return ReloadResult(Outcome.UNCHANGED, target, serving, serving)
            with self._state_lock:
                failed = self._failed.get(target)
            if failed is not None and not force and failed.signature == manifest_signature(self._store, target):
                return ReloadResult(Outcome.SKIPPED, target, serving, serving, error=failed.error)
            return self._load_and_swap(target, serving)

    def rollback(self, to: str | None = None) -> ReloadResult:
        """Repoint ``CURRENT`` at ``to`` (default: the version before it) and swap to it (``RollbackModel``).

        The target is loaded, verified and warmed up before ``CURRENT`` changes, so a bad target changes
        nothing. A target that failed before is tried again (an operator asked for it explicitly).

        Raises
        ------
        NotFound
            No such version or nothing older to roll back to (the caller's mistake, not a bad set).
        """
        with self._lock:
            try:
                target = to or previous_version(self._store)
            except ArtifactError as exc:
                raise NotFound(str(exc)) from exc
            if not self._store.has_version(target):
                raise NotFound(f"to_version: no published version {target!r} "
                               f"(kept: {', '.join(self._store.versions()) or 'none'})")
            serving = self._serving_version()
            if target == serving:  # e.g. CURRENT names a bad version this process refused: just repoint it
                self._store.set_current(target)
                return ReloadResult(Outcome.UNCHANGED, target, serving, serving)
            result = self._load_and_swap(target, serving, before_swap=lambda: self._store.set_current(target))
            if result.outcome is Outcome.SWAPPED:
                logger.info("rolled back to %s (CURRENT repointed)", target)
            return result

    def _serving_version(self) -> str:
        try:
            return self._holder.current().model_version
        except Exception:  # nothing loaded yet (ModelUnavailable)
            return ""

    def _load_and_swap(self, target: str, serving: str, before_swap: Callable[[], None] | None = None
                       ) -> ReloadResult:
        """Load ``target`` beside the serving model and swap on success; caller holds the lock."""
        logger.info("loading version %s beside %s", target, serving or "nothing")
        start = time.perf_counter()
        try:
            engine = load_version(self._store, target, self._settings, self._factory)
            if before_swap is not None:
                before_swap()
        except Exception as exc:  # anything a bad set can raise (KeyError in a manifest, MemoryError ...)
            # keep serving the old model; remember the failure so the poll does not retry it every tick
            error = str(exc) if isinstance(exc, ArtifactError) else f"{type(exc).__name__}: {exc}"
            with self._state_lock:
                self._failed[target] = FailedVersion(target, error, _now_iso(),
                                                     manifest_signature(self._store, target))
                self._failures += 1
            logger.error("version %s refused, still serving %s: %s", target, serving or "nothing", error)
            result = ReloadResult(Outcome.REJECTED, target, serving, serving, error=error,
                                  load_seconds=time.perf_counter() - start)
            self._notify(result)
            return result
        load_seconds = time.perf_counter() - start
        # the new engine is complete and checked before the old one is dropped, so one is always available
        swap_start = time.perf_counter()
        self._holder.swap(engine)
        swap_seconds = time.perf_counter() - swap_start
        with self._state_lock:
            self._failed.pop(target, None)
            self._succeeded += 1
            self._last_reload_at = _now_iso()
        logger.info("version %s serving (loaded, verified and warmed up in %.2f s; swap %.1f µs)",
                    target, load_seconds, swap_seconds * 1e6)
        result = ReloadResult(Outcome.SWAPPED, target, target, serving, load_seconds=load_seconds,
                              swap_seconds=swap_seconds)
        self._notify(result)
        return result

    def _notify(self, result: ReloadResult) -> None:
        if self._listener is not None:
            try:
                self._listener(result)
            except Exception:  # a metrics hiccup must not undo a reload
                logger.exception("reload listener failed")

    # ------------------------------------------------------------------------------------------- watching

    def request_check(self) -> None:
        """Ask the watcher thread to check ``CURRENT`` now (safe to call from a signal handler)."""
        self._wake.set()

    def start(self) -> None:
        """Start the watcher thread: it checks every ``reload_poll_seconds`` (if > 0) and on request."""
        if self._thread is not None:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._watch, name="recsvc-model-watcher", daemon=True)
        self._thread.start()

    def stop(self, timeout: float | None = 5.0) -> None:
        """Stop the watcher; a load in progress finishes first (bounded by ``timeout``)."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def _watch(self) -> None:
        poll = self._settings.reload_poll_seconds
        while not self._stop.is_set():
            self._wake.wait(timeout=poll if poll > 0 else None)
            if self._stop.is_set():
                return
            self._wake.clear()
            try:
                result = self.reload()
            except Exception:  # the watcher must survive anything (an unreadable CURRENT, a full disk)
                logger.exception("checking %s for a new version failed", self._root)
                continue
            if result.outcome is Outcome.SKIPPED:
                logger.debug("version %s failed before; not retried (%s)", result.version, result.error)

    # ------------------------------------------------------------------------------------------- status

    def status(self) -> LifecycleStatus:
        """What this process serves and what it has seen; cheap (reads ``CURRENT`` and lists versions)."""
        try:
            model = self._holder.current().model
            serving, loaded_at, created_at = model.version, model.loaded_at, model.created_at
        except Exception:
            serving = loaded_at = created_at = ""
        try:
            current = self._store.current() or ""
            available = tuple(self._store.versions())
        except (OSError, ArtifactError):
            current, available = "", ()
        with self._state_lock:  # not the load lock: status answers while a load runs
            return LifecycleStatus(
                serving_version=serving, loaded_at=loaded_at, created_at=created_at, current_version=current,
                available_versions=available, failed_versions=tuple(self._failed.values()),
                reloads_succeeded=self._succeeded, reloads_failed=self._failures,
                last_reload_at=self._last_reload_at, reload_poll_seconds=self._settings.reload_poll_seconds)
