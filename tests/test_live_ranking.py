"""The ranking core with live events in the query (recsvc.ranking.live), on the toy model: no store, no server.

``C001`` buys laundry detergent ``H04`` every 30 days (5 purchases, 147 to 27 days before the data's end);
bread ``B01`` has an item-wide repurchase interval of 4 days and goes with milk, muffins and butter.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from recsvc.days import MS_PER_DAY
from recsvc.events.overlay import CustomerActivity, LiveEvent
from recsvc.ranking import BundleQuery, LoadedModel, RecommendationEngine, RecommendQuery
from tests.toy_model import CREATED_AT, DATA_END_DAY, build_toy_artifacts


@pytest.fixture(scope="module")
def model() -> LoadedModel:
    return LoadedModel(build_toy_artifacts())


def engine_at(model: LoadedModel, now: datetime) -> RecommendationEngine:
    return RecommendationEngine(model, clock=lambda: now)


def bought(model: LoadedModel, item: str, at_ms: int, kind: str = "purchase", channel: str = "store",
           store: str = "S01", n: int = 1) -> LiveEvent:
    return LiveEvent(f"{item}:{kind}:{at_ms}", item, model.items.row(item), kind, channel, store, "o", float(n),
                     1.0, at_ms)


def activity(model: LoadedModel, customer: str, *events: LiveEvent) -> CustomerActivity:
    return CustomerActivity(customer, model.resolve_customer(customer), tuple(events))


def items(engine: RecommendationEngine, customer: str, live: CustomerActivity | None, n: int = 12) -> list[str]:
    result = engine.recommend(RecommendQuery(customer_id=customer, channel="store", num_items=n, live=live))
    return [s.item_id for s in result.items]


def test_a_staple_bought_live_comes_back_when_its_rhythm_says_it_is_due(model: LoadedModel) -> None:
    """Detergent bought live the day after the cut-off is hidden 3 days later (1/10 of C001's 30-day rhythm)
    and suggested again 24 days later (about 80 % of it): the repurchase source's dueness decides."""
    purchase_day = DATA_END_DAY + 1
    live = activity(model, "C001", bought(model, "H04", purchase_day * MS_PER_DAY + 3_600_000))
    early = engine_at(model, CREATED_AT + timedelta(days=3))
    late = engine_at(model, CREATED_AT + timedelta(days=24))
    assert "H04" in items(early, "C001", None)
    assert "H04" not in items(early, "C001", live)
    assert "H04" in items(late, "C001", live)


def test_a_live_return_cancels_the_purchase(model: LoadedModel) -> None:
    """Bread bought and returned in full is neither hidden nor a seed: the answer is the model's alone."""
    now = CREATED_AT + timedelta(hours=2)
    at = int(now.timestamp() * 1000) - 600_000
    engine = engine_at(model, now)
    live = activity(model, "C005", bought(model, "B01", at), bought(model, "B01", at + 1000, "return"))
    assert items(engine, "C005", live) == items(engine, "C005", None)


def test_the_reason_says_where_and_when_the_seed_was_bought_live(model: LoadedModel) -> None:
    """Two hours after an in-store purchase the reason reads "(bought in store S01 today)"; three minutes
    after an online one "(bought online 3 minutes ago)"."""
    now = CREATED_AT + timedelta(hours=8)
    now_ms = int(now.timestamp() * 1000)
    engine = engine_at(model, now)
    for event, tail in ((bought(model, "D01", now_ms - 2 * 3_600_000), "(bought in store S01 today)"),
                        (bought(model, "D01", now_ms - 180_000, channel="web", store=""),
                         "(bought online 3 minutes ago)")):
        result = engine.recommend(RecommendQuery(customer_id="NEW-1", channel="store",
                                                 live=CustomerActivity("NEW-1", -1, (event,))))
        assert result.policy == "context"
        assert result.items[0].item_id == "B01"
        assert result.items[0].reason.text == f"Bought together with Milk 1 l {tail}"


def test_live_views_and_carts_are_context_without_being_hidden(model: LoadedModel) -> None:
    """A viewed item seeds co-purchase like a context id (its complements lead for a never-seen customer) but,
    not bought, it may still be suggested; an item the model does not know is ignored."""
    now = CREATED_AT + timedelta(hours=1)
    at = int(now.timestamp() * 1000) - 60_000
    engine = engine_at(model, now)
    view = bought(model, "H01", at, "view")
    unknown = LiveEvent("x", "NOPE", -1, "cart", "web", "", "", 1.0, 1.0, at)
    got = engine.recommend(RecommendQuery(customer_id="NEW-2", channel="store", num_items=12,
                                          live=CustomerActivity("NEW-2", -1, (unknown, view))))
    assert got.policy == "context" and got.items[0].item_id == "H02"
    assert "H01" in [s.item_id for s in got.items]


def test_a_bundle_never_completes_a_basket_with_what_was_just_bought(model: LoadedModel) -> None:
    """Milk's best completion is bread; bread bought a minute ago drops out of the completions."""
    now = CREATED_AT + timedelta(hours=1)
    engine = engine_at(model, now)
    live = activity(model, "C004", bought(model, "B01", int(now.timestamp() * 1000) - 60_000))
    plain = engine.bundle(BundleQuery(basket_item_ids=["D01"], customer_id="C004"))
    with_live = engine.bundle(BundleQuery(basket_item_ids=["D01"], customer_id="C004", live=live))
    assert plain.items[0].item_id == "B01"
    assert "B01" not in [s.item_id for s in with_live.items]
