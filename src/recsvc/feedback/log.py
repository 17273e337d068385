"""The served-recommendation log: every answer is queued in memory on the request thread and written to the
event store in batches by one background thread, so logging never waits for a disk or a network.

Under overload the queue is bounded (``feedback.log_queue_size``): a new answer that finds it full is dropped
and counted (``dropped``), never waited for; a batch the store refuses (store down) is dropped and counted too,
with a log line, and the writer carries on with the next. Feedback events naming a dropped answer are then
counted as ``unmatched`` by the report. :meth:`ServedLog.close` writes what is queued before it returns.

The request thread's cost is one ``deque.append`` and a length check (atomic under the GIL, no lock);
``benchmarks/feedback_cpu.py`` measures it end to end.
"""

from __future__ import annotations

import collections
import logging
import threading
from dataclasses import dataclass

from recsvc.events.store import EventStore, StoreUnavailable
from recsvc.feedback.served import ServedRecommendation

logger = logging.getLogger(__name__)

#: Answers per write: one transaction (SQLite) or one pipeline (Redis).
BATCH = 2_000


@dataclass(frozen=True)
class LogStatus:
    """What the log did since the process started: answers written, dropped (queue full, store down), queued."""

    written: int
    dropped_full: int
    dropped_store: int
    queued: int


class ServedLog:
    """A bounded queue of served answers and the thread that writes them to ``store``."""

    def __init__(self, store: EventStore, max_queued: int = 50_000, flush_seconds: float = 0.2) -> None:
        self._store = store
        self._max = max(1, max_queued)
        self._flush_seconds = max(0.001, flush_seconds)
        self._queue: collections.deque[ServedRecommendation] = collections.deque()
        self._wake = threading.Event()
        self._write_lock = threading.Lock()  # held by the writer while a batch is on its way to the store
        self._stopping = False
        self._written = 0
        self._dropped_full = 0
        self._dropped_store = 0
        self._store_down = False
        self._thread = threading.Thread(target=self._run, name="recsvc-served-log", daemon=True)
        self._thread.start()

    def put(self, served: ServedRecommendation) -> bool:
        """Queue one answer; False (and counted) when the queue is full. Never blocks."""
        if len(self._queue) >= self._max:
            self._dropped_full += 1  # a racy += under the GIL may miss a count under contention; never blocks
            return False
        self._queue.append(served)
        return True

    def flush(self, timeout: float = 5.0) -> None:
        """Wake the writer and wait until what is queued now has been written (tests, shutdown)."""
        self._wake.set()
        if self._write_lock.acquire(timeout=timeout):  # write it here (the writer may be asleep or busy)
            self._write_lock.release()
        self._drain_once()

    def status(self) -> LogStatus:
        return LogStatus(written=self._written, dropped_full=self._dropped_full, dropped_store=self._dropped_store,
                         queued=len(self._queue))

    def _drain_once(self) -> None:
        with self._write_lock:
            while self._queue:
                batch: list[ServedRecommendation] = []
                while self._queue and len(batch) < BATCH:
                    batch.append(self._queue.popleft())
                try:
                    self._store.log_served(batch)
                except StoreUnavailable as exc:
                    self._dropped_store += len(batch)
                    if not self._store_down:
                        logger.error("served-recommendation log: the event store is down, dropping answers until "
                                     "it returns: %s", exc)
                    self._store_down = True
                    continue
                except Exception:  # a bug must not kill the writer: serving goes on, the log line says why
                    self._dropped_store += len(batch)
                    logger.exception("served-recommendation log: writing %d answers failed", len(batch))
                    continue
                if self._store_down:
                    logger.info("served-recommendation log: the event store is back")
                    self._store_down = False
                self._written += len(batch)

    def _run(self) -> None:
        while not self._stopping:
            self._wake.wait(self._flush_seconds)
            self._wake.clear()
            self._drain_once()

    def close(self) -> None:
        """Write what is queued, then stop the writer."""
        self._stopping = True
        self._wake.set()
        self._thread.join(timeout=10.0)
        self._drain_once()
