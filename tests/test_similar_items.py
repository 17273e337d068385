"""SimilarItems (issue 14): the next-basket measurement on hand-made logs, the choice where co-occurrence
clearly beats ALS, item-kNN against hand-computed cosines, and the engine serving the chosen method with its
reason."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from recsvc.artifacts import ArtifactError
from recsvc.artifacts.parts.similar_items import SIMILAR_EXTRA
from recsvc.config import ServerSettings
from recsvc.errors import NotFound
from recsvc.ranking import RecommendationEngine
from recsvc.ranking.model import LoadedModel
from recsvc.ranking.reasons import ReasonKind
from recsvc_training.evaluation.similar_items import (
    Pairs,
    SimilarChoice,
    attach_similar_items,
    choose_method,
    measure_methods,
    next_basket_pairs,
)
from recsvc_training.input import columns as C
from recsvc_training.models.item_knn import build_item_neighbours
from tests.toy_model import CREATED_AT, ITEMS, ROW, build_toy_artifacts


def _engine(artifacts) -> RecommendationEngine:
    return RecommendationEngine(LoadedModel(artifacts), ServerSettings(artifact_root="/nonexistent"),
                                clock=lambda: CREATED_AT)


def _blocks_apart(artifacts):
    """The toy set with bakery and dairy in orthogonal ALS dimensions: ALS never relates bread to milk, while
    the co-purchase part says they go together (B01 -> D01 0.5, D01 -> B01 0.6)."""
    factors = artifacts.arrays["als_item_factors"].copy()
    for item, row in ROW.items():
        factors[row] = {"B": (1.0, 0, 0, 0), "D": (0, 1.0, 0, 0)}.get(item[0], factors[row])
        if item[0] in "BD":
            factors[row, 2] = 0.01 * row  # distinct, still orthogonal across the blocks
    artifacts.arrays["als_item_factors"] = factors
    return artifacts


def test_pairs_join_each_basket_to_the_customers_previous_one() -> None:
    events = pd.DataFrame({
        C.CUSTOMER_ID: ["c1", "c1", "c1", "c1", "c2", "c2"],
        C.ITEM_ID: ["A", "B", "C", "A", "B", "C"],
        C.EVENT: [C.PURCHASE] * 6,
        C.DAY: [1, 1, 3, 5, 4, 4]})
    ids = np.array(["A", "B", "C"])
    pairs = next_basket_pairs(events, start_day=3, end_day=10, item_ids=ids)
    got = sorted(zip(ids[pairs.a].tolist(), ids[pairs.b].tolist(), strict=True))
    # c1: day 3 {C} after day 1 {A, B}; day 5 {A} after day 3 {C}; c2 has one basket (no previous one)
    assert got == [("A", "C"), ("B", "C"), ("C", "A")]
    assert len(next_basket_pairs(events, start_day=6, end_day=10, item_ids=ids)) == 0


def test_item_knn_is_the_cosine_of_buyer_sets() -> None:
    # buyers: item 0 {c0, c1, c2}, item 1 {c0, c1}, item 2 {c2}
    matrix = sp.csr_matrix(np.array([[1, 1, 0], [1, 1, 0], [1, 0, 1]], dtype=np.float32))
    knn = build_item_neighbours(matrix, k=5, min_common=1)
    assert knn is not None
    row0 = knn.items[knn.indptr[0]:knn.indptr[1]].tolist()
    assert row0 == [1, 2]
    assert knn.scores[knn.indptr[0]:knn.indptr[1]] == pytest.approx([2 / np.sqrt(6), 1 / np.sqrt(3)])
    strict = build_item_neighbours(matrix, k=5, min_common=2)  # pairs seen once are dropped
    assert strict is not None and strict.items[strict.indptr[0]:strict.indptr[1]].tolist() == [1]
    assert build_item_neighbours(matrix, max_pairs=1) is None  # over the work bound: not built


def test_the_choice_picks_co_occurrence_where_it_clearly_beats_als() -> None:
    model = LoadedModel(_blocks_apart(build_toy_artifacts()))
    # what customers bought next: milk after bread, bread after milk, butter after bread, sponges after soap
    pairs = Pairs(np.array([ROW["B01"], ROW["D01"], ROW["B01"], ROW["H01"]]),
                  np.array([ROW["D01"], ROW["B01"], ROW["D02"], ROW["H02"]]))
    metrics = measure_methods(model, pairs, knn=None)
    assert metrics["copurchase"]["hit_rate@10"] == 1.0
    assert metrics["als"]["hit_rate@10"] == 0.25  # only soap -> sponges, in the same ALS block
    assert choose_method(metrics) == "copurchase"
    # ALS keeps to the category (bakery with bakery); co-purchase crosses into dairy
    assert metrics["als"]["category_match@10"] > metrics["copurchase"]["category_match@10"]


def test_similar_items_serve_the_chosen_method_with_its_reason() -> None:
    artifacts = _blocks_apart(build_toy_artifacts())
    attach_similar_items(artifacts, SimilarChoice("copurchase", 0, 4, {}))
    result = _engine(artifacts).similar_items("B01", 5)
    ids = [s.item_id for s in result.items]
    assert ids[:3] == ["D01", "B04", "D02"]  # the co-purchase row, best first
    assert result.items[0].reason.kind == ReasonKind.BOUGHT_TOGETHER
    assert result.items[0].reason.text == "Often bought together with Bread loaf"
    assert result.items[0].reason.source_item_ids == ("B01",)
    # the row has three neighbours: the rest continues with ALS cosine, with its own reason, below them
    assert result.items[3].reason.kind == ReasonKind.SIMILAR_ITEM
    assert result.items[3].reason.text == "Similar to Bread loaf"
    assert ids[3] not in ids[:3] and "B01" not in ids
    assert all(a.score > b.score for a, b in zip(result.items, result.items[1:], strict=False))
    # the channel filter still applies: croissant B02 is sold in stores only
    assert "B02" not in [s.item_id for s in _engine(artifacts).similar_items("B01", 10, channel="web").items]


def test_item_knn_when_chosen_travels_as_a_part_and_says_why() -> None:
    artifacts = build_toy_artifacts()
    attach_similar_items(artifacts, SimilarChoice("item_knn", 0, 4, {}))
    assert artifacts.extra[SIMILAR_EXTRA]["method"] == "item_knn" and "knn_indptr" in artifacts.arrays
    # the toy history: nobody shares buyers, so every list is ALS; add a pair by hand instead
    n = len(ITEMS)
    artifacts.arrays.update(knn_indptr=np.array([0] + [1] * n, dtype=np.int64),
                            knn_items=np.array([ROW["H03"]], dtype=np.int32),
                            knn_scores=np.array([0.9], dtype=np.float32))
    result = _engine(artifacts).similar_items("B01", 2)
    assert result.items[0].item_id == "H03"
    assert result.items[0].reason.text == "Customers who bought Bread loaf also bought this"


def test_a_set_without_a_choice_answers_with_als_and_a_bad_choice_is_refused() -> None:
    plain = _engine(build_toy_artifacts()).similar_items("B01", 3)
    assert all(s.reason.kind == ReasonKind.SIMILAR_ITEM for s in plain.items)
    with pytest.raises(NotFound):
        _engine(build_toy_artifacts()).similar_items("nope", 3)
    artifacts = build_toy_artifacts()
    artifacts.extra[SIMILAR_EXTRA] = {"method": "item_knn"}  # no neighbours part
    with pytest.raises(ArtifactError, match="item_neighbours"):
        LoadedModel(artifacts)
    artifacts.extra[SIMILAR_EXTRA] = {"method": "telepathy"}
    with pytest.raises(ArtifactError, match="telepathy"):
        LoadedModel(artifacts)
