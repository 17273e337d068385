"""The ANN index for large catalogs: recall against exact scoring, the artifact round trip, the ALS
source on top of it, and the fallbacks (no faiss: exact scoring; an index that does not fit: refused)."""

from __future__ import annotations

import copy
import dataclasses
import logging

import numpy as np
import pytest

from recsvc.artifacts import ArtifactError, load_current, publish_artifacts
from recsvc.artifacts.part import SetContext
from recsvc.artifacts.parts.ann import ANN_ARRAY, KIND_FAISS_IVF, SPACE_COSINE, AnnIndexPart
from recsvc.artifacts.parts.ann_cosine import COSINE_ARRAY
from recsvc.config import TrainingSettings
from recsvc.ranking import LoadedModel, RankingContext, RecommendationEngine, RecommendQuery
from recsvc.ranking import ann as ann_module
from recsvc.ranking.als import AlsSource
from recsvc.ranking.ann import AnnUnavailable, load_ann
from recsvc.ranking.sources import top_k

faiss = pytest.importorskip("faiss")

from recsvc_training.models.ann import (  # noqa: E402
    build_ann_index,
    build_cosine_index,
    default_nlist,
    exact_top_k,
    unit_rows,
)
from tests.toy_model import build_synthetic_artifacts  # noqa: E402

N_ITEMS = 20_000
N_CUSTOMERS = 2_000
FACTORS = 32
#: A low threshold so a 20k-item catalog gets an index; fewer recall users keep the test quick.
SETTINGS = TrainingSettings(ann_min_items=1_000, ann_recall_users=300, progress=False)


def clustered_factors(n_items: int, n_customers: int, factors: int, seed: int = 0, topics: int = 64
                      ) -> tuple[np.ndarray, np.ndarray]:
    """ALS-like factors: items around topic centres with varied norms (popular items are longer), customers
    mixing two topics. Pure Gaussian factors would have no neighbourhood structure for any index to use."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((topics, factors)).astype(np.float32)
    items = centres[rng.integers(0, topics, n_items)] * 0.6 + rng.standard_normal((n_items, factors)) * 0.5
    items *= rng.lognormal(0.0, 0.4, n_items)[:, None] * 0.1
    picks = rng.integers(0, topics, (n_customers, 2))
    users = ((centres[picks[:, 0]] + 0.5 * centres[picks[:, 1]]) * 0.5
             + rng.standard_normal((n_customers, factors)) * 0.4)
    return users.astype(np.float32), items.astype(np.float32)


@pytest.fixture(scope="module")
def factors() -> tuple[np.ndarray, np.ndarray]:
    users, items = clustered_factors(N_ITEMS, N_CUSTOMERS, FACTORS)
    items[:50] = 0.0  # items nobody interacted with have zero factors: they must not break the index
    users[:10] = 0.0
    return users, items


@pytest.fixture(scope="module")
def built(factors: tuple[np.ndarray, np.ndarray]) -> tuple[dict[str, np.ndarray], dict]:
    return build_ann_index(*factors, SETTINGS)


@pytest.fixture(scope="module")
def built_cosine(factors: tuple[np.ndarray, np.ndarray]) -> tuple[dict[str, np.ndarray], dict]:
    return build_cosine_index(factors[1], SETTINGS)


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory, factors: tuple[np.ndarray, np.ndarray],
          built: tuple[dict[str, np.ndarray], dict], built_cosine: tuple[dict[str, np.ndarray], dict]
          ) -> LoadedModel:
    """A 20k-item synthetic set carrying the index, published and loaded back (checksums verified)."""
    artifacts = build_synthetic_artifacts(n_items=N_ITEMS, n_customers=N_CUSTOMERS, factors=FACTORS,
                                          history_per_customer=5, copurchase_per_item=5)
    users, items = factors
    arrays, meta = built
    artifacts.arrays.update(als_user_factors=users, als_item_factors=items, **arrays, **built_cosine[0])
    artifacts.extra.update(ann=meta, ann_cosine=built_cosine[1])
    artifacts.version = "ann-20k"
    root = tmp_path_factory.mktemp("ann-artifacts")
    publish_artifacts(artifacts, root)
    return LoadedModel(load_current(root))


def test_a_model_with_both_indexes_keeps_no_transposed_factor_copies(
        factors: tuple[np.ndarray, np.ndarray], built: tuple[dict[str, np.ndarray], dict],
        built_cosine: tuple[dict[str, np.ndarray], dict]) -> None:
    """At 1M items the two transposed copies are 2 x 244 MB per server process; a model that never scans the
    catalog must not build them, and one without indexes builds them at load, not in its first request."""
    artifacts = build_synthetic_artifacts(n_items=N_ITEMS, n_customers=N_CUSTOMERS, factors=FACTORS,
                                          history_per_customer=5, copurchase_per_item=5)
    users, items = factors
    exact = LoadedModel(artifacts)
    assert exact.ann is None and exact._transposed is not None

    artifacts.arrays.update(als_user_factors=users, als_item_factors=items, **built[0], **built_cosine[0])
    artifacts.extra.update(ann=built[1], ann_cosine=built_cosine[1])
    indexed = LoadedModel(artifacts)
    engine = RecommendationEngine(indexed)
    customer, item = str(indexed.arrays["customer_ids"][123]), str(indexed.arrays["item_ids"][123])
    assert engine.recommend(RecommendQuery(customer_id=customer, channel="web", num_items=10,
                                           context_item_ids=[item])).items
    assert engine.similar_items(item, 10).items
    assert indexed._transposed is None and indexed.n_factors == FACTORS
    # asked for anyway (a tool, a test), they are built then, from the same factors
    np.testing.assert_array_equal(indexed.item_factors_t, items.T)


def test_recall_at_10_is_at_least_095_and_recorded(built: tuple[dict[str, np.ndarray], dict]) -> None:
    arrays, meta = built
    assert meta["kind"] == KIND_FAISS_IVF
    assert meta["recall_at_10"] >= 0.95
    assert meta["recall_users"] == 300 and meta["tuning_users"] == 300
    assert meta["nlist"] == default_nlist(N_ITEMS) and 1 <= meta["nprobe"] <= meta["nlist"]
    assert meta["build_seconds"] > 0 and meta["encoding"] == "SQ8"
    assert meta["tuning"][str(meta["nprobe"])] >= 0.95  # the chosen nprobe reached the target when tuning
    assert arrays[ANN_ARRAY].dtype == np.uint8 and arrays[ANN_ARRAY].ndim == 1
    assert meta["bytes"] == arrays[ANN_ARRAY].size


def test_small_catalogs_get_no_index(factors: tuple[np.ndarray, np.ndarray]) -> None:
    users, items = factors
    arrays, meta = build_ann_index(users, items, TrainingSettings(ann_min_items=N_ITEMS + 1))
    assert arrays == {} and meta["kind"] == "exact" and "ann_min_items" in meta["reason"]


def test_the_index_round_trips_through_publish_and_load(model: LoadedModel,
                                                        built: tuple[dict[str, np.ndarray], dict]) -> None:
    assert model.ann is not None
    assert model.ann.n_items == N_ITEMS and model.ann.nprobe == built[1]["nprobe"]
    assert model.ann.recall_at_10 == pytest.approx(built[1]["recall_at_10"])
    assert np.array_equal(model.arrays[ANN_ARRAY], built[0][ANN_ARRAY])


def test_search_returns_exact_scores_best_first(model: LoadedModel) -> None:
    assert model.ann is not None
    user = np.asarray(model.user_factors[123], dtype=np.float32)
    rows, scores = model.ann.search(user, 25)
    assert rows.dtype == np.int64 and rows.size == 25 and np.unique(rows).size == 25
    np.testing.assert_allclose(scores, user @ model.item_factors_t[:, rows], rtol=1e-5)
    assert np.all(np.diff(scores) <= 0)


def test_als_source_matches_exact_top_items_on_most_queries(model: LoadedModel) -> None:
    source = AlsSource(model)
    customers = np.random.default_rng(3).choice(np.arange(10, N_CUSTOMERS), size=200, replace=False)
    overlaps, identical = [], 0
    for row in customers:
        ctx = RankingContext(customer_row=int(row), history=model.history(int(row)))
        got = source.candidates(ctx, 10).items
        exact = top_k(np.asarray(model.user_factors[row]) @ model.item_factors_t, 10)
        overlaps.append(np.intersect1d(got, exact).size / 10)
        identical += int(np.array_equal(got, exact))
    assert np.mean(overlaps) >= 0.95
    assert identical >= 0.6 * customers.size  # same items in the same order on most queries


def test_zero_vector_customers_get_nothing_from_als(model: LoadedModel) -> None:
    ctx = RankingContext(customer_row=0, history=model.history(0))
    assert len(AlsSource(model).candidates(ctx, 10)) == 0


def test_without_faiss_the_server_scores_exactly_and_warns(model: LoadedModel, monkeypatch: pytest.MonkeyPatch,
                                                            caplog: pytest.LogCaptureFixture) -> None:
    def missing() -> None:
        raise AnnUnavailable("faiss is not installed (pip install 'recsvc[ann]' or faiss-cpu)")

    monkeypatch.setattr(ann_module, "import_faiss", missing)
    with caplog.at_level(logging.WARNING, logger="recsvc.ranking.ann"):
        index = load_ann(model.parts.get(AnnIndexPart), model.item_factors)
    assert index is None
    assert "faiss is not installed" in caplog.text and "exactly" in caplog.text


def test_an_index_of_another_catalog_is_refused(model: LoadedModel) -> None:
    with pytest.raises(ArtifactError, match="holds 20000 items"):
        load_ann(model.parts.get(AnnIndexPart), np.ascontiguousarray(model.item_factors[:100]))

    def part(arrays: dict[str, np.ndarray], extra: dict[str, object]) -> AnnIndexPart:
        return AnnIndexPart.from_arrays(arrays, SetContext(channels=model.channels, extra=extra))

    with pytest.raises(ArtifactError, match="unknown ANN index kind"):
        load_ann(part(dict(model.arrays), {"ann": {**model.extra["ann"], "kind": "hnsw"}}), model.item_factors)
    with pytest.raises(ArtifactError, match="not a readable faiss index"):
        load_ann(part({ANN_ARRAY: np.arange(64, dtype=np.uint8)}, dict(model.extra)), model.item_factors)


def test_exact_top_k_agrees_with_a_full_sort(factors: tuple[np.ndarray, np.ndarray]) -> None:
    users, items = factors
    truth = exact_top_k(users[10:40], items, 10, chunk=7)
    full = np.argsort(-(users[10:40] @ items.T), axis=1, kind="stable")[:, :10]
    assert all(set(a) == set(b) for a, b in zip(truth, full, strict=True))


def test_the_pipeline_builds_the_index_above_the_threshold() -> None:
    """build_artifacts wires the step: with a threshold below the 13-item test shop the set carries an index
    the server loads; with the default threshold it records why there is none."""
    from recsvc_training.assemble import build_artifacts
    from tests.test_pipeline import FAST, shop_data

    small = build_artifacts(shop_data(), FAST)
    assert ANN_ARRAY not in small.arrays and small.extra["ann"]["kind"] == "exact"
    indexed = build_artifacts(shop_data(), dataclasses.replace(FAST, ann_min_items=1, ann_target_recall=0.5))
    assert indexed.extra["ann"]["kind"] == KIND_FAISS_IVF and ANN_ARRAY in indexed.arrays
    assert LoadedModel(indexed).ann is not None


def test_default_nlist_stays_within_faiss_training_limits() -> None:
    assert default_nlist(1_000_000) == 4000
    assert default_nlist(20_000) == 512  # 4 * sqrt(20k) = 566, capped at 20k / 39
    assert default_nlist(100) == 2 and default_nlist(10) == 1



def test_cosine_index_recall_for_similar_items(built_cosine: tuple[dict[str, np.ndarray], dict]) -> None:
    arrays, meta = built_cosine
    assert meta["kind"] == KIND_FAISS_IVF and meta["space"] == SPACE_COSINE
    assert meta["recall_at_10"] >= 0.95 and arrays[COSINE_ARRAY].dtype == np.uint8


def test_similar_items_and_bundle_use_the_cosine_index(model: LoadedModel,
                                                       factors: tuple[np.ndarray, np.ndarray]) -> None:
    """With the index, SimilarItems returns (nearly) the exact answer with exact cosines, without the item
    itself; the bundle's "similar to the basket" fill runs on it too."""
    from recsvc.ranking import BundleQuery, RecommendationEngine

    assert model.ann_cosine is not None
    engine = RecommendationEngine(model)
    exact_model = copy.copy(model)
    exact_model.ann_cosine = None
    exact_engine = RecommendationEngine(exact_model)
    unit = unit_rows(factors[1])
    overlaps = []
    for row in np.random.default_rng(5).choice(np.arange(50, N_ITEMS), size=100, replace=False):
        item_id = model.item_id(int(row))
        got = engine.similar_items(item_id, 10).items
        want = [s.item_id for s in exact_engine.similar_items(item_id, 10).items]
        assert item_id not in {s.item_id for s in got}
        rows = np.array([model.items.row(s.item_id) for s in got])
        np.testing.assert_allclose([s.score for s in got], unit[rows] @ unit[row], rtol=1e-4, atol=1e-6)
        overlaps.append(len({s.item_id for s in got} & set(want)) / 10)
    assert np.mean(overlaps) >= 0.95
    result = engine.bundle(BundleQuery(basket_item_ids=[model.item_id(100), model.item_id(200)], num_items=40))
    assert len(result.items) == 40
    assert {model.item_id(100), model.item_id(200)}.isdisjoint(s.item_id for s in result.items)
