"""Bad input as a new caller sends it, through the real gRPC API (a live server on port 0, the production
engine with its stock filter), on the toy model: channel names in another case or unknown, ids with
surrounding whitespace, unknown categories, and stock that does not match the model (issue 12 "Bad input",
issue 15 part 3).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest

from recsvc.artifacts.stock import publish_stock
from recsvc.artifacts.stock_table import StockTable
from recsvc.v1 import recsvc_pb2
from tests.test_lifecycle import LiveServer, settings_for
from tests.toy_model import CHANNELS, ITEMS, publish_toy

SOLD_EVERYWHERE = {item_id for item_id, *_, sold in ITEMS if all(sold)}
SOLD_ON = {item_id: {c for c, s in zip(CHANNELS, sold, strict=True) if s} for item_id, *_, sold in ITEMS}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    root = tmp_path_factory.mktemp("artifacts")
    publish_toy(root)
    live = LiveServer(settings_for(root))
    yield live
    live.close()


def _recommend(server: LiveServer, **fields: Any) -> recsvc_pb2.RecommendResponse:
    fields.setdefault("num_items", 12)
    return server.stub.Recommend(recsvc_pb2.RecommendRequest(**fields), timeout=10)


def _ids(response: Any) -> list[str]:
    return [item.item_id for item in response.items]


# ------------------------------------------------------------------------------------------------ channels

@pytest.mark.parametrize("spelling", ["WEB", "Web", " web "])
def test_channel_names_compare_case_insensitively(server: LiveServer, spelling: str) -> None:
    """Regression: ``WEB`` was an unknown channel and got store-only items."""
    for customer in ("C001", "C005", "nobody"):
        asked = _recommend(server, customer_id=customer, channel=spelling)
        web = _recommend(server, customer_id=customer, channel="web")
        assert _ids(asked) == _ids(web) and not asked.unknown_channel
        assert all("web" in SOLD_ON[i] for i in _ids(asked))
    bundle = server.stub.RecommendBundle(recsvc_pb2.RecommendBundleRequest(
        basket_item_ids=["B01"], channel=spelling.upper(), num_items=12), timeout=10)
    assert not bundle.unknown_channel and all("web" in SOLD_ON[i] for i in _ids(bundle))
    similar = server.stub.SimilarItems(recsvc_pb2.SimilarItemsRequest(item_id="B01", channel=spelling,
                                                                      num_items=12), timeout=10)
    assert not similar.unknown_channel and "B02" not in _ids(similar)  # croissants: store only


def test_store_channel_in_capitals_keeps_store_only_items(server: LiveServer) -> None:
    store = _recommend(server, customer_id="C005", channel="STORE", store_id="S01")
    assert "B02" in _ids(store) and all("store" in SOLD_ON[i] for i in _ids(store))


def test_unknown_channel_gets_only_items_sold_on_every_channel_and_says_so(server: LiveServer) -> None:
    """Regression: ``kiosk`` returned six store-only items to an online caller."""
    for customer in ("C005", "nobody"):  # C005's favourite is croissants B02, sold only in stores
        kiosk = _recommend(server, customer_id=customer, channel="kiosk")
        assert kiosk.unknown_channel and kiosk.items
        assert set(_ids(kiosk)) <= SOLD_EVERYWHERE
        assert any("kiosk" in notice and "web" in notice for notice in kiosk.notices)  # names the known ones
    bundle = server.stub.RecommendBundle(recsvc_pb2.RecommendBundleRequest(
        basket_item_ids=["B01"], channel="Kiosk", num_items=12), timeout=10)
    assert bundle.unknown_channel and set(_ids(bundle)) <= SOLD_EVERYWHERE and bundle.notices
    similar = server.stub.SimilarItems(recsvc_pb2.SimilarItemsRequest(item_id="B01", channel="kiosk"), timeout=10)
    assert similar.unknown_channel and set(_ids(similar)) <= SOLD_EVERYWHERE
    no_channel = server.stub.SimilarItems(recsvc_pb2.SimilarItemsRequest(item_id="B01", num_items=12), timeout=10)
    assert not no_channel.unknown_channel and "B02" in _ids(no_channel)  # no channel given: no channel filter


# ------------------------------------------------------------------------------------------------------ ids

def test_ids_with_surrounding_whitespace_are_trimmed_on_every_id_field(server: LiveServer) -> None:
    """Regression: ``C001223 `` silently became an unknown customer."""
    padded = _recommend(server, customer_id="C001 ", channel="web", store_id=" S01",
                        context_item_ids=["B01 "], exclude_item_ids=["\tH04"])
    clean = _recommend(server, customer_id="C001", channel="web", store_id="S01", context_item_ids=["B01"],
                       exclude_item_ids=["H04"])
    assert padded.known_customer and padded.resolved_customer_id == "C001" and not padded.unknown_item_ids
    assert _ids(padded) == _ids(clean) and not {"B01", "H04"} & set(_ids(padded))
    alias = _recommend(server, customer_id=" LOY-1\n", channel="web")
    assert alias.resolved_customer_id == "C001"

    bundle = server.stub.RecommendBundle(recsvc_pb2.RecommendBundleRequest(
        basket_item_ids=[" D01 "], customer_id=" C002", store_id="S01 "), timeout=10)
    assert not bundle.unknown_item_ids and bundle.bundle.anchor_item_id == "D01" and "D01" not in _ids(bundle)

    similar = server.stub.SimilarItems(recsvc_pb2.SimilarItemsRequest(item_id=" D01 ", num_items=3), timeout=10)
    assert _ids(similar) == ["D04", "D03", "D02"]

    profile = server.stub.GetCustomerProfile(recsvc_pb2.GetCustomerProfileRequest(customer_id=" LOY-4 "), timeout=10)
    assert profile.customer_id == "C004"


def test_an_id_of_only_whitespace_is_invalid_argument_naming_the_field(server: LiveServer) -> None:
    with pytest.raises(grpc.RpcError) as err:
        _recommend(server, customer_id="C001", channel="web", context_item_ids=["  "])
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "context_item_ids" in str(err.value.details())
    with pytest.raises(grpc.RpcError) as err:
        _recommend(server, customer_id="C001", channel="  ")
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "channel" in str(err.value.details())
    with pytest.raises(grpc.RpcError) as err:
        server.stub.GetCustomerProfile(recsvc_pb2.GetCustomerProfileRequest(customer_id=" "), timeout=10)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT


# ------------------------------------------------------------------------------------------------ categories

def test_unknown_categories_are_reported_back(server: LiveServer) -> None:
    """Regression: an unknown category in include_categories returned zero items with no word."""
    typo = _recommend(server, customer_id="C001", channel="web", include_categories=["diary"])
    assert not typo.items and list(typo.unknown_categories) == ["diary"]
    assert any("diary" in notice for notice in typo.notices)
    mixed = _recommend(server, customer_id="C001", channel="web", include_categories=["dairy", "diary"],
                       exclude_categories=["bakery", "hosehold"])
    assert list(mixed.unknown_categories) == ["diary", "hosehold"] and mixed.items
    assert {item.category for item in mixed.items} == {"dairy"}
    known = _recommend(server, customer_id="C001", channel="web", include_categories=["dairy"])
    assert not known.unknown_categories


# ----------------------------------------------------------------------------------------------------- stock

def _stock(root: Path, rows: list[tuple[str, str, float]]) -> None:
    table, _ = StockTable.from_rows([r[0] for r in rows], [r[1] for r in rows], [r[2] for r in rows])
    publish_stock(root, table, source="test")


def _stock_fallbacks(server: LiveServer, rpc: str) -> float:
    assert server.metrics is not None
    for family in server.registry().collect():
        for sample in family.samples:
            if sample.name == "recsvc_stock_fallback_total" and sample.labels.get("rpc") == rpc:
                return float(sample.value)
    return 0.0


def test_stock_from_another_catalog_falls_back_to_the_channels_popular_items_and_is_counted(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """Regression (issue 15): stock that does not match the model emptied every store answer, without a word."""
    publish_toy(tmp_path)
    _stock(tmp_path, [("S01", "OTHER-1", 5.0), ("S01", "OTHER-2", 3.0)])  # none of the model's items
    server = LiveServer(settings_for(tmp_path), metrics=True)
    try:
        with caplog.at_level(logging.WARNING, logger="recsvc.ranking"):
            emptied = _recommend(server, customer_id="C005", channel="store", store_id="S01", num_items=5)
        assert len(emptied.items) == 5 and emptied.fallback == "popular_ignoring_stock"
        assert all("store" in SOLD_ON[i] for i in _ids(emptied))  # the channel rule still holds
        assert any("S01" in notice and "stock" in notice for notice in emptied.notices)
        assert any("emptied" in r.getMessage() and "S01" in r.getMessage() for r in caplog.records)
        assert _stock_fallbacks(server, "Recommend") == 1.0

        bundle = server.stub.RecommendBundle(recsvc_pb2.RecommendBundleRequest(
            basket_item_ids=["D01"], channel="store", store_id="S01", num_items=4), timeout=10)
        assert len(bundle.items) == 4 and bundle.fallback == "popular_ignoring_stock"
        assert _stock_fallbacks(server, "RecommendBundle") == 1.0

        other_store = _recommend(server, customer_id="C005", channel="store", store_id="S02", num_items=5)
        assert other_store.fallback == "" and not other_store.notices  # S02 has no stock rows: not filtered
        assert _stock_fallbacks(server, "Recommend") == 1.0
    finally:
        server.close()


def test_an_answer_with_items_in_stock_stays_in_stock_and_says_it_is_short(tmp_path: Path) -> None:
    """A clerk is never offered what the shelf lacks while anything suggested is on it: the answer is short,
    not padded with out-of-stock items, and says so."""
    publish_toy(tmp_path)
    _stock(tmp_path, [("S01", "B02", 4.0), ("S01", "D01", 2.0), ("S01", "H04", 0.0)])
    server = LiveServer(settings_for(tmp_path), metrics=True)
    try:
        short = _recommend(server, customer_id="C005", channel="store", store_id="S01", num_items=5)
        assert set(_ids(short)) == {"B02", "D01"} and short.fallback != "popular_ignoring_stock"
        assert any("2 of 5" in notice and "stock" in notice for notice in short.notices)
        assert _stock_fallbacks(server, "Recommend") == 0.0
    finally:
        server.close()
