"""A gradient-boosted tree ensemble (the learned ranker) as plain numpy arrays, evaluated in numpy.

The trainer learns the ranker with LightGBM, but the server must not depend on LightGBM nor load a pickle or a
model text that could run code. So the trees travel in the artifact set as flat numpy arrays (saved and loaded
with ``allow_pickle=False``) and :meth:`TreeEnsemble.predict` evaluates them here, giving the same raw score as
``booster.predict(X, raw_score=True)`` -- bit for bit on the models and data the tests cover: the decision rule
is LightGBM's, and the tree outputs are summed in tree order in float64 as LightGBM does. The trainer builds an
ensemble with :func:`recsvc_training.ranker.fit.tree_ensemble_from_lightgbm`.

The stored format (array names, dtypes, the encoding of children and leaves, and the structure checks) is
the artifact part's, :mod:`recsvc.artifacts.parts.ranker`; this module evaluates a validated part.

Missing values follow LightGBM (``Tree::NumericalDecision``): values with ``|x| <= 1e-35`` count as 0
(LightGBM drops them from a dense row before predicting); with ``missing_type`` None a NaN is replaced by 0
and compared; with NaN a NaN is missing; with Zero both 0 and NaN are missing. A missing value goes left when
``default_left``, right otherwise; any other value goes left when ``x <= threshold``. Categorical splits and
linear trees are not supported (the converter refuses them).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np

from recsvc.artifacts.parts.ranker import (
    FIELDS,
    MISSING_NAN,
    MISSING_NONE,
    MISSING_TYPE_NAMES,
    MISSING_ZERO,
    RankerPart,
    TreeEnsembleError,
    tree_depths,
)
from recsvc.ranking.tree_plan import ZERO_THRESHOLD, EvaluationPlan

logger = logging.getLogger(__name__)

__all__ = ["MISSING_NAN", "MISSING_NONE", "MISSING_TYPE_NAMES", "MISSING_ZERO", "ZERO_THRESHOLD", "TreeEnsemble",
           "TreeEnsembleError"]

@dataclass(frozen=True, eq=False)
class TreeEnsemble(RankerPart):
    """All trees of a boosted model as flat arrays, ready to evaluate: the artifact part
    (:class:`~recsvc.artifacts.parts.ranker.RankerPart`, which owns the encoding) plus an evaluation plan.

    Construction copies the arrays into the stored dtypes, makes them read-only and checks the trees, so an
    instance that exists is well formed and can be shared between threads; it raises
    :class:`TreeEnsembleError` otherwise. Equality is identity (arrays do not compare as one bool).
    """

    _plan: EvaluationPlan = field(init=False, repr=False)

    def __post_init__(self) -> None:
        super().__post_init__()
        object.__setattr__(self, "_plan", EvaluationPlan.build(self))

    # --- shape -------------------------------------------------------------------------------------------

    @property
    def n_features(self) -> int:
        """Number of columns ``predict`` expects (``len(feature_names)``)."""
        return len(self.feature_names)

    @property
    def n_trees(self) -> int:
        return int(self.tree_root.size)

    @property
    def n_nodes(self) -> int:
        """Internal (splitting) nodes over all trees."""
        return int(self.split_feature.size)

    @property
    def n_leaves(self) -> int:
        return int(self.leaf_value.size)

    @property
    def max_depth(self) -> int:
        """Splits on the longest root-to-leaf path of any tree (0 when every tree is a single leaf)."""
        return int(self.depths.max()) if self.depths.size else 0

    # --- checks ------------------------------------------------------------------------------------------

    def validate(self) -> None:
        """Check that the arrays describe well-formed trees (:func:`recsvc.artifacts.parts.ranker.tree_depths`);
        raise :class:`TreeEnsembleError` if not. Runs at construction, so callers only need it after building
        arrays by other means."""
        tree_depths(self)

    # --- evaluation --------------------------------------------------------------------------------------

    def predict(self, X: np.ndarray) -> np.ndarray:
        """Raw scores of the rows of ``X``: the sum of the trees' leaf values, as LightGBM's ``raw_score``.

        Parameters
        ----------
        X : np.ndarray, shape [n, n_features]
            Feature rows, columns in the order of ``feature_names``; any real dtype (converted to float64, as
            LightGBM does). NaN marks a missing value; where missing values and zeros go was fixed per node by
            training (see the module docstring). ``X`` is not modified.

        Returns
        -------
        np.ndarray, float64, shape [n]
            Raw scores, no sigmoid or other link; for a lambdarank model, higher ranks first. Equal to
            ``booster.predict(X, raw_score=True)``: each node applies LightGBM's rule in float64 and the trees
            are summed one after another in tree order.

        Notes
        -----
        Vectorised over rows and trees together (bit-sliced: :class:`recsvc.ranking.tree_plan.EvaluationPlan`):
        the Python-level work is a few numpy calls per tree level per block of rows, so the cost grows with the
        ensemble's size and only slowly with ``n`` up to a block (``benchmarks/ranker_predict.py`` measures it).
        Thread-safe: each concurrent call borrows its own scratch buffers from a pool and gives them back,
        within a bounded budget (larger ensembles use smaller blocks).
        """
        values = np.asarray(X)
        if values.ndim != 2 or values.shape[1] != self.n_features:
            raise ValueError(f"X must have shape [n, {self.n_features}], got {values.shape}")
        if values.dtype.kind not in "fiub":
            raise ValueError(f"X must hold numbers, got dtype {values.dtype}")
        values = values.astype(np.float64, copy=False)
        n = values.shape[0]
        out = np.empty(n, dtype=np.float64)
        block = self._plan.block_rows
        for start in range(0, n, block):
            stop = min(n, start + block)
            out[start:stop] = self._plan.predict_block(values[start:stop])
        return out

    def trees(self, start: int, stop: int) -> TreeEnsemble:
        """The ensemble of trees ``start <= t < stop`` alone, nodes and leaves renumbered in their stored order.

        Its ``predict`` sums those trees in tree order, so ``trees(0, k)`` gives exactly the partial sum the
        whole ensemble reaches after ``k`` trees (what :mod:`recsvc.ranking.cascade` ranks a pool by first).
        """
        if not 0 <= start < stop <= self.n_trees:
            raise ValueError(f"trees {start}..{stop} outside the ensemble's 0..{self.n_trees}")
        node_kept = np.zeros(self.n_nodes, dtype=bool)
        leaf_kept = np.zeros(self.n_leaves, dtype=bool)
        frontier = self.tree_root[start:stop].astype(np.intp)
        while frontier.size:  # the structure checks guarantee every tree is finite and disjoint
            leaf_kept[~frontier[frontier < 0]] = True
            inner = frontier[frontier >= 0]
            node_kept[inner] = True
            frontier = np.concatenate([self.left_child[inner], self.right_child[inner]]).astype(np.intp)
        node_map = np.append(np.cumsum(node_kept) - 1, 0)  # the extra entry: a safe index for np.where below
        leaf_map = np.append(np.cumsum(leaf_kept) - 1, 0)

        def renumber(children: np.ndarray) -> np.ndarray:
            children = children.astype(np.int64)
            inner = children >= 0
            return np.where(inner, node_map[np.where(inner, children, -1)],
                            ~leaf_map[np.where(inner, -1, ~children)]).astype(np.int32)

        return TreeEnsemble(
            split_feature=self.split_feature[node_kept], threshold=self.threshold[node_kept],
            left_child=renumber(self.left_child[node_kept]), right_child=renumber(self.right_child[node_kept]),
            default_left=self.default_left[node_kept], missing_type=self.missing_type[node_kept],
            leaf_value=self.leaf_value[leaf_kept], tree_root=renumber(self.tree_root[start:stop]),
            feature_names=self.feature_names, stats={})

    # --- storage: to_arrays / from_arrays are the part's ---------------------------------------------------

    @classmethod
    def from_part(cls, part: RankerPart) -> TreeEnsemble:
        """The ensemble of a validated part (e.g. of a loaded artifact set)."""
        return cls(**{name: getattr(part, name) for name in FIELDS}, feature_names=part.feature_names,
                   stats=part.stats)
