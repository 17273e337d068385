"""Does ``workers = 2`` (two processes on one port, one BLAS thread each) beat one process on 2 cores?

One command reproduces ``benchmarks/results/workers.{json,md}``::

    python -m benchmarks.workers --out benchmarks/results/workers.json

It publishes (once, cached under ``--work``) a synthetic 100k-item x 64-factor set (see
:mod:`benchmarks.model_load`), then for each configuration starts the real ``recsvc serve`` on a loopback
port and drives Recommend closed-loop from ``--callers`` client processes (one channel each, pre-serialised
requests for random known customers) for ``--duration`` seconds after a warm-up:

* 1 worker, 1 BLAS thread — one process, as in a 1-CPU Kubernetes pod
* 1 worker, 2 BLAS threads — one process letting BLAS use both cores
* 2 workers, 1 BLAS thread each — the SO_REUSEPORT design (``workers = 2``)

Clients share the 2 cores with the server, so absolute numbers are lower than a remote client would see; the
comparison between configurations is what this measures. Every loop is bounded by a deadline.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import platform
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.model_load import build_set
from recsvc.artifacts import VERSIONS, publish_artifacts, read_manifest

VERSION = "bench-workers"
CONFIGS = [("1 worker, 1 BLAS thread", 1, "1"), ("1 worker, 2 BLAS threads", 1, "2"),
           ("2 workers, 1 BLAS thread each", 2, "1")]


def ensure_set(root: Path, n_items: int, n_customers: int) -> None:
    folder = root / VERSIONS / VERSION
    if folder.is_dir() and read_manifest(folder)["row_counts"].get("items") == n_items:
        return
    artifacts = build_set(n_items, n_customers, 64, seed=7)
    artifacts.version, artifacts.row_counts = VERSION, {"items": n_items, "customers": n_customers}
    publish_artifacts(artifacts, root)


def caller(target: str, n_customers: int, seed: int, warmup: float, duration: float,
           out: Any) -> None:
    import grpc

    from recsvc.v1 import recsvc_pb2

    width = len(str(n_customers))
    rng = np.random.default_rng(seed)
    requests = [recsvc_pb2.RecommendRequest(customer_id=f"C{int(c):0{width}d}", channel="web").SerializeToString()
                for c in rng.integers(0, n_customers, 500)]
    latencies: list[float] = []
    failed = 0
    with grpc.insecure_channel(target) as channel:
        call = channel.unary_unary("/recsvc.v1.Recommender/Recommend")
        start = time.monotonic()
        i = 0
        while time.monotonic() - start < warmup + duration and i < 5_000_000:
            t0 = time.monotonic()
            try:
                call(requests[i % len(requests)], timeout=5)
                if t0 - start >= warmup:
                    latencies.append(time.monotonic() - t0)
            except grpc.RpcError:
                failed += 1
            i += 1
    out.put((latencies, failed))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def run(root: Path, workers: int, blas: str, callers: int, warmup: float, duration: float,
        n_customers: int) -> dict[str, Any]:
    port = free_port()
    env = dict(os.environ, RECSVC_SERVER__WORKERS=str(workers), RECSVC_SERVER__RELOAD_POLL_SECONDS="0",
               OPENBLAS_NUM_THREADS=blas, OMP_NUM_THREADS=blas, MKL_NUM_THREADS=blas,
               RECSVC_SERVER__MAX_CONCURRENT_RPCS="0")
    server = subprocess.Popen([sys.executable, "-m", "recsvc", "--log-level", "WARNING", "serve", "--artifacts",
                               str(root), "--host", "127.0.0.1", "--port", str(port)], env=env)
    try:
        wait_serving(f"127.0.0.1:{port}", workers)
        ctx = mp.get_context("spawn")
        queue = ctx.Queue()
        procs = [ctx.Process(target=caller, args=(f"127.0.0.1:{port}", n_customers, k, warmup, duration, queue))
                 for k in range(callers)]
        for proc in procs:
            proc.start()
        results = [queue.get(timeout=warmup + duration + 60) for _ in procs]
        for proc in procs:
            proc.join(timeout=10)
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=60)
    lat = np.concatenate([np.asarray(r[0]) for r in results]) * 1e3
    return {"qps": round(lat.size / duration, 1), "p50_ms": round(float(np.percentile(lat, 50)), 2),
            "p99_ms": round(float(np.percentile(lat, 99)), 2), "failed": sum(r[1] for r in results),
            "requests": int(lat.size)}


def wait_serving(target: str, workers: int, timeout: float = 120.0) -> None:
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with grpc.insecure_channel(target) as channel:
                status = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=2)
                if status.status == health_pb2.HealthCheckResponse.SERVING:
                    time.sleep(1.0 if workers > 1 else 0.1)  # let the other workers finish loading too
                    return
        except grpc.RpcError:
            pass
        time.sleep(0.2)
    raise TimeoutError(f"{target} did not report SERVING within {timeout:.0f} s")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--items", type=int, default=100_000)
    parser.add_argument("--customers", type=int, default=100_000)
    parser.add_argument("--callers", type=int, default=4)
    parser.add_argument("--warmup", type=float, default=2.0)
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--rounds", type=int, default=2, help="each configuration runs this many times")
    parser.add_argument("--work", default="/tmp/recsvc-bench-workers")
    parser.add_argument("--out")
    args = parser.parse_args(argv)
    root = Path(args.work)
    ensure_set(root, args.items, args.customers)
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name, _, _ in CONFIGS}
    for _ in range(args.rounds):  # interleaved, so drifting load elsewhere on the machine hits all alike
        for name, workers, blas in CONFIGS:
            runs[name].append(run(root, workers, blas, args.callers, args.warmup, args.duration, args.customers))
            print(name, runs[name][-1], flush=True)
    lines = [f"# Workers: Recommend on {args.items:,} items x 64 factors, {args.callers} closed-loop callers, "
             f"{args.duration:.0f} s per run, best of {args.rounds}", "",
             "`python -m benchmarks.workers --out benchmarks/results/workers.json`", "",
             "| configuration | qps | p50 ms | p99 ms | failed |", "|---|---:|---:|---:|---:|"]
    for name, results in runs.items():
        best = max(results, key=lambda r: r["qps"])
        lines.append(f"| {name} | {best['qps']} | {best['p50_ms']} | {best['p99_ms']} | {best['failed']} |")
    lines += ["", f"Python {platform.python_version()}, {os.cpu_count()} CPUs, load average "
              f"{os.getloadavg()[0]:.2f} at the end (clients run on the same cores).", ""]
    text = "\n".join(lines)
    print(text)
    if args.out:
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps({"runs": runs, "options": vars(args)}, indent=2))
        out.with_suffix(".md").write_text(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
