"""The nightly-ranking step of a training run: each chosen customer's top list per channel, stored in the set.

Runs after the ranker is fitted and the gate passed, before publishing. It loads the finished set as the
server would (:class:`~recsvc.ranking.model.LoadedModel`), builds the served engine on it and ranks with
:func:`recsvc.ranking.batch.stored_rows_by_channel`, the one batch path campaigns use too, so the stored list is the
live ranking of a customer without fresh events, item for item. The engine's clock is the set's creation
time: "today" is the data's last day, the day a server loading the set that night ranks as of.

Which customers: every customer with a purchase history, or (``stored_lists_active_days`` > 0) only those who
bought in the last that-many days of the log; customers the learned ranker does not rank (cold start) get no
list. A set without a learned ranker gets no stored lists (the rank fusion is cheap enough live). Every
channel of a customer is ranked in one batch, in ``stored_lists_workers`` forked processes
(:mod:`recsvc.ranking.batch` says how the work is split).
"""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime

import numpy as np

from recsvc.artifacts import ArtifactSet
from recsvc.artifacts.parts.ranker import RankerPart
from recsvc.artifacts.parts.stored_lists import StoredLists
from recsvc.config import TrainingSettings
from recsvc.ranking.batch import stored_rows_by_channel
from recsvc.ranking.model import LoadedModel
from recsvc.ranking.recommender import RecommendationEngine

logger = logging.getLogger(__name__)


def chosen_customers(model: LoadedModel, active_days: int) -> np.ndarray:
    """Customer rows (int64, ascending) with a purchase history, bought within ``active_days`` of the data's
    last day when ``active_days`` > 0."""
    lengths = np.diff(model.hist_indptr)
    rows = np.flatnonzero(lengths > 0)
    if active_days > 0 and rows.size:
        last = np.maximum.reduceat(model.hist_last_day, model.hist_indptr[rows].astype(np.int64))
        rows = rows[last >= model.data_end_day - active_days + 1]
    return rows.astype(np.int64)


def rank_stored_lists(artifacts: ArtifactSet, settings: TrainingSettings,
                      customers: np.ndarray | None = None) -> StoredLists | None:
    """The stored lists of ``artifacts`` (a validated set with a learned ranker), or None when it has no
    ranker or no customer to rank. ``customers`` (rows) overrides :func:`chosen_customers`."""
    model = LoadedModel(artifacts)
    if model.parts.get(RankerPart) is None:
        logger.info("stored lists: the set has no learned ranker; every request is ranked live")
        return None
    created = datetime.fromisoformat(artifacts.created_at) if artifacts.created_at else datetime.now(UTC)
    created = created if created.tzinfo is not None else created.replace(tzinfo=UTC)
    engine = RecommendationEngine(model, clock=lambda: created)
    rows = chosen_customers(model, settings.stored_lists_active_days) if customers is None else customers
    length = int(settings.stored_list_length)
    started = time.perf_counter()
    ranked = np.zeros(rows.size, dtype=bool)

    def progress(done: int) -> None:
        logger.info("stored lists: %d of %d customers (every channel)", done, rows.size)

    found = stored_rows_by_channel(engine, rows, model.channels, length, progress, settings.stored_lists_workers)
    per_channel = [rows_of_channel for rows_of_channel, _ in found]
    for _, on_learned_path in found:
        ranked |= on_learned_path
    if not per_channel or not ranked.any():
        return None
    keep = np.flatnonzero(ranked)
    seconds = time.perf_counter() - started
    part = StoredLists(
        customers=rows[keep].astype(np.int32),
        items=np.stack([r.items[keep] for r in per_channel]),
        scores=np.stack([r.scores[keep] for r in per_channel]),
        source=np.stack([r.source[keep] for r in per_channel if r.source is not None]),
        anchor=np.stack([r.anchor[keep] for r in per_channel if r.anchor is not None]),
        meta={"day": engine.ranking_day(), "length": length, "channels": list(model.channels),
              "customers": int(keep.size), "seconds": round(seconds, 2),
              "active_days": int(settings.stored_lists_active_days)})
    logger.info("stored lists: %d customers x %d channels x %d items in %.1fs", keep.size, len(per_channel),
                length, seconds)
    return part


def add_stored_lists(artifacts: ArtifactSet, settings: TrainingSettings) -> None:
    """Rank and add the stored-lists part to ``artifacts`` (nothing when :func:`rank_stored_lists` has none)."""
    part = rank_stored_lists(artifacts, settings)
    if part is not None:
        artifacts.arrays.update(part.to_arrays())
        artifacts.extra.update(part.to_extra())
