"""Rank-based fusion of candidate lists (weighted reciprocal rank fusion).

Sources score on incomparable scales (ALS dot products, co-purchase probabilities, repurchase dueness,
popularity counts), so the blend uses only each item's rank in each list:
``fused = sum over sources of weight_source / (rank_offset + rank)``, rank starting at 1. A large
``rank_offset`` (60, the usual RRF constant) keeps one source's top item from drowning the rest; the weights
say how much each kind of evidence is trusted. Each item keeps the reason of the source that contributes most
to its fused score.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from recsvc.ranking.sources import Candidates, group_by_key

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class BlendWeights:
    """Trust in each candidate source, by source name (:attr:`CandidateSource.name`), and the RRF offset.

    Defaults: the customer's own rhythm first (repurchase), then what goes with their recent purchases and
    cart (co-purchase), then ALS (collaborative filtering); popularity is a weak tie-breaker in the blend (it still
    fills the list when the personal sources run out). A source without a field here gets weight 0.
    """

    repurchase: float = 1.0
    copurchase: float = 0.8
    als: float = 0.6
    popularity: float = 0.15
    #: Sources model selection may serve alone (issue 14). The default blend's sources do not include them,
    #: so these weigh only in a blend built with them (an experiment's own sources).
    tifu_knn: float = 0.8
    buy_it_again_by_count: float = 1.0
    buy_it_again: float = 1.0
    rank_offset: float = 60.0

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if not np.isfinite(value) or value < 0:
                raise ValueError(f"BlendWeights.{f.name} must be a finite number >= 0, got {value!r}")

    def weight_of(self, source: str) -> float:
        """Weight of the source named ``source`` (0 for a source these weights do not know)."""
        value = getattr(self, source, 0.0) if source != "rank_offset" else 0.0
        return float(value)


@dataclass(frozen=True)
class Fused:
    """The blended list, best first: ``items`` (int64 rows), ``scores`` (float64 fused scores) and, per item,
    which input list (``source``) and position in it (``position``) its reason comes from."""

    items: np.ndarray
    scores: np.ndarray
    source: np.ndarray
    position: np.ndarray

    def __len__(self) -> int:
        return int(self.items.size)


def fuse(lists: Sequence[Candidates], weights: BlendWeights) -> Fused:
    """Blend candidate lists by weighted reciprocal rank; ties go to the lower item row."""
    parts = [(i, c, weights.weight_of(c.source)) for i, c in enumerate(lists) if len(c)]
    if not parts:
        empty = np.zeros(0, dtype=np.int64)
        return Fused(empty, np.zeros(0), empty, empty)
    items = np.concatenate([c.items for _, c, _ in parts])
    contrib = np.concatenate([w / (weights.rank_offset + np.arange(1, len(c) + 1, dtype=np.float64))
                              for _, c, w in parts])
    source = np.concatenate([np.full(len(c), i, dtype=np.int64) for i, c, _ in parts])
    position = np.concatenate([np.arange(len(c), dtype=np.int64) for _, c, _ in parts])
    grouped = group_by_key(items, contrib)
    order = np.lexsort((grouped.keys, -grouped.sums))
    winner = grouped.best[order]
    return Fused(grouped.keys[order], grouped.sums[order], source[winner], position[winner])


def continue_below(last: float | None, raw: np.ndarray, step: float = 0.99) -> np.ndarray:
    """Scores for items appended to a ranked list whose last score is ``last`` (``None``: empty list).

    Each appended item scores at most ``step`` times the item before it and at most its own ``raw`` score
    (``inf`` = no own score), so a list filled from several tiers keeps strictly decreasing positive scores
    while tiers with a meaningful score keep it where it is low enough. Meant for the <= ~100 final items.
    """
    out = np.asarray(raw, dtype=np.float64).copy()
    if out.size == 0:
        return out
    if last is None:
        last = float(out[0]) / step if np.isfinite(out[0]) and out[0] > 0 else 1.0 / step
    previous = float(last)
    for i in range(out.size):  # a sequential cap over the final list only
        previous = min(float(out[i]), previous * step)
        out[i] = previous
    return out
