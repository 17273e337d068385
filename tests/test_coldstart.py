"""Cold start: attribute features, LightFM on a toy set whose answer is known, the serving source and policy."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from recsvc.artifacts import ArtifactError
from recsvc.config import ChannelPolicy, ServerSettings, TrainingSettings
from recsvc.ranking import LoadedModel, ReasonKind, RecommendationEngine, RecommendQuery
from recsvc.ranking.coldstart import ColdStartSource
from recsvc_training.evaluation.coldstart import evaluate_coldstart
from recsvc_training.input import columns as C
from recsvc_training.input.ingest import load_training_data
from recsvc_training.models.coldstart import ALL_CUSTOMERS_FEATURE, attribute_features, fit_lightfm
from recsvc_training.sample import generate_sample
from tests.toy_model import CREATED_AT, CUSTOMERS, ITEMS, ROW, build_toy_artifacts

TOY_LFM = TrainingSettings(lfm_components=8, lfm_epochs=40, lfm_learning_rate=0.05, lfm_threads=1)


def test_attribute_features_are_normalised_rows_with_identity_and_shared_features() -> None:
    frame = pd.DataFrame({"id": ["b", "a", "c", "zz"], "area": ["North", "South", "", "East"],
                          "age": ["25-34", "", "", "18-24"]})
    ids = np.array(["a", "b", "c"])  # "zz" is not asked for, "c" has no attribute
    users = attribute_features(frame, "id", ids, ["area", "age", "missing_column"], identity=False,
                               shared_feature=ALL_CUSTOMERS_FEATURE)
    dense = users.matrix.toarray()
    assert users.names[-1] == ALL_CUSTOMERS_FEATURE and "area=North" in users.names
    np.testing.assert_allclose(dense.sum(axis=1), 1.0, rtol=1e-6)  # rows sum to 1, as LightFM's Dataset does
    assert np.count_nonzero(dense[ids.tolist().index("b")]) == 3  # North, 25-34, all
    assert np.count_nonzero(dense[ids.tolist().index("c")]) == 1  # only the shared feature
    assert users.has_attributes.tolist() == [True, True, False]

    items = attribute_features(frame, "id", ids, ["area"], identity=True)
    assert items.names[:3] == ("a", "b", "c")  # one identity feature per row first
    assert items.matrix[0, 0] == pytest.approx(0.5) and items.matrix[2, 2] == pytest.approx(1.0)


def _garden_and_pet_shop() -> tuple[pd.DataFrame, pd.DataFrame, sp.csr_matrix, np.ndarray, np.ndarray]:
    """Northerners buy garden items, southerners pet items; item g9 (garden, brand Greenthumb) is new."""
    rng = np.random.default_rng(0)
    customers = pd.DataFrame({C.CUSTOMER_ID: [f"c{i:02d}" for i in range(40)] + ["new"],
                              "area": ["North"] * 20 + ["South"] * 20 + ["North"]})
    item_ids = [f"g{i}" for i in range(10)] + [f"p{i}" for i in range(10)]
    items = pd.DataFrame({C.ITEM_ID: item_ids, C.CATEGORY: ["garden"] * 10 + ["pet"] * 10,
                          "brand": ["Greenthumb"] * 10 + ["Pawsome"] * 10})
    rows, cols = [], []
    for c in range(40):
        pool = np.arange(9) if c < 20 else np.arange(10, 20)  # nobody buys g9
        for item in rng.choice(pool, size=4, replace=False):
            rows.append(c)
            cols.append(item)
    interactions = sp.csr_matrix((np.ones(len(rows), dtype=np.float32), (rows, cols)), shape=(41, 20))
    return customers, items, interactions, customers[C.CUSTOMER_ID].to_numpy(), np.asarray(item_ids)


def test_a_new_item_with_features_but_no_interactions_can_be_recommended() -> None:
    customers, items, interactions, customer_ids, item_ids = _garden_and_pet_shop()
    users = attribute_features(customers, C.CUSTOMER_ID, customer_ids, ["area"], identity=False,
                               shared_feature=ALL_CUSTOMERS_FEATURE)
    catalog = attribute_features(items, C.ITEM_ID, item_ids, [C.CATEGORY, "brand"], identity=True)
    embeddings = fit_lightfm(interactions, users, catalog, TOY_LFM)

    assert embeddings.user_embeddings.shape == (41, 8) and embeddings.item_embeddings.shape == (20, 8)
    new_customer = np.flatnonzero(customer_ids == "new")  # no interaction at all: attributes only
    scores = embeddings.scores(new_customer)[0]
    new_item = int(np.flatnonzero(item_ids == "g9")[0])
    pet = np.arange(10, 20)
    # never bought by anybody, yet its category and brand put it above every item of the other group's taste
    assert scores[new_item] > scores[pet].max()


def _with_coldstart(cold: tuple[str, ...] = ("C003",), dim: int = 2):
    """The toy set plus LightFM arrays: C003 points at paper towels H03, everyone else elsewhere."""
    artifacts = build_toy_artifacts()
    n_customers, n_items = len(CUSTOMERS), len(ITEMS)
    users = np.zeros((n_customers, dim), dtype=np.float32)
    users[:, 1] = 1.0
    users[CUSTOMERS.index("C003")] = (1.0, 0.0)
    item_vectors = np.zeros((n_items, dim), dtype=np.float32)
    item_vectors[ROW["H03"]] = (5.0, 0.0)
    item_vectors[ROW["B04"]] = (0.0, 5.0)
    artifacts.arrays.update(
        lfm_user_embeddings=users, lfm_user_biases=np.zeros(n_customers, dtype=np.float32),
        lfm_item_embeddings=item_vectors, lfm_item_biases=np.zeros(n_items, dtype=np.float32),
        coldstart_customer=np.isin(np.asarray(CUSTOMERS), cold))
    return artifacts


def _engine(artifacts, settings: ServerSettings | None = None) -> RecommendationEngine:
    return RecommendationEngine(LoadedModel(artifacts), settings or ServerSettings(artifact_root="/nonexistent"),
                                clock=lambda: CREATED_AT)


def test_customers_the_trainer_marked_cold_get_the_coldstart_policy_and_source() -> None:
    engine = _engine(_with_coldstart())
    cold = engine.recommend(RecommendQuery(customer_id="C003", channel="web", num_items=4))
    assert cold.policy == "coldstart" and cold.known_customer
    towels = next(s for s in cold.items if s.item_id == "H03")
    assert towels.reason.kind == ReasonKind.CUSTOMERS_LIKE_YOU
    assert towels.reason.text == "Customers like you bought this"
    warm = engine.recommend(RecommendQuery(customer_id="C002", channel="web", num_items=4))
    assert warm.policy == "blend"  # not marked cold: the usual blend, without the LightFM source
    assert "H03" not in [s.item_id for s in warm.items]


def test_coldstart_keeps_the_channel_policy_rules_under_its_own_name() -> None:
    # C003 bought oat milk D04 online 12 days ago; a web policy hiding purchases of the last 30 days applies
    settings = ServerSettings(artifact_root="/nonexistent", policies={
        "web": ChannelPolicy(name="discovery", weights={"coldstart": 3.0}, exclude_bought_within_days=30)})
    result = _engine(_with_coldstart(), settings).recommend(RecommendQuery(customer_id="C003", channel="web"))
    assert result.policy == "coldstart"
    assert result.items[0].item_id == "H03" and "D04" not in [s.item_id for s in result.items]


def test_a_model_without_coldstart_arrays_serves_nobody_cold() -> None:
    source = ColdStartSource(LoadedModel(build_toy_artifacts()))
    assert not source.serves(CUSTOMERS.index("C003"))


@pytest.mark.parametrize("change", ["shape", "missing", "dtype"])
def test_coldstart_arrays_that_do_not_fit_the_model_are_refused(change: str) -> None:
    artifacts = _with_coldstart()
    if change == "shape":
        artifacts.arrays["lfm_item_embeddings"] = artifacts.arrays["lfm_item_embeddings"][:-1]
    elif change == "missing":
        del artifacts.arrays["lfm_item_biases"]
    else:
        artifacts.arrays["coldstart_customer"] = artifacts.arrays["coldstart_customer"].astype(np.int8)
    with pytest.raises(ArtifactError, match=r"lfm_item|coldstart_customer"):
        _engine(artifacts)


def test_coldstart_evaluation_runs_on_the_sample(tmp_path: Path) -> None:
    generate_sample(tmp_path / "data", n_customers=300, n_items=100, days=60)
    settings = dataclasses.replace(TOY_LFM, progress=False, lfm_components=16, lfm_epochs=5)
    data = load_training_data(tmp_path / "data", settings, tmp_path / "quarantine")
    report = evaluate_coldstart(data, settings, test_days=21)
    assert report.new_customers > 0 and report.k == 10
    assert 0.0 <= report.lightfm["ndcg@10"] <= 1.0 and report.channel_popularity["ndcg@10"] > 0
    assert "LightFM (attributes only)" in report.table()
