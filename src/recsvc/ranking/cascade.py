"""Two-stage scoring of the learned ranker's pools: the first trees on every row, the rest on each pool's best rows.

A pool holds a few hundred candidates of which a request shows ten and a stored list keeps fifty, yet every row
went through every tree, the largest single cost of a ranking (issue 16). Gradient boosting fits its first trees
to most of the signal and the later ones to what is left, so a pool's best rows by the first trees hold nearly
all the rows the whole ensemble ranks first. The trainer measures how many trees and rows that takes on its own
validation window and records it with the ranker (``extra.ranker.cascade``); the server, the nightly ranking and
the trainer's own evaluation all score through this one class, so they rank alike.

Rows the first stage drops are not lost to a request's filters: they follow the kept rows, in first-stage
order, with scores below every kept row's, so a category or stock filter that removes kept rows still finds
candidates where the full ensemble would have.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from recsvc.artifacts.parts.ranker import CASCADE_STATS, TreeEnsembleError
from recsvc.ranking.trees import TreeEnsemble


@dataclass(frozen=True)
class CascadeSettings:
    """``trees`` first trees score every row; each pool's ``keep`` best rows by them get the rest."""

    trees: int
    keep: int

    @classmethod
    def from_stats(cls, stats: Mapping[str, Any]) -> CascadeSettings | None:
        """The settings the trainer recorded, or None (no cascade: older sets, or the trainer chose none)."""
        value = stats.get(CASCADE_STATS)
        if not isinstance(value, Mapping):
            return None
        trees, keep = value.get("trees"), value.get("keep")
        if not isinstance(trees, int) or not isinstance(keep, int) or trees <= 0 or keep <= 0:
            return None
        return cls(trees, keep)

    def to_stats(self) -> dict[str, int]:
        return {"trees": self.trees, "keep": self.keep}


class Cascade:
    """Scores the rows of several pools (``bounds``: pool ``p`` is rows ``bounds[p]:bounds[p + 1]``)."""

    def __init__(self, ensemble: TreeEnsemble, settings: CascadeSettings) -> None:
        if not 0 < settings.trees < ensemble.n_trees:  # an artifact error: a set naming such a cascade is refused
            raise TreeEnsembleError(f"a cascade needs 1..{ensemble.n_trees - 1} first trees of this ensemble, "
                                    f"got {settings.trees}")
        self.settings = settings
        self.head = ensemble.trees(0, settings.trees)
        self.tail = ensemble.trees(settings.trees, ensemble.n_trees)

    def scores(self, features: np.ndarray, bounds: np.ndarray) -> np.ndarray:
        """One score per row: for the kept rows, the first trees' sum plus the others' (the whole ensemble,
        summed in two parts); for a dropped row, a score below every kept row of its pool that keeps the
        first stage's order among the dropped ones."""
        head = self.head.predict(features)
        sizes = np.diff(bounds)
        pool = np.repeat(np.arange(sizes.size), sizes)
        order = np.lexsort((np.arange(head.size), -head, pool))  # by pool, best first, ties by pool position
        in_pool = np.arange(head.size) - np.repeat(bounds[:-1], sizes)  # position in its pool, sorted order
        kept = order[in_pool < self.settings.keep]  # still by pool, best first
        out = head.copy()
        out[kept] += self.tail.predict(features[kept])
        if kept.size == head.size:
            return out
        dropped = order[in_pool >= self.settings.keep]  # by pool, best first
        kept_pool, dropped_pool = pool[kept], pool[dropped]
        starts = np.flatnonzero(np.r_[True, kept_pool[1:] != kept_pool[:-1]])
        lowest_kept = np.empty(sizes.size)
        lowest_kept[kept_pool[starts]] = np.minimum.reduceat(out[kept], starts)
        first = np.flatnonzero(np.r_[True, dropped_pool[1:] != dropped_pool[:-1]])
        best_dropped = np.empty(sizes.size)
        best_dropped[dropped_pool[first]] = head[dropped[first]]
        floor = lowest_kept[dropped_pool]
        below = floor - 1e-6 * np.maximum(1.0, np.abs(floor))
        out[dropped] = below - (best_dropped[dropped_pool] - head[dropped])
        return out
