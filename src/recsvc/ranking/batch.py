"""Ranking many customers at once: the one batch path of the nightly stored lists and of campaigns.

Both the serving fast path (a per-customer list ranked nightly and stored in the artifact set) and campaign
exports (suggestions for every customer of an audience) need what ``Recommend`` would answer, for many
customers, without a request each. They call this module and nothing else, so a stored list, a campaign's
list and a live ``Recommend`` for a customer without fresh events and without context are the same list by
construction (tests check it item for item).

Two shapes of the same answer:

* :func:`rank_rows` / :func:`stored_rows_by_channel` — item rows and scores as arrays (``[customers, n]``,
  ``-1`` padding), what an artifact part stores;
* :func:`recommend_many` — one :class:`~recsvc.ranking.results.RecommendResult` per customer, with reasons,
  what a campaign writes out.

How the work is batched: :data:`TREE_BATCH` customers (on every channel asked, for the stored lists) are
ranked together by :meth:`~recsvc.ranking.learned.LearnedRanker.rank_many`: their candidate lists (the ones
that do not depend on the channel computed once per customer), their features column by column over all
their pools (:func:`~recsvc.ranking.features.build_pools`) and one tree evaluation for all rows. The live
request is the same code with a batch of one.

How it is split over cores (``workers`` > 1): the calling process forks that many workers after the model
is loaded (its arrays are memory-mapped or already in memory, so the workers share those pages instead of
copying them) and hands them contiguous chunks of customers; each returns its chunk's arrays (or results),
which the parent writes into place in order. ``workers`` 1 ranks in the calling process; 0 means one worker
per core. Peak memory is the parent's outputs plus, per worker, one chunk's pools and outputs.

``progress`` (when given) is called with the number of customers done after each chunk.
"""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np

from recsvc.artifacts.parts.stored_lists import SOURCES
from recsvc.errors import InvalidRequest
from recsvc.ids import clean_channel
from recsvc.ranking.paths import Ranked
from recsvc.ranking.recommender import RecommendationEngine
from recsvc.ranking.results import RecommendQuery, RecommendResult

#: Customers per chunk: bounds the memory of one step (and is what a worker takes at a time).
CHUNK = 4096
#: Customers whose pools go through one tree evaluation (a few thousand candidate rows per channel): large
#: enough that the per-call costs are shared, small enough that the batch's scratch stays in cache.
TREE_BATCH = 32

Progress = Callable[[int], None]
_T = TypeVar("_T")
_R = TypeVar("_R")


@dataclass(frozen=True)
class RankedRows:
    """Top ``n`` item rows per customer on one channel: ``items[i]`` for ``customer_rows[i]``, best first,
    ``-1`` where fewer than ``n`` items could be ranked; ``scores`` beside them (NaN at padding).

    :func:`stored_rows` also gives, per entry, the candidate source its reason comes from (``source``, codes
    of :data:`recsvc.artifacts.parts.stored_lists.SOURCES`, ``-1`` padding) and the item behind a co-purchase
    reason (``anchor``, ``-1`` otherwise); :func:`rank_rows` leaves them None."""

    customer_rows: np.ndarray  # int64 [m]
    items: np.ndarray          # int32 [m, n]
    scores: np.ndarray         # float32 [m, n]
    source: np.ndarray | None = None  # int8 [m, n]
    anchor: np.ndarray | None = None  # int32 [m, n]


def _channel_row(engine: RecommendationEngine, channel: str) -> int:
    if not channel:
        raise InvalidRequest("channel: required; name the channel to rank for")
    return engine.model.channel_row(clean_channel(channel))


def worker_count(workers: int) -> int:
    """Processes for ``workers`` (0: one per core this process may run on)."""
    if workers > 0:
        return workers
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


# --------------------------------------------------------------------------------------------- parallel

#: The engine the forked workers rank with (set in the parent just before the fork, inherited by the children).
_FORKED_ENGINE: RecommendationEngine | None = None
_FORKED_TASK: Callable[[RecommendationEngine, Any], Any] | None = None


def _run_forked(chunk: Any) -> Any:
    assert _FORKED_ENGINE is not None and _FORKED_TASK is not None
    return _FORKED_TASK(_FORKED_ENGINE, chunk)


def _chunks(count: int, workers: int) -> list[tuple[int, int]]:
    """Contiguous ``(start, stop)`` ranges over ``count`` customers: :data:`CHUNK` each, smaller when a few
    chunks would leave workers idle."""
    size = CHUNK if workers <= 1 else max(TREE_BATCH, min(CHUNK, -(-count // (4 * workers))))
    return [(lo, min(lo + size, count)) for lo in range(0, count, size)]


def _map_chunks(engine: RecommendationEngine, task: Callable[[RecommendationEngine, _T], _R],
                chunks: Iterable[_T], workers: int) -> Iterator[_R]:
    """``task(engine, chunk)`` for each chunk, in order, in this process or in ``workers`` forked ones (a
    sequence when ``workers`` > 1)."""
    workers = worker_count(workers)
    if isinstance(chunks, Sequence):
        workers = min(workers, len(chunks))
    if workers <= 1 or "fork" not in multiprocessing.get_all_start_methods():
        for chunk in chunks:
            yield task(engine, chunk)
        return
    global _FORKED_ENGINE, _FORKED_TASK
    _FORKED_ENGINE, _FORKED_TASK = engine, task
    try:
        with multiprocessing.get_context("fork").Pool(workers) as pool:
            yield from pool.imap(_run_forked, chunks)
    finally:
        _FORKED_ENGINE = _FORKED_TASK = None


# ------------------------------------------------------------------------------------------ stored lists

def _source_codes(pool: Ranked) -> np.ndarray:
    """The stored code (:data:`~recsvc.artifacts.parts.stored_lists.SOURCES`) of each of ``pool``'s lists."""
    return np.array([SOURCES.index(c.source) for c in pool.lists], dtype=np.int8)


def _anchors(pool: Ranked, k: int) -> np.ndarray:
    """The first reason item of the co-purchase entries among the first ``k`` of ``pool`` (``-1`` others)."""
    out = np.full(k, -1, dtype=np.int32)
    source, position = pool.source[:k], pool.position[:k]
    for list_index in np.unique(source).tolist():
        candidates = pool.lists[list_index]
        if candidates.source == "copurchase":
            at = np.flatnonzero(source == list_index)
            out[at] = candidates.reason_items[position[at], 0]
    return out


_StoredChunk = tuple[np.ndarray, tuple[int, ...], int]
_StoredOut = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]


def _stored_chunk(engine: RecommendationEngine, chunk: _StoredChunk) -> _StoredOut:
    """One chunk of :func:`stored_rows_by_channel`: arrays ``[customers, channels, length]`` and ``ranked``
    ``[customers, channels]``; every customer's channels ranked in the same batch."""
    rows, channel_rows, length = chunk
    c, h = rows.size, len(channel_rows)
    items = np.full((c, h, length), -1, dtype=np.int32)
    scores = np.full((c, h, length), np.nan, dtype=np.float32)
    source = np.full((c, h, length), -1, dtype=np.int8)
    anchor = np.full((c, h, length), -1, dtype=np.int32)
    ranked = np.zeros((c, h), dtype=bool)
    for start in range(0, c, TREE_BATCH):
        batch = rows[start:start + TREE_BATCH].tolist()
        pairs_rows = [row for row in batch for _ in channel_rows]
        pairs_channels = [channel for _ in batch for channel in channel_rows]
        pools = engine.ranked_pools_on(pairs_rows, pairs_channels)
        for j, pool in enumerate(pools):
            if pool is None:
                continue
            i, ch = start + j // h, j % h
            ranked[i, ch] = True
            k = min(length, pool.items.size)
            items[i, ch, :k] = pool.items[:k]
            scores[i, ch, :k] = pool.scores[:k]
            source[i, ch, :k] = _source_codes(pool)[pool.source[:k]]
            anchor[i, ch, :k] = _anchors(pool, k)
    return items, scores, source, anchor, ranked


def stored_rows_by_channel(engine: RecommendationEngine, customer_rows: np.ndarray, channels: Sequence[str],
                           length: int, progress: Progress | None = None, workers: int = 1
                           ) -> list[tuple[RankedRows, np.ndarray]]:
    """:func:`stored_rows` for every channel of ``channels`` at once (a customer's channels are ranked in the
    same batch and share the candidate lists that do not depend on the channel), one entry per channel, in
    ``workers`` processes (see the module docstring)."""
    rows = np.asarray(customer_rows, dtype=np.int64)
    channel_rows = tuple(_channel_row(engine, channel) for channel in channels)
    h = len(channel_rows)
    items = np.full((h, rows.size, length), -1, dtype=np.int32)
    scores = np.full((h, rows.size, length), np.nan, dtype=np.float32)
    source = np.full((h, rows.size, length), -1, dtype=np.int8)
    anchor = np.full((h, rows.size, length), -1, dtype=np.int32)
    ranked = np.zeros((h, rows.size), dtype=bool)
    ranges = _chunks(rows.size, workers)
    chunks = [(rows[lo:hi], channel_rows, length) for lo, hi in ranges]
    for (lo, hi), found in zip(ranges, _map_chunks(engine, _stored_chunk, chunks, workers), strict=True):
        outputs: tuple[np.ndarray, ...] = (items, scores, source, anchor)
        for out, part in zip(outputs, found[:4], strict=True):
            out[:, lo:hi] = part.transpose(1, 0, 2)
        ranked[:, lo:hi] = found[4].T
        if progress is not None:
            progress(hi)
    return [(RankedRows(rows, items[c], scores[c], source[c], anchor[c]), ranked[c]) for c in range(h)]


def stored_rows(engine: RecommendationEngine, customer_rows: np.ndarray, channel: str, length: int,
                progress: Progress | None = None, workers: int = 1) -> tuple[RankedRows, np.ndarray]:
    """The stored-list rows: each customer's ranked pool on ``channel`` (items sellable there, best first, no
    popularity fill), cut to ``length``, with the reason source and anchor of every entry; and a bool per
    customer, whether the learned ranker ranks them (False rows are all padding: they are served live)."""
    return stored_rows_by_channel(engine, customer_rows, [channel], length, progress, workers)[0]


# ----------------------------------------------------------------------------------------- rank rows

def _rank_chunk(engine: RecommendationEngine, chunk: tuple[np.ndarray, str, int]) -> tuple[np.ndarray, np.ndarray]:
    rows, channel, n = chunk
    model = engine.model
    channel_row = _channel_row(engine, channel)
    items = np.full((rows.size, n), -1, dtype=np.int32)
    scores = np.full((rows.size, n), np.nan, dtype=np.float32)
    for start in range(0, rows.size, TREE_BATCH):
        batch = rows[start:start + TREE_BATCH].tolist()
        for j, pool in enumerate(engine.ranked_pools(batch, channel_row)):
            i = start + j
            if pool is not None and pool.items.size >= n:
                items[i] = pool.items[:n]
                scores[i] = pool.scores[:n]
                continue
            result = engine.recommend(RecommendQuery(customer_id=model.customer_id(int(rows[i])), channel=channel,
                                                     num_items=n))
            found = model.items.lookup([s.item_id for s in result.items])
            items[i, :found.size] = found
            scores[i, :found.size] = [s.score for s in result.items]
    return items, scores


def rank_rows(engine: RecommendationEngine, customer_rows: np.ndarray, channel: str, n: int,
              progress: Progress | None = None, workers: int = 1) -> RankedRows:
    """What ``Recommend`` ranks first for each customer row on ``channel`` (no store, no exclusions, no
    context, no live events): the stored-list contract. ``channel`` must be non-empty.

    Customers on the learned path are ranked in batches (:meth:`RecommendationEngine.ranked_pools`, one tree
    evaluation per :data:`TREE_BATCH` customers); the others (rank fusion, cold start, a policy that hides
    items, a pool the popularity fill would have to complete, an unknown channel) go through
    :meth:`RecommendationEngine.recommend` one by one, so every row is what ``Recommend`` answers."""
    rows = np.asarray(customer_rows, dtype=np.int64)
    _channel_row(engine, channel)
    items = np.full((rows.size, n), -1, dtype=np.int32)
    scores = np.full((rows.size, n), np.nan, dtype=np.float32)
    ranges = _chunks(rows.size, workers)
    chunks = [(rows[lo:hi], channel, n) for lo, hi in ranges]
    for (lo, hi), (found_items, found_scores) in zip(ranges, _map_chunks(engine, _rank_chunk, chunks, workers),
                                                     strict=True):
        items[lo:hi], scores[lo:hi] = found_items, found_scores
        if progress is not None:
            progress(hi)
    return RankedRows(rows, items, scores)


# ---------------------------------------------------------------------------------------- recommend many

def _recommend_chunk(engine: RecommendationEngine, chunk: tuple[list[str], str, int, str]) -> list[RecommendResult]:
    ids, channel, n, store_id = chunk
    queries = [RecommendQuery(customer_id=customer_id, channel=channel, store_id=store_id, num_items=n)
               for customer_id in ids]
    out: list[RecommendResult] = []
    for start in range(0, len(queries), TREE_BATCH):
        out.extend(engine.recommend_batch(queries[start:start + TREE_BATCH]))
    return out


def _batches(items: Iterable[_T], size: int) -> Iterator[list[_T]]:
    batch: list[_T] = []
    for item in items:
        batch.append(item)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def recommend_many(engine: RecommendationEngine, customer_ids: Iterable[str], channel: str, n: int,
                   store_id: str = "", progress: Progress | None = None, workers: int = 1
                   ) -> Iterator[RecommendResult]:
    """``Recommend`` for each customer id (or alias) on ``channel``, in order, as the server would answer it
    with no context and no live events. Raises what :meth:`RecommendationEngine.recommend` raises.

    A model with stored lists answers most customers from them (the engine's fast path: the same answer,
    without ranking); otherwise the learned ranker ranks :data:`TREE_BATCH` customers per batch
    (:meth:`RecommendationEngine.recommend_batch`), in ``workers`` processes (see the module docstring;
    with more than one, the ids are read into chunks first)."""
    done = 0
    chunks: Iterable[tuple[list[str], str, int, str]]
    if worker_count(workers) > 1:
        ids = list(customer_ids)
        chunks = [(ids[lo:hi], channel, n, store_id) for lo, hi in _chunks(len(ids), worker_count(workers))]
    else:
        chunks = ((batch, channel, n, store_id) for batch in _batches(customer_ids, CHUNK))
    for results in _map_chunks(engine, _recommend_chunk, chunks, workers):
        yield from results
        done += len(results)
        if progress is not None:
            progress(done)
