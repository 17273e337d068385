"""The serving fast path (issue 16): stored nightly lists answer what live ranking answers, and live ranking
takes over the moment something changed.

On a small random set with a learned ranker of the trainer's shape (benchmarks.synthetic's ranker), ranked
by the trainer's own step (recsvc_training.ranker.stored_lists). "Live" is an engine on the same set without
the stored lists, as a server serves an older set.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path

import numpy as np
import pytest

from recsvc.artifacts import ArtifactSet, load_current, read_manifest
from recsvc.artifacts.parts.stored_lists import StoredLists
from recsvc.config import TrainingSettings
from recsvc.events.overlay import CustomerActivity, LiveEvent
from recsvc.ranking import LoadedModel, RecommendationEngine, RecommendQuery
from recsvc.ranking.batch import rank_rows
from recsvc.ranking.features import FEATURE_NAMES
from recsvc.ranking.results import POLICY_LEARNED, RecommendResult
from recsvc_training.ranker.stored_lists import rank_stored_lists
from tests.toy_model import CREATED_AT, build_synthetic_artifacts

CHANNELS = ("web", "app", "store")
SETTINGS = TrainingSettings(stored_list_length=30, progress=False)
#: (the set without stored lists, the same set with them, the part)
Sets = tuple[ArtifactSet, ArtifactSet, StoredLists]


def _base() -> ArtifactSet:
    artifacts = build_synthetic_artifacts(n_items=400, n_customers=120, history_per_customer=10,
                                          copurchase_per_item=12, n_stores=3, store_top_k=30, seed=3)
    # one history entry per distinct item, as the trainer writes it (the random set repeats items)
    a, rng = artifacts.arrays, np.random.default_rng(3)
    indptr = a["hist_indptr"]
    for row in range(indptr.size - 1):
        lo, hi = int(indptr[row]), int(indptr[row + 1])
        a["hist_items"][lo:hi] = rng.choice(a["item_ids"].size, hi - lo, replace=False)
    artifacts.arrays.update(_small_ranker())
    artifacts.extra["ranker"] = {"pool_per_source": 30, "features": list(FEATURE_NAMES)}
    artifacts.validate()
    return artifacts


def _small_ranker() -> dict[str, np.ndarray]:
    """A learned ranker fitted by the trainer's own code on random features (benchmarks.synthetic's recipe,
    20 trees): its answers mean nothing, its trees are real LightGBM trees with NaN handling."""
    from recsvc_training.ranker.fit import fit_ranker, tree_ensemble_from_lightgbm

    rng = np.random.default_rng(7)
    groups = [60] * 20
    X = rng.standard_normal((sum(groups), len(FEATURE_NAMES)))
    X[rng.random(X.shape) < 0.2] = np.nan
    y = (np.nan_to_num(X[:, :6]) @ rng.standard_normal(6) + rng.standard_normal(X.shape[0]) > 1.5).astype(np.int32)
    booster = fit_ranker(X, y, groups, list(FEATURE_NAMES), params={"num_iterations": 20, "num_threads": 1})
    return tree_ensemble_from_lightgbm(booster).to_arrays()


@pytest.fixture(scope="module")
def sets() -> Sets:
    live = _base()
    part = rank_stored_lists(live, SETTINGS)
    assert part is not None
    stored = dataclasses.replace(live, arrays={**live.arrays, **part.to_arrays()},
                                 extra={**live.extra, **part.to_extra()})
    stored.validate()
    return live, stored, part


class _Stock:
    """Every third item out of stock in store S001, no data for other stores."""

    def __init__(self, n_items: int) -> None:
        self.stock = np.arange(n_items) % 3 != 0

    def in_stock(self, store_id: str) -> np.ndarray | None:
        return self.stock if store_id == "S001" else None


def _engine(artifacts: ArtifactSet) -> RecommendationEngine:
    n_items = artifacts.arrays["item_ids"].size
    return RecommendationEngine(LoadedModel(artifacts), clock=lambda: CREATED_AT, stock=_Stock(n_items))


def _wire(result: RecommendResult) -> RecommendResult:
    """``result`` as a client receives it: scores are float32 on the wire (``float score``), and the stored
    lists keep the ranker's scores in float32."""
    items = tuple(dataclasses.replace(s, score=float(np.float32(s.score))) for s in result.items)
    return dataclasses.replace(result, items=items)


def _poisoned(artifacts: ArtifactSet, part: StoredLists) -> RecommendationEngine:
    """The stored set with every stored score raised by 1000: an answer from the stored lists shows it."""
    arrays = {**artifacts.arrays, **dataclasses.replace(part, scores=part.scores + np.float32(1000)).to_arrays()}
    return _engine(dataclasses.replace(artifacts, arrays=arrays))


def _queries(customers: Sequence[str], categories: Sequence[str]) -> list[RecommendQuery]:
    out = []
    for i, customer in enumerate(customers):
        channel = CHANNELS[i % 3]
        out.append(RecommendQuery(customer_id=customer, channel=channel, num_items=10))
        out.append(RecommendQuery(customer_id=customer, channel=channel, num_items=5,
                                  exclude_item_ids=[f"I{j:03d}" for j in range(0, 400, 7)]))
        out.append(RecommendQuery(customer_id=customer, channel=channel, num_items=4,
                                  exclude_categories=list(categories[:5])))
    return out


def test_stored_and_live_answers_are_equal_for_many_customers_and_filters(sets: Sets) -> None:
    live_set, stored_set, part = sets
    live, stored, poisoned = _engine(live_set), _engine(stored_set), _poisoned(stored_set, part)
    model = live.model
    assert part.customers.size == int(np.count_nonzero(np.diff(model.hist_indptr)))
    customers = [model.customer_id(r) for r in range(model.n_customers)]
    from_stored = 0
    for query in _queries(customers, [str(c) for c in model.category_names]):
        expected = live.recommend(query)
        assert _wire(stored.recommend(query)) == _wire(expected), query
        assert expected.policy == POLICY_LEARNED
        from_stored += poisoned.recommend(query).items[0].score > 500
    assert from_stored > 0.9 * 3 * len(customers)  # nearly every answer came from the stored lists


def test_a_store_call_gets_the_channel_list_filtered_by_the_stores_stock(sets: Sets) -> None:
    _, stored_set, part = sets
    engine, poisoned = _engine(stored_set), _poisoned(stored_set, part)
    model = engine.model
    stock = _Stock(model.n_items).stock
    store = model.channel_row("store")
    for slot in range(0, 60, 3):
        row = int(part.customers[slot])
        query = RecommendQuery(customer_id=model.customer_id(row), channel="store", store_id="S001", num_items=8)
        got = engine.recommend(query)
        stored = part.items[store, slot]
        expected = [model.item_id(int(r)) for r in stored if r >= 0 and stock[r]][:8]
        if len(expected) == 8:
            assert [s.item_id for s in got.items] == expected
            assert poisoned.recommend(query).items[0].score > 500
        rows = model.items.lookup([s.item_id for s in got.items])
        assert len(rows) == 8 and stock[rows].all()


def _purchase(engine: RecommendationEngine, customer: str, item: str) -> CustomerActivity:
    row = engine.model.items.row(item)
    event = LiveEvent(event_id="e1", item_id=item, item_row=row, event="purchase", channel="web", store_id="",
                      order_id="o1", quantity=1.0, price=2.0,
                      timestamp_ms=int(CREATED_AT.timestamp() * 1000) + 60_000)
    return CustomerActivity(customer, engine.model.resolve_customer(customer), (event,))


def test_a_fresh_event_or_a_context_id_switches_to_live_at_once(sets: Sets) -> None:
    live_set, stored_set, part = sets
    live, poisoned = _engine(live_set), _poisoned(stored_set, part)
    customer = poisoned.model.customer_id(5)
    query = RecommendQuery(customer_id=customer, channel="web", num_items=6)
    assert poisoned.recommend(query).items[0].score > 500  # nothing changed: the stored list
    with_context = dataclasses.replace(query, context_item_ids=["I010", "I020"])
    assert _wire(poisoned.recommend(with_context)) == _wire(live.recommend(with_context))
    activity = _purchase(poisoned, customer, "I011")
    with_event = dataclasses.replace(query, live=activity)
    assert _wire(poisoned.recommend(with_event)) == _wire(live.recommend(with_event))
    assert poisoned.recommend(with_event).items[0].score < 500
    # an empty overlay (the store holds nothing newer than the cut-off) keeps the stored list
    empty = dataclasses.replace(query, live=CustomerActivity(customer, 5, ()))
    assert poisoned.recommend(empty).items[0].score > 500


def test_a_filter_that_empties_the_stored_list_falls_back_to_live(sets: Sets) -> None:
    live_set, stored_set, part = sets
    live, poisoned = _engine(live_set), _poisoned(stored_set, part)
    model = poisoned.model
    slot = 7
    row = int(part.customers[slot])
    stored_items = part.items[0, slot][part.items[0, slot] >= 0]
    query = RecommendQuery(customer_id=model.customer_id(row), channel="web", num_items=10,
                           exclude_item_ids=[model.item_id(int(r)) for r in stored_items[:len(stored_items) - 5]])
    got = poisoned.recommend(query)
    assert _wire(got) == _wire(live.recommend(query)) and len(got.items) == 10
    assert all(s.score < 500 for s in got.items)
    # asking for more than the stored length ranks live too
    longer = RecommendQuery(customer_id=model.customer_id(row), channel="web", num_items=part.length + 1)
    assert _wire(poisoned.recommend(longer)) == _wire(live.recommend(longer))


def test_an_unknown_customer_an_unknown_channel_and_an_older_set_serve_live(sets: Sets) -> None:
    live_set, stored_set, part = sets
    live, poisoned = _engine(live_set), _poisoned(stored_set, part)
    for query in (RecommendQuery(customer_id="nobody", channel="web"),
                  RecommendQuery(customer_id=live.model.customer_id(3), channel="kiosk")):
        assert _wire(poisoned.recommend(query)) == _wire(live.recommend(query))
    assert StoredLists not in live.model.parts and live.recommend(
        RecommendQuery(customer_id=live.model.customer_id(3), channel="web")).policy == POLICY_LEARNED


def test_the_active_window_limits_who_gets_a_list(sets: Sets) -> None:
    live_set, _, part = sets
    recent = rank_stored_lists(live_set, dataclasses.replace(SETTINGS, stored_lists_active_days=30))
    assert recent is not None and 0 < recent.customers.size < part.customers.size
    model = LoadedModel(live_set)
    for row in recent.customers.tolist():
        assert model.history(row).last_day.max() > model.data_end_day - 30


def test_a_training_run_publishes_stored_lists_the_server_answers_from(tmp_path: Path) -> None:
    from recsvc_training.pipeline import train
    from recsvc_training.sample import generate_sample

    generate_sample(tmp_path / "data", seed=11, n_customers=200, n_items=80, days=90)
    settings = TrainingSettings(progress=False, als_factors=8, als_iterations=3, ranker_trees=15,
                                ranker_max_customers=150, evaluate=False, stored_list_length=20)
    result = train(tmp_path / "data", tmp_path / "art", settings)
    manifest = read_manifest(Path(result.path))
    meta = manifest["extra"]["stored_lists"]
    assert meta["length"] == 20 and meta["customers"] > 100 and "stored_lists" in result.timings
    model = LoadedModel(load_current(tmp_path / "art"))
    lists = model.parts[StoredLists]
    assert lists.items.shape[:2] == (len(model.channels), meta["customers"])
    engine = RecommendationEngine(model, clock=lambda: _created(model))
    older = RecommendationEngine(LoadedModel(_without_lists(load_current(tmp_path / "art"))),
                                 clock=lambda: _created(model))
    for row in lists.customers[:40].tolist():
        query = RecommendQuery(customer_id=model.customer_id(row), channel=model.channels[row % len(model.channels)],
                               num_items=8)
        assert _wire(engine.recommend(query)) == _wire(older.recommend(query))


def _created(model: LoadedModel) -> datetime:
    return datetime.fromisoformat(model.created_at)


def _without_lists(artifacts: ArtifactSet) -> ArtifactSet:
    arrays = {k: v for k, v in artifacts.arrays.items() if k not in StoredLists.ARRAYS}
    return dataclasses.replace(artifacts, arrays=arrays)



def test_rank_rows_with_a_learned_ranker_equals_recommend(sets: Sets) -> None:
    """The batched path (trees evaluated once per batch of customers) answers what Recommend answers on the
    set the campaigns use, for every customer with history and one without."""
    live_set, _, _ = sets
    engine = _engine(live_set)
    model = engine.model
    rows = np.arange(model.n_customers)
    for channel in CHANNELS:
        ranked = rank_rows(engine, rows, channel, 12)
        for i, row in enumerate(rows.tolist()):
            alone = engine.recommend(RecommendQuery(customer_id=model.customer_id(row), channel=channel,
                                                    num_items=12))
            assert [model.item_id(int(r)) for r in ranked.items[i] if r >= 0] == [s.item_id for s in alone.items]
            np.testing.assert_allclose(ranked.scores[i, :len(alone.items)], [s.score for s in alone.items],
                                       rtol=1e-6)
