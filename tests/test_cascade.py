"""Two-stage scoring (recsvc.ranking.cascade): which rows the first stage keeps, the scores they get, where the
dropped rows go, how the settings travel from the trainer's stats, and that the learned ranker uses them."""

from __future__ import annotations

from itertools import pairwise
from typing import Any

import lightgbm
import numpy as np
import pandas as pd
import pytest

from recsvc.artifacts import ArtifactError
from recsvc.artifacts.parts.ranker import RANKER_EXTRA
from recsvc.config import TrainingSettings
from recsvc.ranking.cascade import Cascade, CascadeSettings
from recsvc.ranking.features import FEATURE_NAMES, build_pools
from recsvc.ranking.learned import LearnedRanker, pool_sources
from recsvc.ranking.model import LoadedModel
from recsvc.ranking.sources import RankingContext
from recsvc.ranking.trees import TreeEnsemble
from recsvc_training.input import columns as C
from recsvc_training.ranker.cascade_choice import choose_cascade
from recsvc_training.ranker.fit import fit_ranker, tree_ensemble_from_lightgbm
from tests.toy_model import build_synthetic_artifacts

N_FEATURES = 6


@pytest.fixture(scope="module")
def ensemble() -> TreeEnsemble:
    rng = np.random.default_rng(3)
    X = rng.normal(size=(3000, N_FEATURES))
    y = (X[:, 0] + 0.5 * X[:, 1] + rng.normal(0, 0.3, 3000) > 1.0).astype(int)
    booster: lightgbm.Booster = fit_ranker(X, y, np.full(100, 30), [f"f{i}" for i in range(N_FEATURES)],
                                           params={"num_iterations": 40})
    return tree_ensemble_from_lightgbm(booster)


def pools(rng: np.random.Generator, sizes: list[int]) -> tuple[np.ndarray, np.ndarray]:
    bounds = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
    return rng.normal(size=(int(bounds[-1]), N_FEATURES)), bounds


def test_each_pool_keeps_its_best_rows_by_the_first_trees_and_scores_them_with_all(ensemble: TreeEnsemble) -> None:
    X, bounds = pools(np.random.default_rng(0), [50, 3, 0, 21, 8])
    cascade = Cascade(ensemble, CascadeSettings(trees=5, keep=8))
    got = cascade.scores(X, bounds)
    head = ensemble.trees(0, 5).predict(X)
    full = ensemble.predict(X)
    for lo, hi in pairwise(bounds.tolist()):
        if hi == lo:
            continue
        expected_kept = lo + np.argsort(-head[lo:hi], kind="stable")[:8]
        kept = np.zeros(hi - lo, dtype=bool)
        kept[expected_kept - lo] = True
        np.testing.assert_allclose(got[lo:hi][kept], full[lo:hi][kept], rtol=1e-12, atol=1e-12)
        dropped = np.flatnonzero(~kept)
        if dropped.size:
            assert got[lo:hi][dropped].max() < got[lo:hi][kept].min()  # dropped rows come after every kept row
            by_head = dropped[np.argsort(-head[lo:hi][dropped], kind="stable")]
            assert np.all(np.diff(got[lo:hi][by_head]) <= 0)  # ... in the first stage's order
            np.testing.assert_allclose(np.diff(got[lo:hi][by_head]), np.diff(head[lo:hi][by_head]), atol=1e-9)


def test_a_pool_no_larger_than_keep_is_ranked_as_the_whole_ensemble_ranks_it(ensemble: TreeEnsemble) -> None:
    X, bounds = pools(np.random.default_rng(1), [10, 10])
    got = Cascade(ensemble, CascadeSettings(trees=3, keep=10)).scores(X, bounds)
    np.testing.assert_allclose(got, ensemble.predict(X), rtol=1e-12, atol=1e-12)


def test_settings_come_from_the_rankers_stats_or_not_at_all() -> None:
    assert CascadeSettings.from_stats({"cascade": {"trees": 30, "keep": 60}}) == CascadeSettings(30, 60)
    assert CascadeSettings(30, 60).to_stats() == {"trees": 30, "keep": 60}
    for stats in ({}, {"cascade": None}, {"cascade": {"trees": 0, "keep": 60}},
                  {"cascade": {"trees": "30", "keep": 60}}, {"cascade": [30, 60]}):
        assert CascadeSettings.from_stats(stats) is None


def test_a_cascade_needs_fewer_first_trees_than_the_ensemble(ensemble: TreeEnsemble) -> None:
    for trees in (0, ensemble.n_trees):
        with pytest.raises(ArtifactError, match="first trees"):  # so a server refuses a set that names one
            Cascade(ensemble, CascadeSettings(trees=trees, keep=5))


# ------------------------------------------------------------------------------ the trainer's choice

@pytest.fixture(scope="module")
def validation() -> tuple[Any, TreeEnsemble, pd.DataFrame]:
    """A random set (300 customers with ~40 purchases each, 3,000 items), a ranker LightGBM fitted on its real
    pools to a label that follows two features (each pool's top ten by them, so the first trees already find
    them), and a validation window of 120 of its customers on the web."""
    model = LoadedModel(build_synthetic_artifacts(n_items=3000, n_customers=300, factors=8, seed=4))
    contexts = [RankingContext(customer_row=c, channel_row=0, today=model.data_end_day, history=model.history(c))
                for c in range(0, 300, 3)]
    batch = build_pools(model, contexts, pool_sources(model), 30)
    X = np.nan_to_num(batch.features, nan=0.0)
    signal = X[:, 0] + 0.5 * X[:, 3]
    y = np.zeros(signal.size, dtype=np.int32)  # per pool: its 5 best rows by the signal 3, the next 5 2, else 0
    for lo, hi in pairwise(batch.bounds.tolist()):
        ranked = lo + np.argsort(-signal[lo:hi], kind="stable")
        y[ranked[:5]], y[ranked[5:10]] = 3, 2
    booster = fit_ranker(batch.features, y, np.diff(batch.bounds), list(FEATURE_NAMES),
                         params={"num_iterations": 120})
    customers = model.arrays["customer_ids"][np.arange(1, 300, 2)[:120]]
    window = pd.DataFrame({C.CUSTOMER_ID: customers, C.ITEM_ID: model.arrays["item_ids"][:120],
                           C.CHANNEL: ["web"] * 120})
    return model, tree_ensemble_from_lightgbm(booster), window


def test_the_trainer_takes_the_cheapest_cascade_that_agrees_with_the_whole_ensemble(
        validation: tuple[Any, TreeEnsemble, pd.DataFrame]) -> None:
    model, ensemble, window = validation
    settings = TrainingSettings(ranker_cascade_min_agreement=0.99, stored_list_length=20)
    chosen, report = choose_cascade(model, ensemble, 30, window, settings)
    assert chosen is not None and report["pools"] == 120, report
    assert chosen.keep in (20, 40) and chosen.trees < ensemble.n_trees
    assert 0 < report["cost"] < 1
    agreeing = [t for t in report["tried"] if t["agreement"] >= 0.99]
    assert min(t["cost"] for t in agreeing) == report["cost"]  # the cheapest of those that agree
    assert {"trees": chosen.trees, "keep": chosen.keep} in [{"trees": t["trees"], "keep": t["keep"]}
                                                             for t in agreeing]
    assert all(t["cost"] < 1 for t in report["tried"])  # nothing dearer than no cascade is even tried


def test_no_cascade_when_none_agrees_or_it_is_off_or_too_little_is_measured(
        validation: tuple[Any, TreeEnsemble, pd.DataFrame]) -> None:
    model, ensemble, window = validation
    chosen, report = choose_cascade(model, ensemble, 30, window,
                                    TrainingSettings(ranker_cascade_min_agreement=1.01))
    assert chosen is None and "agreed" in report["skipped"] and report["tried"]
    chosen, report = choose_cascade(model, ensemble, 30, window, TrainingSettings(ranker_cascade=False))
    assert chosen is None and report["skipped"] == "ranker_cascade is off"
    chosen, report = choose_cascade(model, ensemble, 30, window.iloc[:10], TrainingSettings())
    assert chosen is None and "fewer than" in report["skipped"]


def test_the_learned_ranker_ranks_with_the_cascade_its_stats_name(
        validation: tuple[Any, TreeEnsemble, pd.DataFrame]) -> None:
    model, ensemble, _ = validation
    stats = {"pool_per_source": 30, "cascade": {"trees": 5, "keep": 3}}
    artifacts = build_synthetic_artifacts(n_items=3000, n_customers=300, factors=8, seed=4)
    artifacts.arrays.update(ensemble.to_arrays())
    artifacts.extra[RANKER_EXTRA] = stats
    ranker = LearnedRanker.from_model(LoadedModel(artifacts))
    assert ranker is not None and ranker.cascade is not None and ranker.cascade.settings == CascadeSettings(5, 3)
    ctx = RankingContext(customer_row=7, channel_row=0, today=model.data_end_day, history=model.history(7))
    ranked = ranker.rank(ctx)
    full = ensemble.predict(ranked.pool.features)
    head = ensemble.trees(0, 5).predict(ranked.pool.features)
    best_by_head = set(np.argsort(-head, kind="stable")[:3].tolist())
    assert set(ranked.order[:3].tolist()) == best_by_head  # the first stage chose the rows the tail scores
    np.testing.assert_allclose(ranked.scores[:3], np.sort(full[list(best_by_head)])[::-1], rtol=1e-12)


def test_a_set_naming_a_cascade_its_ranker_cannot_have_is_refused(
        validation: tuple[Any, TreeEnsemble, pd.DataFrame]) -> None:
    _, ensemble, _ = validation
    artifacts = build_synthetic_artifacts(n_items=3000, n_customers=300, factors=8, seed=4)
    artifacts.arrays.update(ensemble.to_arrays())
    artifacts.extra[RANKER_EXTRA] = {"pool_per_source": 30, "cascade": {"trees": ensemble.n_trees, "keep": 50}}
    with pytest.raises(ArtifactError, match="first trees"):
        LearnedRanker.from_model(LoadedModel(artifacts))
