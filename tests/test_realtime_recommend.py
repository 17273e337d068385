"""Live events in Recommend and RecommendBundle (issue 13), end to end: a real `recsvc serve` with two worker
processes on the embedded SQLite store, events recorded on one connection, answers read on others.

The toy model (tests/toy_model.py): ``C004`` (aliases ``APP-4``, ``LOY-4``) bought dish soap in the app; bread
``B01`` goes with milk ``D01`` (0.5), muffins ``B04`` and butter ``D02``, and is the second most popular item in
store ``S01``; its repurchase interval is 4 days, so bread bought a minute ago is not due again.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest

from recsvc.v1 import recsvc_pb2, recsvc_pb2_grpc
from tests.test_realtime import WITHIN_SECONDS, Served, event, every_worker, record, root, worker_pids

__all__ = ["root"]


def recommend(channel: grpc.Channel, customer: str, **kwargs: Any) -> recsvc_pb2.RecommendResponse:
    return recsvc_pb2_grpc.RecommenderStub(channel).Recommend(recsvc_pb2.RecommendRequest(
        customer_id=customer, channel="store", store_id="S01", num_items=6, **kwargs), timeout=10)


def answer(response: recsvc_pb2.RecommendResponse) -> list[tuple[str, str, float]]:
    return [(s.item_id, s.reason.text, s.score) for s in response.items]


@pytest.fixture(scope="module")
def served(root: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    folder = tmp_path_factory.mktemp("live-recommend")
    server = Served(root, folder / "serve.log", {"RECSVC_EVENTS__SQLITE_PATH": str(folder / "ev.sqlite")},
                    workers=2)
    yield server
    server.stop()


def test_an_online_purchase_changes_the_in_store_recommend_within_a_second(served: Served) -> None:
    """Bread bought online (alias APP-4) reaches the in-store Recommend through the loyalty card (LOY-4) on
    every worker within 1 s: its complements lead with a reason naming the purchase, and the bread itself,
    popular in the store before, is not suggested right after it was bought."""
    pids = worker_pids(served, 2)
    with served.channel() as channel:
        before = recommend(channel, "LOY-4")
    assert "B01" in [s.item_id for s in before.items]
    with served.channel() as channel:
        assert record(channel, event("web-1:1", "APP-4", "B01", channel="web")).accepted == 1
        started = time.monotonic()
    seen: list[recsvc_pb2.RecommendResponse] = []

    def without_bread(channel: grpc.Channel) -> bool:
        got = recommend(channel, "LOY-4")
        seen.append(got)
        return "B01" not in [s.item_id for s in got.items]

    elapsed = every_worker(served, pids, started, without_bread, "the purchase")
    assert elapsed < WITHIN_SECONDS, f"seen by every worker after {elapsed:.2f} s"
    got = seen[-1]
    assert got.resolved_customer_id == "C004" and got.known_customer
    reasons = {s.item_id: s.reason for s in got.items}
    assert {"D01", "B04", "D02"} <= set(reasons)
    milk = reasons["D01"]
    assert milk.text.startswith("Bought together with Bread loaf (bought online ")
    assert milk.text.endswith(("just now)", "minute ago)", "minutes ago)"))
    assert (list(milk.source_item_ids), milk.source_channel) == (["B01"], "web")


def test_a_return_cancels_the_live_purchase(served: Served) -> None:
    """A live return of the only live purchase takes its complements and its exclusion back out."""
    with served.channel() as channel:
        baseline = answer(recommend(channel, "C005"))
        record(channel, event("s-1:1", "C005", "H01", channel="store", store_id="S01"))
        deadline = time.monotonic() + 5
        while "H02" not in [i for i, *_ in answer(recommend(channel, "C005"))]:
            assert time.monotonic() < deadline, "the purchase of dish soap never brought sponges"
            time.sleep(0.05)
        sponges = next(s for s in recommend(channel, "C005").items if s.item_id == "H02")
        assert sponges.reason.text.startswith("Bought together with Dish soap (bought in store S01 ")
        record(channel, event("s-1:1r", "C005", "H01", "return", channel="store", store_id="S01"))
        deadline = time.monotonic() + 5
        while answer(recommend(channel, "C005")) != baseline:
            assert time.monotonic() < deadline, "the return did not cancel the live purchase"
            time.sleep(0.05)


def test_a_never_seen_customer_with_a_live_purchase_gets_complements(served: Served) -> None:
    """A customer the model never saw who bought milk online gets what goes with milk (policy "context"),
    not the store's popular items."""
    with served.channel() as channel:
        assert recommend(channel, "NEW-77").policy == "popular"
        record(channel, event("new-77:1", "NEW-77", "D01", channel="web"))
        deadline = time.monotonic() + 5
        while (got := recommend(channel, "NEW-77")).policy != "context":
            assert time.monotonic() < deadline, f"still {got.policy!r} 5 s after the purchase"
            time.sleep(0.05)
    assert not got.known_customer
    first = got.items[0]
    assert first.item_id == "B01" and first.reason.text.startswith("Bought together with Milk 1 l (bought online ")
    assert "D01" not in [s.item_id for s in got.items]


def test_customers_without_live_events_get_the_same_answer(served: Served, root: Path, tmp_path: Path) -> None:
    """No behaviour change without live events: every toy customer's Recommend and RecommendBundle from the
    events-enabled server equals that of a server without events, item for item, reason for reason."""
    plain = Served(root, tmp_path / "plain.log", {"RECSVC_EVENTS__BACKEND": "off"})
    try:
        with served.channel() as live_channel, plain.channel() as plain_channel:
            for customer in ("C001", "C002", "C003", "LOY-1", "", "NOBODY"):
                for kwargs in ({}, {"context_item_ids": ["B03"]}, {"exclude_item_ids": ["B02"]}):
                    assert answer(recommend(live_channel, customer, **kwargs)) == \
                        answer(recommend(plain_channel, customer, **kwargs)), (customer, kwargs)
                bundle = recsvc_pb2.RecommendBundleRequest(basket_item_ids=["B01"], customer_id=customer)
                live = recsvc_pb2_grpc.RecommenderStub(live_channel).RecommendBundle(bundle, timeout=10)
                alone = recsvc_pb2_grpc.RecommenderStub(plain_channel).RecommendBundle(bundle, timeout=10)
                assert live.recommendation_id != alone.recommendation_id  # every answer has its own id
                live.ClearField("recommendation_id")
                alone.ClearField("recommendation_id")
                assert live == alone
    finally:
        plain.stop()
