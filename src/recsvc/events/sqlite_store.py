"""The embedded event store: one SQLite file in WAL mode, shared by every server process on the machine.

WAL lets the workers read the feed while one of them writes; ``synchronous=FULL`` makes each commit reach
the disk before ``append`` returns, so an acknowledged event survives a SIGKILL (and a power cut). Dedupe and
append are one statement per event (``INSERT OR IGNORE`` on the unique ``event_id``) inside one
``BEGIN IMMEDIATE`` transaction per call: two processes racing on one id apply it once.

Each thread gets its own connection (sqlite3 connections must not be shared by threads mid-transaction);
``busy_timeout`` makes a writer wait for another process's commit instead of failing.
"""

from __future__ import annotations

import logging
import math
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path

from recsvc.events.store import EventStore, FeedBatch, LiveLink, StoreUnavailable
from recsvc.events.validation import EventRecord
from recsvc.feedback.served import ServedRecommendation

logger = logging.getLogger(__name__)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    event_id TEXT NOT NULL UNIQUE,
    customer_id TEXT NOT NULL, item_id TEXT NOT NULL, event TEXT NOT NULL, channel TEXT NOT NULL,
    store_id TEXT NOT NULL, order_id TEXT NOT NULL, quantity REAL NOT NULL, price REAL,
    timestamp_ms INTEGER NOT NULL, recorded_ms INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS events_by_customer ON events (customer_id, timestamp_ms);
CREATE INDEX IF NOT EXISTS events_by_time ON events (timestamp_ms);
CREATE TABLE IF NOT EXISTS links (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    alias_id TEXT NOT NULL UNIQUE, customer_id TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS served (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    recommendation_id TEXT NOT NULL UNIQUE, timestamp_ms INTEGER NOT NULL, payload TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS served_by_time ON served (timestamp_ms);
"""
#: Columns added after the first release (issue 18), added to an older file when it is opened.
_ADDED_COLUMNS = (("recommendation_id", "TEXT NOT NULL DEFAULT ''"), ("position", "INTEGER NOT NULL DEFAULT 0"))
_COLUMNS = ("event_id", "customer_id", "item_id", "event", "channel", "store_id", "order_id", "quantity", "price",
            "timestamp_ms", "recorded_ms", "recommendation_id", "position")
_SELECT = f"SELECT seq, {', '.join(_COLUMNS)} FROM events"
_INSERT = (f"INSERT OR IGNORE INTO events ({', '.join(_COLUMNS)}) "
           f"VALUES ({', '.join('?' for _ in _COLUMNS)})")


def _record(row: tuple) -> EventRecord:
    # positional, in _COLUMNS order: the overlay decodes every event of the feed, so this is its hot path
    _, event_id, customer, item, event, channel, store, order, quantity, price, timestamp, recorded, rid, pos = row
    return EventRecord(event_id, customer, item, event, channel, store, order, float(quantity),
                       math.nan if price is None else float(price), timestamp, recorded, rid, pos)


def _parse_cursor(cursor: str) -> tuple[int, int]:
    if not cursor:
        return 0, 0
    events, _, links = cursor.partition(":")
    return int(events), int(links)


class SqliteEventStore(EventStore):
    """Events and links in the SQLite file ``path`` (created with its folder when missing)."""

    backend = "sqlite"

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._local = threading.local()
        self._all: list[sqlite3.Connection] = []
        self._lock = threading.Lock()
        try:
            self._db().executescript(_SCHEMA)  # idempotent; executescript commits on its own
            have = {row[1] for row in self._db().execute("PRAGMA table_info(events)")}
            for name, kind in _ADDED_COLUMNS:
                if name not in have:
                    try:
                        self._db().execute(f"ALTER TABLE events ADD COLUMN {name} {kind}")
                    except sqlite3.OperationalError as exc:  # another process added it first
                        if "duplicate column" not in str(exc):
                            raise
        except sqlite3.OperationalError as exc:
            raise StoreUnavailable(f"event store {self.path} cannot be set up: {exc}") from exc

    def _db(self) -> sqlite3.Connection:
        db: sqlite3.Connection | None = getattr(self._local, "db", None)
        if db is None:
            try:
                db = sqlite3.connect(self.path, timeout=30.0, isolation_level=None, check_same_thread=False)
                db.execute("PRAGMA journal_mode=WAL")
                db.execute("PRAGMA synchronous=FULL")
                db.execute("PRAGMA busy_timeout=30000")
            except sqlite3.Error as exc:
                raise StoreUnavailable(f"event store {self.path} cannot be opened: {exc}") from exc
            self._local.db = db
            with self._lock:
                self._all.append(db)
        return db

    class _Transaction:
        def __init__(self, db: sqlite3.Connection, path: Path) -> None:
            self.db, self.path = db, path

        def __enter__(self) -> sqlite3.Connection:
            self.db.execute("BEGIN IMMEDIATE")
            return self.db

        def __exit__(self, kind: object, exc: BaseException | None, tb: object) -> None:
            if exc is None:
                self.db.execute("COMMIT")
            else:
                self.db.execute("ROLLBACK")
                if isinstance(exc, sqlite3.OperationalError):
                    raise StoreUnavailable(f"event store {self.path}: {exc}") from exc

    def _write(self) -> SqliteEventStore._Transaction:
        return SqliteEventStore._Transaction(self._db(), self.path)

    def append(self, events: Sequence[EventRecord]) -> list[bool]:
        new: list[bool] = []
        with self._write() as db:
            for e in events:
                cursor = db.execute(_INSERT, (e.event_id, e.customer_id, e.item_id, e.event, e.channel, e.store_id,
                                              e.order_id, e.quantity, None if math.isnan(e.price) else e.price,
                                              e.timestamp_ms, e.recorded_ms, e.recommendation_id, e.position))
                new.append(cursor.rowcount == 1)
        return new

    def link(self, link: LiveLink) -> bool:
        with self._write() as db:
            row = db.execute("SELECT customer_id FROM links WHERE alias_id = ?", (link.alias_id,)).fetchone()
            if row is not None:
                return bool(row[0] == link.customer_id)
            db.execute("INSERT INTO links (alias_id, customer_id) VALUES (?, ?)", (link.alias_id, link.customer_id))
        return True

    def read_feed(self, cursor: str = "", limit: int = 10_000) -> FeedBatch:
        after_event, after_link = _parse_cursor(cursor)
        db = self._db()
        try:
            rows = db.execute(f"{_SELECT} WHERE seq > ? ORDER BY seq LIMIT ?", (after_event, limit)).fetchall()
            links = db.execute("SELECT seq, alias_id, customer_id FROM links WHERE seq > ? ORDER BY seq",
                               (after_link,)).fetchall()
        except sqlite3.OperationalError as exc:
            raise StoreUnavailable(f"event store {self.path}: {exc}") from exc
        last_event = rows[-1][0] if rows else after_event
        last_link = links[-1][0] if links else after_link
        return FeedBatch(events=tuple(_record(r) for r in rows),
                         links=tuple(LiveLink(alias_id=a, customer_id=c) for _, a, c in links),
                         cursor=f"{last_event}:{last_link}")

    def recent(self, customer_id: str, limit: int) -> list[EventRecord]:
        rows = self._db().execute(f"{_SELECT} WHERE customer_id = ? ORDER BY seq DESC LIMIT ?",
                                  (customer_id, limit)).fetchall()
        return [_record(r) for r in rows]

    def export(self, before_ms: int) -> Iterator[EventRecord]:
        for row in self._db().execute(f"{_SELECT} WHERE timestamp_ms < ? ORDER BY seq", (before_ms,)):
            yield _record(row)

    def purge(self, before_ms: int) -> int:
        with self._write() as db:
            db.execute("DELETE FROM served WHERE timestamp_ms < ?", (before_ms,))
            return int(db.execute("DELETE FROM events WHERE timestamp_ms < ?", (before_ms,)).rowcount)

    def log_served(self, served: Sequence[ServedRecommendation]) -> None:
        if not served:
            return
        with self._write() as db:
            db.executemany("INSERT OR IGNORE INTO served (recommendation_id, timestamp_ms, payload) VALUES (?, ?, ?)",
                           [(s.recommendation_id, s.timestamp_ms, s.encode()) for s in served])

    def served(self, since_ms: int) -> Iterator[ServedRecommendation]:
        try:
            rows = self._db().execute("SELECT payload FROM served WHERE timestamp_ms >= ? ORDER BY timestamp_ms, seq",
                                      (since_ms,))
            for (payload,) in rows:
                yield ServedRecommendation.decode(payload)
        except sqlite3.OperationalError as exc:
            raise StoreUnavailable(f"event store {self.path}: {exc}") from exc

    def served_by_id(self, ids: Sequence[str]) -> dict[str, ServedRecommendation]:
        found: dict[str, ServedRecommendation] = {}
        unique = list(dict.fromkeys(ids))
        try:
            for start in range(0, len(unique), 500):  # below SQLite's limit of bound parameters
                chunk = unique[start:start + 500]
                rows = self._db().execute(f"SELECT payload FROM served WHERE recommendation_id IN "
                                          f"({', '.join('?' for _ in chunk)})", chunk).fetchall()
                for (payload,) in rows:
                    record = ServedRecommendation.decode(payload)
                    found[record.recommendation_id] = record
        except sqlite3.OperationalError as exc:
            raise StoreUnavailable(f"event store {self.path}: {exc}") from exc
        return found

    def count(self) -> int:
        return int(self._db().execute("SELECT COUNT(*) FROM events").fetchone()[0])

    def ping(self) -> None:
        try:
            self._db().execute("SELECT 1").fetchone()
        except sqlite3.Error as exc:
            raise StoreUnavailable(f"event store {self.path}: {exc}") from exc

    def close(self) -> None:
        with self._lock:
            for db in self._all:
                db.close()
            self._all.clear()
        self._local = threading.local()
