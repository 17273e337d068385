"""The serving layer's cheaper per-call work answers exactly what the plain construction did (issue 16).

Response items are filled in place instead of built from keyword arguments, metric children are looked up
once, the exception mapping's wrapper is built once per method and the request id is made only when a line
needs it; these tests pin that nothing a caller or an operator sees changed.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import NamedTuple

import grpc
import pytest
from prometheus_client import CollectorRegistry

from recsvc.artifacts import load_current
from recsvc.config import ServerSettings
from recsvc.ranking import LoadedModel, RecommendationEngine, RecommendQuery, RecommendResult
from recsvc.ranking.reasons import Reason, ReasonKind
from recsvc.ranking.results import Suggestion
from recsvc.server.app import ModelHolder
from recsvc.server.interceptors import ExceptionToStatusInterceptor
from recsvc.server.metrics import ServerMetrics
from recsvc.server.servicer import add_scored_items, scored_items
from recsvc.v1 import recsvc_pb2
from tests.conftest import LiveServers
from tests.toy_model import publish_toy

SUGGESTIONS = (
    Suggestion("D01", 0.9, "Milk", "dairy", Reason(ReasonKind.BOUGHT_BEFORE, "You buy this every ~7 days",
                                                   ("D01",), days_since_last_purchase=12, typical_interval_days=7.5,
                                                   source_channel="store", source_store_id="S1")),
    Suggestion("B02", 0.5, "Bread", "bakery", Reason(ReasonKind.BOUGHT_TOGETHER, "Often bought with Milk",
                                                     ("D01", "D02"))),
    Suggestion("P03", -0.25, "", "", Reason(ReasonKind.POPULAR, "")),  # every optional field at its default
)


def _plain(s: Suggestion) -> recsvc_pb2.ScoredItem:
    """The message built field by field from keyword arguments, as the servicer used to."""
    r = s.reason
    return recsvc_pb2.ScoredItem(
        item_id=s.item_id, score=s.score, title=s.title, category=s.category,
        reason=recsvc_pb2.Reason(kind=int(r.kind), source_item_ids=list(r.source_item_ids),  # type: ignore[arg-type]
                                 text=r.text, days_since_last_purchase=r.days_since_last_purchase,
                                 typical_interval_days=r.typical_interval_days, source_channel=r.source_channel,
                                 source_store_id=r.source_store_id))


def test_items_filled_in_place_equal_the_plain_messages_byte_for_byte() -> None:
    response = recsvc_pb2.RecommendResponse()
    add_scored_items(response.items, SUGGESTIONS)
    expected = recsvc_pb2.RecommendResponse(items=[_plain(s) for s in SUGGESTIONS])
    assert response == expected
    assert response.SerializeToString(deterministic=True) == expected.SerializeToString(deterministic=True)
    assert response.items[0].reason.kind == recsvc_pb2.REASON_KIND_BOUGHT_BEFORE
    assert list(response.items[1].reason.source_item_ids) == ["D01", "D02"]
    assert scored_items(SUGGESTIONS) == [_plain(s) for s in SUGGESTIONS]


def test_metric_children_follow_the_serving_models_channels() -> None:
    class Model:
        def __init__(self, channels: tuple[str, ...]) -> None:
            self.channels = channels

    class Engine:
        def __init__(self, channels: tuple[str, ...]) -> None:
            self.model = Model(channels)

    holder = ModelHolder(Engine(("web",)))  # type: ignore[arg-type]  # only .model.channels is read
    metrics = ServerMetrics(holder, CollectorRegistry())
    metrics.observe("Recommend", "OK", 0.001, "web")
    metrics.observe("Recommend", "OK", 0.001, "app")  # not a channel of this model: "other"
    holder._engine = Engine(("web", "app"))  # type: ignore[assignment]  # a swap to a model that knows "app"
    metrics.observe("Recommend", "OK", 0.001, "app")
    metrics.observe("Recommend", "INTERNAL", 0.001, "")

    def sample(name: str, **labels: str) -> float | None:
        return metrics.registry.get_sample_value(name, labels)

    assert sample("recsvc_request_latency_seconds_count", rpc="Recommend", channel="web") == 1
    assert sample("recsvc_request_latency_seconds_count", rpc="Recommend", channel="other") == 1
    assert sample("recsvc_request_latency_seconds_count", rpc="Recommend", channel="app") == 1
    assert sample("recsvc_request_latency_seconds_count", rpc="Recommend", channel="none") == 1
    assert sample("recsvc_requests_total", rpc="Recommend", code="OK") == 3
    assert sample("recsvc_request_errors_total", rpc="Recommend", code="INTERNAL") == 1


class _Details(NamedTuple):
    method: str
    invocation_metadata: tuple[tuple[str, str], ...]


def test_exception_mapping_rewraps_a_method_whose_handler_changed() -> None:
    interceptor = ExceptionToStatusInterceptor()
    first = grpc.unary_unary_rpc_method_handler(lambda request, context: "first")
    second = grpc.unary_unary_rpc_method_handler(lambda request, context: "second")
    details = _Details("/recsvc.v1.Recommender/Recommend", ())
    a = interceptor.intercept_service(lambda _: first, details)
    assert interceptor.intercept_service(lambda _: first, details) is a  # built once per method
    b = interceptor.intercept_service(lambda _: second, details)
    assert a is not None and b is not None and b is not a
    assert a.unary_unary(object(), None) == "first" and b.unary_unary(object(), None) == "second"


class _Broken(RecommendationEngine):
    def recommend(self, query: RecommendQuery) -> RecommendResult:
        raise ZeroDivisionError("secret")


def test_a_generated_request_id_is_one_id_for_the_caller_the_error_log_and_the_access_line(
        tmp_path: Path, caplog: pytest.LogCaptureFixture, live_server: LiveServers) -> None:
    publish_toy(tmp_path)
    settings = ServerSettings(host="127.0.0.1", port=0, artifact_root=str(tmp_path), max_workers=2,
                              shutdown_grace_seconds=1.0, log_json=True)
    server = live_server(settings, holder=ModelHolder(_Broken(LoadedModel(load_current(tmp_path)), settings)),
                         metrics=True)
    with caplog.at_level(logging.INFO), pytest.raises(grpc.RpcError) as info:
        server.stub.Recommend(recsvc_pb2.RecommendRequest(customer_id="C1", channel="web"), timeout=5)
    assert info.value.code() == grpc.StatusCode.INTERNAL
    request_id = info.value.details().rsplit(" ", 1)[-1]
    assert len(request_id) == 16
    error = next(r for r in caplog.records if r.name == "recsvc.server.interceptors")
    access = next(r for r in caplog.records if r.name == "recsvc.access")
    assert error.request_id == request_id == access.request_id  # type: ignore[attr-defined]
    assert access.code == "INTERNAL"  # type: ignore[attr-defined]
