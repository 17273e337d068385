"""A bare gRPC server with the Recommender's method names and canned responses: the load test's yardstick.

It answers ``/recsvc.v1.Recommender/Recommend`` (and ``RecommendBundle``, ``SimilarItems``) with a fixed,
pre-serialised response of 10 items that looks like a real one (ids, titles, categories, reasons), through a
generic handler that neither parses the request nor builds the response. Driving it with the same load
generator, on the same cores, at the same concurrency, measures what gRPC, the loopback and the clients cost;
the real server's throughput divided by the echo's is then the share of the machine our own work leaves.

Like the real server it can run several processes on one port (``--workers``, SO_REUSEPORT), each with a
thread pool of ``--max-workers`` threads. Run: ``python -m benchmarks.echo_server --port 50999``; it prints
``READY <port>`` once listening and stops on SIGTERM/SIGINT.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import subprocess
import sys
import threading
from concurrent import futures
from typing import Any

import grpc

from recsvc.v1 import recsvc_pb2

logger = logging.getLogger(__name__)

SERVICE = "recsvc.v1.Recommender"


def _items(n: int = 10) -> list[recsvc_pb2.ScoredItem]:
    return [recsvc_pb2.ScoredItem(
        item_id=f"I{100_000 + i:07d}", score=1.0 / (i + 1), title=f"Item {100_000 + i:07d}", category="cat042",
        reason=recsvc_pb2.Reason(kind=recsvc_pb2.REASON_KIND_CUSTOMERS_LIKE_YOU,
                                 source_item_ids=[f"I{200_000 + i:07d}"], text="Customers like you bought this"))
            for i in range(n)]


def _recommend_items(n: int = 10) -> list[recsvc_pb2.ScoredItem]:
    """Items shaped like a stored-path answer's (three "bought before" reasons with the days, channel and store
    they name), so the canned Recommend answer is as long as the real one (~1,040 bytes on the 100k set)."""
    items = _items(n)
    for i, item in enumerate(items[:3]):
        item.reason.kind = recsvc_pb2.REASON_KIND_BOUGHT_BEFORE
        item.reason.text = f"You buy this every ~{17 + i} days; last bought {289 + i} days ago"
        item.reason.days_since_last_purchase = 289 + i
        item.reason.typical_interval_days = 16.8 + i
        item.reason.source_channel = "store"
        item.reason.source_store_id = f"S{28 + i:03d}"
    return items


def canned_responses() -> dict[str, bytes]:
    """Serialised responses by method path: 10 items each, like the real server's default answer (the
    Recommend one with the header fields a real answer carries: recommendation id, version, customer)."""
    items = _items()
    return {
        f"/{SERVICE}/Recommend": recsvc_pb2.RecommendResponse(
            recommendation_id="r3f9c0a1b2c3d4e5f-1a2b", items=_recommend_items(), model_version="bench-100k-stored",
            resolved_customer_id="C0000042", known_customer=True, policy="learned").SerializeToString(),
        f"/{SERVICE}/RecommendBundle": recsvc_pb2.RecommendBundleResponse(
            items=items, bundle=recsvc_pb2.Bundle(anchor_item_id="I0000001", items=items[:2], score=1.5),
            model_version="echo").SerializeToString(),
        f"/{SERVICE}/SimilarItems": recsvc_pb2.SimilarItemsResponse(
            items=items, model_version="echo").SerializeToString(),
    }


class EchoHandler(grpc.GenericRpcHandler):
    """Answers each known method with its canned bytes; the request is never parsed."""

    def __init__(self, responses: dict[str, bytes]) -> None:
        self._handlers = {
            method: grpc.unary_unary_rpc_method_handler(lambda request, context, body=body: body)
            for method, body in responses.items()}

    def service(self, handler_call_details: grpc.HandlerCallDetails) -> Any:
        return self._handlers.get(handler_call_details.method)


def serve_echo(port: int, max_workers: int, reuse_port: bool, stop: threading.Event) -> None:
    """Serve until ``stop`` is set (one process)."""
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=max_workers),
                         options=[("grpc.so_reuseport", 1 if reuse_port else 0)])
    server.add_generic_rpc_handlers((EchoHandler(canned_responses()),))
    bound = server.add_insecure_port(f"127.0.0.1:{port}")
    server.start()
    print(f"READY {bound}", flush=True)
    stop.wait()
    server.stop(0.5).wait()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True, help="loopback port (use a free one)")
    parser.add_argument("--workers", type=int, default=1, help="processes sharing the port (SO_REUSEPORT)")
    parser.add_argument("--max-workers", type=int, default=8, help="threads per process, as the real server")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    if args.workers <= 1 or args.child:
        serve_echo(args.port, args.max_workers, reuse_port=args.child, stop=stop)
        return 0
    children = [subprocess.Popen([sys.executable, "-m", "benchmarks.echo_server", "--port", str(args.port),
                                  "--max-workers", str(args.max_workers), "--child"],
                                 stdout=subprocess.PIPE, text=True) for _ in range(args.workers)]
    for child in children:  # every child listening before the parent says so
        assert child.stdout is not None
        line = child.stdout.readline()
        if not line.startswith("READY"):
            for c in children:
                c.terminate()
            return 1
    print(f"READY {args.port}", flush=True)
    stop.wait()
    for child in children:
        child.send_signal(signal.SIGTERM)
    return max((child.wait(timeout=10) for child in children), default=0)


if __name__ == "__main__":
    logging.basicConfig(level=os.environ.get("LOG_LEVEL", "WARNING"))
    sys.exit(main())
