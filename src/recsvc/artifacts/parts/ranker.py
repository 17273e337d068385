"""The optional learned ranker: a gradient-boosted tree ensemble as flat arrays (``recsvc.ranking.trees``
evaluates it).

All trees are packed into one set of arrays (``n_nodes`` = internal nodes of all trees, ``n_leaves`` =
leaves of all trees, ``n_trees`` = trees). Children follow LightGBM's own convention: a child ``c >= 0`` is the
internal node ``c``, a child ``c < 0`` is the leaf ``~c`` (``-c - 1``), i.e. a row of ``leaf_value``.

=========================  ========================  ===================================================
array                      dtype, shape              meaning
=========================  ========================  ===================================================
ranker_split_feature       int32, [n_nodes]          column of ``X`` the node tests
ranker_threshold           float64, [n_nodes]        go left when ``x <= threshold`` (x not missing);
                                                     may be +-inf, never NaN
ranker_left_child          int32, [n_nodes]          internal node ``>= 0`` or leaf ``~i`` (``< 0``)
ranker_right_child         int32, [n_nodes]          as ``left_child``
ranker_default_left        bool, [n_nodes]           where a *missing* value goes
ranker_missing_type        int8, [n_nodes]           0 None, 1 Zero, 2 NaN (``recsvc.ranking.trees``)
ranker_leaf_value          float64, [n_leaves]       output of each leaf (learning rate applied)
ranker_tree_root           int32, [n_trees]          root of each tree, encoded like a child (a tree
                                                     that never split is a single leaf, ``~i``)
ranker_feature_names       U, [n_features]           names of the columns of ``X``, in order
=========================  ========================  ===================================================

``extra.ranker`` holds what the trainer measured, ``pool_per_source`` (candidates per source) and, when the
trainer chose one, ``cascade`` (``{"trees": k, "keep": m}``: the first ``k`` trees score every pool row, the
rest each pool's ``m`` best rows; ``recsvc.ranking.cascade``).
Reading the part checks that the arrays are well-formed trees (:func:`tree_depths`), so a set with a
malformed ranker is refused at load like any other corrupt set.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Self

import numpy as np

from recsvc.artifacts.errors import ArtifactError
from recsvc.artifacts.part import Part, SetContext

PREFIX = "ranker_"
#: Tree field -> (dtype kinds accepted, stored dtype); the array of field ``f`` is ``ranker_f``.
FIELDS: dict[str, tuple[str, np.dtype]] = {
    "split_feature": ("iu", np.dtype(np.int32)),
    "threshold": ("f", np.dtype(np.float64)),
    "left_child": ("iu", np.dtype(np.int32)),
    "right_child": ("iu", np.dtype(np.int32)),
    "default_left": ("b", np.dtype(np.bool_)),
    "missing_type": ("iu", np.dtype(np.int8)),
    "leaf_value": ("f", np.dtype(np.float64)),
    "tree_root": ("iu", np.dtype(np.int32)),
}
FEATURE_NAMES = PREFIX + "feature_names"
RANKER_EXTRA = "ranker"
#: The key of the two-stage scoring in ``extra.ranker`` (see the module docstring).
CASCADE_STATS = "cascade"
#: ``missing_type`` codes, in LightGBM's order (``MissingType::None/Zero/NaN``).
MISSING_NONE = 0
MISSING_ZERO = 1
MISSING_NAN = 2
MISSING_TYPE_NAMES: tuple[str, ...] = ("None", "Zero", "NaN")


class TreeEnsembleError(ArtifactError, ValueError):
    """A tree ensemble is malformed or uses something this evaluator does not support; the message says what.

    It is an :class:`~recsvc.artifacts.ArtifactError`, so a server that refuses a corrupt artifact set refuses
    a corrupt ranker the same way, and a ``ValueError`` for callers that build ensembles by hand.
    """


@dataclass(frozen=True, eq=False)
class RankerPart(Part):
    """The tree arrays, copied into their stored dtypes, read-only, checked at construction."""

    NAME = "ranker"
    REQUIRED = False
    ARRAYS = (*(PREFIX + name for name in FIELDS), FEATURE_NAMES)
    EXTRA_KEYS = (RANKER_EXTRA,)

    split_feature: np.ndarray
    threshold: np.ndarray
    left_child: np.ndarray
    right_child: np.ndarray
    default_left: np.ndarray
    missing_type: np.ndarray
    leaf_value: np.ndarray
    tree_root: np.ndarray
    feature_names: Sequence[str]
    stats: Mapping[str, Any] = field(default_factory=dict)
    #: Splits on the longest root-to-leaf path of each tree (derived).
    depths: np.ndarray = field(init=False, repr=False)

    def __post_init__(self) -> None:
        for name, (kinds, dtype) in FIELDS.items():
            object.__setattr__(self, name, _frozen_array(getattr(self, name), name, kinds, dtype))
        if isinstance(self.feature_names, str):
            raise TreeEnsembleError("feature_names must be a sequence of names, not one string")
        object.__setattr__(self, "feature_names", tuple(str(name) for name in self.feature_names))
        object.__setattr__(self, "depths", tree_depths(self))

    def to_arrays(self) -> dict[str, np.ndarray]:
        """Every array has a plain dtype (no objects), so ``np.save(..., allow_pickle=False)`` accepts it."""
        arrays = {PREFIX + name: np.array(getattr(self, name)) for name in FIELDS}
        arrays[FEATURE_NAMES] = np.asarray(self.feature_names, dtype=np.str_)
        return arrays

    def to_extra(self) -> dict[str, Any]:
        return {RANKER_EXTRA: dict(self.stats)}

    @classmethod
    def read(cls, arrays: Mapping[str, np.ndarray], extra: Mapping[str, Any] | None = None) -> Self:
        """The part from its arrays alone (other keys ignored); raises :class:`TreeEnsembleError`."""
        missing = [name for name in cls.ARRAYS if name not in arrays]
        if missing:
            raise TreeEnsembleError(f"ranker arrays missing: {', '.join(missing)}")
        names = np.asarray(arrays[FEATURE_NAMES])
        if names.ndim != 1 or names.dtype.kind != "U":
            raise TreeEnsembleError(f"{FEATURE_NAMES} must be a 1-D unicode array, got {names.dtype}{names.shape}")
        return cls(**{name: arrays[PREFIX + name] for name in FIELDS}, feature_names=[str(n) for n in names],
                   stats=dict((extra or {}).get(RANKER_EXTRA) or {}))

    @classmethod
    def from_arrays(cls, arrays: Mapping[str, np.ndarray], ctx: SetContext | None = None) -> Self:
        """The part (other keys ignored); the set context only adds the trainer's stats."""
        return cls.read(arrays, ctx.extra if ctx is not None else None)


def tree_depths(t: RankerPart) -> np.ndarray:
    """Check that the arrays describe well-formed trees; the depth of each tree (splits on its longest path).

    Checked: array shapes agree; feature indices are in ``[0, n_features)``; every child and root index
    points at an existing node or leaf; thresholds are not NaN (+-inf is allowed: LightGBM's last bin
    boundary is +inf) and leaf values are finite; ``missing_type`` is 0, 1 or 2; feature names are unique and
    non-empty; and every tree is a proper tree -- following the children from the roots reaches each node and
    each leaf exactly once, which rules out cycles (a traversal could never end), shared subtrees and orphaned
    nodes. Raises :class:`TreeEnsembleError`.
    """
    n_nodes, n_leaves, n_trees = t.split_feature.size, t.leaf_value.size, t.tree_root.size
    n_features = len(t.feature_names)
    for name in ("threshold", "left_child", "right_child", "default_left", "missing_type"):
        size = getattr(t, name).size
        if size != n_nodes:
            raise TreeEnsembleError(f"{name} has {size} entries, split_feature {n_nodes}: one per node")
    if n_trees == 0:
        raise TreeEnsembleError("the ensemble has no trees")
    if n_features == 0:
        raise TreeEnsembleError("the ensemble has no features (feature_names is empty)")
    if len(set(t.feature_names)) != n_features or not all(t.feature_names):
        raise TreeEnsembleError(f"feature names must be unique and non-empty: {list(t.feature_names)}")
    if n_nodes and (t.split_feature.min() < 0 or t.split_feature.max() >= n_features):
        raise TreeEnsembleError(f"split_feature holds columns outside [0, {n_features})")
    if np.any(np.isnan(t.threshold)):
        raise TreeEnsembleError("threshold holds NaN values")
    if not np.all(np.isfinite(t.leaf_value)):
        raise TreeEnsembleError("leaf_value holds NaN or infinite values")
    if n_nodes and (t.missing_type.min() < 0 or t.missing_type.max() > MISSING_NAN):
        raise TreeEnsembleError("missing_type holds codes other than 0 (None), 1 (Zero), 2 (NaN)")
    for name in ("left_child", "right_child", "tree_root"):
        ref = getattr(t, name)
        if ref.size and (ref.max() >= n_nodes or ref.min() < -n_leaves):
            raise TreeEnsembleError(
                f"{name} points outside the ensemble ({n_nodes} nodes, {n_leaves} leaves; leaf i is ~i)")

    # Walk all trees together, one depth level per step. A node seen twice means a cycle or a shared
    # subtree; stopping there bounds the walk by n_nodes steps whatever the arrays hold.
    node_seen = np.zeros(n_nodes, dtype=bool)
    leaf_hits = np.zeros(n_leaves, dtype=np.int64)
    depth = np.zeros(n_trees, dtype=np.int32)
    frontier = t.tree_root.astype(np.intp)
    owner = np.arange(n_trees, dtype=np.intp)
    level = 0
    while frontier.size:
        is_leaf = frontier < 0
        leaf_hits += np.bincount(~frontier[is_leaf], minlength=n_leaves)
        inner, owner = frontier[~is_leaf], owner[~is_leaf]
        if inner.size == 0:
            break
        if np.any(node_seen[inner]) or np.unique(inner).size != inner.size:
            raise TreeEnsembleError(f"a node is reached twice at depth {level}: the trees hold a cycle "
                                    "or share a subtree")
        node_seen[inner] = True
        level += 1
        depth[owner] = level
        frontier = np.concatenate([t.left_child[inner], t.right_child[inner]]).astype(np.intp)
        owner = np.concatenate([owner, owner])
    if not np.all(node_seen):
        raise TreeEnsembleError(f"{int(n_nodes - node_seen.sum())} node(s) are not reachable from any root")
    if np.any(leaf_hits != 1):
        bad = int(np.flatnonzero(leaf_hits != 1)[0])
        raise TreeEnsembleError(f"leaf {bad} is reached {int(leaf_hits[bad])} times; each leaf must be "
                                "reached exactly once")
    return depth


def _frozen_array(value: object, name: str, kinds: str, dtype: np.dtype) -> np.ndarray:
    """A read-only 1-D copy of ``value`` in ``dtype``; integers must fit without wrapping."""
    array = np.asarray(value)
    if array.ndim != 1:
        raise TreeEnsembleError(f"{name} must be 1-D, got shape {array.shape}")
    if array.size and array.dtype.kind not in kinds:
        raise TreeEnsembleError(f"{name} has dtype {array.dtype}, expected {dtype}")
    if array.size and dtype.kind == "i":
        info = np.iinfo(dtype)
        if array.min() < info.min or array.max() > info.max:
            raise TreeEnsembleError(f"{name} holds values that do not fit {dtype}")
    out = np.array(array, dtype=dtype, copy=True)
    out.setflags(write=False)
    return out
