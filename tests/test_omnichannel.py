"""One customer across web, app and stores, end to end: the real trainer on the generated sample, a real gRPC
server on port 0, a real channel.

The story: a customer who shops in store with a loyalty card buys an anchor item online (a charcoal grill, a
coffee machine ...); after retraining, the clerk's tablet, asking through the loyalty card, suggests the
matching complement with a reason naming the online purchase. Around it: stock (an item sold out in a store is
not suggested there, and a stock update applies without retraining), channel eligibility (online-only items
never in store), per-channel policies from a TOML file, the customer profile and the context fold-in.
"""

from __future__ import annotations

import dataclasses
import gzip
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import numpy as np
import pandas as pd
import pytest

from recsvc.artifacts import load_current
from recsvc.artifacts.parts.foldin import FoldInParams
from recsvc.artifacts.stock import load_current_stock, publish_stock
from recsvc.artifacts.stock_table import StockTable
from recsvc.config import ServerSettings, TrainingSettings, load_settings
from recsvc.ranking import LoadedModel, RecommendationEngine
from recsvc.ranking.als import AlsSource
from recsvc.ranking.foldin import FoldIn, fold_in
from recsvc.ranking.sources import RankingContext
from recsvc.server.app import ModelHolder
from recsvc.server.versions import build_engine
from recsvc.v1 import recsvc_pb2, recsvc_pb2_grpc
from recsvc_training.assemble import foldin_params
from recsvc_training.input import columns as C
from recsvc_training.models.rfm import RFM_SEGMENTS
from recsvc_training.pipeline import train
from recsvc_training.sample import SampleSummary, generate_sample
from tests.conftest import LiveServer
from tests.toy_model import build_toy_artifacts

STORE = "S01"
TRAINING = TrainingSettings(evaluate=False, learn_ranker=False, progress=False)
POLICIES_TOML = """
[server.policies.store]
name = "in_store"
weights = { copurchase = 1.4, repurchase = 0.6, als = 0.4 }

[server.policies.app]
name = "buy_it_again"
weights = { repurchase = 1.4 }

[server.policies.web]
name = "discovery"
weights = { repurchase = 0.2, als = 1.0, popularity = 0.3 }
exclude_bought_within_days = 30
"""


@dataclass
class World:
    summary: SampleSummary
    root: Path
    settings: ServerSettings
    holder: ModelHolder
    stub: recsvc_pb2_grpc.RecommenderStub
    model: LoadedModel
    alias: str
    customer: str
    anchor: str
    complement: str
    before: recsvc_pb2.RecommendResponse
    after: recsvc_pb2.RecommendResponse

    def recommend(self, customer: str, channel: str, store: str = "", n: int = 10,
                  context: tuple[str, ...] = ()) -> recsvc_pb2.RecommendResponse:
        return self.stub.Recommend(recsvc_pb2.RecommendRequest(
            customer_id=customer, channel=channel, store_id=store, num_items=n, context_item_ids=list(context)),
            timeout=10)


def _engine(root: Path, settings: ServerSettings) -> tuple[LoadedModel, RecommendationEngine]:
    engine = build_engine(load_current(root), settings)  # the server's own: filters by the published stock
    return engine.model, engine


def _best_complement(model: LoadedModel, summary: SampleSummary) -> tuple[str, str]:
    """The planted (anchor, complement) pair the trained co-purchase model is surest of, complement sold in store."""
    store = model.channel_row("store")
    scored = []
    for anchor, complement in summary.complements:
        a, c = model.items.row(anchor), model.items.row(complement)
        lo, hi = int(model.copurchase_indptr[a]), int(model.copurchase_indptr[a + 1])
        hit = model.copurchase_items[lo:hi] == c
        if hit.any() and model.item_channels[c, store]:
            scored.append((float(model.copurchase_scores[lo:hi][hit][0]), anchor, complement))
    assert scored, "the sample should plant complements the co-purchase model finds"
    _, anchor, complement = max(scored)
    return anchor, complement


def _add_online_purchase(data: Path, summary: SampleSummary, customer: str, anchor: str, complement: str) -> None:
    """The customer buys ``anchor`` on the web on the last day (web events carry the customer id); the
    complement is on the shelf in STORE."""
    events = pd.read_csv(data / "events.csv.gz", dtype=str, keep_default_na=False)
    row = {C.TIMESTAMP: f"{summary.end_date.isoformat()}T12:00:00Z", C.CUSTOMER_ID: customer, C.ITEM_ID: anchor,
           C.EVENT: C.PURCHASE, C.CHANNEL: "web", C.STORE_ID: "", C.ORDER_ID: "WEB-TEST-1", C.QUANTITY: "1",
           C.PRICE: "99.00"}
    events = pd.concat([events, pd.DataFrame([row])], ignore_index=True)
    with gzip.open(data / "events.csv.gz", "wt", newline="") as fh:
        events.to_csv(fh, index=False)
    stock = pd.read_csv(data / "stock.csv", dtype=str, keep_default_na=False)
    stock = stock[~((stock[C.STORE_ID] == STORE) & (stock[C.ITEM_ID] == complement))]
    stock = pd.concat([stock, pd.DataFrame([{C.STORE_ID: STORE, C.ITEM_ID: complement, C.QUANTITY_ON_HAND: "6"}])])
    stock.to_csv(data / "stock.csv", index=False)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    tmp = tmp_path_factory.mktemp("omnichannel")
    data, root = tmp / "data", tmp / "artifacts"
    summary = generate_sample(data, n_customers=300, n_items=100, days=60)
    train(data, root, TRAINING)
    (tmp / "recsvc.toml").write_text(POLICIES_TOML)
    settings = dataclasses.replace(load_settings(tmp / "recsvc.toml", env={}).server, host="127.0.0.1", port=0,
                                   artifact_root=str(root), max_workers=4, shutdown_grace_seconds=1.0)
    model, engine = _engine(root, settings)
    anchor, complement = _best_complement(model, summary)
    a, c = model.items.row(anchor), model.items.row(complement)
    cold = model.arrays["coldstart_customer"]
    identities = pd.read_csv(data / "identities.csv", dtype=str)
    cards = identities.loc[identities[C.ALIAS_ID].str.startswith("LC-"), C.ALIAS_ID]
    holder = ModelHolder(engine)
    with LiveServer(settings, holder=holder) as server:
        stub = server.stub
        for alias in cards:
            row = model.resolve_customer(alias)
            if cold[row] or np.isin([a, c], model.history(row).items).any():
                continue
            before = stub.Recommend(recsvc_pb2.RecommendRequest(customer_id=alias, channel="store",
                                                                store_id=STORE, num_items=10), timeout=10)
            if complement not in [item.item_id for item in before.items]:
                break
        else:
            pytest.fail("no loyalty-card customer without the pair in their suggestions")
        customer = model.customer_id(model.resolve_customer(alias))
        _add_online_purchase(data, summary, customer, anchor, complement)
        train(data, root, TRAINING)
        model, engine = _engine(root, settings)
        holder.swap(engine)  # what a reload does; requests from now on use the retrained model
        after = stub.Recommend(recsvc_pb2.RecommendRequest(customer_id=alias, channel="store", store_id=STORE,
                                                           num_items=10), timeout=10)
        yield World(summary, root, settings, holder, stub, model, alias, customer, anchor, complement, before,
                    after)


def test_an_online_purchase_changes_the_in_store_suggestions_through_the_loyalty_card(world: World) -> None:
    assert world.before.resolved_customer_id == world.after.resolved_customer_id == world.customer
    suggested = {item.item_id: item for item in world.after.items}
    assert world.complement not in [item.item_id for item in world.before.items]
    assert world.complement in suggested, "the complement of the online purchase is suggested in store"
    reason = suggested[world.complement].reason
    assert reason.kind == recsvc_pb2.REASON_KIND_BOUGHT_TOGETHER
    assert list(reason.source_item_ids) == [world.anchor] and reason.source_channel == "web"
    anchor_title = world.model.item_title(world.model.items.row(world.anchor))
    end = world.summary.end_date
    assert reason.text == f"Bought together with {anchor_title} (bought online on {end.day} {end:%B})"
    assert world.after.policy == "in_store"


def test_reasons_name_the_real_source_items(world: World) -> None:
    m = world.model
    for customer in m.customers.ids[:60]:
        row = m.resolve_customer(str(customer))
        bought = {m.item_id(int(i)) for i in m.history(row).items}
        for channel, store in (("store", STORE), ("web", ""), ("app", "")):
            for item in world.recommend(str(customer), channel, store).items:
                r = item.reason
                assert r.text, item
                if r.kind in (recsvc_pb2.REASON_KIND_BOUGHT_TOGETHER, recsvc_pb2.REASON_KIND_BOUGHT_BEFORE):
                    assert r.source_item_ids and set(r.source_item_ids) <= bought, (customer, item)
                if r.kind == recsvc_pb2.REASON_KIND_BOUGHT_TOGETHER:
                    assert m.item_title(m.items.row(r.source_item_ids[0])) in r.text
                if r.kind == recsvc_pb2.REASON_KIND_BOUGHT_BEFORE:
                    assert r.source_item_ids == [item.item_id] and "last bought" in r.text


def test_online_only_items_never_appear_in_store_nor_store_only_items_online(world: World) -> None:
    items = pd.read_csv(world.summary.items_path, dtype=str, keep_default_na=False)
    online_only = set(items.loc[items[C.CHANNELS] == "web|app", C.ITEM_ID])
    store_only = set(items.loc[items[C.CHANNELS] == "store", C.ITEM_ID])
    assert online_only and store_only
    seen_online, seen_in_store = set(), set()
    for customer in world.model.customers.ids[:80]:
        in_store = {i.item_id for i in world.recommend(str(customer), "store", "S02", n=30).items}
        online = {i.item_id for i in world.recommend(str(customer), "web", n=30).items}
        online |= {i.item_id for i in world.recommend(str(customer), "app", n=30).items}
        assert not in_store & online_only and not online & store_only
        seen_online |= online & online_only
        seen_in_store |= in_store & store_only
    assert seen_online and seen_in_store, "each kind is suggested where it is sold: the filter is what hides it"


def test_out_of_stock_items_are_not_suggested_and_a_stock_update_applies_without_retraining(world: World) -> None:
    original = load_current_stock(world.root)
    assert original is not None and original.source.startswith("training run")  # the trainer published it
    table = original.table
    rows = original.store_rows(STORE)
    assert rows is not None
    on_shelf = {str(i) for i, q in zip(table.item_ids[rows], table.quantities[rows], strict=True) if q > 0}
    customers = [str(c) for c in world.model.customers.ids[:40]]
    for customer in customers:
        assert {i.item_id for i in world.recommend(customer, "store", STORE, n=30).items} <= on_shelf

    top = world.after.items[0].item_id
    sold_out = table.quantities.copy()
    sold_out[(table.store_ids == STORE) & (table.item_ids == top)] = 0
    try:
        publish_stock(world.root, StockTable(table.store_ids, table.item_ids, sold_out), source="test")
        again = world.recommend(world.alias, "store", STORE)
        assert top not in [i.item_id for i in again.items] and again.model_version == world.after.model_version
    finally:
        publish_stock(world.root, table, source="restored")
    assert world.recommend(world.alias, "store", STORE).items[0].item_id == top


def test_policies_come_from_configuration_and_are_reported(world: World) -> None:
    m = world.model
    cold = m.arrays["coldstart_customer"]
    warm_customer = next(str(m.customers.ids[r]) for r in range(m.n_customers)
                         if not cold[r] and len(m.history(r)) >= 3)
    assert world.recommend(warm_customer, "app").policy == "buy_it_again"
    assert world.recommend(warm_customer, "store", STORE).policy == "in_store"
    web = world.recommend(warm_customer, "web", n=30)
    assert web.policy == "discovery"
    today = m.data_end_day  # the model was trained just now: "today" is its last data day
    hist = m.history(m.resolve_customer(warm_customer))
    recent = {m.item_id(int(i)) for i, d in zip(hist.items, hist.last_day, strict=True) if today - int(d) < 30}
    assert not recent & {i.item_id for i in web.items}  # discovery: nothing bought in the last 30 days
    cold_customer = str(m.customers.ids[int(np.flatnonzero(cold)[0])])
    assert world.recommend(cold_customer, "web").policy == "coldstart"
    assert world.recommend("nobody-we-know", "web").policy == "popular"


def test_customer_profile_over_grpc(world: World) -> None:
    profile = world.stub.GetCustomerProfile(recsvc_pb2.GetCustomerProfileRequest(customer_id=world.alias),
                                            timeout=10)
    assert profile.customer_id == world.customer and profile.model_version == world.model.version
    assert profile.recent_purchases[0].date == world.summary.end_date.isoformat()
    online = next(p for p in profile.recent_purchases if p.item_id == world.anchor)  # the last day's purchases
    assert (online.channel, online.store_id, online.date) == ("web", "", world.summary.end_date.isoformat())
    assert 1 <= len(profile.recent_purchases) <= 20
    dates = [p.date for p in profile.recent_purchases]
    assert dates == sorted(dates, reverse=True)
    assert any(p.channel == "store" and p.store_id for p in profile.recent_purchases)
    assert {"store", "web"} <= set(profile.channels)
    assert profile.HasField("rfm") and profile.rfm.segment in RFM_SEGMENTS
    assert 1 <= profile.rfm.recency <= 5 and profile.rfm.days_since_last_purchase == 0 and profile.rfm.spend > 0

    with pytest.raises(grpc.RpcError) as error:
        world.stub.GetCustomerProfile(recsvc_pb2.GetCustomerProfileRequest(customer_id="LC-nobody"), timeout=10)
    assert error.value.code() == grpc.StatusCode.NOT_FOUND and "LC-nobody" in error.value.details()
    with pytest.raises(grpc.RpcError) as error:
        world.stub.GetCustomerProfile(recsvc_pb2.GetCustomerProfileRequest(), timeout=10)
    assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_the_trainer_publishes_the_optional_arrays(world: World) -> None:
    m = world.model
    n, ch = m.n_customers, len(m.channels)
    shapes = {"rfm_scores": (n, 3), "rfm_segment": (n,), "cust_monetary": (n,), "cust_channels": (n, ch),
              "lfm_user_biases": (n,), "lfm_item_biases": (m.n_items,), "coldstart_customer": (n,)}
    for name, shape in shapes.items():
        assert m.arrays[name].shape == shape, name
    assert m.arrays["lfm_item_embeddings"].shape == (m.n_items, TRAINING.lfm_components)
    assert m.extra["rfm_segments"] == list(RFM_SEGMENTS)
    assert FoldInParams.from_extra(m.extra) == foldin_params(TRAINING) == m.parts[FoldInParams]


def test_context_folds_into_the_als_suggestions(world: World) -> None:
    m = world.model
    source = AlsSource(m)
    row = m.resolve_customer(world.alias)
    plain = RankingContext(customer_row=row, channel_row=m.channel_row("web"), today=m.data_end_day,
                           history=m.history(row))
    bought_categories = {str(m.item_categories[int(i)]) for i in m.history(row).items}
    other = np.flatnonzero(~np.isin(m.item_categories, list(bought_categories))
                           & np.any(m.item_factors_t != 0, axis=0))
    looking_at = other[:3].astype(np.int64)
    with_context = dataclasses.replace(plain, context_items=looking_at)
    before, after = source.candidates(plain, 20), source.candidates(with_context, 20)
    assert before.items.tolist() != after.items.tolist()
    looked = set(m.item_categories[looking_at].tolist())
    share = [np.isin(m.item_categories[c.items], list(looked)).mean() for c in (before, after)]
    assert share[1] > share[0], "items like the ones looked at move up"
    # through the server too: the same request with context items answers differently
    ids = [m.item_id(int(i)) for i in looking_at]
    assert [i.item_id for i in world.recommend(world.alias, "web", context=tuple(ids)).items] != \
        [i.item_id for i in world.recommend(world.alias, "web").items]


def test_fold_in_without_context_is_the_trained_vector_and_moves_toward_the_context() -> None:
    model = LoadedModel(build_toy_artifacts())
    fold = FoldIn.for_model(model)
    assert FoldIn.for_model(model) is fold  # YᵀY once per model
    row = model.resolve_customer("C002")  # a food customer
    ctx = RankingContext(customer_row=row, today=model.data_end_day, history=model.history(row))
    np.testing.assert_allclose(fold.user_vector(ctx), model.user_factors[row], rtol=1e-4, atol=1e-5)
    dish_soap = model.items.row("H01")
    moved = fold.user_vector(dataclasses.replace(ctx, context_items=np.array([dish_soap])))
    y = model.item_factors_t[:, dish_soap]
    assert moved @ y > model.user_factors[row] @ y + 0.1  # the household item it looks at now scores higher
    # a customer without factors gets the plain fold-in of the context alone
    factors = model.item_factors_t.T
    scratch = fold_in(factors, fold.gramian, 0.05, np.zeros(0), np.zeros(0), np.array([dish_soap]), np.array([8.0]))
    assert int(np.argmax(scratch @ model.item_factors_t)) in {dish_soap, model.items.row("H02")}
