"""The numpy tree evaluator (recsvc.ranking.trees) against LightGBM itself and against a plain reference.

What is pinned: ``TreeEnsemble.predict`` equals ``booster.predict(X, raw_score=True)`` for lambdarank, binary
and regression boosters whose features had missing values in training (so every missing_type and both
default directions occur), on inputs holding NaN, 0, -0.0, |x| <= 1e-35, infinities and values equal to the
split thresholds; the arrays survive ``np.save``/``np.load`` with ``allow_pickle=False``; malformed arrays
are refused; and the per-request size (500 rows x 15 features x 200 trees) is timed.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import lightgbm
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from recsvc.artifacts import ArtifactError
from recsvc.ranking import tree_plan
from recsvc.ranking.trees import (
    MISSING_NAN,
    MISSING_NONE,
    MISSING_ZERO,
    ZERO_THRESHOLD,
    TreeEnsemble,
    TreeEnsembleError,
)
from recsvc_training.ranker.fit import fit_ranker, tree_ensemble_from_lightgbm

N_FEATURES = 15
NAMES = [f"f{i:02d}" for i in range(N_FEATURES)]

# Inputs the decision rule treats specially: missing, zero (and what counts as zero), infinities.
SPECIAL = [np.nan, 0.0, -0.0, 1e-36, -1e-36, ZERO_THRESHOLD, np.inf, -np.inf, 1.0, -1.0]


# --- data and boosters -------------------------------------------------------------------------------------

def candidate_features(rng: np.random.Generator, n: int) -> np.ndarray:
    """Recommendation-like candidate features: counts with many zeros, recencies and ratios with missing
    values (a never-bought item has no recency), scores around zero. Columns 0-3 never miss in training
    (missing_type None), the others miss 10-40 % of the time (missing_type NaN)."""
    X = np.empty((n, N_FEATURES))
    X[:, 0] = rng.poisson(0.7, n)                      # purchase count
    X[:, 1] = rng.normal(0.0, 1.0, n)                  # CF score
    X[:, 2] = rng.exponential(1.0, n) * rng.integers(0, 2, n)  # co-purchase score, half zeros
    X[:, 3] = -rng.exponential(2.0, n)                 # negative-only feature
    X[:, 4:] = rng.normal(0.0, 1.0, (n, N_FEATURES - 4))
    X[:, 4] = np.round(X[:, 4] * 30)                   # days since last purchase (coarse)
    for column in range(4, N_FEATURES):
        X[rng.random(n) < rng.uniform(0.1, 0.4), column] = np.nan
    return X


def relevance(rng: np.random.Generator, X: np.ndarray) -> np.ndarray:
    w = rng.normal(0.0, 1.0, N_FEATURES)
    score = np.nan_to_num(X, nan=-1.0) @ w + np.isnan(X[:, 5]) * 1.5 + rng.normal(0.0, 1.0, X.shape[0])
    return np.digitize(score, np.quantile(score, [0.6, 0.85, 0.95]))  # grades 0..3


@pytest.fixture(scope="module")
def lambdarank_booster() -> lightgbm.Booster:
    rng = np.random.default_rng(1)
    groups = [100] * 120
    X = candidate_features(rng, sum(groups))
    return fit_ranker(X, relevance(rng, X), groups, NAMES,
                          params={"num_iterations": 60, "min_data_in_leaf": 20})


@pytest.fixture(scope="module")
def binary_booster() -> lightgbm.Booster:
    rng = np.random.default_rng(2)
    X = candidate_features(rng, 6000)
    y = (relevance(rng, X) > 0).astype(float)
    params = {"objective": "binary", "num_leaves": 31, "min_data_in_leaf": 20, "verbose": -1,
              "num_threads": 2, "deterministic": True, "force_row_wise": True}
    return lightgbm.train(params, lightgbm.Dataset(X, y, feature_name=NAMES), num_boost_round=40)


@pytest.fixture(scope="module")
def regression_zero_booster() -> lightgbm.Booster:
    """zero_as_missing: LightGBM gives these features missing_type Zero (0 and NaN are both missing)."""
    rng = np.random.default_rng(3)
    X = candidate_features(rng, 6000)
    y = relevance(rng, X) + rng.normal(0.0, 0.1, X.shape[0])
    params = {"objective": "regression", "zero_as_missing": True, "num_leaves": 31, "min_data_in_leaf": 20,
              "verbose": -1, "num_threads": 2, "deterministic": True, "force_row_wise": True}
    return lightgbm.train(params, lightgbm.Dataset(X, y, feature_name=NAMES), num_boost_round=40)


@pytest.fixture(scope="module")
def boosters(lambdarank_booster: lightgbm.Booster, binary_booster: lightgbm.Booster,
             regression_zero_booster: lightgbm.Booster) -> dict[str, lightgbm.Booster]:
    return {"lambdarank": lambdarank_booster, "binary": binary_booster, "regression": regression_zero_booster}


@pytest.fixture(scope="module")
def ensembles(boosters: dict[str, lightgbm.Booster]) -> dict[str, TreeEnsemble]:
    return {name: tree_ensemble_from_lightgbm(booster) for name, booster in boosters.items()}


def query_rows(rng: np.random.Generator, n: int, ensemble: TreeEnsemble) -> np.ndarray:
    """Rows mixing realistic values, the special values and the model's own thresholds (ties with <=)."""
    X = candidate_features(rng, n)
    pick = rng.random(X.shape)
    X = np.where(pick < 0.1, rng.choice(SPECIAL, X.shape), X)
    X = np.where((pick >= 0.1) & (pick < 0.2), rng.choice(ensemble.threshold, X.shape), X)
    return X


def assert_matches(booster: lightgbm.Booster, ensemble: TreeEnsemble, X: np.ndarray) -> None:
    expected = np.asarray(booster.predict(X, raw_score=True))
    got = ensemble.predict(X)
    assert got.shape == expected.shape and got.dtype == np.float64
    np.testing.assert_allclose(got, expected, rtol=1e-9, atol=1e-12)


# --- agreement with LightGBM ----------------------------------------------------------------------------

def test_boosters_exercise_every_missing_type_and_both_default_directions(
        ensembles: dict[str, TreeEnsemble]) -> None:
    """The comparisons below only mean something if NaN/Zero/None nodes and both defaults occur."""
    types = np.concatenate([e.missing_type for e in ensembles.values()])
    assert {MISSING_NONE, MISSING_ZERO, MISSING_NAN} <= set(types.tolist())
    for kind in (MISSING_ZERO, MISSING_NAN):
        defaults = np.concatenate([e.default_left[e.missing_type == kind] for e in ensembles.values()])
        assert defaults.any() and not defaults.all(), f"missing_type {kind}: one default direction only"
    none_thresholds = np.concatenate([e.threshold[e.missing_type == MISSING_NONE] for e in ensembles.values()])
    assert (none_thresholds < 0).any() and (none_thresholds > 0).any()  # NaN-as-0 goes both ways


@pytest.mark.parametrize("kind", ["lambdarank", "binary", "regression"])
@pytest.mark.parametrize("n", [1, 2, 63, 64, 65, 500, 512, 513, 1100])
def test_predict_matches_lightgbm_raw_score(kind: str, n: int, boosters: dict[str, lightgbm.Booster],
                                           ensembles: dict[str, TreeEnsemble]) -> None:
    rng = np.random.default_rng(n)
    assert_matches(boosters[kind], ensembles[kind], query_rows(rng, n, ensembles[kind]))


def test_predict_is_bit_for_bit_lightgbm(lambdarank_booster: lightgbm.Booster,
                                        ensembles: dict[str, TreeEnsemble]) -> None:
    """Stronger than the 1e-9 contract: same float64 rule per node, trees summed in LightGBM's order.
    If a LightGBM or numpy upgrade breaks this alone, the contract above still holds."""
    X = query_rows(np.random.default_rng(7), 700, ensembles["lambdarank"])
    np.testing.assert_array_equal(ensembles["lambdarank"].predict(X), lambdarank_booster.predict(X, raw_score=True))


def test_float32_input_and_caller_array_untouched(lambdarank_booster: lightgbm.Booster,
                                                 ensembles: dict[str, TreeEnsemble]) -> None:
    X = query_rows(np.random.default_rng(8), 300, ensembles["lambdarank"]).astype(np.float32)
    before = X.copy()
    assert_matches(lambdarank_booster, ensembles["lambdarank"], X)
    np.testing.assert_array_equal(X, before)


finite_or_special = st.one_of(
    st.sampled_from(SPECIAL),
    st.floats(allow_nan=True, allow_infinity=True, width=64),
    st.floats(min_value=-3.0, max_value=3.0),
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_hypothesis_random_rows_match_lightgbm(data: st.DataObject, boosters: dict[str, lightgbm.Booster],
                                               ensembles: dict[str, TreeEnsemble]) -> None:
    kind = data.draw(st.sampled_from(sorted(boosters)))
    thresholds = ensembles[kind].threshold
    elements = st.one_of(finite_or_special, st.sampled_from(thresholds.tolist()))
    n = data.draw(st.integers(1, 80))
    X = data.draw(hnp.arrays(np.float64, (n, N_FEATURES), elements=elements))
    assert_matches(boosters[kind], ensembles[kind], X)


def test_early_stopping_keeps_best_iteration(lambdarank_booster: lightgbm.Booster) -> None:
    rng = np.random.default_rng(9)
    X = candidate_features(rng, 8000)
    y = relevance(rng, X)
    booster = fit_ranker(X[:6000], y[:6000], [100] * 60, NAMES,
                             params={"num_iterations": 300, "min_data_in_leaf": 20},
                             valid=(X[6000:], y[6000:], [100] * 20))
    assert 0 < booster.best_iteration <= booster.current_iteration()
    ensemble = tree_ensemble_from_lightgbm(booster)
    assert ensemble.n_trees == booster.best_iteration
    assert_matches(booster, ensemble, query_rows(rng, 400, ensemble))


def test_threshold_capped_by_the_dump_is_read_back_as_infinity() -> None:
    """Regression: dump_model writes LightGBM's +inf threshold ("every number left, NaN right") as 1e300;
    taken literally, a row with x = +inf went right instead of left and its score was off by ~0.04."""
    rng = np.random.default_rng(16)
    X = rng.normal(size=(2000, 2))
    X[rng.random(2000) < 0.3, 0] = np.nan
    y = np.isnan(X[:, 0]) + 0.1 * rng.normal(size=2000)
    booster = lightgbm.train({"objective": "regression", "num_leaves": 4, "verbose": -1},
                             lightgbm.Dataset(X, y), num_boost_round=3)
    ensemble = tree_ensemble_from_lightgbm(booster)
    assert np.isposinf(ensemble.threshold).any()
    assert_matches(booster, ensemble, np.array([[np.inf, 0.0], [np.nan, 0.0], [1e308, 0.0], [-np.inf, 0.0]]))


# --- the converter refuses what the evaluator cannot do --------------------------------------------------

def test_converter_refuses_categorical_splits() -> None:
    rng = np.random.default_rng(10)
    X = np.column_stack([rng.integers(0, 8, 3000), rng.normal(size=3000)]).astype(float)
    y = (X[:, 0] % 3 == 0).astype(float)
    params = {"objective": "binary", "verbose": -1, "min_data_per_group": 5, "cat_smooth": 1}
    booster = lightgbm.train(params, lightgbm.Dataset(X, y, categorical_feature=[0]), num_boost_round=5)
    with pytest.raises(TreeEnsembleError, match="categorical"):
        tree_ensemble_from_lightgbm(booster)


def test_converter_refuses_multiclass_and_linear_trees() -> None:
    rng = np.random.default_rng(11)
    X = rng.normal(size=(1500, 3))
    multi = lightgbm.train({"objective": "multiclass", "num_class": 3, "verbose": -1},
                           lightgbm.Dataset(X, rng.integers(0, 3, 1500)), num_boost_round=3)
    with pytest.raises(TreeEnsembleError, match="per iteration"):
        tree_ensemble_from_lightgbm(multi)
    linear = lightgbm.train({"objective": "regression", "linear_tree": True, "verbose": -1},
                            lightgbm.Dataset(X, X @ [1.0, 2.0, 3.0]), num_boost_round=3)
    with pytest.raises(TreeEnsembleError, match="linear"):
        tree_ensemble_from_lightgbm(linear)


@pytest.mark.parametrize("bad", [
    {"y": np.full(200, 31)},                 # above the default label_gain
    {"y": np.full(200, 0.5)},                # not a grade
    {"group_sizes": [100, 99]},              # does not cover the rows
    {"feature_names": ["a"] * N_FEATURES},   # not unique
])
def test_fit_ranker_rejects_inconsistent_input(bad: dict[str, object]) -> None:
    rng = np.random.default_rng(12)
    args: dict[str, object] = {"X": candidate_features(rng, 200), "y": np.zeros(200, dtype=int),
                               "group_sizes": [100, 100], "feature_names": NAMES}
    args.update(bad)
    with pytest.raises(ValueError):
        fit_ranker(**args)  # type: ignore[arg-type]


# --- hand-built ensembles against a plain reference -------------------------------------------------------

def reference_predict(ensemble: TreeEnsemble, X: np.ndarray, roots: np.ndarray | None = None) -> np.ndarray:
    """LightGBM's Tree::NumericalDecision, one row and one node at a time, summed in tree order (over the trees
    at ``roots``, default all)."""
    out = np.zeros(X.shape[0])
    for r, row in enumerate(np.asarray(X, dtype=np.float64)):
        total = 0.0
        for root in (ensemble.tree_root if roots is None else roots):
            node = int(root)
            while node >= 0:
                x = float(row[ensemble.split_feature[node]])
                if abs(x) <= ZERO_THRESHOLD:
                    x = 0.0
                kind = ensemble.missing_type[node]
                if np.isnan(x) and kind != MISSING_NAN:
                    x = 0.0
                if (kind == MISSING_ZERO and x == 0.0) or (kind == MISSING_NAN and np.isnan(x)):
                    go_left = bool(ensemble.default_left[node])
                else:
                    go_left = x <= ensemble.threshold[node]
                node = int(ensemble.left_child[node] if go_left else ensemble.right_child[node])
            total += float(ensemble.leaf_value[~node])
        out[r] = total
    return out


def random_ensemble(rng: np.random.Generator, n_trees: int, n_features: int, values: np.ndarray) -> TreeEnsemble:
    """Random trees (some a single leaf, some deep and lopsided) splitting on thresholds drawn from
    ``values``, with random missing types and default directions."""
    arrays: dict[str, list] = {k: [] for k in ("split_feature", "threshold", "left_child", "right_child",
                                               "default_left", "missing_type", "leaf_value", "tree_root")}

    def grow(depth: int) -> int:
        if depth == 0 or rng.random() < 0.25:
            arrays["leaf_value"].append(float(rng.normal()))
            return ~(len(arrays["leaf_value"]) - 1)
        node = len(arrays["split_feature"])
        arrays["split_feature"].append(int(rng.integers(n_features)))
        arrays["threshold"].append(float(rng.choice(values)))
        arrays["default_left"].append(bool(rng.integers(2)))
        arrays["missing_type"].append(int(rng.integers(3)))
        arrays["left_child"].append(0)
        arrays["right_child"].append(0)
        left = grow(depth - 1)
        right = grow(depth - 1)
        arrays["left_child"][node], arrays["right_child"][node] = left, right
        return node

    for _ in range(n_trees):
        arrays["tree_root"].append(grow(int(rng.integers(0, 9))))
    fields: dict[str, Any] = {k: np.asarray(v) for k, v in arrays.items()}
    return TreeEnsemble(**fields, feature_names=[f"x{i}" for i in range(n_features)])


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), n_rows=st.integers(1, 150), n_trees=st.integers(1, 12))
def test_hypothesis_random_ensembles_match_reference(seed: int, n_rows: int, n_trees: int) -> None:
    rng = np.random.default_rng(seed)
    grid = np.array([-2.0, -1.0, -0.5, 0.0, 0.5, 1.0, 2.0])  # thresholds and values collide often
    ensemble = random_ensemble(rng, n_trees, 4, np.concatenate([grid, grid, [np.inf, -np.inf]]))
    X = rng.choice(np.concatenate([grid, SPECIAL]), size=(n_rows, 4))
    np.testing.assert_array_equal(ensemble.predict(X), reference_predict(ensemble, X))


def test_single_leaf_trees() -> None:
    """A tree that never split is one leaf (tree_root = ~leaf); an ensemble may have no split at all."""
    only_leaves = TreeEnsemble(
        split_feature=np.zeros(0, np.int32), threshold=np.zeros(0), left_child=np.zeros(0, np.int32),
        right_child=np.zeros(0, np.int32), default_left=np.zeros(0, bool), missing_type=np.zeros(0, np.int8),
        leaf_value=np.array([1.5, -0.25]), tree_root=np.array([~0, ~1], np.int32), feature_names=["a"])
    np.testing.assert_array_equal(only_leaves.predict(np.array([[np.nan], [3.0], [0.0]])), [1.25] * 3)
    assert only_leaves.max_depth == 0


def test_known_answer_tree() -> None:
    """One split on 'a' at 0.5 (missing NaN, default right), left leaf 1, right leaf 10."""
    tree = TreeEnsemble(
        split_feature=np.array([0]), threshold=np.array([0.5]), left_child=np.array([~0]),
        right_child=np.array([~1]), default_left=np.array([False]), missing_type=np.array([MISSING_NAN]),
        leaf_value=np.array([1.0, 10.0]), tree_root=np.array([0]), feature_names=["a", "b"])
    X = np.array([[0.5, 0.0], [0.5000001, 0.0], [np.nan, 0.0], [-np.inf, 0.0], [np.inf, 0.0], [0.0, 9.0]])
    np.testing.assert_array_equal(tree.predict(X), [1.0, 10.0, 10.0, 1.0, 10.0, 1.0])


def test_large_ensembles_evaluate_in_smaller_row_blocks(monkeypatch: pytest.MonkeyPatch,
                                                       lambdarank_booster: lightgbm.Booster,
                                                       ensembles: dict[str, TreeEnsemble]) -> None:
    """Scratch memory per call is capped; a model over the cap is evaluated 64 rows at a time."""
    monkeypatch.setattr(tree_plan, "_WORKSPACE_BUDGET", 1)
    small_blocks = TreeEnsemble.from_arrays(ensembles["lambdarank"].to_arrays())
    assert small_blocks._plan.block_rows == 64
    assert_matches(lambdarank_booster, small_blocks, query_rows(np.random.default_rng(17), 300, small_blocks))


def test_predict_rejects_wrong_shape(ensembles: dict[str, TreeEnsemble]) -> None:
    ensemble = ensembles["lambdarank"]
    with pytest.raises(ValueError, match="shape"):
        ensemble.predict(np.zeros((3, N_FEATURES - 1)))
    with pytest.raises(ValueError, match="shape"):
        ensemble.predict(np.zeros(N_FEATURES))
    assert ensemble.predict(np.zeros((0, N_FEATURES))).shape == (0,)


def test_concurrent_predicts_agree(ensembles: dict[str, TreeEnsemble]) -> None:
    """Each concurrent call borrows its own scratch buffers; results must not bleed between threads."""
    ensemble = ensembles["lambdarank"]
    inputs = [query_rows(np.random.default_rng(100 + i), 100 + 97 * i, ensemble) for i in range(6)]
    expected = [ensemble.predict(X) for X in inputs]
    failures: list[int] = []

    def work(i: int) -> None:
        for _ in range(20):
            if not np.array_equal(ensemble.predict(inputs[i]), expected[i]):
                failures.append(i)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(inputs))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failures == []


# --- storage ------------------------------------------------------------------------------------------------

def test_round_trip_through_npy_files_without_pickle(tmp_path: Path, lambdarank_booster: lightgbm.Booster,
                                                    ensembles: dict[str, TreeEnsemble]) -> None:
    ensemble = ensembles["lambdarank"]
    arrays = ensemble.to_arrays()
    assert set(arrays) == {"ranker_" + name for name in (
        "split_feature", "threshold", "left_child", "right_child", "default_left", "missing_type",
        "leaf_value", "tree_root", "feature_names")}
    assert arrays["ranker_feature_names"].dtype.kind == "U"
    assert all(a.dtype != object for a in arrays.values())
    for name, array in arrays.items():  # what recsvc.artifacts does on write and read
        np.save(tmp_path / f"{name}.npy", array, allow_pickle=False)
    for mmap in (None, "r"):
        loaded = {name: np.load(tmp_path / f"{name}.npy", allow_pickle=False, mmap_mode=mmap) for name in arrays}
        restored = TreeEnsemble.from_arrays({**loaded, "item_ids": np.array(["x"])})  # other arrays ignored
        assert restored.feature_names == tuple(NAMES)
        X = query_rows(np.random.default_rng(13), 250, ensemble)
        np.testing.assert_array_equal(restored.predict(X), ensemble.predict(X))
        assert_matches(lambdarank_booster, restored, X)


def test_stored_arrays_are_read_only_copies(ensembles: dict[str, TreeEnsemble]) -> None:
    arrays = ensembles["binary"].to_arrays()
    restored = TreeEnsemble.from_arrays(arrays)
    arrays["ranker_left_child"][0] = 10**6  # the caller's array, not the ensemble's
    assert restored.left_child[0] != 10**6
    with pytest.raises(ValueError):
        restored.left_child[0] = 1


def corrupt(arrays: dict[str, np.ndarray], name: str, index: int, value: object) -> dict[str, np.ndarray]:
    out = {k: v.copy() for k, v in arrays.items()}
    out[name][index] = value
    return out


def test_validate_rejects_corrupted_arrays(ensembles: dict[str, TreeEnsemble]) -> None:
    ensemble = ensembles["lambdarank"]
    arrays = ensemble.to_arrays()
    n_nodes, n_leaves = ensemble.n_nodes, ensemble.n_leaves
    root = int(ensemble.tree_root[0])
    child = int(ensemble.left_child[root])
    cases = {
        "child index past the nodes": corrupt(arrays, "ranker_left_child", 0, n_nodes + 5),
        "leaf index past the leaves": corrupt(arrays, "ranker_right_child", 0, ~(n_leaves + 5)),
        "cycle back to the root": corrupt(arrays, "ranker_left_child", child if child >= 0 else root, root),
        "shared subtree": corrupt(arrays, "ranker_right_child", root, int(ensemble.left_child[root])),
        "feature out of range": corrupt(arrays, "ranker_split_feature", 0, N_FEATURES),
        "NaN leaf value": corrupt(arrays, "ranker_leaf_value", 0, np.nan),
        "NaN threshold": corrupt(arrays, "ranker_threshold", 0, np.nan),
        "unknown missing type": corrupt(arrays, "ranker_missing_type", 0, 3),
        "root past the nodes": corrupt(arrays, "ranker_tree_root", 0, n_nodes),
    }
    for label, bad in cases.items():
        with pytest.raises(TreeEnsembleError):
            TreeEnsemble.from_arrays(bad)
            pytest.fail(f"accepted: {label}")
    with pytest.raises(TreeEnsembleError, match="missing"):
        TreeEnsemble.from_arrays({k: v for k, v in arrays.items() if k != "ranker_threshold"})
    with pytest.raises(TreeEnsembleError, match="dtype"):
        TreeEnsemble.from_arrays({**arrays, "ranker_left_child": arrays["ranker_left_child"].astype(float)})
    # The server refuses the artifact set through the same exception type as any other corruption.
    assert issubclass(TreeEnsembleError, ArtifactError)


def test_validate_rejects_orphan_node_and_length_mismatch() -> None:
    base: dict[str, Any] = {"split_feature": np.array([0, 0]), "threshold": np.array([0.0, 1.0]),
            "left_child": np.array([~0, ~2]), "right_child": np.array([~1, ~3]),
            "default_left": np.array([True, True]), "missing_type": np.array([0, 0]),
            "leaf_value": np.array([1.0, 2.0, 3.0, 4.0]), "tree_root": np.array([0])}
    with pytest.raises(TreeEnsembleError, match="not reachable"):
        TreeEnsemble(**base, feature_names=["a"])  # node 1 and leaves 2, 3 hang off no root
    with pytest.raises(TreeEnsembleError, match="one per node"):
        TreeEnsemble(**{**base, "threshold": np.array([0.0])}, feature_names=["a"])



@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), n_trees=st.integers(2, 10), data=st.data())
def test_a_slice_of_trees_scores_those_trees_alone(seed: int, n_trees: int, data: st.DataObject) -> None:
    """``trees(start, stop)`` renumbers nodes and leaves and scores exactly the reference sum over those trees."""
    rng = np.random.default_rng(seed)
    grid = np.array([-1.0, 0.0, 0.5, 2.0])
    ensemble = random_ensemble(rng, n_trees, 3, np.concatenate([grid, [np.inf]]))
    start = data.draw(st.integers(0, n_trees - 1))
    stop = data.draw(st.integers(start + 1, n_trees))
    X = rng.choice(np.concatenate([grid, SPECIAL]), size=(40, 3))
    part = ensemble.trees(start, stop)
    assert part.n_trees == stop - start
    assert part.n_nodes + part.n_leaves < ensemble.n_nodes + ensemble.n_leaves or (start, stop) == (0, n_trees)
    np.testing.assert_array_equal(part.predict(X), reference_predict(ensemble, X, ensemble.tree_root[start:stop]))


def test_first_trees_equal_lightgbm_after_that_many_iterations(lambdarank_booster: lightgbm.Booster,
                                                               ensembles: dict[str, TreeEnsemble]) -> None:
    ensemble = ensembles["lambdarank"]
    X = query_rows(np.random.default_rng(5), 300, ensemble)
    for k in (1, 7, ensemble.n_trees - 1):
        np.testing.assert_array_equal(ensemble.trees(0, k).predict(X),
                                      lambdarank_booster.predict(X, raw_score=True, num_iteration=k))
        np.testing.assert_allclose(ensemble.trees(0, k).predict(X) + ensemble.trees(k, ensemble.n_trees).predict(X),
                                   ensemble.predict(X), rtol=1e-12, atol=1e-12)
    for bad in ((3, 3), (-1, 2), (0, ensemble.n_trees + 1)):
        with pytest.raises(ValueError, match="outside"):
            ensemble.trees(*bad)
