"""A small client for terminals and scripts: what a clerk's tablet or a backend asks, and how it reads.

``format_*`` render responses the way a clerk's tablet shows them: the customer, the channel, each item
with its reason.
"""

from __future__ import annotations

from collections.abc import Sequence

import grpc

from recsvc.v1 import recsvc_pb2, recsvc_pb2_grpc


class RecsvcClient:
    """Thin wrapper around the generated stub with a deadline on every call."""

    def __init__(self, target: str, timeout: float = 5.0) -> None:
        self._channel = grpc.insecure_channel(target)
        self._stub = recsvc_pb2_grpc.RecommenderStub(self._channel)
        self._timeout = timeout

    def close(self) -> None:
        self._channel.close()

    def __enter__(self) -> RecsvcClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def wait_ready(self, timeout: float = 10.0) -> None:
        grpc.channel_ready_future(self._channel).result(timeout=timeout)

    def recommend(self, customer_id: str, channel: str, store_id: str = "", num_items: int = 10,
                  context_item_ids: Sequence[str] = (), exclude_item_ids: Sequence[str] = ()
                  ) -> recsvc_pb2.RecommendResponse:
        request = recsvc_pb2.RecommendRequest(
            customer_id=customer_id, channel=channel, store_id=store_id, num_items=num_items,
            context_item_ids=list(context_item_ids), exclude_item_ids=list(exclude_item_ids))
        response: recsvc_pb2.RecommendResponse = self._stub.Recommend(request, timeout=self._timeout)
        return response

    def bundle(self, basket_item_ids: Sequence[str], customer_id: str = "", channel: str = "",
               store_id: str = "", num_items: int = 10, bundle_size: int = 3
               ) -> recsvc_pb2.RecommendBundleResponse:
        request = recsvc_pb2.RecommendBundleRequest(
            basket_item_ids=list(basket_item_ids), customer_id=customer_id, channel=channel,
            store_id=store_id, num_items=num_items, bundle_size=bundle_size)
        response: recsvc_pb2.RecommendBundleResponse = self._stub.RecommendBundle(request, timeout=self._timeout)
        return response

    def similar(self, item_id: str, num_items: int = 10, channel: str = "") -> recsvc_pb2.SimilarItemsResponse:
        request = recsvc_pb2.SimilarItemsRequest(item_id=item_id, num_items=num_items, channel=channel)
        response: recsvc_pb2.SimilarItemsResponse = self._stub.SimilarItems(request, timeout=self._timeout)
        return response

    def model_info(self) -> recsvc_pb2.ModelInfo:
        info: recsvc_pb2.ModelInfo = self._stub.GetModelInfo(recsvc_pb2.GetModelInfoRequest(),
                                                             timeout=self._timeout)
        return info

    def profile(self, customer_id: str, num_purchases: int = 0) -> recsvc_pb2.CustomerProfile:
        request = recsvc_pb2.GetCustomerProfileRequest(customer_id=customer_id, num_purchases=num_purchases)
        profile: recsvc_pb2.CustomerProfile = self._stub.GetCustomerProfile(request, timeout=self._timeout)
        return profile


def _reason_name(kind: int) -> str:
    return recsvc_pb2.ReasonKind.Name(kind).removeprefix("REASON_KIND_").lower()


def format_items(items: Sequence[recsvc_pb2.ScoredItem]) -> list[str]:
    lines = []
    for rank, item in enumerate(items, start=1):
        title = item.title or item.item_id
        lines.append(f"  {rank:>2}. {title:<38.38} [{item.item_id}] {item.category}")
        lines.append(f"      {_reason_name(item.reason.kind)}: {item.reason.text}")
    return lines


def format_recommendation(request_customer: str, channel: str, store_id: str,
                          response: recsvc_pb2.RecommendResponse) -> str:
    who = request_customer
    if response.resolved_customer_id and response.resolved_customer_id != request_customer:
        who += f" (customer {response.resolved_customer_id})"
    where = channel + (f", store {store_id}" if store_id else "")
    status = "known customer" if response.known_customer else "unknown customer: popular items"
    lines = [f"Suggestions for {who} on {where} — {status}; policy {response.policy}; "
             f"model {response.model_version}"]
    lines += format_items(response.items)
    if response.unknown_item_ids:
        lines.append(f"  (unknown item ids ignored: {', '.join(response.unknown_item_ids)})")
    return "\n".join(lines)


def format_bundle(basket: Sequence[str], response: recsvc_pb2.RecommendBundleResponse) -> str:
    lines = [f"Basket {', '.join(basket)} — model {response.model_version}", " Completes the basket:"]
    lines += format_items(response.items)
    if response.bundle.anchor_item_id:
        lines.append(f" Bundle around {response.bundle.anchor_item_id}:")
        lines += format_items(response.bundle.items)
    if response.unknown_item_ids:
        lines.append(f"  (unknown item ids: {', '.join(response.unknown_item_ids)})")
    return "\n".join(lines)
