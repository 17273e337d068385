"""The learned reranker: LightGBM learning-to-rank training, and its conversion into the server's numpy trees.

The trainer fits a LightGBM ``Booster`` over candidate features (:func:`fit_ranker`), then converts it with
:func:`tree_ensemble_from_lightgbm` into a :class:`recsvc.ranking.trees.TreeEnsemble`, whose ``to_arrays()``
go into the artifact set. The server never sees LightGBM: it evaluates the arrays in numpy. The conversion
reads ``booster.dump_model()`` (JSON, thresholds and leaf values printed with 17 significant digits, so they
parse back to the same float64; only infinite thresholds are written as +-1e300 and are read back as +-inf)
-- never a pickle and never the model text.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

import lightgbm
import numpy as np

from recsvc.ranking.trees import MISSING_TYPE_NAMES, TreeEnsemble, TreeEnsembleError

logger = logging.getLogger(__name__)

#: Defaults for a recommendation reranker: a few hundred candidates per request, ~15 dense features, graded
#: relevance labels. Keys are LightGBM's canonical parameter names; pass overrides under the same names
#: (an alias such as ``n_estimators`` next to a default's canonical name makes LightGBM pick one of them).
DEFAULT_PARAMS: dict[str, Any] = {
    # rank_xendcg rather than lambdarank: it ranked better on Ta Feng (README, Quality, what was tried) and
    # trains faster (no pairwise pass).
    "objective": "rank_xendcg",
    "metric": "ndcg",
    "eval_at": [10],
    "num_iterations": 200,
    "learning_rate": 0.05,
    "num_leaves": 31,
    "min_data_in_leaf": 50,
    "feature_fraction": 0.9,
    # No bagging. Bagging whole queries (bagging_by_query, LightGBM 4.7) stopped the fit after a few trees:
    # on some iteration's bag no split was possible ("best gain: -inf"; with min_data_in_leaf 1 LightGBM fails
    # its own check left_count > 0), LightGBM then adds no more trees, and the published ranker of a grocery
    # chain's log kept 23 of 150. Row bagging would split a request's candidates across bags.
    "bagging_fraction": 1.0,
    "bagging_freq": 0,
    # deterministic needs force_row_wise/col_wise to be stable (LightGBM docs); row-wise suits few features.
    "deterministic": True,
    "force_row_wise": True,
    "seed": 20240601,
    "num_threads": 2,
    "verbose": -1,
}

#: Rounds without an ndcg@10 gain on the validation set before training stops (only when ``valid`` is given).
EARLY_STOPPING_ROUNDS = 20

#: Largest label the default ``label_gain`` (2^i - 1 for i < 31) covers.
MAX_LABEL = 30


def fit_ranker(
    X: np.ndarray,
    y: np.ndarray,
    group_sizes: Sequence[int] | np.ndarray,
    feature_names: Sequence[str],
    params: Mapping[str, Any] | None = None,
    valid: tuple[np.ndarray, np.ndarray, Sequence[int] | np.ndarray] | None = None,
) -> lightgbm.Booster:
    """Train a LightGBM learning-to-rank reranker (objective rank_xendcg by default).

    Parameters
    ----------
    X : np.ndarray, shape [n_rows, n_features]
        Candidate features; NaN marks a missing value (LightGBM learns where missing values go, and
        :class:`~recsvc.ranking.trees.TreeEnsemble` routes them the same way on the server).
    y : np.ndarray, shape [n_rows]
        Graded relevance, integers ``0..30`` (e.g. 0/1 purchased, or 0..3); higher is more relevant.
    group_sizes : sequence of int
        Candidates per query (request), in row order: the rows of one query must be contiguous in ``X``
        and the sizes must sum to ``n_rows``.
    feature_names : sequence of str
        One unique name per column; stored in the booster and carried into the ``TreeEnsemble``.
    params : mapping, optional
        Overrides of :data:`DEFAULT_PARAMS` (e.g. ``{"num_iterations": 50}``).
    valid : (X, y, group_sizes), optional
        A validation set (other queries than the training ones). When given, training stops after
        :data:`EARLY_STOPPING_ROUNDS` rounds without an ndcg@10 gain and the booster keeps
        ``best_iteration``, which ``predict`` and ``dump_model`` (hence the conversion) then use.

    Returns
    -------
    lightgbm.Booster

    Raises
    ------
    ValueError
        When shapes, labels, groups or names do not agree.
    """
    X_train, y_train, groups = _check_ranking_data(X, y, group_sizes, "training")
    if len(feature_names) != X_train.shape[1]:
        raise ValueError(f"{len(feature_names)} feature names for {X_train.shape[1]} columns")
    names = [str(name) for name in feature_names]
    if len(set(names)) != len(names) or not all(names):
        raise ValueError(f"feature names must be unique and non-empty: {names}")
    merged = {**DEFAULT_PARAMS, **(params or {})}
    train_set = lightgbm.Dataset(X_train, label=y_train, group=groups, feature_name=names,
                                 free_raw_data=True)
    valid_sets: list[lightgbm.Dataset] = []
    callbacks: list[Any] = []
    if valid is not None:
        X_valid, y_valid, groups_valid = _check_ranking_data(*valid, "validation")
        if X_valid.shape[1] != X_train.shape[1]:
            raise ValueError(f"validation set has {X_valid.shape[1]} columns, training set {X_train.shape[1]}")
        valid_sets.append(lightgbm.Dataset(X_valid, label=y_valid, group=groups_valid, reference=train_set))
        callbacks.append(lightgbm.early_stopping(EARLY_STOPPING_ROUNDS, first_metric_only=True, verbose=False))
    logger.info("training reranker on %d rows, %d queries, %d features%s",
                X_train.shape[0], groups.size, X_train.shape[1], " with early stopping" if valid is not None else "")
    booster = lightgbm.train(merged, train_set, valid_sets=valid_sets, valid_names=["valid"][:len(valid_sets)],
                             callbacks=callbacks)
    if valid is None and booster.num_trees() < int(merged["num_iterations"]):
        logger.warning("reranker kept %d of %d trees: LightGBM found no split that meets the split requirements "
                       "(min_data_in_leaf, min_sum_hessian_in_leaf) and stopped", booster.num_trees(),
                       int(merged["num_iterations"]))
    if valid is not None:
        score = booster.best_score.get("valid", {})
        logger.info("reranker stopped at iteration %d of %d; validation %s", booster.best_iteration,
                    booster.current_iteration(), dict(score))
    return booster


def _check_ranking_data(
    X: np.ndarray, y: np.ndarray, group_sizes: Sequence[int] | np.ndarray, what: str
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    features = np.asarray(X)
    if features.ndim != 2 or features.shape[0] == 0 or features.dtype.kind not in "fiub":
        raise ValueError(f"{what} X must be a non-empty 2-D numeric array, got {features.dtype}{features.shape}")
    labels = np.asarray(y)
    if labels.shape != (features.shape[0],):
        raise ValueError(f"{what} y has shape {labels.shape}, expected ({features.shape[0]},)")
    if (labels.dtype.kind not in "fiub" or not np.all(np.isfinite(labels)) or np.any(labels < 0)
            or np.any(labels > MAX_LABEL) or np.any(labels != np.round(labels))):
        raise ValueError(f"{what} y must hold integer relevance grades in [0, {MAX_LABEL}]")
    groups = np.asarray(group_sizes)
    if groups.ndim != 1 or groups.size == 0 or groups.dtype.kind not in "iu" or np.any(groups <= 0):
        raise ValueError(f"{what} group_sizes must be a non-empty list of positive integers")
    if int(groups.sum()) != features.shape[0]:
        raise ValueError(f"{what} group_sizes sum to {int(groups.sum())}, X has {features.shape[0]} rows")
    return features, labels.astype(np.float64), groups.astype(np.int64)


#: ``dump_model`` writes thresholds through LightGBM's ``AvoidInf``, which caps them at +-1e300 (JSON has no inf).
DUMP_THRESHOLD_CAP = 1e300


def _threshold_from_dump(value: float) -> float:
    """Undo ``AvoidInf``: a capped threshold was infinite. LightGBM's last numerical bin ends at +inf, so a
    split "every number left, only NaN right" has threshold +inf -- and +inf itself then goes left, which
    1e300 would send right. (A finite threshold beyond 1e300 needs training values that large; we assume
    none.)"""
    if value >= DUMP_THRESHOLD_CAP:
        return float("inf")
    if value <= -DUMP_THRESHOLD_CAP:
        return float("-inf")
    return value


def tree_ensemble_from_lightgbm(booster: lightgbm.Booster) -> TreeEnsemble:
    """Convert a trained booster into the server's :class:`~recsvc.ranking.trees.TreeEnsemble`.

    Reads ``booster.dump_model()``, which like ``booster.predict`` keeps only the trees up to
    ``best_iteration`` when early stopping set one. The ensemble's ``predict(X)`` then equals
    ``booster.predict(X, raw_score=True)``.

    Raises
    ------
    TreeEnsembleError
        For what the numpy evaluator does not support: categorical splits, linear trees, more than one tree
        per iteration (multiclass) and averaged output (random-forest mode).
    """
    model = booster.dump_model()
    if int(model.get("num_tree_per_iteration", 1)) != 1:
        raise TreeEnsembleError(f"{model['num_tree_per_iteration']} trees per iteration (multiclass?): "
                                "only single-output models are supported")
    if model.get("average_output", False):
        raise TreeEnsembleError("the model averages its trees (boosting=rf); only summed (gbdt) models are "
                                "supported")
    feature_names = list(model["feature_names"])
    if len(feature_names) != int(model["max_feature_idx"]) + 1:
        raise TreeEnsembleError("dump_model feature_names disagree with max_feature_idx")

    split_feature: list[int] = []
    threshold: list[float] = []
    left_child: list[int] = []
    right_child: list[int] = []
    default_left: list[bool] = []
    missing_type: list[int] = []
    leaf_value: list[float] = []
    tree_root: list[int] = []

    def add(node: dict[str, Any], tree_index: int) -> int:
        """Append ``node`` (not its children) and return its reference: node id, or ~leaf id."""
        if "split_index" not in node:
            if node.get("leaf_coeff") or node.get("leaf_features"):
                raise TreeEnsembleError(f"tree {tree_index} is a linear tree (linear_tree=true): not supported")
            leaf_value.append(float(node["leaf_value"]))
            return ~(len(leaf_value) - 1)
        if node.get("decision_type") != "<=":
            raise TreeEnsembleError(f"tree {tree_index} has a {node.get('decision_type')!r} split: categorical "
                                    "splits are not supported; train with numerical features only")
        if node["missing_type"] not in MISSING_TYPE_NAMES:
            raise TreeEnsembleError(f"tree {tree_index}: unknown missing_type {node['missing_type']!r}")
        split_feature.append(int(node["split_feature"]))
        threshold.append(_threshold_from_dump(float(node["threshold"])))
        default_left.append(bool(node["default_left"]))
        missing_type.append(MISSING_TYPE_NAMES.index(node["missing_type"]))
        left_child.append(0)  # filled in when the children are added
        right_child.append(0)
        return len(split_feature) - 1

    for tree in model["tree_info"]:
        tree_index = int(tree["tree_index"])
        if int(tree.get("num_cat", 0)) > 0:
            raise TreeEnsembleError(f"tree {tree_index} has categorical splits: not supported; train with "
                                    "numerical features only")
        root = tree["tree_structure"]
        tree_root.append(add(root, tree_index))
        # Depth-first with an explicit stack (no recursion limit on deep trees).
        stack: list[tuple[dict[str, Any], int]] = [(root, tree_root[-1])] if tree_root[-1] >= 0 else []
        while stack:
            node, ref = stack.pop()
            for key, children in (("left_child", left_child), ("right_child", right_child)):
                child = node[key]
                child_ref = add(child, tree_index)
                children[ref] = child_ref
                if child_ref >= 0:
                    stack.append((child, child_ref))

    ensemble = TreeEnsemble(
        split_feature=np.asarray(split_feature, dtype=np.int32),
        threshold=np.asarray(threshold, dtype=np.float64),
        left_child=np.asarray(left_child, dtype=np.int32),
        right_child=np.asarray(right_child, dtype=np.int32),
        default_left=np.asarray(default_left, dtype=np.bool_),
        missing_type=np.asarray(missing_type, dtype=np.int8),
        leaf_value=np.asarray(leaf_value, dtype=np.float64),
        tree_root=np.asarray(tree_root, dtype=np.int32),
        feature_names=feature_names,
    )
    logger.info("converted LightGBM booster: %d trees, %d splits, %d leaves, max depth %d",
                ensemble.n_trees, ensemble.n_nodes, ensemble.n_leaves, ensemble.max_depth)
    return ensemble
