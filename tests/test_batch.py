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


def test_a_batch_of_pools_equals_each_pool_built_alone_bit_for_bit() -> None:
    """build_pools over many requests (customers on several channels, with and without context, one anonymous)
    gives every request the pool and features build_pool gives it alone: the live path is a batch of one."""
    from recsvc.ranking.features import build_pool, build_pools
    from recsvc.ranking.learned import LearnedRanker
    from recsvc.ranking.sources import RankingContext
    from tests.test_stored_lists import _base

    model = LoadedModel(_base())
    ranker = LearnedRanker.from_model(model)
    assert ranker is not None
    contexts = [RankingContext(customer_row=row, channel_row=channel, today=model.data_end_day + row % 3,
                               history=model.history(row),
                               context_items=np.array([row % 400, 7], dtype=np.int64) if row % 4 == 0
                               else np.zeros(0, dtype=np.int64))
                for row in range(model.n_customers) for channel in (-1, 0, 2)]
    contexts.append(RankingContext(channel_row=1, today=model.data_end_day, context_items=np.array([3, 9])))
    batch = build_pools(model, contexts, ranker.sources, ranker.pool_per_source)
    assert batch.features.shape[0] == batch.bounds[-1] > 0
    for ctx, pool in zip(contexts, batch.pools, strict=True):
        alone = build_pool(model, ctx, ranker.sources, ranker.pool_per_source)
        np.testing.assert_array_equal(pool.items, alone.items)
        np.testing.assert_array_equal(pool.features, alone.features)  # NaN equal to NaN
        np.testing.assert_array_equal(pool.reason_list, alone.reason_list)
        np.testing.assert_array_equal(pool.reason_position, alone.reason_position)
    ranked, one_by_one = ranker.rank_many(contexts), [ranker.rank(ctx) for ctx in contexts]
    for a, b in zip(ranked, one_by_one, strict=True):
        np.testing.assert_array_equal(a.order, b.order)
        np.testing.assert_array_equal(a.scores, b.scores)


def test_the_learned_batch_and_its_workers_answer_what_recommend_answers_one_at_a_time() -> None:
    """recommend_batch / recommend_many (in one process and in two forked workers) and the stored rows of every
    channel at once equal one-at-a-time ranking for every customer of a set with a learned ranker."""
    from recsvc.ranking import batch
    from recsvc.ranking.batch import stored_rows, stored_rows_by_channel
    from tests.test_stored_lists import _base

    engine = RecommendationEngine(LoadedModel(_base()), clock=lambda: CREATED_AT)
    model = engine.model
    customers = [*model.customers.ids.astype(str), "nobody"]
    for channel in ("web", "store", "kiosk"):
        alone = [engine.recommend(RecommendQuery(customer_id=c, channel=channel, num_items=7)) for c in customers]
        assert list(recommend_many(engine, customers, channel, 7)) == alone
        assert list(recommend_many(engine, customers, channel, 7, workers=2)) == alone
    rows = np.arange(model.n_customers)
    together = stored_rows_by_channel(engine, rows, ["web", "app", "store"], 20)
    old_batch = batch.TREE_BATCH
    try:
        batch.TREE_BATCH = 1  # every customer ranked alone
        for channel, (found, ranked) in zip(["web", "app", "store"], together, strict=True):
            single, single_ranked = stored_rows(engine, rows, channel, 20)
            forked, forked_ranked = stored_rows(engine, rows, channel, 20, workers=2)
            assert ranked.all()
            for other, other_ranked in ((single, single_ranked), (forked, forked_ranked)):
                np.testing.assert_array_equal(other_ranked, ranked)
                for name in ("items", "scores", "source", "anchor"):
                    np.testing.assert_array_equal(getattr(other, name), getattr(found, name))
    finally:
        batch.TREE_BATCH = old_batch


def test_recommend_batch_refuses_what_recommend_refuses() -> None:
    import pytest

    from recsvc.errors import InvalidRequest

    engine = _engine()
    customer = str(engine.model.customers.ids[0])
    for bad in (RecommendQuery(customer_id=customer, channel=""),
                RecommendQuery(customer_id=customer, channel="web", num_items=10_000),
                RecommendQuery(customer_id=customer, channel="web", exclude_item_ids=[""])):
        with pytest.raises(InvalidRequest) as alone:
            engine.recommend(bad)
        with pytest.raises(InvalidRequest) as batched:
            engine.recommend_batch([RecommendQuery(customer_id=customer, channel="web"), bad])
        assert str(batched.value) == str(alone.value)
