"""How a tree ensemble is evaluated: a bit-sliced plan over all trees at once (see :class:`EvaluationPlan`).

:class:`recsvc.ranking.trees.TreeEnsemble` builds one plan per ensemble and hands it blocks of feature rows;
the decision rule (LightGBM's, missing values included) is documented in :mod:`recsvc.ranking.trees`.
"""

from __future__ import annotations

import math
import queue
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from recsvc.artifacts.parts.ranker import MISSING_NONE, MISSING_ZERO

if TYPE_CHECKING:  # the ensemble module builds plans, so it imports this one at run time
    from recsvc.ranking.trees import TreeEnsemble

#: LightGBM's ``kZeroThreshold`` (declared ``const double kZeroThreshold = 1e-35f``, hence the float32 round).
ZERO_THRESHOLD = float(np.float32(1e-35))

#: Most rows evaluated together (a set of rows is a bitmask of ``rows / 64`` uint64 words). 512 rows amortise the
#: fixed cost of the numpy calls over a whole request while the per-block arrays stay cache-sized.
_BLOCK_ROWS = 512

#: Scratch memory one concurrent ``predict`` call may hold; very large ensembles get smaller row blocks.
_WORKSPACE_BUDGET = 32 << 20

_WORD = np.dtype("<u8")  # mask words: little-endian so that bit r of word w is row 64 * w + r after unpackbits
_ALL_ONES = np.uint64(0xFFFFFFFFFFFFFFFF)


def _byte_spread_table() -> np.ndarray:
    """``[8 * 256]`` words: entry ``256 * p + b`` has bit ``p`` set in its byte ``k`` when bit ``k`` of ``b`` is."""
    bits = (np.arange(256)[:, None] >> np.arange(8)) & 1  # [byte value, k]
    spread = (bits[None, :, :] << np.arange(8)[:, None, None]).astype(np.uint8)  # [plane, byte value, k]
    table = spread.reshape(-1).view(_WORD).copy()
    table.setflags(write=False)
    return table


_BYTE_SPREAD = _byte_spread_table()
_PLANE_OFFSET = (np.arange(8, dtype=np.intp) * 256)[:, None]


class _Workspace:
    """Scratch buffers for one ``predict`` call at a time, sized for a full block of rows.

    The large per-block arrays (hundreds of KB each) are reused instead of allocated per call: fresh memory of
    that size comes from the kernel page by page, and those page faults cost more than the arithmetic.
    """

    def __init__(self, plan: EvaluationPlan, words: int) -> None:
        rows = 64 * words
        n_trees, n_nodes = plan.tree_start.size, plan.node_feature.size
        self.prefix = np.empty(plan.features.size * (rows + 1) * words, dtype=_WORD)
        self.go_right = np.empty(n_nodes * words, dtype=_WORD)
        self.missing = np.empty(n_nodes * words, dtype=_WORD)
        self.flip = np.empty(n_nodes * words, dtype=_WORD)
        self.blocks = np.empty(plan.n_block_rows * words, dtype=_WORD)
        self.selected = np.empty(plan.plane_select.size * words, dtype=_WORD)
        # index and leaf double as scratch for the byte lookups (n_trees x n_planes x 8 * words <= their size)
        self.index = np.empty(n_trees * max(rows, 8 * plan.n_planes * words), dtype=np.intp)
        self.leaf = np.empty(n_trees * max(rows, 8 * plan.n_planes * words), dtype=np.float64)

    @staticmethod
    def size(plan: EvaluationPlan, words: int) -> int:
        """Bytes a workspace for ``words``-word row blocks takes."""
        rows = 64 * words
        return 8 * (plan.features.size * (rows + 1) * words
                    + (3 * plan.node_feature.size + plan.n_block_rows + plan.plane_select.size) * words
                    + 2 * plan.tree_start.size * max(rows, 8 * plan.n_planes * words))


def _view(buffer: np.ndarray, *shape: int) -> np.ndarray:
    """The first ``prod(shape)`` entries of a flat scratch buffer as a C-ordered array of ``shape``."""
    return buffer[:math.prod(shape)].reshape(shape)  # math.prod: np.prod on a tuple costs ~4 us, 10x per call


@dataclass(frozen=True, eq=False)
class EvaluationPlan:
    """The ensemble rearranged for :meth:`TreeEnsemble.predict`; derived at construction, never stored.

    Evaluation is bit-sliced: a set of rows is a bitmask (one bit per row, 64 rows per uint64 word) and the
    work is a few numpy calls per tree *level* on arrays of ``nodes x words``. Stepping every (row, tree) pair
    down the trees instead takes ~6 numpy passes over all 100 000 pairs per level for 500 rows x 200 trees,
    3-5 ms in all; this way it is about 1 ms.

    1. For every internal node, the rows going right. Each feature's values are sorted once per block and each
       node's threshold is searched in them: the rows after that point in sorted order go right, read off
       prefix sums of one-bit words (the bits are disjoint, so a sum is an OR). Rows whose value is missing
       for that node are then set to its default side.
    2. The rows reaching every node, level by level: a node's right child gets ``reach & right``, its left
       child ``reach ^ that``. Nodes are numbered in level order, so a level's masks are one slice.
    3. The leaf each row reaches in each tree. A tree's leaves split its rows, so OR-ing the masks of the
       leaves whose local index has bit ``p`` set gives bit ``p`` of every row's leaf index (a bit plane);
       the planes are unpacked into integers.
    4. The leaf values, gathered and summed over the trees in tree order in float64, as LightGBM sums them.
    """

    features: np.ndarray            # intp [n_used]: columns of X that some node tests
    thresholds: tuple[np.ndarray, ...]  # per used feature: distinct thresholds of its nodes, ascending
    threshold_bounds: np.ndarray    # intp [n_used + 1]: slice of each feature in the sorted-threshold order
    node_feature: np.ndarray        # intp [n_nodes], level order: index into ``features``
    node_slot: np.ndarray           # intp [n_nodes], level order: its threshold's position in that order
    node_missing_row: np.ndarray    # intp [n_nodes], level order: row of the missing-value mask table
    node_missing_right: np.ndarray  # uint64 [n_nodes, 1], level order: all ones where a missing value goes right
    level_sizes: tuple[int, ...]    # internal nodes per level
    level_next: tuple[np.ndarray, ...]  # per level: positions in its child block of the next level's nodes
    n_block_rows: int               # masks in the child-block array: all rows, 2 per internal node, a zero mask
    plane_select: np.ndarray        # intp: child-block rows to OR per (tree, plane), each run led by the zero mask
    plane_start: np.ndarray         # intp [n_trees * n_planes]: where each (tree, plane) run starts
    n_planes: int                   # bits of the largest local leaf index
    tree_start: np.ndarray          # intp [n_trees]: first leaf of each tree in ``leaf_value``
    leaf_value: np.ndarray          # float64 [n_leaves]: leaf values grouped by tree, in local index order
    words: int = _BLOCK_ROWS // 64  # words per row mask: rows per block / 64
    workspaces: queue.SimpleQueue[_Workspace] = field(default_factory=queue.SimpleQueue, repr=False)

    @property
    def block_rows(self) -> int:
        return 64 * self.words

    @classmethod
    def build(cls, ensemble: TreeEnsemble) -> EvaluationPlan:
        """Derive the plan from a validated ensemble (the structure checks make every index safe here)."""
        left = ensemble.left_child.astype(np.intp)
        right = ensemble.right_child.astype(np.intp)
        roots = ensemble.tree_root.astype(np.intp)
        n_leaves, n_trees = ensemble.n_leaves, ensemble.n_trees

        # Level order and child blocks: block d holds the left children of level d's nodes, then their right
        # children; the next level's nodes are the internal ones among them, in block order. Row 0 holds all
        # rows (the mask of a tree that is a single leaf), the last row stays zero.
        leaf_source = np.zeros(n_leaves, dtype=np.intp)
        leaf_tree = np.empty(n_leaves, dtype=np.intp)
        leaf_tree[~roots[roots < 0]] = np.flatnonzero(roots < 0)
        current, owner = roots[roots >= 0], np.flatnonzero(roots >= 0)
        levels: list[np.ndarray] = []
        level_next: list[np.ndarray] = []
        offset = 1
        while current.size:
            levels.append(current)
            children = np.concatenate([left[current], right[current]])
            owner = np.concatenate([owner, owner])
            is_leaf = children < 0
            leaf_source[~children[is_leaf]] = offset + np.flatnonzero(is_leaf)
            leaf_tree[~children[is_leaf]] = owner[is_leaf]
            inner = np.flatnonzero(~is_leaf)
            level_next.append(inner)
            offset += children.size
            current, owner = children[inner], owner[inner]
        zero_row = offset
        level_order = np.concatenate(levels) if levels else np.zeros(0, dtype=np.intp)

        # Distinct thresholds sorted per used feature (LightGBM reuses bin boundaries, so there are far fewer
        # than nodes); each node's slot in that order.
        features, feature_of_node = np.unique(ensemble.split_feature.astype(np.intp), return_inverse=True)
        feature_of_node = feature_of_node.reshape(-1).astype(np.intp)
        by_threshold = np.lexsort((ensemble.threshold, feature_of_node))
        sorted_feature, sorted_threshold = feature_of_node[by_threshold], ensemble.threshold[by_threshold]
        distinct = np.ones(ensemble.n_nodes, dtype=bool)
        distinct[1:] = ((sorted_feature[1:] != sorted_feature[:-1])
                        | (sorted_threshold[1:] != sorted_threshold[:-1]))
        slot = np.empty(ensemble.n_nodes, dtype=np.intp)
        slot[by_threshold] = np.cumsum(distinct) - 1
        bounds = np.searchsorted(sorted_feature[distinct], np.arange(features.size + 1)).astype(np.intp)
        thresholds = tuple(np.ascontiguousarray(sorted_threshold[distinct][bounds[u]:bounds[u + 1]])
                           for u in range(features.size))

        # Missing values: rows 0..n_used-1 of the mask table are "NaN", rows n_used.. are "0 or NaN". With
        # missing_type None a NaN is compared as 0, so it goes right exactly when the threshold is negative.
        missing_type = ensemble.missing_type
        missing_row = np.where(missing_type == MISSING_ZERO, features.size + feature_of_node, feature_of_node)
        goes_right = np.where(missing_type == MISSING_NONE, ensemble.threshold < 0.0, ~ensemble.default_left)
        missing_right = np.where(goes_right, _ALL_ONES, np.uint64(0)).astype(_WORD)

        # Leaves grouped by tree; a leaf's local index is its position in its tree's group.
        grouping = np.argsort(leaf_tree, kind="stable")
        tree_start = np.searchsorted(leaf_tree[grouping], np.arange(n_trees)).astype(np.intp)
        local = np.arange(n_leaves) - np.repeat(tree_start, np.diff(np.append(tree_start, n_leaves)))
        n_planes = max(1, int(local.max()).bit_length())
        source = leaf_source[grouping]
        select: list[np.ndarray] = []
        starts: list[int] = []
        size = 0
        for tree in range(n_trees):
            stop = tree_start[tree + 1] if tree + 1 < n_trees else n_leaves
            for plane in range(n_planes):
                chosen = source[tree_start[tree]:stop][(local[tree_start[tree]:stop] >> plane) & 1 == 1]
                starts.append(size)
                select.append(np.concatenate([[zero_row], chosen]))  # never an empty run for reduceat
                size += chosen.size + 1

        plan = cls(
            features=features, thresholds=thresholds, threshold_bounds=bounds,
            node_feature=feature_of_node[level_order], node_slot=slot[level_order],
            node_missing_row=missing_row[level_order].astype(np.intp),
            node_missing_right=missing_right[level_order][:, None],
            level_sizes=tuple(int(level.size) for level in levels), level_next=tuple(level_next),
            n_block_rows=zero_row + 1, plane_select=np.concatenate(select).astype(np.intp),
            plane_start=np.asarray(starts, dtype=np.intp), n_planes=n_planes,
            tree_start=tree_start, leaf_value=ensemble.leaf_value[grouping])
        while plan.words > 1 and _Workspace.size(plan, plan.words) > _WORKSPACE_BUDGET:
            object.__setattr__(plan, "words", plan.words // 2)
        for value in (plan.features, plan.threshold_bounds, plan.node_feature, plan.node_slot,
                      plan.node_missing_row, plan.node_missing_right, plan.plane_select, plan.plane_start,
                      plan.tree_start, plan.leaf_value, *plan.thresholds, *plan.level_next):
            value.setflags(write=False)
        return plan

    def predict_block(self, x: np.ndarray) -> np.ndarray:
        """Raw scores of at most ``block_rows`` rows of ``x`` (float64, all columns of the ensemble)."""
        try:
            workspace = self.workspaces.get_nowait()
        except queue.Empty:
            workspace = _Workspace(self, self.words)
        try:
            return self._predict_block(x, workspace)
        finally:
            self.workspaces.put(workspace)  # one workspace per concurrent call, reused afterwards

    def _predict_block(self, x: np.ndarray, ws: _Workspace) -> np.ndarray:
        n = x.shape[0]
        if n == 1:  # numpy sums one column pairwise, not in tree order; two copies of the row keep the order
            return self._predict_block(np.repeat(x, 2, axis=0), ws)[:1]
        words = (n + 63) // 64
        n_used, n_nodes, n_trees = self.features.size, self.node_feature.size, self.tree_start.size

        values = x[:, self.features]  # a copy (fancy indexing): the caller's array stays untouched
        values[np.abs(values) <= ZERO_THRESHOLD] = 0.0  # LightGBM drops |x| <= 1e-35 from a row: it reads as 0
        nan = np.isnan(values)
        flags = np.concatenate([nan.T, (nan | (values == 0.0)).T, np.ones((1, n), dtype=bool)])
        masks = _pack_rows(flags, words)  # [2 * n_used + 1, words]: NaN, 0-or-NaN per feature, all rows
        all_rows = masks[-1]

        # 1. Rows going right at each node. NaNs sort last as +inf; their bits are replaced below.
        keys = np.where(nan, np.inf, values).T.copy()  # [n_used, n]
        order = np.argsort(keys, axis=1)
        keys = np.take_along_axis(keys, order, axis=1)
        below = np.empty(self.threshold_bounds[-1], dtype=np.intp)  # per slot: rows with x <= threshold
        for u, thresholds in enumerate(self.thresholds):
            below[self.threshold_bounds[u]:self.threshold_bounds[u + 1]] = np.searchsorted(
                keys[u], thresholds, side="right")
        prefix = _view(ws.prefix, n_used, n + 1, words)  # [u, i]: rows at sorted positions < i
        prefix.fill(0)
        cell = np.right_shift(order, 6)  # word of the row, then + offset of (feature u, position i + 1)
        cell += np.arange(words, (n + 1) * words, words)
        cell += (np.arange(n_used) * ((n + 1) * words))[:, None]
        prefix.reshape(-1)[cell] = np.left_shift(np.uint64(1), (order & 63).astype(np.uint64))
        np.cumsum(prefix, axis=1, out=prefix)
        go_right = _view(ws.go_right, n_nodes, words)
        np.take(prefix.reshape(-1, words), self.node_feature * (n + 1) + below[self.node_slot], axis=0,
                out=go_right, mode="wrap")
        np.bitwise_xor(go_right, all_rows, out=go_right)  # rows after the threshold's position
        missing = _view(ws.missing, n_nodes, words)
        np.take(masks, self.node_missing_row, axis=0, out=missing, mode="wrap")
        missing_bits = _view(ws.flip, n_nodes, words)
        np.bitwise_xor(go_right, self.node_missing_right, out=missing_bits)
        missing_bits &= missing
        go_right ^= missing_bits  # missing rows: bits set to their default side

        # 2. Rows reaching every node, one level at a time.
        blocks = _view(ws.blocks, self.n_block_rows, words)
        blocks[0] = all_rows
        blocks[-1] = 0
        reach = np.broadcast_to(all_rows, (self.level_sizes[0] if self.level_sizes else 0, words))
        first, offset = 0, 1
        for size, following in zip(self.level_sizes, self.level_next, strict=True):
            left_rows, right_rows = blocks[offset:offset + size], blocks[offset + size:offset + 2 * size]
            np.bitwise_and(reach, go_right[first:first + size], out=right_rows)
            np.bitwise_xor(reach, right_rows, out=left_rows)
            reach = blocks[offset:offset + 2 * size].take(following, axis=0)
            first, offset = first + size, offset + 2 * size

        # 3. Each row's leaf in each tree, from bit planes of the local leaf index.
        selected = _view(ws.selected, self.plane_select.size, words)
        np.take(blocks, self.plane_select, axis=0, out=selected, mode="wrap")
        planes = np.bitwise_or.reduceat(selected, self.plane_start, axis=0).reshape(n_trees, self.n_planes, words)
        if self.n_planes <= 8:
            # Byte b of plane p spreads into 8 one-byte indices at once: lookup[p, b] has bit p set in byte k
            # when bit k of b is set; the planes' lookups are OR-ed (they set different bits).
            plane_bytes = _view(ws.index, n_trees, self.n_planes, 8 * words)
            np.add(planes.view(np.uint8), _PLANE_OFFSET[:self.n_planes], out=plane_bytes)
            spread = _view(ws.leaf.view(_WORD), n_trees, self.n_planes, 8 * words)
            np.take(_BYTE_SPREAD, plane_bytes, out=spread, mode="wrap")
            local = np.bitwise_or.reduce(spread, axis=1).view(np.uint8)[:, :n]
        else:  # trees with more than 256 leaves
            local = np.zeros((n_trees, n), dtype=np.intp)
            for plane in range(self.n_planes):
                bits = np.unpackbits(planes[:, plane].view(np.uint8), axis=1, bitorder="little")[:, :n]
                local |= bits.astype(np.intp) << plane
        index = _view(ws.index, n_trees, n)
        np.add(local, self.tree_start[:, None], out=index)

        # 4. Sum over trees in tree order: reducing axis 0 of a C-ordered [n_trees, n >= 2] array adds the
        # trees one after another into the float64 accumulator.
        leaf = _view(ws.leaf, n_trees, n)
        np.take(self.leaf_value, index, out=leaf, mode="wrap")
        return leaf.sum(axis=0)


def _pack_rows(flags: np.ndarray, words: int) -> np.ndarray:
    """Bool ``[k, n]`` to ``[k, words]`` little-endian uint64 masks (bit ``r % 64`` of word ``r // 64`` = row r)."""
    packed = np.packbits(flags, axis=1, bitorder="little")
    padded = np.zeros((flags.shape[0], words * 8), dtype=np.uint8)
    padded[:, :packed.shape[1]] = packed
    return padded.view(_WORD)
