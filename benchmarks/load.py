"""Loopback load test of the real server against a bare echo server, on synthetic 100k and 1M-item sets.

One command reproduces ``benchmarks/results/latest.{json,md}``::

    python -m benchmarks.load --scenario all --out benchmarks/results/latest.json

What it does, per scenario:

``echo``
    the bare echo server (:mod:`benchmarks.echo_server`, same RPC paths, canned 10-item responses, same
    process count) under the same closed-loop load: the yardstick for the throughput ratio.
``100k`` / ``1m``
    ``recsvc serve`` (the real command, ``workers`` processes) on a synthetic set of that size
    (:mod:`benchmarks.synthetic`; 1M customers, 64 factors, the trainer's ANN indexes and a learned ranker of
    the trainer's shape, as ``recsvc train`` would publish), driven by ``callers`` closed-loop caller
    processes per RPC (Recommend, RecommendBundle, SimilarItems), then Recommend and RecommendBundle again at
    a paced rate of ``--paced-share`` of the closed-loop throughput, and each paced load once more on the
    echo server (``-paced-echo``): the latency any server gets at that rate on this machine, beside ours.
``100k-blend``
    the same 100k catalog without a learned ranker: Recommend blends the sources by rank (what a model
    without enough history for a ranker serves), to show what the ranker costs.
``swap``
    the 1M set served at ``--swap-share`` (70 %) of its closed-loop Recommend throughput while a second 1M
    version is published and the server told to reload (SIGHUP, as an operator or CI would); counts failed
    requests, checks every caller ends on the new version, and samples the server processes' memory.

Why two load modes: with ``N`` closed-loop callers and no think time, latency is ``N / throughput`` by
Little's law, so on a saturated 2-core machine percentiles mostly measure queueing. Closed loop gives the
throughput (and the ratio to echo); the paced run (each caller sends on a fixed schedule, the total below
saturation) gives the latency a caller sees at a sustainable load.

Callers are separate processes (``multiprocessing``, spawn) with one channel each, sending pre-serialised
requests through ``channel.unary_unary`` with identity serializers, so client work is small and equal for
echo and server. They still share the 2 cores with the server; the report gives the CPU both sides used.
Every loop is bounded by a deadline and a request cap, and every address is 127.0.0.1.

Memory is sampled from ``/proc/<pid>/smaps_rollup`` of every server process (the worker parent and its
workers): RSS summed, and PSS summed (PSS splits pages shared between workers — memory-mapped arrays — so
its sum is what the server group really holds).
"""

from __future__ import annotations

import argparse
import json
import logging
import multiprocessing as mp
import os
import platform
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.synthetic import CHANNELS, SyntheticSpec, ensure_published, set_size_bytes
from recsvc.artifacts import read_manifest

logger = logging.getLogger("benchmarks.load")

SERVICE = "recsvc.v1.Recommender"
RPCS = ("Recommend", "RecommendBundle", "SimilarItems")
SCENARIOS = ("echo", "100k", "100k-blend", "1m", "swap", "100k-stored")
#: Result columns each caller writes: send time (s since the run's start), latency (s), status code, version.
COLUMNS = 4
MAX_REQUESTS_PER_CALLER = 2_000_000
CALL_TIMEOUT = 5.0
STATUS_OK = 0

# --------------------------------------------------------------------------------------------- targets
TARGETS = {
    "recommend_100k_p50_ms": 2.0, "recommend_100k_p99_ms": 10.0, "recommend_100k_echo_ratio": 0.5,
    "recommend_1m_p99_ms": 20.0, "bundle_p99_ms": 5.0, "swap_failed": 0, "swap_peak_memory_ratio": 2.2,
    # issue 16: ratios to the echo server in the same report
    "stored_echo_ratio": 0.5, "stored_paced_p99_vs_echo": 2.0, "context_cpu_vs_echo": 3.0,
    "context_paced_p99_vs_echo": 3.0, "nightly_1m_x3_minutes": 15.0,
}
#: Requests per caller of the ``100k-stored`` scenario: their customers are the ones it ranks ahead.
STORED_REQUESTS_PER_CALLER = 300
#: The 100k set with its stored lists, as ``100k-stored`` publishes it.
STORED_VERSION = "bench-100k-stored"


# ------------------------------------------------------------------------------------------ requests

def build_requests(rpc: str, spec: dict[str, Any], seed: int, n: int = 2_000, variant: str = "") -> list[bytes]:
    """``n`` serialised requests for ``rpc`` against a synthetic set (ids follow :class:`SyntheticSpec`).

    Recommend: 90 % known customers, 5 % by loyalty-card alias, 5 % unknown; a random channel, a store for
    the store channel, 10 items; ``variant`` ``"context"`` adds two random context item ids to every call
    (the live path). RecommendBundle: baskets of 1-4 random items. SimilarItems: a random item.
    """
    from recsvc.v1 import recsvc_pb2

    s = SyntheticSpec(**spec)
    rng = np.random.default_rng(seed)
    out: list[bytes] = []
    for i in range(n):
        channel = CHANNELS[int(rng.integers(0, len(CHANNELS)))]
        if rpc == "Recommend":
            roll = rng.random()
            row = int(rng.integers(0, s.n_customers))
            customer = (s.customer_id(row) if roll < 0.9 else s.alias_id(row // 10 * 10) if roll < 0.95
                        else f"guest-{seed}-{i}")
            store = s.store_id(int(rng.integers(0, s.n_stores))) if channel == "store" else ""
            context = ([s.item_id(int(r)) for r in rng.integers(0, s.n_items, 2)] if variant == "context"
                       else [])
            message: Any = recsvc_pb2.RecommendRequest(customer_id=customer, channel=channel, store_id=store,
                                                       num_items=10, context_item_ids=context)
        elif rpc == "RecommendBundle":
            basket = [s.item_id(int(r)) for r in rng.integers(0, s.n_items, int(rng.integers(1, 5)))]
            message = recsvc_pb2.RecommendBundleRequest(basket_item_ids=basket, channel=channel, num_items=10,
                                                        bundle_size=3)
        elif rpc == "SimilarItems":
            message = recsvc_pb2.SimilarItemsRequest(item_id=s.item_id(int(rng.integers(0, s.n_items))),
                                                     num_items=10)
        else:
            raise ValueError(f"unknown rpc {rpc!r}")
        out.append(message.SerializeToString())
    return out


# ---------------------------------------------------------------------------------------------- caller

def _identity(data: bytes) -> bytes:
    return data


def caller_main(config_json: str) -> None:
    """One closed-loop caller process: send until the deadline or the request cap, write results as .npy.

    ``config``: target, rpc, spec, seed, start_at (wall clock), warmup, duration, interval (seconds between
    sends, 0 = closed loop), track_version, out (path prefix).
    """
    import grpc

    from recsvc.v1 import recsvc_pb2

    cfg = json.loads(config_json)
    requests = build_requests(cfg["rpc"], cfg["spec"], cfg["seed"], cfg.get("n_requests", 2_000),
                              cfg.get("variant", ""))
    channel = grpc.insecure_channel(cfg["target"])
    call = channel.unary_unary(f"/{SERVICE}/{cfg['rpc']}", request_serializer=_identity,
                               response_deserializer=_identity)
    grpc.channel_ready_future(channel).result(timeout=30)
    results = np.zeros((MAX_REQUESTS_PER_CALLER, COLUMNS), dtype=np.float64)
    versions: dict[str, int] = {}
    start_at = float(cfg["start_at"])
    end_at = start_at + float(cfg["warmup"]) + float(cfg["duration"])
    interval = float(cfg["interval"])
    cpu_started = time.process_time()
    now = time.time()
    if now < start_at:
        time.sleep(start_at - now)
    # perf_counter for latencies, wall clock once to align callers on one time axis
    origin_perf, origin_wall = time.perf_counter(), time.time()
    offset = origin_wall - start_at
    phase = float(np.random.default_rng(cfg["seed"]).random()) * interval  # callers do not send in lockstep
    next_send = origin_perf + phase
    n = 0
    while n < MAX_REQUESTS_PER_CALLER:
        if interval:
            delay = next_send - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            next_send = max(next_send + interval, time.perf_counter() - interval)  # no catch-up bursts
        sent = time.perf_counter()
        if offset + (sent - origin_perf) >= end_at - start_at:
            break
        code, version = STATUS_OK, -1
        try:
            body = call(requests[n % len(requests)], timeout=CALL_TIMEOUT)
            if cfg["track_version"]:
                name = recsvc_pb2.RecommendResponse.FromString(body).model_version
                version = versions.setdefault(name, len(versions))
        except grpc.RpcError as exc:
            code = int(exc.code().value[0])
        done = time.perf_counter()
        results[n] = (offset + (sent - origin_perf), done - sent, code, version)
        n += 1
    channel.close()
    out = Path(cfg["out"])
    np.save(out.with_suffix(".npy"), results[:n], allow_pickle=False)
    last = next((name for name, index in versions.items() if n and index == results[n - 1, 3]), "")
    out.with_suffix(".json").write_text(json.dumps({"cpu_seconds": time.process_time() - cpu_started,
                                                    "versions": versions, "last_version": last}))


# --------------------------------------------------------------------------------- processes and /proc

def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def free_port_run(n: int) -> int:
    """The first of ``n`` consecutive free loopback ports (checked now; another process may take one later)."""
    for _ in range(100):
        first = free_port()
        socks = []
        try:
            for offset in range(n):
                sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                socks.append(sock)
                sock.bind(("127.0.0.1", first + offset))
            return first
        except OSError:
            continue
        finally:
            for sock in socks:
                sock.close()
    raise RuntimeError(f"no {n} consecutive free ports found")


def process_tree(pid: int) -> list[int]:
    """``pid`` and all its descendants (from /proc/<pid>/task/*/children)."""
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        for task in Path(f"/proc/{p}/task").glob("*/children"):
            with suppress(OSError):
                todo.extend(int(c) for c in task.read_text().split())
    return out


def memory_kib(pids: Sequence[int]) -> tuple[int, int]:
    """Summed RSS and PSS (KiB) of ``pids`` from /proc/<pid>/smaps_rollup; vanished processes count 0."""
    rss = pss = 0
    for pid in pids:
        try:
            text = Path(f"/proc/{pid}/smaps_rollup").read_text()
        except OSError:
            continue
        for line in text.splitlines():
            if line.startswith("Rss:"):
                rss += int(line.split()[1])
            elif line.startswith("Pss:"):
                pss += int(line.split()[1])
    return rss, pss


def cpu_seconds(pids: Sequence[int]) -> float:
    """User + system CPU seconds of ``pids`` (fields 14 and 15 of /proc/<pid>/stat)."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / ticks
    return total


def machine_busy_seconds() -> float:
    """CPU seconds all cores spent busy since boot (``/proc/stat``: everything but idle and iowait)."""
    fields = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    return (sum(fields) - fields[3] - fields[4]) / os.sysconf("SC_CLK_TCK")


def wait_for_quiet(max_wait: float, threshold: float = 0.3) -> float:
    """Wait (at most ``max_wait`` s) until the machine is nearly idle before a scenario: other people's jobs
    on a shared 2-core host would otherwise be measured as our latency. Returns the busy cores last seen."""
    deadline = time.monotonic() + max_wait
    while True:
        before, started = machine_busy_seconds(), time.monotonic()
        time.sleep(2.0)
        busy = (machine_busy_seconds() - before) / (time.monotonic() - started)
        if busy <= threshold or time.monotonic() >= deadline:
            if busy > threshold:
                logger.warning("machine still busy (%.2f cores used by other processes); measuring anyway", busy)
            return busy
        logger.info("machine busy (%.2f cores used by other processes); waiting", busy)


class Sampler:
    """Samples memory of a process tree every ``period`` seconds in a thread; CPU of the tree, of the
    callers and of the whole machine between enter and exit."""

    def __init__(self, root_pid: int, caller_pids: Sequence[int] = (), period: float = 0.1) -> None:
        self.root_pid = root_pid
        self.caller_pids = list(caller_pids)
        self.period = period
        self.samples: list[tuple[float, int, int]] = []  # (time, rss KiB, pss KiB)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self.cpu_start = self.cpu_end = 0.0
        self.callers_start = self.callers_end = 0.0
        self.machine_start = self.machine_end = 0.0
        self.wall_start = self.wall_end = 0.0

    def __enter__(self) -> Sampler:
        self.wall_start = time.monotonic()
        self.cpu_start = cpu_seconds(process_tree(self.root_pid))
        self.callers_start = cpu_seconds(self.caller_pids)
        self.machine_start = machine_busy_seconds()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self.cpu_end = cpu_seconds(process_tree(self.root_pid))
        self.callers_end = cpu_seconds(self.caller_pids)
        self.machine_end = machine_busy_seconds()
        self.wall_end = time.monotonic()

    def cores(self) -> tuple[float, float, float]:
        """Cores used by the server tree, the callers and everything else on the machine."""
        wall = max(1e-9, self.wall_end - self.wall_start)
        server = (self.cpu_end - self.cpu_start) / wall
        callers = (self.callers_end - self.callers_start) / wall
        machine = (self.machine_end - self.machine_start) / wall
        return server, callers, max(0.0, machine - server - callers)

    def _run(self) -> None:
        while not self._stop.wait(self.period):
            rss, pss = memory_kib(process_tree(self.root_pid))
            self.samples.append((time.time(), rss, pss))


@dataclass
class ServerHandle:
    """A started server process group (the real server or the echo) and where it listens."""

    name: str
    process: subprocess.Popen[bytes]
    target: str
    log: Path

    def pids(self) -> list[int]:
        return process_tree(self.process.pid)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)


def _wait_serving(target: str, process: subprocess.Popen[bytes], log: Path, timeout: float) -> None:
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    deadline = time.monotonic() + timeout
    with grpc.insecure_channel(target) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise RuntimeError(f"server exited with {process.returncode}; see {log}")
            try:
                status = stub.Check(health_pb2.HealthCheckRequest(service=SERVICE), timeout=2).status
                if status == health_pb2.HealthCheckResponse.SERVING:
                    return
            except grpc.RpcError:
                pass
            time.sleep(0.25)
    raise TimeoutError(f"{target} not SERVING within {timeout:.0f}s; see {log}")


def start_server(root: Path, workers: int, log_dir: Path, extra_env: dict[str, str] | None = None,
                 threads: int = 0) -> ServerHandle:
    """``python -m recsvc serve`` on a free loopback port, ``workers`` processes (``threads`` ranking threads
    each, 0 = the server's default ``max_workers``); waits for SERVING."""
    port = free_port()
    log = log_dir / f"server-{root.name}-{port}.log"
    # Metrics on, as an operator runs it (each worker serves its registry on metrics_port + its index).
    env = {**os.environ, "RECSVC_SERVER__WORKERS": str(workers), "RECSVC_SERVER__RELOAD_POLL_SECONDS": "0",
           "RECSVC_SERVER__METRICS_PORT": str(free_port_run(workers)),
           **({"RECSVC_SERVER__MAX_WORKERS": str(threads)} if threads > 0 else {}), **(extra_env or {})}
    with log.open("wb") as fh:
        process = subprocess.Popen([sys.executable, "-m", "recsvc", "--log-level", "WARNING", "serve",
                                    "--artifacts", str(root), "--host", "127.0.0.1", "--port", str(port)],
                                   stdout=fh, stderr=subprocess.STDOUT, env=env)
    handle = ServerHandle("recsvc", process, f"127.0.0.1:{port}", log)
    try:
        _wait_serving(handle.target, process, log, timeout=300)
    except Exception:
        handle.stop()
        raise
    return handle


def start_echo(workers: int, log_dir: Path, threads: int = 0) -> ServerHandle:
    """The echo server, ``workers`` processes of ``threads`` handler threads (0 = its default, as the real
    server's ``max_workers``)."""
    port = free_port()
    log = log_dir / f"echo-{port}.log"
    process = subprocess.Popen([sys.executable, "-m", "benchmarks.echo_server", "--port", str(port),
                                "--workers", str(workers), *(["--max-workers", str(threads)] if threads > 0 else [])],
                               stdout=subprocess.PIPE, stderr=log.open("wb"))
    assert process.stdout is not None
    line = process.stdout.readline().decode()
    if not line.startswith("READY"):
        process.kill()
        raise RuntimeError(f"echo server did not start; see {log}")
    return ServerHandle("echo", process, f"127.0.0.1:{port}", log)


@contextmanager
def running(handle: ServerHandle) -> Iterator[ServerHandle]:
    try:
        yield handle
    finally:
        handle.stop()


# ------------------------------------------------------------------------------------------------ runs

@dataclass
class RunResult:
    """One load run: what was sent, what came back, how fast, and what it cost."""

    name: str
    server: str
    rpc: str
    mode: str
    callers: int
    duration_s: float
    requests: int = 0
    ok: int = 0
    failed: int = 0
    failed_by_code: dict[str, int] = field(default_factory=dict)
    qps: float = 0.0
    offered_qps: float = 0.0
    p50_ms: float = 0.0
    p90_ms: float = 0.0
    p99_ms: float = 0.0
    max_ms: float = 0.0
    mean_ms: float = 0.0
    server_cpu_cores: float = 0.0
    client_cpu_cores: float = 0.0
    other_cpu_cores: float = 0.0
    rss_mb_max: float = 0.0
    pss_mb_max: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)


def run_load(name: str, handle: ServerHandle, rpc: str, spec: SyntheticSpec, callers: int, duration: float,
             warmup: float, work: Path, rate: float = 0.0, track_version: bool = False,
             during: Any = None, startup: float | None = None, variant: str = "",
             n_requests: int = 2_000) -> tuple[RunResult, np.ndarray, Sampler]:
    """Drive ``handle`` with ``callers`` processes for ``warmup + duration`` seconds and summarise the
    ``duration`` window. ``rate`` > 0 paces the callers to that many requests per second in total.
    ``during(t0)`` runs in this process while the load runs (the swap). ``startup`` seconds (default
    ``3 + 0.2 * callers``) are given to every caller to start and connect before the clock runs."""
    ctx = mp.get_context("spawn")
    out_dir = Path(tempfile.mkdtemp(prefix=f"{name}-", dir=work))
    start_at = time.time() + (3.0 + 0.2 * callers if startup is None else startup)
    interval = callers / rate if rate > 0 else 0.0
    procs = []
    for i in range(callers):
        cfg = {"target": handle.target, "rpc": rpc, "spec": asdict(spec), "seed": 1000 + i, "start_at": start_at,
               "warmup": warmup, "duration": duration, "interval": interval, "track_version": track_version,
               "out": str(out_dir / f"caller-{i}"), "variant": variant, "n_requests": n_requests}
        proc = ctx.Process(target=caller_main, args=(json.dumps(cfg),), daemon=True)
        proc.start()
        procs.append(proc)
    sampler = Sampler(handle.process.pid, [int(p.pid) for p in procs if p.pid is not None])
    hard_deadline = start_at + warmup + duration + 60
    while time.time() < start_at + warmup:
        time.sleep(0.05)
    with sampler:
        if during is not None:
            during(start_at + warmup)
        while time.time() < start_at + warmup + duration:
            time.sleep(0.05)
    for proc in procs:
        proc.join(timeout=max(1.0, hard_deadline - time.time()))
        if proc.is_alive():
            proc.kill()
            raise RuntimeError(f"caller of {name} did not finish in time")
    rows = [np.load(p, allow_pickle=False) for p in sorted(out_dir.glob("caller-*.npy"))]
    infos = [json.loads(p.read_text()) for p in sorted(out_dir.glob("caller-*.json"))]
    data = np.concatenate(rows) if rows else np.zeros((0, COLUMNS))
    window = data[(data[:, 0] >= warmup) & (data[:, 0] < warmup + duration)]
    result = summarise(name, handle.name, rpc, "paced" if rate else "closed", callers, duration, window)
    result.offered_qps = round(rate, 1)
    server_cores, client_cores, other_cores = sampler.cores()  # over the measured window only
    result.server_cpu_cores = round(server_cores, 2)
    result.client_cpu_cores = round(client_cores, 2)
    result.other_cpu_cores = round(other_cores, 2)
    if sampler.samples:
        result.rss_mb_max = round(max(s[1] for s in sampler.samples) / 1024, 1)
        result.pss_mb_max = round(max(s[2] for s in sampler.samples) / 1024, 1)
    if track_version:
        seen: dict[str, int] = {}
        last: dict[str, int] = {}
        for info in infos:
            for version in info["versions"]:
                seen[version] = seen.get(version, 0) + 1
            last[info["last_version"]] = last.get(info["last_version"], 0) + 1
        result.extra["callers_seeing_version"] = seen
        result.extra["callers_last_version"] = last
    return result, data, sampler


def summarise(name: str, server: str, rpc: str, mode: str, callers: int, duration: float,
              window: np.ndarray) -> RunResult:
    result = RunResult(name=name, server=server, rpc=rpc, mode=mode, callers=callers, duration_s=duration)
    if window.size == 0:
        return result
    codes = window[:, 2].astype(int)
    ok = codes == STATUS_OK
    latency_ms = window[ok, 1] * 1000.0
    result.requests = int(codes.size)
    result.ok = int(ok.sum())
    result.failed = int((~ok).sum())
    import grpc

    by_value = {c.value[0]: c.name for c in grpc.StatusCode}
    for code in np.unique(codes[~ok]):
        result.failed_by_code[by_value.get(int(code), str(code))] = int((codes == code).sum())
    result.qps = round(result.ok / duration, 1)
    if latency_ms.size:
        p50, p90, p99 = np.percentile(latency_ms, [50, 90, 99])
        result.p50_ms, result.p90_ms, result.p99_ms = round(p50, 3), round(p90, 3), round(p99, 3)
        result.max_ms = round(float(latency_ms.max()), 3)
        result.mean_ms = round(float(latency_ms.mean()), 3)
    return result


# ------------------------------------------------------------------------------------------- scenarios

@dataclass
class Options:
    callers: int
    duration: float
    warmup: float
    workers: int
    paced_share: float
    swap_share: float
    swap_duration: float
    quiet_wait: float
    work: Path
    reuse_stored: bool = False
    threads: int = 0


def _spec(n_items: int, seed: int = 0, learned_ranker: bool = True) -> SyntheticSpec:
    return SyntheticSpec(n_items=n_items, seed=seed, learned_ranker=learned_ranker)


def scenario_echo(opts: Options, report: dict[str, Any]) -> None:
    spec = _spec(100_000)
    with running(start_echo(opts.workers, opts.work, threads=opts.threads)) as echo:
        for rpc in RPCS:
            result, _, _ = run_load(f"echo-{rpc}", echo, rpc, spec, opts.callers, opts.duration, opts.warmup,
                                    opts.work)
            _record(report, result)


def scenario_catalog(opts: Options, report: dict[str, Any], n_items: int, label: str,
                     learned_ranker: bool = True) -> None:
    spec = _spec(n_items, learned_ranker=learned_ranker)
    root = opts.work / f"artifacts-{label}"
    version, ann = ensure_published(root, spec, f"bench-{label}-a")
    ranker = read_manifest(root / "versions" / version).get("extra", {}).get("ranker", {})
    report["sets"][label] = {"items": n_items, "customers": spec.n_customers, "factors": spec.factors,
                             "disk_mb": round(set_size_bytes(root / "versions" / version) / 1e6, 1), "ann": ann,
                             "ranker": {k: ranker[k] for k in ("trees", "max_depth", "pool_per_source") if k in ranker}}
    with running(start_server(root, opts.workers, opts.work, threads=opts.threads)) as server:
        idle_rss, idle_pss = memory_kib(server.pids())
        report["sets"][label].update(server_rss_mb=round(idle_rss / 1024, 1), server_pss_mb=round(idle_pss / 1024, 1))
        for rpc in RPCS:
            wait_for_quiet(opts.quiet_wait / 5)
            result, _, _ = run_load(f"{label}-{rpc}", server, rpc, spec, opts.callers, opts.duration, opts.warmup,
                                    opts.work)
            _record(report, result)
            if rpc in ("Recommend", "RecommendBundle") and result.qps > 0:
                rate = opts.paced_share * result.qps
                wait_for_quiet(opts.quiet_wait / 5)
                paced, _, _ = run_load(f"{label}-{rpc}-paced", server, rpc, spec, opts.callers, opts.duration,
                                       opts.warmup, opts.work, rate=rate)
                _record(report, paced)
                # The same paced load on the bare echo server: the latency this machine, gRPC and the callers
                # give any server at that rate, so the recsvc run's excess is what the ranking costs.
                wait_for_quiet(opts.quiet_wait / 5)
                with running(start_echo(opts.workers, opts.work, threads=opts.threads)) as echo:
                    floor, _, _ = run_load(f"{label}-{rpc}-paced-echo", echo, rpc, spec, opts.callers,
                                           opts.duration, opts.warmup, opts.work, rate=rate)
                _record(report, floor)


def scenario_swap(opts: Options, report: dict[str, Any]) -> None:
    spec_a, spec_b = _spec(1_000_000, seed=0), _spec(1_000_000, seed=1)
    root = opts.work / "artifacts-1m"
    ensure_published(root, spec_b, "bench-1m-b")  # build (or reuse) the second version first ...
    ensure_published(root, spec_a, "bench-1m-a")  # ... so CURRENT names the first when the server starts
    from recsvc.artifacts import set_current

    with running(start_server(root, opts.workers, opts.work, threads=opts.threads)) as server:
        steady_rss, steady_pss = memory_kib(server.pids())
        peak = report["runs"].get("1m-Recommend", {}).get("qps", 0.0)
        if not peak:
            probe, _, _ = run_load("swap-probe", server, "Recommend", spec_a, opts.callers, opts.duration,
                                   opts.warmup, opts.work)
            peak = probe.qps
        rate = opts.swap_share * peak
        swap_times: dict[str, float] = {}

        def swap(t0: float) -> None:
            def later() -> None:
                time.sleep(opts.swap_duration / 4)
                swap_times["published_at"] = time.time() - t0
                set_current(root, "bench-1m-b")  # what `recsvc train` does when it publishes
                os.kill(server.process.pid, signal.SIGHUP)  # the worker parent forwards it to every worker

            threading.Thread(target=later, daemon=True).start()

        result, _data, sampler = run_load("swap-1m", server, "Recommend", spec_a, opts.callers, opts.swap_duration,
                                         opts.warmup, opts.work, rate=rate, track_version=True, during=swap)
    t_swap = swap_times.get("published_at", 0.0)
    samples = np.array(sampler.samples) if sampler.samples else np.zeros((0, 3))
    before = samples[samples[:, 0] - samples[0, 0] < t_swap] if samples.size else samples
    base_rss = float(np.median(before[:, 1])) if before.size else float(steady_rss)
    base_pss = float(np.median(before[:, 2])) if before.size else float(steady_pss)
    result.extra.update(
        swap_at_s=round(t_swap, 2), offered_share_of_peak=opts.swap_share, peak_qps=peak,
        rss_mb_before=round(base_rss / 1024, 1), pss_mb_before=round(base_pss / 1024, 1),
        rss_ratio=round(result.rss_mb_max * 1024 / base_rss, 3) if base_rss else None,
        pss_ratio=round(result.pss_mb_max * 1024 / base_pss, 3) if base_pss else None,
        memory_timeline=[(round(t - samples[0, 0], 2), round(r / 1024), round(p / 1024))
                         for t, r, p in samples[:: max(1, len(samples) // 60)]] if samples.size else [])
    _record(report, result)


def scenario_stored(opts: Options, report: dict[str, Any]) -> None:
    """The serving fast path (issue 16) on the 100k set: its stored lists ranked ahead for the customers the
    callers will ask for (every channel), then Recommend from them, closed loop and paced (and the paced load
    on the echo server), and the live path (two context ids per call) the same way. The ranking's wall time
    and peak memory are recorded with its rate, extrapolated to 1M customers x 3 channels."""
    import dataclasses
    import resource

    from recsvc.artifacts import load_artifact_set, publish_artifacts
    from recsvc.config import TrainingSettings
    from recsvc.ranking.model import LoadedModel
    from recsvc.v1 import recsvc_pb2
    from recsvc_training.ranker.stored_lists import rank_stored_lists

    spec = _spec(100_000)
    root = opts.work / "artifacts-100k"
    version, _ = ensure_published(root, spec, "bench-100k-a")
    if opts.reuse_stored and (root / "versions" / STORED_VERSION).is_dir():
        # iterating on the serving layer: serve the stored lists ranked by an earlier run (its nightly numbers
        # stay in the report as that run left them)
        from recsvc.artifacts import set_current

        set_current(root, STORED_VERSION)
        logger.info("reusing the stored lists of %s (no nightly ranking this run)", STORED_VERSION)
        _serve_stored(opts, report, root, spec, version)
        return
    artifacts = load_artifact_set(root / "versions" / version)
    model = LoadedModel(artifacts)
    asked = {recsvc_pb2.RecommendRequest.FromString(body).customer_id
             for i in range(opts.callers)
             for body in build_requests("Recommend", asdict(spec), 1000 + i, STORED_REQUESTS_PER_CALLER)}
    rows = np.unique([r for r in (model.resolve_customer(c) for c in asked) if r >= 0]).astype(np.int64)
    del model
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    started = time.perf_counter()
    part = rank_stored_lists(artifacts, TrainingSettings(progress=False), customers=rows)
    seconds = time.perf_counter() - started
    assert part is not None
    per_customer_channel = seconds / (rows.size * len(artifacts.channels))
    nightly = {"customers": int(rows.size), "channels": len(artifacts.channels), "length": part.length,
               "seconds": round(seconds, 1), "ms_per_customer_channel": round(1000 * per_customer_channel, 3),
               "extrapolated_1m_x3_minutes": round(per_customer_channel * 3_000_000 / 60, 1),
               "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
               "peak_rss_mb_before": round(rss_before, 1),
               "stored_mb_per_1m_customers": round(
                   sum(a.nbytes for a in part.to_arrays().values()) / rows.size, 1)}
    report.setdefault("nightly", {})["100k"] = nightly
    logger.info("nightly ranking: %s", nightly)
    stored = dataclasses.replace(artifacts, arrays={**artifacts.arrays, **part.to_arrays()},
                                 extra={**artifacts.extra, **part.to_extra()}, version=STORED_VERSION)
    folder = root / "versions" / STORED_VERSION
    if folder.is_dir():  # an earlier run's lists: replaced by this run's (a version is never published twice)
        import shutil

        shutil.rmtree(folder)
    publish_artifacts(stored, root, keep=10)
    del artifacts, stored
    _serve_stored(opts, report, root, spec, version)


def _serve_stored(opts: Options, report: dict[str, Any], root: Path, spec: SyntheticSpec, version: str) -> None:
    """The stored and live Recommend runs of :func:`scenario_stored` on the published stored set; ``CURRENT``
    goes back to ``version`` afterwards."""
    try:
        with running(start_server(root, opts.workers, opts.work, threads=opts.threads)) as server:
            for label, variant in (("100k-stored", ""), ("100k-context", "context")):
                wait_for_quiet(opts.quiet_wait / 5)
                result, _, _ = run_load(f"{label}-Recommend", server, "Recommend", spec, opts.callers, opts.duration,
                                        opts.warmup, opts.work, variant=variant,
                                        n_requests=STORED_REQUESTS_PER_CALLER)
                _record(report, result)
                if result.qps <= 0:
                    continue
                rate = opts.paced_share * result.qps
                paced, _, _ = run_load(f"{label}-Recommend-paced", server, "Recommend", spec, opts.callers,
                                       opts.duration, opts.warmup, opts.work, rate=rate, variant=variant,
                                       n_requests=STORED_REQUESTS_PER_CALLER)
                _record(report, paced)
                with running(start_echo(opts.workers, opts.work, threads=opts.threads)) as echo:
                    floor, _, _ = run_load(f"{label}-Recommend-paced-echo", echo, "Recommend", spec, opts.callers,
                                           opts.duration, opts.warmup, opts.work, rate=rate, variant=variant,
                                           n_requests=STORED_REQUESTS_PER_CALLER)
                _record(report, floor)
    finally:
        from recsvc.artifacts import set_current

        set_current(root, version)  # the other scenarios serve the set without stored lists


def _record(report: dict[str, Any], result: RunResult) -> None:
    report["runs"][result.name] = asdict(result)
    logger.info("%-26s %6s qps %8.1f  p50 %7.2f  p99 %7.2f  max %7.2f ms  failed %d  cores srv %.2f cli %.2f "
                "other %.2f", result.name, result.mode, result.qps, result.p50_ms, result.p99_ms, result.max_ms,
                result.failed, result.server_cpu_cores, result.client_cpu_cores, result.other_cpu_cores)


# --------------------------------------------------------------------------------------------- report

def machine_info() -> dict[str, Any]:
    import grpc

    model = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                  if line.startswith("model name")), platform.processor())
    mem = next((int(line.split()[1]) for line in Path("/proc/meminfo").read_text().splitlines()
                if line.startswith("MemTotal")), 0)
    info = {"cpus": os.cpu_count(), "cpu_model": model, "memory_gb": round(mem / 1024 / 1024, 1),
            "python": platform.python_version(), "numpy": np.__version__, "grpcio": grpc.__version__,
            "kernel": platform.release()}
    try:
        import faiss

        info["faiss"] = faiss.__version__
    except ImportError:
        info["faiss"] = None
    return info


def evaluate_targets(report: dict[str, Any]) -> list[dict[str, Any]]:
    runs = report["runs"]

    def get(name: str, key: str) -> float | None:
        value = runs.get(name, {}).get(key)
        return None if value is None else float(value)

    checks: list[tuple[str, str, float | None, float, str]] = []
    ratio = None
    if get("100k-Recommend", "qps") and get("echo-Recommend", "qps"):
        ratio = round(get("100k-Recommend", "qps") / get("echo-Recommend", "qps"), 3)  # type: ignore[operator]
    checks += [
        ("Recommend 100k p50 (paced)", "100k-Recommend-paced", get("100k-Recommend-paced", "p50_ms"),
         TARGETS["recommend_100k_p50_ms"], "<="),
        ("Recommend 100k p99 (paced)", "100k-Recommend-paced", get("100k-Recommend-paced", "p99_ms"),
         TARGETS["recommend_100k_p99_ms"], "<="),
        ("Recommend 100k p50 (closed loop)", "100k-Recommend", get("100k-Recommend", "p50_ms"),
         TARGETS["recommend_100k_p50_ms"], "<="),
        ("Recommend 100k p99 (closed loop)", "100k-Recommend", get("100k-Recommend", "p99_ms"),
         TARGETS["recommend_100k_p99_ms"], "<="),
        ("Recommend 100k throughput / echo", "100k-Recommend", ratio, TARGETS["recommend_100k_echo_ratio"], ">="),
        ("Recommend 1M p99 (paced)", "1m-Recommend-paced", get("1m-Recommend-paced", "p99_ms"),
         TARGETS["recommend_1m_p99_ms"], "<="),
        ("Recommend 1M p99 (closed loop)", "1m-Recommend", get("1m-Recommend", "p99_ms"),
         TARGETS["recommend_1m_p99_ms"], "<="),
        ("RecommendBundle 100k p99 (paced)", "100k-RecommendBundle-paced",
         get("100k-RecommendBundle-paced", "p99_ms"), TARGETS["bundle_p99_ms"], "<="),
        ("RecommendBundle 100k p99 (closed loop)", "100k-RecommendBundle", get("100k-RecommendBundle", "p99_ms"),
         TARGETS["bundle_p99_ms"], "<="),
        ("Swap 1M at 70 % load: failed requests", "swap-1m", get("swap-1m", "failed"), TARGETS["swap_failed"],
         "<="),
        ("Swap 1M: peak PSS / PSS before", "swap-1m", runs.get("swap-1m", {}).get("extra", {}).get("pss_ratio"),
         TARGETS["swap_peak_memory_ratio"], "<="),
        ("Swap 1M: peak RSS / RSS before", "swap-1m", runs.get("swap-1m", {}).get("extra", {}).get("rss_ratio"),
         TARGETS["swap_peak_memory_ratio"], "<="),
    ]
    checks += stored_checks(report)
    out = []
    for label, run, value, target, op in checks:
        met = None if value is None else (value <= target if op == "<=" else value >= target)
        # a latency target of a paced run, measured on the echo server under the same load
        key = "p50_ms" if " p50 " in label else "p99_ms" if " p99 " in label else ""
        echo = get(f"{run}-echo", key) if key and run.endswith("-paced") else None
        out.append({"target": label, "run": run, "value": value, "limit": f"{op} {target}", "met": met,
                    "echo_same_load": echo})
    return out


def _ratio(a: float | None, b: float | None) -> float | None:
    return round(a / b, 3) if a is not None and b else None


def stored_checks(report: dict[str, Any]) -> list[tuple[str, str, float | None, float, str]]:
    """Issue 16's targets, each a ratio of two columns of this report: the stored path's throughput to the
    echo server's, paced p99s to the echo server's at the same rate, the live path's server CPU per call to
    the echo server's, and the nightly ranking's extrapolated wall time."""
    runs = report["runs"]

    def get(name: str, key: str) -> float | None:
        value = runs.get(name, {}).get(key)
        return None if value is None else float(value)

    def cpu_per_call(name: str) -> float | None:
        cores, qps = get(name, "server_cpu_cores"), get(name, "qps")
        return cores / qps if cores is not None and qps else None

    nightly = report.get("nightly", {}).get("100k", {})
    return [
        ("Recommend 100k stored path throughput / echo", "100k-stored-Recommend",
         _ratio(get("100k-stored-Recommend", "qps"), get("echo-Recommend", "qps")), TARGETS["stored_echo_ratio"],
         ">="),
        ("Recommend 100k stored path p99 (paced) / echo p99, same rate", "100k-stored-Recommend-paced",
         _ratio(get("100k-stored-Recommend-paced", "p99_ms"), get("100k-stored-Recommend-paced-echo", "p99_ms")),
         TARGETS["stored_paced_p99_vs_echo"], "<="),
        ("Recommend live path (2 context ids) server CPU per call / echo", "100k-context-Recommend",
         _ratio(cpu_per_call("100k-context-Recommend"), cpu_per_call("echo-Recommend")),
         TARGETS["context_cpu_vs_echo"], "<="),
        ("Recommend live path (2 context ids) p99 (paced) / echo p99, same rate", "100k-context-Recommend-paced",
         _ratio(get("100k-context-Recommend-paced", "p99_ms"), get("100k-context-Recommend-paced-echo", "p99_ms")),
         TARGETS["context_paced_p99_vs_echo"], "<="),
        ("RecommendBundle server CPU per call / echo", "100k-RecommendBundle",
         _ratio(cpu_per_call("100k-RecommendBundle"), cpu_per_call("echo-RecommendBundle")), 2.5, "<="),
        ("Nightly ranking 1M customers x 3 channels, minutes (extrapolated)", "nightly",
         nightly.get("extrapolated_1m_x3_minutes"), TARGETS["nightly_1m_x3_minutes"], "<="),
    ]


def _cpu_ms_per_call(run: dict[str, Any]) -> str:
    """Server CPU milliseconds per answered call (blank for a run that answered nothing)."""
    return f"{1000 * run['server_cpu_cores'] / run['qps']:.2f}" if run["qps"] > 0 else ""


def _threads_text(threads: int) -> str:
    return f" of {threads} handler threads (echo too)" if threads else ""


def markdown(report: dict[str, Any]) -> str:
    m = report["machine"]
    lines = [
        "# recsvc load benchmark", "",
        f"Command: `{report['command']}`  ",
        f"Date: {report['date']}  ",
        *[f"Rerun (replaces that scenario's rows): {rerun}  " for rerun in report.get("reruns", [])],
        f"Machine: {m['cpus']} cores ({m['cpu_model']}), {m['memory_gb']} GB; Python {m['python']}, "
        f"numpy {m['numpy']}, grpcio {m['grpcio']}, faiss {m['faiss']}  ",
        f"Load: {report['options']['callers']} caller processes (one channel each) on the same cores as the "
        f"server; server `recsvc serve` with {report['options']['workers']} worker processes"
        f"{_threads_text(report['options'].get('threads', 0))} and metrics on; echo "
        "server with "
        f"as many processes; {report['options']['duration']} s measured after {report['options']['warmup']} s "
        "warm-up; paced runs at "
        f"{int(100 * report['options']['paced_share'])} % of the closed-loop throughput, each repeated on the "
        "echo server at the same rate (`-paced-echo` runs).", "",
        "## Targets", "", "| target | value | limit | met | echo server, same paced load |",
        "|---|---:|---:|:---:|---:|"]
    for check in report["targets"]:
        met = "n/a" if check["met"] is None else ("yes" if check["met"] else "**no**")
        echo = check.get("echo_same_load")
        lines.append(f"| {check['target']} | {check['value']} | {check['limit']} | {met} | "
                     f"{'' if echo is None else echo} |")
    lines += ["", "## Runs", "",
              "| run | rpc | mode | QPS | p50 ms | p90 ms | p99 ms | max ms | failed | server CPU | server CPU ms "
              "per call | client CPU | other CPU | server PSS MB |",
              "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for run in report["runs"].values():
        mode = run["mode"] + (f" @ {run['offered_qps']:.0f}/s" if run["mode"] == "paced" else "")
        lines.append(f"| {run['name']} | {run['rpc']} | {mode} | {run['qps']:.0f} | {run['p50_ms']:.2f} | "
                     f"{run['p90_ms']:.2f} | {run['p99_ms']:.2f} | {run['max_ms']:.1f} | {run['failed']} | "
                     f"{run['server_cpu_cores']:.2f} | {_cpu_ms_per_call(run)} | {run['client_cpu_cores']:.2f} | "
                     f"{run['other_cpu_cores']:.2f} | {run['pss_mb_max']:.0f} |")
    lines += ["", "CPU columns are cores used during the measured window (CPU seconds per second) by the server "
              "processes, the caller processes, and everything else on the machine (other people's jobs on a "
              f"shared host show up there); the machine has {m['cpus']}. Server CPU per call is the server's "
              "cores divided by the answered QPS: what one request costs the server, gRPC included, to set "
              "beside the echo server's.", "",
              "## Artifact sets", "", "| set | items | customers | on disk MB | server PSS MB (idle) | learned ranker "
              "| ANN |", "|---|---:|---:|---:|---:|---|---|"]
    for label, s in report["sets"].items():
        texts = []
        for name, ann in (s.get("ann") or {}).items():
            texts.append(f"{name}: {ann.get('factory')}, nprobe {ann.get('nprobe')}, recall@10 "
                         f"{ann.get('recall_at_10')}, built in {ann.get('build_seconds')} s"
                         if ann.get("kind") == "faiss-ivf" else f"{name}: {ann.get('kind', 'exact')}")
        ann_text = "; ".join(texts) or "exact"
        ranker = s.get("ranker") or {}
        ranker_text = f"{ranker['trees']} trees, depth {ranker['max_depth']}" if ranker else "none (rank blend)"
        lines.append(f"| {label} | {s['items']:,} | {s['customers']:,} | {s['disk_mb']} | "
                     f"{s.get('server_pss_mb', '')} | {ranker_text} | {ann_text} |")
    nightly = report.get("nightly", {}).get("100k")
    if nightly:
        lines += ["", "## Nightly ranking", "",
                  f"{nightly['customers']:,} customers x {nightly['channels']} channels x {nightly['length']} items "
                  f"on the 100k set in {nightly['seconds']} s ({nightly['ms_per_customer_channel']} ms per customer "
                  f"and channel, one process): 1M x 3 would take ~{nightly['extrapolated_1m_x3_minutes']} min; "
                  f"peak RSS {nightly['peak_rss_mb']} MB ({nightly['peak_rss_mb_before']} MB before ranking); "
                  f"stored lists {nightly['stored_mb_per_1m_customers']} MB per 1M customers."]
    swap = report["runs"].get("swap-1m")
    if swap:
        e = swap["extra"]
        lines += ["", "## Swap", "",
                  f"Offered {swap['offered_qps']:.0f} req/s ({int(100 * e['offered_share_of_peak'])} % of "
                  f"{e['peak_qps']:.0f}); new version published and SIGHUP sent at {e['swap_at_s']} s; "
                  f"{swap['ok']} ok, {swap['failed']} failed {swap['failed_by_code'] or ''}; callers that saw "
                  f"each version: {e.get('callers_seeing_version')}; each caller's last version: "
                  f"{e.get('callers_last_version')}.  ",
                  f"Memory: PSS {e['pss_mb_before']} MB before, {swap['pss_mb_max']} MB peak "
                  f"(x{e['pss_ratio']}); RSS {e['rss_mb_before']} MB before, {swap['rss_mb_max']} MB peak "
                  f"(x{e['rss_ratio']})."]
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Loopback load test of recsvc against a bare echo server.")
    parser.add_argument("--scenario", choices=["all", *SCENARIOS], default="all",
                        help="100k-blend: the 100k set without a learned ranker (the rank blend), for comparison")
    parser.add_argument("--out", default="benchmarks/results/latest.json")
    parser.add_argument("--callers", type=int, default=8, help="concurrent caller processes (max 64)")
    parser.add_argument("--duration", type=float, default=15.0, help="measured seconds per run (max 300)")
    parser.add_argument("--warmup", type=float, default=3.0)
    # 4 on 2 cores: 8 callers hold 8 connections, which SO_REUSEPORT spreads per connection; with 2 processes
    # 7 of them land on one process in 7 % of runs (README: "Under load")
    parser.add_argument("--workers", type=int, default=4, help="server (and echo) processes")
    parser.add_argument("--threads", type=int, default=0,
                        help="handler threads per process of the server (max_workers) and of the echo server "
                             "(0 = their defaults)")
    parser.add_argument("--paced-share", type=float, default=0.5,
                        help="paced runs offer this share of the closed-loop throughput")
    parser.add_argument("--swap-share", type=float, default=0.7)
    parser.add_argument("--swap-duration", type=float, default=40.0)
    parser.add_argument("--quiet-wait", type=float, default=300.0,
                        help="wait up to this many seconds for other jobs on the machine to finish")
    parser.add_argument("--reuse-stored", action="store_true",
                        help="100k-stored: serve the stored lists an earlier run published instead of ranking "
                             "them again (for iterating on the server; the nightly numbers are not re-measured)")
    parser.add_argument("--work-dir", default="benchmarks/results/raw",
                        help="artifact cache, server logs and raw per-request results (git-ignored)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if not 1 <= args.callers <= 64 or not 0 < args.duration <= 300 or not 0 < args.swap_duration <= 300:
        parser.error("--callers must be 1..64 and durations 0..300 s (every loop is bounded)")
    work = Path(args.work_dir).resolve()
    work.mkdir(parents=True, exist_ok=True)
    opts = Options(callers=args.callers, duration=args.duration, warmup=args.warmup, workers=args.workers,
                   paced_share=args.paced_share, swap_share=args.swap_share, swap_duration=args.swap_duration,
                   quiet_wait=args.quiet_wait, work=work, reuse_stored=args.reuse_stored,
                   threads=args.threads)
    out = Path(args.out)
    report: dict[str, Any] = {"command": "python -m benchmarks.load " + " ".join(argv or sys.argv[1:]),
                              "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"), "machine": machine_info(),
                              "options": {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(opts).items()},
                              "targets_spec": TARGETS, "sets": {}, "runs": {}}
    if out.is_file() and args.scenario != "all":  # a single scenario updates the last full report
        previous = json.loads(out.read_text())
        report["sets"], report["runs"] = previous.get("sets", {}), previous.get("runs", {})
        if previous.get("nightly"):
            report["nightly"] = previous["nightly"]
        report["reruns"] = [*previous.get("reruns", []), f"{report['date']}: {report['command']}"]
        report["command"], report["date"] = previous.get("command", report["command"]), previous.get("date", "")
    scenarios = list(SCENARIOS) if args.scenario == "all" else [args.scenario]
    for name in scenarios:
        logger.info("scenario %s", name)
        wait_for_quiet(args.quiet_wait)
        if name == "echo":
            scenario_echo(opts, report)
        elif name == "100k":
            scenario_catalog(opts, report, 100_000, "100k")
        elif name == "100k-blend":
            scenario_catalog(opts, report, 100_000, "100k-blend", learned_ranker=False)
        elif name == "1m":
            scenario_catalog(opts, report, 1_000_000, "1m")
        elif name == "100k-stored":
            scenario_stored(opts, report)
        else:
            scenario_swap(opts, report)
        report["targets"] = evaluate_targets(report)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(report, indent=2, default=str))
        out.with_suffix(".md").write_text(markdown(report))
    print(out.with_suffix(".md").read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
