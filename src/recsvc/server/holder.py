"""The model holder: the one reference to the engine that requests use, swapped whole on a reload.

Every part of the server that reads or installs the serving engine takes a :class:`ModelHolder`: the
servicer (one :meth:`~ModelHolder.current` per request), the metrics (model gauges at scrape time), the
lifecycle (:meth:`~ModelHolder.swap` after a new version passed its checks) and the health service
(listeners). One name for one thing (issue 12): it used to be called a provider, a slot and a source too.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from recsvc.errors import ModelUnavailable
from recsvc.ranking import RecommendationEngine

logger = logging.getLogger(__name__)


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
