"""CPU per call of the ranking itself, without gRPC: each RPC's servicer method called in this process.

The load test (:mod:`benchmarks.load`) measures the whole server on shared cores; this isolates what one
request costs the engine, which is what an optimisation of the ranking code changes. It uses the load test's
synthetic sets (built or reused under ``--work-dir``) and the same request mix, one thread, one BLAS thread::

    python -m benchmarks.engine_cpu                 # the 100k set (learned ranker) and 100k-blend
    python -m benchmarks.engine_cpu --sets 1m --requests 2000
    python -m benchmarks.engine_cpu --sets 100k --threads 4   # the same calls from 4 threads at once

prints CPU milliseconds per call (process time over ``--requests`` calls after a warm-up) per set and RPC.
With ``--threads N`` the calls are shared by N threads running at once, as a server process's thread pool
runs them: the difference to one thread is what contention for the GIL and caches costs.
"""

from __future__ import annotations

import argparse
import os
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from recsvc.server.workers import limit_blas_threads

SETS = {"100k": (100_000, True), "100k-blend": (100_000, False), "1m": (1_000_000, True)}
RPCS = ("Recommend", "RecommendBundle", "SimilarItems")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="In-process CPU per call of each RPC on the synthetic sets.")
    parser.add_argument("--sets", nargs="+", choices=sorted(SETS), default=["100k", "100k-blend"])
    parser.add_argument("--requests", type=int, default=3000, help="calls per RPC (max 100000)")
    parser.add_argument("--threads", type=int, default=1, help="threads sharing the calls (max 16)")
    parser.add_argument("--work-dir", default="benchmarks/results/raw")
    args = parser.parse_args(argv)
    if not 1 <= args.requests <= 100_000:
        parser.error("--requests must be 1..100000")
    if not 1 <= args.threads <= 16:
        parser.error("--threads must be 1..16")
    limit_blas_threads(os.environ)  # before numpy: one BLAS thread, as each server process runs

    from benchmarks.load import build_requests
    from benchmarks.synthetic import SyntheticSpec, ensure_published
    from recsvc.artifacts import load_current
    from recsvc.config import ServerSettings
    from recsvc.ranking import LoadedModel, RecommendationEngine
    from recsvc.server.holder import ModelHolder
    from recsvc.server.servicer import RecommenderServicer
    from recsvc.v1 import recsvc_pb2

    messages: dict[str, Any] = {"Recommend": recsvc_pb2.RecommendRequest,
                                "RecommendBundle": recsvc_pb2.RecommendBundleRequest,
                                "SimilarItems": recsvc_pb2.SimilarItemsRequest}
    print(f"{'set':<12} {'rpc':<16} {'CPU ms per call':>16}")
    for label in args.sets:
        n_items, ranker = SETS[label]
        spec = SyntheticSpec(n_items=n_items, learned_ranker=ranker)
        root = Path(args.work_dir) / f"artifacts-{label}"
        ensure_published(root, spec, f"bench-{label}-a")
        engine = RecommendationEngine(LoadedModel(load_current(root, verify=False, mmap=True)), ServerSettings())
        servicer = RecommenderServicer(ModelHolder(engine))  # no lifecycle: the same engine throughout
        for rpc in RPCS:
            requests = [messages[rpc].FromString(r) for r in build_requests(rpc, vars(spec), 1, args.requests)]
            method = getattr(servicer, rpc)
            for request in requests[: max(1, len(requests) // 10)]:  # warm-up: caches, scratch buffers
                method(request, None)
            if args.threads > 1:  # one warm-up pass at this concurrency too: per-call scratch space
                _run_threads(method, requests[: max(args.threads, len(requests) // 10)], args.threads)
            started = time.process_time()
            _run_threads(method, requests, args.threads)
            per_call = (time.process_time() - started) / len(requests) * 1e3
            print(f"{label:<12} {rpc:<16} {per_call:>16.3f}", flush=True)
    return 0


def _run_threads(method: Any, requests: Sequence[Any], threads: int) -> None:
    """Call ``method`` on every request, shared round-robin by ``threads`` threads running at once."""
    def work(part: Sequence[Any]) -> None:
        for request in part:
            method(request, None)

    if threads == 1:
        work(requests)
        return
    workers = [threading.Thread(target=work, args=(requests[i::threads],)) for i in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()


if __name__ == "__main__":
    sys.exit(main())
