"""The one interface every event store implements, and the one place that picks the backend from settings.

A store keeps validated events and identity links, applies each ``event_id`` once (dedupe and append are one
atomic step, so two replicas racing on the same id apply it once between them), and serves them back as a
*feed*: everything appended after an opaque cursor, in append order, which every worker and replica follows
to build its overlay (:mod:`recsvc.events.overlay`). ``append`` returns only after the events are committed:
an acknowledged event survives a SIGKILL of the server.

Backends: :class:`~recsvc.events.sqlite_store.SqliteEventStore` (embedded, the default) and
:class:`~recsvc.events.redis_store.RedisEventStore`. Both pass the same contract test (tests/test_events.py,
which finds the implementations by itself).
"""

from __future__ import annotations

import abc
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from recsvc.config import ConfigError, EventsSettings
from recsvc.errors import RecsvcError, StatusCode
from recsvc.events.validation import EventRecord
from recsvc.feedback.served import ServedRecommendation

BACKENDS = ("sqlite", "redis", "off")
#: File name of the embedded store inside the artifact root when ``events.sqlite_path`` is empty.
DEFAULT_SQLITE_NAME = "events.sqlite"


class StoreUnavailable(RecsvcError):
    """The event store cannot be reached now; the caller should retry (recording is idempotent)."""

    code = StatusCode.UNAVAILABLE


@dataclass(frozen=True)
class LiveLink:
    """An identity link as stored: ``alias_id`` now resolves to ``customer_id``."""

    alias_id: str
    customer_id: str


@dataclass(frozen=True)
class FeedBatch:
    """What was appended after a cursor: events and links in append order, and the cursor to read on from."""

    events: tuple[EventRecord, ...]
    links: tuple[LiveLink, ...]
    cursor: str


class EventStore(abc.ABC):
    """Where live events and links live (see the module docstring). Methods raise :class:`StoreUnavailable`
    when the backing service cannot be reached; every other failure is a bug."""

    #: The backend's name in settings, status and metrics.
    backend: ClassVar[str]

    @abc.abstractmethod
    def append(self, events: Sequence[EventRecord]) -> list[bool]:
        """Commit the events whose ``event_id`` is new; per event, True when new and False when a duplicate
        (of an earlier call or of an earlier event in ``events``). Returns after the commit."""

    @abc.abstractmethod
    def link(self, link: LiveLink) -> bool:
        """Record ``link`` unless its alias already points at another customer (then False, nothing changes).
        Repeating an existing link is True."""

    @abc.abstractmethod
    def read_feed(self, cursor: str = "", limit: int = 10_000) -> FeedBatch:
        """Up to ``limit`` events (and any links) appended after ``cursor`` (``""``: from the start)."""

    @abc.abstractmethod
    def recent(self, customer_id: str, limit: int) -> list[EventRecord]:
        """The events last recorded for this customer id (exactly this id, no alias resolution), the last
        recorded first: what a late event changes shows at once."""

    @abc.abstractmethod
    def export(self, before_ms: int) -> Iterator[EventRecord]:
        """Every stored event whose timestamp is before ``before_ms``, for the nightly trainer."""

    @abc.abstractmethod
    def purge(self, before_ms: int) -> int:
        """Drop events whose timestamp is before ``before_ms`` (retention); returns how many went."""

    @abc.abstractmethod
    def count(self) -> int:
        """Events stored now."""

    @abc.abstractmethod
    def log_served(self, served: Sequence[ServedRecommendation]) -> None:
        """Keep these answers (the served-recommendation log, issue 18); a repeated ``recommendation_id`` is
        kept once. Called from the log's background thread in batches, never on a request thread."""

    @abc.abstractmethod
    def served(self, since_ms: int) -> Iterator[ServedRecommendation]:
        """Every logged answer served at or after ``since_ms``, oldest first (the online report reads them)."""

    @abc.abstractmethod
    def served_by_id(self, ids: Sequence[str]) -> dict[str, ServedRecommendation]:
        """The logged answers of these ids (ids not logged, or past retention, are missing from the result)."""

    @abc.abstractmethod
    def ping(self) -> None:
        """Return when the store answers; raise :class:`StoreUnavailable` when it does not."""

    def close(self) -> None:  # noqa: B027  (optional for backends holding nothing)
        """Release connections; the store is unusable afterwards."""


def sqlite_path(settings: EventsSettings, artifact_root: str | Path) -> Path:
    """The embedded store's file: ``events.sqlite_path``, else ``events.sqlite`` in the artifact root.

    Raises :class:`ConfigError` for an artifact root on object storage without ``events.sqlite_path``: SQLite
    needs a local file (set one, or use ``events.backend = "redis"``).
    """
    if settings.sqlite_path:
        return Path(settings.sqlite_path)
    if "://" in str(artifact_root):
        raise ConfigError(f"events.sqlite_path: the artifact root {artifact_root} is a URL and SQLite needs a local "
                          "file; set events.sqlite_path, or events.backend = \"redis\" (or \"off\")")
    return Path(artifact_root) / DEFAULT_SQLITE_NAME


def open_store(settings: EventsSettings, artifact_root: str | Path) -> EventStore | None:
    """The configured store (``None`` when ``events.backend`` is ``off``).

    Raises
    ------
    ConfigError
        Unknown backend, or a setting out of range.
    """
    if settings.backend not in BACKENDS:
        raise ConfigError(f"events.backend: expected one of {', '.join(BACKENDS)}, got {settings.backend!r}")
    if settings.recent_per_customer < 1 or settings.retention_days < 1 or settings.max_per_call < 1:
        raise ConfigError("events.recent_per_customer, events.retention_days and events.max_per_call must be >= 1")
    if settings.backend == "off":
        return None
    if settings.backend == "redis":
        try:
            from recsvc.events.redis_store import RedisEventStore  # the redis client is needed only here
        except ImportError as exc:
            raise ConfigError("events.backend = redis needs the redis client: pip install 'recsvc[redis]'") from exc

        return RedisEventStore(settings.redis_url, prefix=settings.redis_prefix,
                               recent_per_customer=settings.recent_per_customer,
                               retention_days=settings.retention_days, timeout_seconds=settings.redis_timeout_seconds)
    from recsvc.events.sqlite_store import SqliteEventStore

    return SqliteEventStore(sqlite_path(settings, artifact_root))
