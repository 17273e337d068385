"""The batch path (:mod:`recsvc.ranking.batch`) answers what Recommend answers, customer for customer."""

from __future__ import annotations

import numpy as np

from recsvc.ranking import LoadedModel, RecommendationEngine, RecommendQuery
from recsvc.ranking.batch import rank_rows, recommend_many
from tests.toy_model import CREATED_AT, build_toy_artifacts


def _engine() -> RecommendationEngine:
    return RecommendationEngine(LoadedModel(build_toy_artifacts()), clock=lambda: CREATED_AT)


def test_recommend_many_equals_recommend_for_every_customer_and_channel() -> None:
    engine = _engine()
    customers = list(engine.model.customers.ids.astype(str))
    for channel in ("web", "app", "store"):
        batch = list(recommend_many(engine, customers, channel, 5))
        assert len(batch) == len(customers)
        for customer, result in zip(customers, batch, strict=True):
            alone = engine.recommend(RecommendQuery(customer_id=customer, channel=channel, num_items=5))
            assert result == alone


def test_rank_rows_holds_the_same_items_and_scores_and_reports_progress() -> None:
    engine = _engine()
    model = engine.model
    rows = np.arange(model.n_customers)
    done: list[int] = []
    ranked = rank_rows(engine, rows, "store", 4, progress=done.append)
    assert ranked.items.shape == (model.n_customers, 4) and ranked.items.dtype == np.int32
    assert done == [model.n_customers]
    for i, row in enumerate(rows):
        alone = engine.recommend(RecommendQuery(customer_id=model.customer_id(int(row)), channel="store",
                                                num_items=4))
        assert [model.item_id(int(r)) for r in ranked.items[i] if r >= 0] == [s.item_id for s in alone.items]
        np.testing.assert_allclose(ranked.scores[i, :len(alone.items)], [s.score for s in alone.items], rtol=1e-6)
