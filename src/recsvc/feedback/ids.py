"""Recommendation ids: unique across processes, replicas and restarts, and cheap enough for every answer.

An id is a random 64-bit prefix drawn once per process (``os.urandom``) followed by a counter in hex: no
coordination between replicas, no clock, a few hundred nanoseconds per id (a ``uuid4`` costs several times
more). Two processes share a prefix with probability about n² / 2⁶⁵ for n processes ever started.
"""

from __future__ import annotations

import itertools
import os
import threading


class RecommendationIds:
    """A source of new ids; thread-safe (``itertools.count`` advances atomically under the GIL)."""

    def __init__(self) -> None:
        self._prefix = "r" + os.urandom(8).hex()
        self._counter = itertools.count(1)
        self._pid = os.getpid()
        self._lock = threading.Lock()

    def new(self) -> str:
        """A new id, e.g. ``r3f9c0a1b2c3d4e5f-1a``."""
        if os.getpid() != self._pid:  # a forked worker must not repeat its parent's ids
            with self._lock:
                if os.getpid() != self._pid:
                    self._prefix, self._counter, self._pid = "r" + os.urandom(8).hex(), itertools.count(1), os.getpid()
        return f"{self._prefix}-{next(self._counter):x}"
