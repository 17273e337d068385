"""The ``recsvc.v1.Admin`` servicer: converts messages to :class:`~recsvc.server.lifecycle.ModelLifecycle`
calls and back, nothing else.

Kept apart from the Recommender servicer so that token authentication can require the admin role for it
alone (:mod:`recsvc.server.security`). Errors raised by the lifecycle (NotFound for an unknown rollback
target) become statuses in :mod:`recsvc.server.interceptors`, like every recsvc error.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from collections.abc import Callable
from datetime import datetime

import grpc

from recsvc.events.overlay import OverlayStatus
from recsvc.server.admission import AdmissionInterceptor
from recsvc.server.lifecycle import ModelLifecycle, Outcome, ReloadResult
from recsvc.v1 import admin_pb2, admin_pb2_grpc

logger = logging.getLogger(__name__)


def reload_response(result: ReloadResult) -> admin_pb2.ReloadModelResponse:
    """A lifecycle result as its message (outcome values are shared by name)."""
    return admin_pb2.ReloadModelResponse(
        outcome=f"RELOAD_OUTCOME_{result.outcome.name}",  # an enum accepts its value name
        version=result.version, serving_version=result.serving_version,
        previous_version=result.previous_version, error=result.error, load_seconds=result.load_seconds)


class AdminServicer(admin_pb2_grpc.AdminServicer):
    """``recsvc.v1.Admin`` over one process's lifecycle.

    Parameters
    ----------
    lifecycle
        Loads, checks and swaps versions.
    admission
        Reports calls in flight and the cap (``GetStatus``).
    worker_index
        This process's index among the workers, ``-1`` when it runs alone.
    notify_siblings
        Called after a successful reload or rollback, so sibling workers reload too (the worker parent
        forwards SIGHUP to all of them); ``None`` when the process runs alone.
    serving
        Whether the process reports SERVING (a model is loaded and it is not draining).
    events_status
        The event backend and overlay state (:mod:`recsvc.server.events`); ``None`` reports ``off``.
    """

    def __init__(self, lifecycle: ModelLifecycle, admission: AdmissionInterceptor | None = None,
                 worker_index: int = -1, notify_siblings: Callable[[], object] | None = None,
                 serving: Callable[[], bool] | None = None,
                 events_status: Callable[[], OverlayStatus] | None = None) -> None:
        self._lifecycle = lifecycle
        self._admission = admission
        self._worker_index = worker_index
        self._notify_siblings = notify_siblings
        self._serving = serving or (lambda: True)
        self._events_status = events_status

    def _after(self, result: ReloadResult) -> ReloadResult:
        if result.outcome is Outcome.SWAPPED and self._notify_siblings is not None:
            self._notify_siblings()
        return result

    def ReloadModel(self, request: admin_pb2.ReloadModelRequest, context: grpc.ServicerContext
                    ) -> admin_pb2.ReloadModelResponse:
        return reload_response(self._after(self._lifecycle.reload(force=request.force)))

    def RollbackModel(self, request: admin_pb2.RollbackModelRequest, context: grpc.ServicerContext
                      ) -> admin_pb2.ReloadModelResponse:
        return reload_response(self._after(self._lifecycle.rollback(request.to_version or None)))

    def GetStatus(self, request: admin_pb2.GetStatusRequest, context: grpc.ServicerContext
                  ) -> admin_pb2.ServerStatus:
        status = self._lifecycle.status()
        live = (self._events_status() if self._events_status is not None
                else OverlayStatus(backend="off", state="off", events=0, lag_seconds=0.0, error=""))
        age = 0.0
        if status.created_at:
            with contextlib.suppress(ValueError):  # not ISO 8601: age unknown (0), not wrong
                age = max(0.0, time.time() - datetime.fromisoformat(status.created_at).timestamp())
        return admin_pb2.ServerStatus(
            serving_version=status.serving_version, loaded_at=status.loaded_at, created_at=status.created_at,
            model_age_seconds=age, serving=self._serving(), current_version=status.current_version,
            available_versions=list(status.available_versions),
            failed_versions=[admin_pb2.FailedVersion(version=f.version, error=f.error, failed_at=f.failed_at)
                             for f in status.failed_versions],
            reloads_succeeded=status.reloads_succeeded, reloads_failed=status.reloads_failed,
            last_reload_at=status.last_reload_at, reload_poll_seconds=status.reload_poll_seconds,
            pid=os.getpid(), worker_index=self._worker_index,
            in_flight_rpcs=self._admission.in_flight if self._admission else 0,
            max_concurrent_rpcs=self._admission.max_concurrent if self._admission else 0,
            artifact_root=str(self._lifecycle.root), event_backend=live.backend, overlay_state=live.state,
            overlay_events=live.events, overlay_lag_seconds=live.lag_seconds, overlay_error=live.error)
