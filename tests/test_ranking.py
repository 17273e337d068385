"""The ranking core on the hand-built toy model (tests/toy_model.py), without gRPC.

Each test names the toy fact it relies on; the toy module docstring tells the whole story.
"""

from __future__ import annotations

import importlib
import inspect
import itertools
import logging
import pkgutil
import threading
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import recsvc.ranking as ranking_package
from recsvc.artifacts import load_current
from recsvc.artifacts.parts.next_basket import NextBasket
from recsvc.config import ChannelPolicy, ConfigError, ServerSettings
from recsvc.errors import InvalidRequest, NotFound, StatusCode
from recsvc.ranking import (
    BlendWeights,
    BundleQuery,
    CandidateSource,
    LoadedModel,
    RankingContext,
    ReasonKind,
    RecommendationEngine,
    RecommendQuery,
)
from recsvc.ranking import sources as sources_module
from recsvc.ranking.als import AlsSource, most_similar_sources
from recsvc.ranking.blend import continue_below, fuse
from recsvc.ranking.copurchase import copurchase_neighbours
from recsvc.ranking.policies import ChannelPolicies, PolicyWeights
from recsvc.ranking.popularity import PopularitySource
from recsvc.ranking.repurchase import RepurchaseSource
from recsvc.ranking.sources import Candidates, group_by_key, isin, top_k
from tests.toy_model import (
    CHANNELS,
    CREATED_AT,
    DATA_END_DAY,
    ITEMS,
    ROW,
    STORE,
    VERSION,
    build_synthetic_artifacts,
    build_toy_artifacts,
    publish_toy,
)

CATEGORY = {item_id: category for item_id, _, category, *_ in ITEMS}
SOLD_ON = {item_id: dict(zip(CHANNELS, sold, strict=True)) for item_id, *_, sold in ITEMS}


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> LoadedModel:
    root = tmp_path_factory.mktemp("toy-artifacts")
    publish_toy(root)
    return LoadedModel(load_current(root))


@pytest.fixture(scope="module")
def engine(model: LoadedModel) -> RecommendationEngine:
    return RecommendationEngine(model, ServerSettings(), clock=lambda: CREATED_AT)


def ids(result_items) -> list[str]:
    return [s.item_id for s in result_items]


def recommend(engine: RecommendationEngine, customer: str = "", channel: str = "web", **kw):
    return engine.recommend(RecommendQuery(customer_id=customer, channel=channel, **kw))


# ------------------------------------------------------------------------------------------------- the model

def test_model_resolves_customers_and_aliases(model: LoadedModel) -> None:
    assert model.resolve_customer("C004") == 3
    assert model.resolve_customer("LOY-4") == 3
    assert model.resolve_customer("APP-4") == 3
    assert model.resolve_customer("LOY-1") == 0
    assert model.resolve_customer("nobody") == -1
    assert model.resolve_customer("") == -1


def test_model_arrays_are_read_only(model: LoadedModel) -> None:
    with pytest.raises(ValueError):
        model.item_factors_normed_t[0, 0] = 1.0
    with pytest.raises(ValueError):
        model.pop_global[0] = 1.0


def test_model_flattens_numeric_evaluation(model: LoadedModel) -> None:
    # toy evaluation: {"ndcg@10": {"blend": .5, "popular": .25}, "users": 5, "note": str, "passed": True}
    assert model.flat_evaluation() == {"ndcg@10.blend": 0.5, "ndcg@10.popular": 0.25, "users": 5.0}
    assert model.version == VERSION


# ------------------------------------------------------------------------- source contract (every source)

def discover_sources() -> list[type[CandidateSource]]:
    """Every concrete CandidateSource subclass the recsvc package defines, found by importing every module of
    recsvc.ranking and walking the subclass tree: a new source is under contract the moment it exists."""
    for module in pkgutil.iter_modules(ranking_package.__path__):
        importlib.import_module(f"{ranking_package.__name__}.{module.name}")
    found: set[type[Any]] = set()
    todo: list[type[Any]] = [CandidateSource]
    while todo:
        for sub in todo.pop().__subclasses__():
            todo.append(sub)
            if sub.__module__.startswith("recsvc.") and not inspect.isabstract(sub):
                found.add(sub)
    return sorted(found, key=lambda c: f"{c.__module__}.{c.__qualname__}")


SOURCES = discover_sources()


def test_source_discovery_finds_every_source() -> None:
    """Regression (issue 12): the hand-kept list missed 3 of the 7 sources (cold start and the learned
    ranker's two pool sources)."""
    names = {cls.__name__ for cls in SOURCES}
    assert {"RepurchaseSource", "AlsSource", "CoPurchaseSource", "PopularitySource", "ColdStartSource",
            "HistorySource", "BasketNeighbourSource"} <= names


@pytest.fixture(scope="module")
def contract_model() -> LoadedModel:
    """The toy model plus LightFM arrays for every customer, so the cold-start source has something to say."""
    artifacts = build_toy_artifacts()
    rng = np.random.default_rng(12)
    n_customers, n_items = artifacts.arrays["customer_ids"].size, artifacts.arrays["item_ids"].size
    artifacts.arrays.update(
        lfm_user_embeddings=rng.normal(size=(n_customers, 3)).astype(np.float32),
        lfm_user_biases=np.zeros(n_customers, dtype=np.float32),
        lfm_item_embeddings=rng.normal(size=(n_items, 3)).astype(np.float32),
        lfm_item_biases=rng.normal(size=n_items).astype(np.float32),
        coldstart_customer=np.zeros(n_customers, dtype=bool))
    # TIFU-KNN lists: three items for every customer (the next-basket source reads them)
    artifacts.arrays.update(NextBasket(np.arange(0, 3 * n_customers + 1, 3, dtype=np.int64),
                                       np.tile(np.array([0, 4, 11], dtype=np.int32), n_customers),
                                       np.tile(np.array([0.9, 0.5, 0.1], dtype=np.float32), n_customers)
                                       ).to_arrays())
    return LoadedModel(artifacts)


def contexts(model: LoadedModel) -> list[RankingContext]:
    out = []
    for customer in ("C001", "C002", "C003", "C004", "C005", "nobody"):
        row = model.resolve_customer(customer)
        for channel in ("web", "store", "kiosk"):
            for store in ("", "S01"):
                for context in ((), ("H01", "B01")):
                    out.append(RankingContext(
                        customer_row=row, channel_row=model.channel_row(channel),
                        store_row=model.stores.row(store) if store else -1,
                        context_items=model.items.lookup(context), today=DATA_END_DAY, history=model.history(row)))
    return out


@pytest.mark.parametrize("source_cls", SOURCES, ids=lambda c: c.__name__)
@pytest.mark.parametrize("k", [1, 3, 50])
def test_source_contract(contract_model: LoadedModel, source_cls: type[CandidateSource], k: int) -> None:
    """Every source: at most k unique valid rows, aligned columns, known reason kinds, nothing without a
    customer when it needs one, something for some request, and a blend weight under its name."""
    model = contract_model
    source = source_cls(model)
    assert source.name and PolicyWeights().weight_of(source.name) > 0
    proposed = 0
    for ctx in contexts(model):
        c = source.candidates(ctx, k)
        assert isinstance(c, Candidates) and c.source == source.name
        n = len(c)
        assert n <= k
        assert c.items.dtype == np.int64 and np.unique(c.items).size == n
        assert np.all((c.items >= 0) & (c.items < model.n_items))
        for column in (c.scores, c.kinds, c.days_since, c.interval_days, c.source_day, c.source_channel,
                       c.source_store):
            assert column.shape == (n,)
        assert c.reason_items.shape == (n, 2)
        assert np.all(c.reason_items < model.n_items)
        assert {int(kind) for kind in c.kinds} <= {int(kind) for kind in ReasonKind} - {0}
        if source.needs_customer and ctx.customer_row < 0:
            assert n == 0
        reasons = c.reasons_at(np.arange(n), model, ctx)  # every candidate can be explained
        assert len(reasons) == n and all(reason.text for reason in reasons)
        proposed += n
    assert proposed > 0, f"{source_cls.__name__} proposed nothing for any toy request"


def test_repurchase_source_skips_one_off_purchases(model: LoadedModel) -> None:
    # C001: H04 every 30 days (due), bagels B03 once with no rhythm, butter D02 once 200 days ago
    row = model.resolve_customer("C001")
    ctx = RankingContext(customer_row=row, today=DATA_END_DAY, history=model.history(row))
    c = RepurchaseSource(model).candidates(ctx, 10)
    assert [model.item_id(int(i)) for i in c.items] == ["H04"]


def test_popularity_source_store_list_then_channel(model: LoadedModel) -> None:
    ctx = RankingContext(channel_row=STORE, store_row=model.stores.row("S01"))
    c = PopularitySource(model).candidates(ctx, 5)
    assert [model.item_id(int(i)) for i in c.items] == ["B02", "B01", "H04", "D01", "D03"]
    assert [ReasonKind(int(k)) for k in c.kinds] == [ReasonKind.POPULAR_IN_STORE] * 3 + [
        ReasonKind.POPULAR_ON_CHANNEL] * 2


# ------------------------------------------------------------------------------------------------ recommend

def test_repurchase_ranks_the_due_item_first_with_its_reason(engine: RecommendationEngine) -> None:
    result = recommend(engine, "C001", num_items=5)
    first = result.items[0]
    assert first.item_id == "H04"
    assert first.reason.kind == ReasonKind.BOUGHT_BEFORE
    assert first.reason.days_since_last_purchase == 27
    assert first.reason.typical_interval_days == pytest.approx(30.0)
    assert first.reason.text == "You buy this every ~30 days; last bought 27 days ago"
    assert first.reason.source_item_ids == ("H04",)
    assert (first.reason.source_channel, first.reason.source_store_id) == ("store", "S01")
    assert result.known_customer and result.policy == "blend" and result.resolved_customer_id == "C001"
    assert result.model_version == VERSION


def test_days_count_from_the_data_end_aged_by_the_model(model: LoadedModel) -> None:
    later = RecommendationEngine(model, clock=lambda: CREATED_AT + timedelta(days=10, hours=5))
    first = recommend(later, "C001", num_items=1).items[0]
    assert first.item_id == "H04" and first.reason.days_since_last_purchase == 37


def test_copurchase_reason_names_the_source_item_and_where_it_was_bought(engine: RecommendationEngine) -> None:
    # C002 bought milk D01 3 days ago in store S02; P(bread B01 | milk) = 0.6
    result = recommend(engine, "C002", num_items=5)
    bread = next(s for s in result.items if s.item_id == "B01")
    assert bread.reason.kind == ReasonKind.BOUGHT_TOGETHER
    assert bread.reason.source_item_ids == ("D01",)
    assert bread.reason.source_store_id == "S02" and bread.reason.source_channel == "store"
    assert bread.reason.text == "Bought together with Milk 1 l (bought in store S02 on 4 May)"


def test_context_items_feed_copurchase_and_are_never_suggested(engine: RecommendationEngine) -> None:
    result = recommend(engine, "C002", num_items=12, context_item_ids=["H01"])
    assert "H01" not in ids(result.items)
    sponges = next(s for s in result.items if s.item_id == "H02")
    assert sponges.reason.kind == ReasonKind.BOUGHT_TOGETHER and sponges.reason.source_item_ids == ("H01",)
    assert sponges.reason.text == "Bought together with Dish soap"


def test_anonymous_customer_with_cart_gets_context_policy(engine: RecommendationEngine) -> None:
    result = recommend(engine, "", num_items=3, context_item_ids=["H01"])
    assert result.policy == "context" and not result.known_customer
    assert result.items[0].item_id == "H02"
    assert result.items[0].reason.kind == ReasonKind.BOUGHT_TOGETHER


@pytest.mark.parametrize("customer", ["C001", "C002", "C003", "C004", "C005", "nobody", ""])
@pytest.mark.parametrize("channel", ["store", "web", "app"])
def test_items_not_sold_on_the_channel_are_never_suggested(engine: RecommendationEngine, customer: str,
                                                           channel: str) -> None:
    # D04 oat milk is online only (C003 buys it every ~4 weeks); B02 croissant is store only (C005 buys it)
    result = recommend(engine, customer, channel, num_items=12, store_id="S01")
    assert result.items
    assert all(SOLD_ON[i][channel] for i in ids(result.items))


def test_online_only_item_is_suggested_online(engine: RecommendationEngine) -> None:
    assert recommend(engine, "C003", "web", num_items=1).items[0].item_id == "D04"
    assert "D04" not in ids(recommend(engine, "C003", "store", num_items=12).items)


def test_excluded_ids_are_respected_and_unknown_ids_reported(engine: RecommendationEngine) -> None:
    result = recommend(engine, "C001", num_items=12, exclude_item_ids=["H04", "B01", "nope"],
                       context_item_ids=["D01", "what", "nope"])
    assert not {"H04", "B01", "D01"} & set(ids(result.items))
    assert len(result.items) == 8  # 11 items sold on web, 3 blocked
    assert result.unknown_item_ids == ("what", "nope")


def test_category_filters_are_respected(engine: RecommendationEngine) -> None:
    only_bakery = recommend(engine, "C001", num_items=12, include_categories=["bakery"])
    assert ids(only_bakery.items) and {CATEGORY[i] for i in ids(only_bakery.items)} == {"bakery"}
    # bakery on web: B01, B03, B04 (B02 is store only): fewer than asked, never anything else
    assert sorted(ids(only_bakery.items)) == ["B01", "B03", "B04"]
    no_food = recommend(engine, "C002", num_items=12, exclude_categories=["bakery", "dairy"])
    assert {CATEGORY[i] for i in ids(no_food.items)} == {"household"}
    nothing = recommend(engine, "C002", num_items=5, include_categories=["no-such-category"])
    assert nothing.items == ()


def test_longer_ids_and_categories_never_match_by_prefix(engine: RecommendationEngine) -> None:
    """Regression: casting a query to the catalog's string width would turn "bakery-x" into "bakery"."""
    assert recommend(engine, "C0012", num_items=3).policy == "popular"
    assert recommend(engine, "C001", num_items=5, include_categories=["bakery-x"]).items == ()
    result = recommend(engine, "C001", num_items=12, exclude_item_ids=["H04-x"])
    assert "H04" in ids(result.items) and result.unknown_item_ids == ("H04-x",)


def test_popularity_fills_when_filters_empty_the_personal_list(model: LoadedModel) -> None:
    # With repurchase as the only source, C004 (history: dish soap) has nothing in dairy: all popular on web.
    engine = RecommendationEngine(model, sources=[RepurchaseSource(model)], clock=lambda: CREATED_AT)
    result = recommend(engine, "C004", num_items=3, include_categories=["dairy"])
    assert ids(result.items) == ["D01", "D03", "D02"]  # web popularity among dairy sold on web
    assert all(s.reason.kind == ReasonKind.POPULAR_ON_CHANNEL for s in result.items)
    assert result.items[0].reason.text == "Popular on web"
    scores = [s.score for s in result.items]
    assert all(a > b > 0 for a, b in itertools.pairwise(scores))
    # a personal item first, then the fill, still strictly decreasing
    mixed = recommend(engine, "C001", num_items=4)
    assert mixed.items[0].item_id == "H04" and mixed.items[1].reason.kind == ReasonKind.POPULAR_ON_CHANNEL
    scores = [s.score for s in mixed.items]
    assert all(a > b > 0 for a, b in itertools.pairwise(scores))


def test_unknown_customer_gets_popular_items_flagged(engine: RecommendationEngine) -> None:
    result = recommend(engine, "nobody", "store", num_items=5, store_id="S01")
    assert not result.known_customer and result.policy == "popular" and result.resolved_customer_id == ""
    assert ids(result.items) == ["B02", "B01", "H04", "D01", "D03"]
    assert result.items[0].reason.kind == ReasonKind.POPULAR_IN_STORE
    assert result.items[0].reason.text == "Popular in store S01"
    assert result.items[3].reason.text == "Popular on store"
    anonymous = recommend(engine, "", "web", num_items=2)
    assert anonymous.policy == "popular" and ids(anonymous.items) == ["H03", "B01"]


def test_unknown_channel_gets_only_items_sold_on_every_channel_and_says_so(engine: RecommendationEngine) -> None:
    """Regression (issue 12, bad input): an unknown channel returned store-only items to an online caller."""
    result = recommend(engine, "", "kiosk", num_items=12)
    assert result.unknown_channel and any("kiosk" in notice for notice in result.notices)
    assert set(ids(result.items)) == {i for i, sold in SOLD_ON.items() if all(sold.values())}  # no B02, D04
    assert ids(result.items)[:3] == ["B01", "D01", "H04"]  # global popularity
    assert {s.reason.kind for s in result.items} == {ReasonKind.POPULAR}
    assert result.items[0].reason.text == "Popular"
    known = recommend(engine, "C005", "kiosk", num_items=12)  # a known customer too: B02 is their favourite
    assert known.known_customer and known.unknown_channel and "B02" not in ids(known.items)
    assert not recommend(engine, "", "web").unknown_channel


@pytest.mark.parametrize("spelling", ["WEB", " Web ", "web"])
def test_channel_names_compare_case_insensitively(engine: RecommendationEngine, spelling: str) -> None:
    """Regression (issue 12): ``WEB`` was an unknown channel, so web callers got store-only items."""
    assert recommend(engine, "C001", spelling, num_items=8) == recommend(engine, "C001", "web", num_items=8)
    bundle = engine.bundle(BundleQuery(basket_item_ids=["D01"], channel=spelling))
    assert not bundle.unknown_channel and "B02" not in ids(bundle.items)
    assert not engine.similar_items("B01", 12, channel=spelling).unknown_channel


def test_ids_with_surrounding_whitespace_are_trimmed(engine: RecommendationEngine) -> None:
    """Regression (issue 12): ``"C001 "`` silently became an unknown customer."""
    padded = recommend(engine, " C001 ", num_items=8, store_id="S01 ", context_item_ids=["B01 "],
                       exclude_item_ids=["\tH04"])
    assert padded.known_customer and padded.resolved_customer_id == "C001" and padded.unknown_item_ids == ()
    assert padded == recommend(engine, "C001", num_items=8, store_id="S01", context_item_ids=["B01"],
                               exclude_item_ids=["H04"])
    bundle = engine.bundle(BundleQuery(basket_item_ids=[" D01"], store_id=" S01"))
    assert bundle.unknown_item_ids == () and bundle.bundle is not None and bundle.bundle.anchor_item_id == "D01"
    assert ids(engine.similar_items(" D01 ", 3).items) == ["D04", "D03", "D02"]
    with pytest.raises(InvalidRequest, match="context_item_ids: entry 0"):
        recommend(engine, "C001", context_item_ids=["  "])


def test_unknown_categories_are_reported_back(engine: RecommendationEngine) -> None:
    """Regression (issue 12): an unknown category in include_categories returned nothing without a word."""
    result = recommend(engine, "C001", num_items=5, include_categories=["diary", "dairy"],
                       exclude_categories=["bakery", "baker"])
    assert result.unknown_categories == ("diary", "baker")
    assert {s.category for s in result.items} == {"dairy"}
    only_typo = recommend(engine, "C001", num_items=5, include_categories=["diary"])
    assert only_typo.items == () and only_typo.unknown_categories == ("diary",)
    assert any("diary" in notice for notice in only_typo.notices)
    assert recommend(engine, "C001", num_items=5, include_categories=["dairy"]).unknown_categories == ()


def test_alias_and_customer_get_identical_results(engine: RecommendationEngine) -> None:
    by_id = recommend(engine, "C004", num_items=8, store_id="S02")
    for alias in ("LOY-4", "APP-4"):
        by_alias = recommend(engine, alias, num_items=8, store_id="S02")
        assert by_alias == by_id
    assert by_id.resolved_customer_id == "C004"


def test_num_items_zero_means_the_default(engine: RecommendationEngine) -> None:
    assert len(recommend(engine, "C001").items) == ServerSettings().default_num_items


def test_results_are_unique_and_scores_decrease(engine: RecommendationEngine) -> None:
    for customer in ("C001", "C002", "C003", "C004", "C005", "nobody"):
        result = recommend(engine, customer, num_items=12)
        assert len(set(ids(result.items))) == len(result.items)
        scores = [s.score for s in result.items]
        assert scores == sorted(scores, reverse=True)


def test_engine_is_safe_to_share_between_threads(engine: RecommendationEngine) -> None:
    expected = {c: recommend(engine, c, num_items=6) for c in ("C001", "C002", "LOY-4", "nobody")}
    failures: list[str] = []

    def worker() -> None:
        for _ in range(50):
            for customer, want in expected.items():
                if recommend(engine, customer, num_items=6) != want:
                    failures.append(customer)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert failures == []


# ----------------------------------------------------------------------------------------------- validation

TOO_MANY_EXCLUDES = [f"x{i}" for i in range(1001)]
TOO_MANY_CONTEXT = [f"x{i}" for i in range(101)]


@pytest.mark.parametrize(("query", "field"), [
    (RecommendQuery(customer_id="C001", channel=""), "channel"),
    (RecommendQuery(channel="web", num_items=101), "num_items"),
    (RecommendQuery(channel="web", num_items=-1), "num_items"),
    (RecommendQuery(channel="web", exclude_item_ids=TOO_MANY_EXCLUDES), "exclude_item_ids"),
    (RecommendQuery(channel="web", context_item_ids=TOO_MANY_CONTEXT), "context_item_ids"),
    (RecommendQuery(channel="web", exclude_item_ids=["B01", ""]), "exclude_item_ids"),
    (RecommendQuery(channel="web", context_item_ids=[""]), "context_item_ids"),
    (RecommendQuery(channel="web", include_categories=[""]), "include_categories"),
    (RecommendQuery(channel="web", exclude_categories=TOO_MANY_EXCLUDES), "exclude_categories"),
], ids=lambda v: v if isinstance(v, str) else "")
def test_recommend_validation_names_the_field(engine: RecommendationEngine, query: RecommendQuery,
                                              field: str) -> None:
    with pytest.raises(InvalidRequest) as info:
        engine.recommend(query)
    assert str(info.value).startswith(f"{field}:")
    assert info.value.code == StatusCode.INVALID_ARGUMENT


@pytest.mark.parametrize(("query", "field"), [
    (BundleQuery(basket_item_ids=[]), "basket_item_ids"),
    (BundleQuery(basket_item_ids=TOO_MANY_CONTEXT), "basket_item_ids"),
    (BundleQuery(basket_item_ids=["B01", ""]), "basket_item_ids"),
    (BundleQuery(basket_item_ids=["B01"], bundle_size=5), "bundle_size"),
    (BundleQuery(basket_item_ids=["B01"], bundle_size=1), "bundle_size"),
    (BundleQuery(basket_item_ids=["B01"], num_items=101), "num_items"),
], ids=lambda v: v if isinstance(v, str) else "")
def test_bundle_validation_names_the_field(engine: RecommendationEngine, query: BundleQuery, field: str) -> None:
    with pytest.raises(InvalidRequest) as info:
        engine.bundle(query)
    assert str(info.value).startswith(f"{field}:")


def test_similar_items_validation(engine: RecommendationEngine) -> None:
    with pytest.raises(InvalidRequest, match=r"^item_id:"):
        engine.similar_items("")
    with pytest.raises(InvalidRequest, match=r"^num_items:"):
        engine.similar_items("D01", 101)
    with pytest.raises(NotFound, match="'NOPE-1'") as info:
        engine.similar_items("NOPE-1")
    assert info.value.code == StatusCode.NOT_FOUND


# --------------------------------------------------------------------------------------------------- bundle

def test_bundle_completions_and_greedy_bundle(engine: RecommendationEngine) -> None:
    # bread B01 -> milk 0.5, muffins 0.45, butter 0.4; milk -> butter 0.3
    result = engine.bundle(BundleQuery(basket_item_ids=["B01"], num_items=6))
    assert ids(result.items)[:3] == ["D01", "B04", "D02"]
    assert "B01" not in ids(result.items) and len(result.items) == 6
    assert result.items[0].reason.kind == ReasonKind.BOUGHT_TOGETHER
    assert result.items[0].reason.source_item_ids == ("B01",)
    assert result.items[3].reason.kind == ReasonKind.SIMILAR_ITEM  # filled from ALS once co-purchase runs out
    scores = [s.score for s in result.items]
    assert all(a > b for a, b in itertools.pairwise(scores))
    bundle = result.bundle
    assert bundle is not None and bundle.anchor_item_id == "B01"
    # milk first, then butter (goes with bread and milk: 0.4 + 0.3) before muffins (0.45 with bread only)
    assert ids(bundle.items) == ["D01", "D02"]
    assert bundle.items[1].reason.source_item_ids == ("B01", "D01")
    assert bundle.score == pytest.approx(0.5 + 0.7)
    assert result.unknown_item_ids == ()


def test_bundle_ranks_completions_by_the_basket_item_they_go_best_with(engine: RecommendationEngine) -> None:
    # basket bread B01 + milk D01: muffins B04 go with bread 0.45; butter D02 with bread 0.4 and milk 0.3.
    # Summed, butter (0.7) would lead; a staple every basket item votes for a little is how summing went
    # wrong on real baskets (cart HitRate@10 on Ta Feng 0.124 with the sum, 0.133 with the strongest item).
    result = engine.bundle(BundleQuery(["B01", "D01"], num_items=4))
    assert ids(result.items)[:2] == ["B04", "D02"]
    assert [s.score for s in result.items[:2]] == pytest.approx([0.45, 0.4])  # P(item | bread)
    assert result.items[0].reason.source_item_ids == ("B01",)


def test_copurchase_neighbours_sum_and_strongest_term(model: LoadedModel) -> None:
    found = copurchase_neighbours(model, np.array([ROW["B01"], ROW["D01"]]))
    butter = int(np.flatnonzero(found.items == ROW["D02"])[0])
    assert found.scores[butter] == pytest.approx(0.7) and found.strongest[butter] == pytest.approx(0.4)
    assert found.best_seed[butter] == 0 and found.second_seed[butter] == 1  # bread, then milk
    weighted = copurchase_neighbours(model, np.array([ROW["B01"], ROW["D01"]]), np.array([0.5, 1.0]))
    butter = int(np.flatnonzero(weighted.items == ROW["D02"])[0])
    assert weighted.strongest[butter] == pytest.approx(0.3) and weighted.best_seed[butter] == 1  # milk now


def test_bundle_anchor_is_the_basket_item_with_the_strongest_neighbours(engine: RecommendationEngine) -> None:
    # paper towels H03 have no co-purchase neighbours; dish soap H01 -> sponges 0.7 beats bread -> milk 0.5
    assert engine.bundle(BundleQuery(["H03", "B01"], bundle_size=2)).bundle.anchor_item_id == "B01"  # type: ignore[union-attr]
    result = engine.bundle(BundleQuery(["B01", "H01"], bundle_size=2))
    assert result.bundle is not None
    assert result.bundle.anchor_item_id == "H01" and ids(result.bundle.items) == ["H02"]


def test_bundle_never_suggests_basket_items(engine: RecommendationEngine) -> None:
    result = engine.bundle(BundleQuery(["B01", "D01"], num_items=10, bundle_size=4))
    assert not {"B01", "D01"} & set(ids(result.items))
    assert result.bundle is not None and not {"B01", "D01"} & set(ids(result.bundle.items))
    assert len(result.bundle.items) == 3
    milk_bread = next(s for s in result.items if s.item_id == "D02")  # butter goes with both
    assert set(milk_bread.reason.source_item_ids) == {"B01", "D01"}


def test_bundle_channel_filter(engine: RecommendationEngine) -> None:
    # oat milk D04 is the item most similar to milk D01, but not sold in stores
    assert "D04" in ids(engine.bundle(BundleQuery(["D01"], num_items=10)).items)
    in_store = engine.bundle(BundleQuery(["D01"], channel="store", num_items=10))
    assert "D04" not in ids(in_store.items) and all(SOLD_ON[i]["store"] for i in ids(in_store.items))


def test_bundle_with_unknown_basket_ids(engine: RecommendationEngine) -> None:
    partly = engine.bundle(BundleQuery(["B01", "nope"]))
    assert partly.unknown_item_ids == ("nope",) and partly.bundle is not None
    unknown = engine.bundle(BundleQuery(["nope", "never"], num_items=3))
    assert unknown.unknown_item_ids == ("nope", "never") and unknown.bundle is None
    assert ids(unknown.items) == ["B01", "D01", "H04"]  # global popularity
    assert all(s.reason.kind == ReasonKind.POPULAR for s in unknown.items)


# ---------------------------------------------------------------------------------------------------- similar

def test_similar_items_by_cosine(engine: RecommendationEngine) -> None:
    similar = engine.similar_items("D01", 3).items
    assert ids(similar) == ["D04", "D03", "D02"]
    assert similar[0].reason.kind == ReasonKind.SIMILAR_ITEM
    assert similar[0].reason.source_item_ids == ("D01",) and similar[0].reason.text == "Similar to Milk 1 l"
    assert ids(engine.similar_items("D01", 2, channel="store").items) == ["D03", "D02"]
    # household items are orthogonal to milk: never "similar"
    assert not {"H01", "H02", "H03", "H04"} & set(ids(engine.similar_items("D01", 12).items))


# ------------------------------------------------------------------------------------------- vector helpers

@settings(max_examples=100, deadline=None)
@given(st.lists(st.floats(-5, 5, allow_nan=False), min_size=1, max_size=40), st.integers(1, 45))
def test_top_k_matches_a_full_sort(values: list[float], k: int) -> None:
    scores = np.array(values)
    got = top_k(scores, k)
    assert np.array_equal(np.sort(scores[got])[::-1], np.sort(scores)[::-1][: min(k, len(values))])
    assert np.all(np.diff(scores[got]) <= 0)


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 3), st.integers(0, 3)), min_size=1, max_size=40), st.integers(1, 45))
def test_top_k_with_tiebreak_matches_a_lexicographic_sort(pairs: list[tuple[int, int]], k: int) -> None:
    scores = np.array([p for p, _ in pairs], dtype=np.float64)
    tiebreak = np.array([t for _, t in pairs], dtype=np.float64)
    expected = sorted(range(len(pairs)), key=lambda i: (-scores[i], -tiebreak[i], i))[:k]
    assert top_k(scores, k, tiebreak=tiebreak).tolist() == expected


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 6), st.floats(0, 10, allow_nan=False)), max_size=30))
def test_group_by_key_matches_a_loop(entries: list[tuple[int, float]]) -> None:
    keys = np.array([k for k, _ in entries], dtype=np.int64)
    values = np.array([v for _, v in entries], dtype=np.float64)
    grouped = group_by_key(keys, values)
    assert list(grouped.keys) == sorted(set(keys.tolist()))
    for key, total, best, second in zip(grouped.keys, grouped.sums, grouped.best, grouped.second, strict=True):
        mine = sorted((v for k, v in entries if k == key), reverse=True)
        assert total == pytest.approx(sum(mine))
        assert keys[best] == key and values[best] == mine[0]
        if len(mine) == 1:
            assert second == -1
        else:
            assert second != best and keys[second] == key and values[second] == mine[1]


def test_filler_columns_are_read_only_and_long_lists_do_not_grow_the_shared_cache() -> None:
    short = Candidates.build("x", np.arange(10), np.zeros(10), ReasonKind.POPULAR)
    assert np.all(short.days_since == -1) and np.all(np.isnan(short.interval_days))
    with pytest.raises(ValueError, match="read-only"):
        short.days_since[0] = 3  # shared between requests: nobody may write to it
    cached = sources_module._shared_fill.cache_info().currsize
    long = Candidates.build("x", np.arange(50_000), np.zeros(50_000), ReasonKind.POPULAR)
    assert long.reason_items.shape == (50_000, 2) and np.all(long.reason_items == -1)
    assert sources_module._shared_fill.cache_info().currsize == cached


@settings(max_examples=100, deadline=None)
@given(st.lists(st.integers(0, 50), max_size=40), st.lists(st.integers(0, 50), max_size=40), st.integers(1, 600))
def test_isin_matches_numpy_on_small_and_large_inputs(values: list[int], of: list[int], repeat: int) -> None:
    # repeat pushes the pair count past the broadcast limit, so both ways are exercised
    a = np.array(values * repeat, dtype=np.int64)
    b = np.array(of, dtype=np.int64)
    assert np.array_equal(isin(a, b), np.isin(a, b))


def test_als_reason_names_the_most_similar_history_items(model: LoadedModel) -> None:
    row = model.customers.row("C001")
    ctx = RankingContext(customer_row=row, history=model.history(row))
    found = AlsSource(model).candidates(ctx, 10)
    assert len(found) and found.resolve_reason_items is not None  # worked out for shown candidates only
    history = model.history(row).items.astype(np.int64)
    reasons = found.reasons_at(np.arange(len(found)), model, ctx)
    for item, reason in zip(found.items.tolist(), reasons, strict=True):
        expected = [model.item_id(r) for r in most_similar_sources(model, np.array([item]), history)[0] if r >= 0]
        assert list(reason.source_item_ids) == expected
        assert reason.kind == ReasonKind.CUSTOMERS_LIKE_YOU
    assert any(reason.source_item_ids for reason in reasons)


@settings(max_examples=100, deadline=None)
@given(st.one_of(st.none(), st.floats(1e-3, 10)),
       st.lists(st.one_of(st.floats(1e-4, 20), st.just(float("inf"))), min_size=1, max_size=100))
def test_continue_below_is_strictly_decreasing(last: float | None, raw: list[float]) -> None:
    scores = continue_below(last, np.array(raw))
    assert np.all(scores > 0) and np.all(np.diff(scores) < 0)
    assert np.all(scores <= np.array(raw))
    if last is not None:
        assert scores[0] < last


def test_fuse_sums_reciprocal_ranks_and_keeps_the_strongest_reason() -> None:
    a = Candidates.build("repurchase", np.array([5, 7]), np.array([2.0, 1.0]), ReasonKind.BOUGHT_BEFORE)
    b = Candidates.build("als", np.array([7, 9, 5]), np.array([3.0, 2.0, 1.0]),
                         ReasonKind.CUSTOMERS_LIKE_YOU)
    w = BlendWeights(repurchase=1.0, als=0.5, rank_offset=60)
    fused = fuse([a, b], w)
    expected = {5: 1 / 61 + 0.5 / 63, 7: 1 / 62 + 0.5 / 61, 9: 0.5 / 62}
    assert list(fused.items) == sorted(expected, key=lambda i: -expected[i])
    assert dict(zip(fused.items.tolist(), fused.scores.tolist(), strict=True)) == pytest.approx(expected)
    assert dict(zip(fused.items.tolist(), fused.source.tolist(), strict=True)) == {5: 0, 7: 0, 9: 1}


def test_blend_weights_reject_negative_values() -> None:
    with pytest.raises(ValueError, match="popularity"):
        BlendWeights(popularity=-1.0)


# ----------------------------------------------------------------------------------- a bigger random model

def test_invariants_on_a_random_model() -> None:
    """Filters hold on a random 5k-item model with random queries (catches shape bugs the toy cannot)."""
    model = LoadedModel(build_synthetic_artifacts(n_items=5000, n_customers=500, factors=16, seed=3))
    engine = RecommendationEngine(model)
    rng = np.random.default_rng(7)
    for i in range(60):
        customer = model.customer_id(int(rng.integers(0, model.n_customers))) if i % 4 else f"anon{i}"
        channel = ["app", "store", "web", "kiosk"][i % 4]
        exclude = [model.item_id(int(r)) for r in rng.integers(0, model.n_items, 20)]
        context = [model.item_id(int(r)) for r in rng.integers(0, model.n_items, i % 5)]
        include = [f"cat{int(c):02d}" for c in rng.integers(0, 50, i % 3)]
        n = int(rng.integers(1, 101))
        result = engine.recommend(RecommendQuery(customer, channel, "S001" if i % 2 else "", n, exclude, context,
                                                 include))
        got = model.items.lookup(ids(result.items))
        assert len(got) <= n and len(set(got.tolist())) == len(got) and np.all(got >= 0)
        if not include:
            assert len(got) == n
        assert not set(got.tolist()) & set(model.items.lookup(exclude + context).tolist())
        if channel != "kiosk":
            assert np.all(model.item_channels[got, model.channel_row(channel)])
        if include:
            assert set(model.item_categories[got].tolist()) <= set(include)
        basket = [model.item_id(int(r)) for r in rng.integers(0, model.n_items, 1 + i % 4)]
        bundle = engine.bundle(BundleQuery(basket, channel="web", num_items=n, bundle_size=2 + i % 3))
        rows = model.items.lookup(ids(bundle.items))
        assert not set(rows.tolist()) & set(model.items.lookup(basket).tolist())
        assert np.all(model.item_channels[rows, model.channel_row("web")])
        assert bundle.bundle is not None and len(bundle.bundle.items) == 1 + i % 3


def test_toy_model_publishes_and_loads(tmp_path: Path) -> None:
    folder = publish_toy(tmp_path)
    assert folder.name == VERSION and load_current(tmp_path).version == VERSION
    assert ROW["H04"] == 11


# ---------------------------------------------------------------------------------------------- channel policies

def test_channel_policies_are_keyed_by_the_models_channel_rows(caplog: pytest.LogCaptureFixture) -> None:
    """Configured names are cleaned like request channels (``WEB`` is ``web``); ``collaborative``, the
    former name of the ALS weight, still reads (with a warning); a channel the model lacks applies nowhere."""
    configured = {"WEB": ChannelPolicy(name="discovery", weights={"collaborative": 0.9}),
                  "kiosk": ChannelPolicy(name="kiosk_policy")}
    with caplog.at_level(logging.WARNING, logger="recsvc.ranking.policies"):
        policies = ChannelPolicies(configured, BlendWeights(), CHANNELS)
    web = policies.get(CHANNELS.index("web"))
    assert web is not None and web.name == "discovery" and web.weights.als == 0.9
    assert policies.get(CHANNELS.index("store")) is None and policies.get(-1) is None
    assert policies.coldstart(CHANNELS.index("web")).weights.als == 0.9
    messages = " ".join(r.getMessage() for r in caplog.records)
    assert "'collaborative' is now called 'als'" in messages and "no channel 'kiosk'" in messages
    with pytest.raises(ConfigError, match="unknown source"):
        ChannelPolicies({"web": ChannelPolicy(weights={"cf": 1.0})}, BlendWeights(), CHANNELS)
