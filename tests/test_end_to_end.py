"""End to end, as an operator runs it: generate the sample, train with the real trainer, start ``recsvc serve``
as its own process on a loopback port, and call every RPC over a real channel — good requests, bad ones and
an unknown customer — then stop it with SIGTERM.
"""

from __future__ import annotations

import dataclasses
import os
import signal
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import numpy as np
import pandas as pd
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from recsvc.artifacts import load_current
from recsvc.config import TrainingSettings
from recsvc.v1 import recsvc_pb2, recsvc_pb2_grpc
from recsvc_training.input import columns as C
from recsvc_training.pipeline import train
from recsvc_training.sample import generate_sample
from tests.conftest import ServeProcess, serve_command

FAST = TrainingSettings(progress=False, als_factors=16, als_iterations=5, ranker_trees=40,
                        ranker_max_customers=300,
                        # the bundled sample leaves the ratio target (issue 14): its evaluation ranks every
                        # baseline without the channel's assortment, which the server must respect
                        gate_min_ratio_to_best_baseline=0.0)


@dataclass(frozen=True)
class Service:
    stub: recsvc_pb2_grpc.RecommenderStub
    health: health_pb2_grpc.HealthStub
    data: Path
    root: Path
    process: ServeProcess


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    tmp = tmp_path_factory.mktemp("e2e")
    data, root = tmp / "data", tmp / "artifacts"
    generate_sample(data, seed=3, n_customers=400, n_items=120, days=90)
    train(data, root, dataclasses.replace(FAST, evaluate=False))
    env = dict(os.environ, RECSVC_SERVER__ARTIFACT_ROOT=str(root), RECSVC_SERVER__PORT="0",
               RECSVC_SERVER__HOST="127.0.0.1", RECSVC_SERVER__RELOAD_POLL_SECONDS="0")
    with ServeProcess(serve_command(), tmp / "serve.log", env=env) as server:
        try:
            with grpc.insecure_channel(server.target) as channel:
                yield Service(recsvc_pb2_grpc.RecommenderStub(channel), health_pb2_grpc.HealthStub(channel), data,
                              root, server)
        finally:
            server.send_signal(signal.SIGTERM)
            server.wait(timeout=30)


def _richest_alias(service: Service) -> tuple[str, str]:
    """A loyalty-card alias and its customer id, the customer with the longest purchase history."""
    arts = load_current(service.root)
    counts = np.diff(arts["hist_indptr"])
    cards = np.char.startswith(arts["alias_ids"], "LC-")
    rows = arts["alias_customer"][cards]
    best = int(np.argmax(counts[rows]))
    return str(arts["alias_ids"][cards][best]), str(arts["customer_ids"][rows[best]])


def _item_ids(response: recsvc_pb2.RecommendResponse | recsvc_pb2.RecommendBundleResponse) -> list[str]:
    return [item.item_id for item in response.items]


def test_health_is_serving(service: Service) -> None:
    status = service.health.Check(health_pb2.HealthCheckRequest(service=""), timeout=10).status
    assert status == health_pb2.HealthCheckResponse.SERVING


def test_recommend_for_an_alias_equals_its_customer(service: Service) -> None:
    alias, customer = _richest_alias(service)
    by_alias = service.stub.Recommend(recsvc_pb2.RecommendRequest(customer_id=alias, channel="web",
                                                                  num_items=10), timeout=10)
    by_id = service.stub.Recommend(recsvc_pb2.RecommendRequest(customer_id=customer, channel="web",
                                                               num_items=10), timeout=10)
    assert by_alias.known_customer and by_alias.resolved_customer_id == customer
    assert len(by_alias.items) == 10 and _item_ids(by_alias) == _item_ids(by_id)
    assert [i.reason.kind for i in by_alias.items] == [i.reason.kind for i in by_id.items]
    assert by_alias.model_version and all(item.reason.text for item in by_alias.items)


def test_unknown_customer_gets_popular_items_marked_as_such(service: Service) -> None:
    response = service.stub.Recommend(recsvc_pb2.RecommendRequest(customer_id="nobody-42", channel="app"),
                                      timeout=10)
    assert not response.known_customer and response.policy == "popular" and len(response.items) == 10
    assert {item.reason.kind for item in response.items} <= {recsvc_pb2.REASON_KIND_POPULAR_ON_CHANNEL,
                                                             recsvc_pb2.REASON_KIND_POPULAR}


def test_excluded_and_context_items_never_come_back(service: Service) -> None:
    alias, _ = _richest_alias(service)
    first = _item_ids(service.stub.Recommend(recsvc_pb2.RecommendRequest(customer_id=alias, channel="web"),
                                             timeout=10))
    again = service.stub.Recommend(recsvc_pb2.RecommendRequest(
        customer_id=alias, channel="web", exclude_item_ids=first[:3], context_item_ids=[first[3], "no-such-item"]),
        timeout=10)
    assert not set(first[:4]) & set(_item_ids(again))
    assert list(again.unknown_item_ids) == ["no-such-item"]


@pytest.mark.parametrize(("request_kwargs", "field"), [
    ({"customer_id": "x", "channel": ""}, "channel"),
    ({"customer_id": "x", "channel": "web", "num_items": 101}, "num_items"),
    ({"customer_id": "x", "channel": "web", "exclude_item_ids": ["a"] * 1001}, "exclude_item_ids"),
    ({"customer_id": "x", "channel": "web", "context_item_ids": [""]}, "context_item_ids"),
])
def test_bad_recommend_requests_say_what_to_fix(service: Service, request_kwargs: dict, field: str) -> None:
    with pytest.raises(grpc.RpcError) as error:
        service.stub.Recommend(recsvc_pb2.RecommendRequest(**request_kwargs), timeout=10)
    assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error.value.details().startswith(field)


def test_bundle_completes_a_real_basket_and_reports_unknown_ids(service: Service) -> None:
    events = pd.read_csv(service.data / "events.csv.gz", dtype=str, keep_default_na=False)
    orders = events[(events[C.EVENT] == C.PURCHASE) & (events[C.ORDER_ID] != "")]
    sizes = orders.groupby(C.ORDER_ID)[C.ITEM_ID].nunique()
    basket = sorted(set(orders.loc[orders[C.ORDER_ID] == sizes.idxmax(), C.ITEM_ID]))[:2]
    response = service.stub.RecommendBundle(recsvc_pb2.RecommendBundleRequest(
        basket_item_ids=[*basket, "no-such-item"], channel="web", num_items=5, bundle_size=3), timeout=10)
    assert len(response.items) == 5 and not set(basket) & set(_item_ids(response))
    assert list(response.unknown_item_ids) == ["no-such-item"]
    assert response.bundle.anchor_item_id in basket and len(response.bundle.items) == 2
    with pytest.raises(grpc.RpcError) as error:
        service.stub.RecommendBundle(recsvc_pb2.RecommendBundleRequest(basket_item_ids=[]), timeout=10)
    assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_similar_items_and_unknown_item(service: Service) -> None:
    item = str(load_current(service.root)["item_ids"][0])
    response = service.stub.SimilarItems(recsvc_pb2.SimilarItemsRequest(item_id=item, num_items=5), timeout=10)
    assert 0 < len(response.items) <= 5 and item not in _item_ids(response)
    with pytest.raises(grpc.RpcError) as error:
        service.stub.SimilarItems(recsvc_pb2.SimilarItemsRequest(item_id="no-such-item"), timeout=10)
    assert error.value.code() == grpc.StatusCode.NOT_FOUND and "no-such-item" in error.value.details()


def test_model_info_and_profile(service: Service) -> None:
    info = service.stub.GetModelInfo(recsvc_pb2.GetModelInfoRequest(), timeout=10)
    assert info.version == load_current(service.root).version and info.num_items == 120
    alias, customer = _richest_alias(service)
    profile = service.stub.GetCustomerProfile(recsvc_pb2.GetCustomerProfileRequest(customer_id=alias),
                                              timeout=10)
    assert profile.customer_id == customer and len(profile.recent_purchases) > 0

