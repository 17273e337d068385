"""The commands that ask a running server: recommend, bundle, similar, profile, info.

Each prints what a clerk's tablet or an operator would read. A failed call (server not running, a request the
server refuses, an unknown item or customer) is one line on stderr, ``recsvc <command>: <STATUS>: <message>``,
and exit code 1: the entry point turns every ``grpc.RpcError`` into that line (:func:`rpc_error_line`).
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping

import grpc
from google.protobuf import json_format

from recsvc.cli.common import DEFAULT_TARGET, add_parser
from recsvc.client import RecsvcClient, format_bundle, format_items, format_recommendation
from recsvc.v1 import recsvc_pb2


def rpc_error_line(error: grpc.RpcError, target: str | None) -> str:
    """``STATUS: message`` of a failed call; a server that cannot be reached also gets the address asked."""
    code = error.code() if hasattr(error, "code") else None
    details = (error.details() if hasattr(error, "details") else None) or str(error)
    name = code.name if isinstance(code, grpc.StatusCode) else "ERROR"
    line = f"{name}: {details.strip().splitlines()[0] if details.strip() else 'no details'}"
    if code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED) and target:
        line += f" (is a recsvc server running at {target}? see --target)"
    return line


def cmd_recommend(args: argparse.Namespace) -> int:
    with RecsvcClient(args.target) as client:
        response = client.recommend(args.customer, args.channel, args.store, args.n, args.context, args.exclude)
        print(format_recommendation(args.customer, args.channel, args.store, response))
    return 0


def cmd_bundle(args: argparse.Namespace) -> int:
    with RecsvcClient(args.target) as client:
        response = client.bundle(args.basket, args.customer, args.channel, args.store, args.n, args.size)
        print(format_bundle(args.basket, response))
    return 0


def cmd_similar(args: argparse.Namespace) -> int:
    with RecsvcClient(args.target) as client:
        response = client.similar(args.item, args.n, args.channel)
        print(f"Similar to {args.item} — model {response.model_version}")
        print("\n".join(format_items(response.items)))
    return 0


def cmd_profile(args: argparse.Namespace) -> int:
    with RecsvcClient(args.target) as client:
        print(format_profile(args.customer, client.profile(args.customer, args.n)))
    return 0


def cmd_info(args: argparse.Namespace) -> int:
    with RecsvcClient(args.target) as client:
        info = client.model_info()
    if args.json:
        print(json_format.MessageToJson(info, preserving_proto_field_name=True, sort_keys=True))
    else:
        print(format_model_info(info))
    return 0


def format_profile(asked: str, profile: recsvc_pb2.CustomerProfile) -> str:
    """What the clerk sees: who, the segment, the channels, recent purchases grouped by channel and store."""
    who = profile.customer_id + (f" (asked as {asked})" if asked != profile.customer_id else "")
    lines = [f"Customer {who} — model {profile.model_version}"]
    if profile.HasField("rfm"):
        rfm = profile.rfm
        lines.append(f"  segment      {rfm.segment} (R{rfm.recency} F{rfm.frequency} M{rfm.monetary}; last "
                     f"purchase {rfm.days_since_last_purchase} days ago; spend {rfm.spend:,.2f})")
    else:
        lines.append("  segment      none (no purchases in the training data)")
    if profile.coldstart:
        lines.append("  served by    the cold-start model (attributes known, little history)")
    lines.append("  channels     " + (", ".join(profile.channels) or "none"))
    if not profile.recent_purchases:
        lines.append("  recent purchases: none")
        return "\n".join(lines)
    lines.append("  recent purchases (newest first):")
    groups: dict[tuple[str, str], list[recsvc_pb2.Purchase]] = {}
    for purchase in profile.recent_purchases:  # most recent first; groups keep the order they first appear
        groups.setdefault((purchase.channel, purchase.store_id), []).append(purchase)
    for (channel, store), purchases in groups.items():
        lines.append(f"    {channel or 'unknown'} channel" + (f", store {store}" if store else ""))
        for p in purchases:
            lines.append(f"      {p.date}  {p.title or p.item_id:<38.38} [{p.item_id}] {p.category} x{p.count:g}")
    return "\n".join(lines)


def _evaluation_headline(evaluation: Mapping[str, float]) -> str:
    """The evaluation block in one line: NDCG/Recall@10 against the best baseline, cart completion."""
    parts = []
    for metric in ("ndcg@10", "recall@10"):
        value = evaluation.get(f"default.{metric}")
        if value is None:
            continue
        ratio = evaluation.get(f"ratios.{metric}.ratio")
        parts.append(f"{metric} {value:.4f}" + (f" ({ratio:.2f}x the best baseline)" if ratio is not None else ""))
    cart = evaluation.get("cart_completion.recsvc.hit_rate@10")
    if cart is not None:
        parts.append(f"cart completion hit_rate@10 {cart:.4f}")
    customers = evaluation.get("split.test_customers")
    if customers is not None:
        parts.append(f"{customers:,.0f} test customers")
    if not parts:  # an evaluation block of another shape: its first numbers as they are
        parts = [f"{key} {value:g}" for key, value in sorted(evaluation.items())[:4]]
    return "; ".join(parts) if parts else "none recorded"


def format_model_info(info: recsvc_pb2.ModelInfo) -> str:
    """A short human summary of GetModelInfo (the full message: ``recsvc info --json``)."""
    counts = info.row_counts
    events = f"{counts['events']:,} events" if "events" in counts else "events not recorded"
    lines = [f"Model {info.version}" + ("  (FORCED past a failed quality gate)" if info.forced else ""),
             f"  trained at   {info.created_at or 'unknown'}; loaded at {info.loaded_at or 'unknown'}",
             f"  data         {events}, {info.num_customers:,} customers, {info.num_items:,} items"
             + (f", {counts['stores']:,} stores" if "stores" in counts else ""),
             f"  evaluation   {_evaluation_headline(dict(info.evaluation))}",
             f"  channels     {', '.join(info.channels) or 'none'}"]
    if info.input_fingerprint:
        lines.append(f"  input        fingerprint {info.input_fingerprint[:16]}")
    return "\n".join(lines)


def add_client_commands(sub: argparse._SubParsersAction) -> None:
    """Register recommend, bundle, similar, profile and info."""
    def target(p: argparse.ArgumentParser) -> None:
        p.add_argument("--target", default=DEFAULT_TARGET, help="server address, host:port")

    def store(p: argparse.ArgumentParser) -> None:
        p.add_argument("--store", default="", help="store id, for a clerk in a store (empty: none)")

    p = add_parser(sub, "recommend", cmd_recommend, "ask for suggestions for a customer (a clerk's tablet view)")
    target(p)
    p.add_argument("--customer", required=True, help="customer id or any alias (loyalty card, app id)")
    p.add_argument("--channel", required=True, help="channel asking: web, app, store, ...")
    store(p)
    p.add_argument("-n", type=int, default=10, help="number of suggestions, 1..100")
    p.add_argument("--context", nargs="*", default=[], metavar="ITEM",
                   help="item ids viewed or in the cart right now")
    p.add_argument("--exclude", nargs="*", default=[], metavar="ITEM", help="item ids never to suggest")

    p = add_parser(sub, "bundle", cmd_bundle, "ask what completes a basket")
    target(p)
    p.add_argument("--basket", nargs="+", required=True, metavar="ITEM", help="item ids in the basket")
    p.add_argument("--customer", default="", help="customer id or alias, to personalise (empty: anonymous)")
    p.add_argument("--channel", default="", help="channel asking (empty: every channel)")
    store(p)
    p.add_argument("-n", type=int, default=10, help="number of completions, 1..100")
    p.add_argument("--size", type=int, default=3, help="items in the suggested bundle, 2..4")

    p = add_parser(sub, "similar", cmd_similar, "ask for items similar to one item")
    target(p)
    p.add_argument("--item", required=True, help="item id")
    p.add_argument("-n", type=int, default=10, help="number of similar items, 1..100")
    p.add_argument("--channel", default="", help="only items sold on this channel (empty: any)")

    p = add_parser(sub, "profile", cmd_profile,
                   "what a clerk sees about a customer: segment, recent purchases by channel and store")
    target(p)
    p.add_argument("--customer", required=True, help="customer id or any alias (loyalty card, app id)")
    p.add_argument("-n", type=int, default=20, help="recent purchases to list, 1..100")

    p = add_parser(sub, "info", cmd_info, "which model the server is serving: version, data, evaluation")
    target(p)
    p.add_argument("--json", action="store_true", help="print the full GetModelInfo message as JSON")




