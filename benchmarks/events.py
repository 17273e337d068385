"""RecordEvents throughput per backend, a 100,000-event burst counted back, and how fast every worker sees an event.

One command reproduces ``benchmarks/results/events.{json,md}``::

    python -m benchmarks.events --out benchmarks/results/events.json

For each backend (the embedded SQLite store, and Redis on a redis-server this script starts on a free loopback
port) it starts ``recsvc serve`` with ``--workers`` processes on a small synthetic model, then

* **throughput**: ``--callers`` caller processes (one channel each) send RecordEvents as fast as answers come,
  batches of 1 and of 100 events, for ``--seconds``; events accepted per second (every event id is new);
* **burst**: 100,000 new events in batches of 100 from the callers, then the first 10,000 again; the answers'
  accepted and duplicate counts, and the events in the store counted back (none lost, none doubled);
* **visibility**: ``--trials`` times, a purchase recorded on one connection, then GetCustomerProfile polled on
  a fresh connection until it shows: milliseconds from RecordEvents returning (the promise is 1 s); once on
  a quiet server first, and again right after the burst (every worker still reading it into its overlay).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.load import start_server
from benchmarks.synthetic import SyntheticSpec, ensure_published

SPEC = SyntheticSpec(n_items=2_000, n_customers=20_000, n_stores=5, learned_ranker=False, cosine_index=False)
BURST = 100_000
BURST_REPEAT = 10_000


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _requests(prefix: str, start: int, n_events: int, batch: int) -> list[bytes]:
    from recsvc.v1 import events_pb2

    out = []
    for first in range(start, start + n_events, batch):
        events = [events_pb2.Event(event_id=f"{prefix}-{i}", customer_id=SPEC.customer_id(i % SPEC.n_customers),
                                   item_id=SPEC.item_id(i % SPEC.n_items), event="purchase", channel="web",
                                   quantity=1, price=2.5) for i in range(first, min(first + batch, start + n_events))]
        out.append(events_pb2.RecordEventsRequest(events=events).SerializeToString())
    return out


def _identity(data: bytes) -> bytes:
    return data


def caller(target: str, plan: tuple[str, int, int, int], seconds: float, results: Any) -> None:
    """Build the requests of ``plan`` (prefix, first event, events, batch) before the clock starts, send them in
    order (stopping after ``seconds`` when > 0), retrying UNAVAILABLE; report totals."""
    import grpc

    from recsvc.v1 import events_pb2

    requests = _requests(*plan)
    accepted = duplicates = retries = 0
    with grpc.insecure_channel(target, options=[("grpc.use_local_subchannel_pool", 1)]) as channel:
        rpc = channel.unary_unary("/recsvc.v1.Events/RecordEvents", request_serializer=_identity,
                                  response_deserializer=events_pb2.RecordEventsResponse.FromString)
        started = time.monotonic()
        for request in requests:
            if seconds and time.monotonic() - started > seconds:
                break
            while True:
                try:
                    answer = rpc(request, timeout=30)
                    break
                except grpc.RpcError as exc:
                    if exc.code() not in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.RESOURCE_EXHAUSTED):
                        raise
                    retries += 1  # at least once: idempotency makes the retry safe
                    time.sleep(0.01)
            accepted += answer.accepted
            duplicates += answer.duplicates
        elapsed = time.monotonic() - started
    results.put((accepted, duplicates, retries, elapsed))


def _drive(target: str, per_caller: list[tuple[str, int, int, int]], seconds: float) -> dict[str, float]:
    ctx = multiprocessing.get_context("spawn")
    results = ctx.Queue()
    procs = [ctx.Process(target=caller, args=(target, reqs, seconds, results)) for reqs in per_caller]
    for p in procs:
        p.start()
    got = [results.get(timeout=seconds + 600) for _ in procs]
    for p in procs:
        p.join(timeout=30)
    accepted = sum(g[0] for g in got)
    elapsed = max(g[3] for g in got)
    return {"accepted": accepted, "duplicates": sum(g[1] for g in got), "retries": sum(g[2] for g in got),
            "seconds": round(elapsed, 2), "events_per_s": round(accepted / elapsed, 1)}


def visibility(target: str, trials: int) -> dict[str, float]:
    import grpc

    from recsvc.v1 import events_pb2, events_pb2_grpc, recsvc_pb2, recsvc_pb2_grpc

    waits = []
    with grpc.insecure_channel(target, options=[("grpc.use_local_subchannel_pool", 1)]) as writer:
        events = events_pb2_grpc.EventsStub(writer)
        for k in range(trials):
            customer, item = SPEC.customer_id(k), SPEC.item_id((k * 7) % SPEC.n_items)
            events.RecordEvents(events_pb2.RecordEventsRequest(events=[events_pb2.Event(
                event_id=f"vis-{time.time_ns()}-{k}", customer_id=customer, item_id=item, event="purchase",
                channel="store", store_id=SPEC.store_id(0))]), timeout=10)
            returned = time.monotonic()
            with grpc.insecure_channel(target, options=[("grpc.use_local_subchannel_pool", 1)]) as reader:
                stub = recsvc_pb2_grpc.RecommenderStub(reader)
                while True:
                    profile = stub.GetCustomerProfile(recsvc_pb2.GetCustomerProfileRequest(customer_id=customer),
                                                      timeout=10)
                    if profile.recent_purchases and profile.recent_purchases[0].item_id == item:
                        break
                    time.sleep(0.002)
            waits.append((time.monotonic() - returned) * 1e3)
    lat = np.asarray(waits)
    return {"trials": trials, "p50_ms": round(float(np.percentile(lat, 50)), 1),
            "p95_ms": round(float(np.percentile(lat, 95)), 1), "max_ms": round(float(lat.max()), 1)}


def _wait_redis(port: int) -> None:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"redis-server did not start on port {port}")


def stored_count(backend: str, path: Path, redis_url: str) -> int:
    if backend == "sqlite":
        from recsvc.events.sqlite_store import SqliteEventStore

        return SqliteEventStore(path).count()
    from recsvc.events.redis_store import RedisEventStore

    return RedisEventStore(redis_url, prefix="bench").count()


def run_backend(backend: str, root: Path, work: Path, workers: int, callers: int, seconds: float, trials: int
                ) -> dict[str, Any]:
    redis_proc = None
    env = {"RECSVC_EVENTS__BACKEND": backend, "RECSVC_EVENTS__SQLITE_PATH": str(work / "events.sqlite"),
           "RECSVC_EVENTS__REDIS_PREFIX": "bench"}
    redis_url = ""
    if backend == "redis":
        binary = shutil.which("redis-server")
        if binary is None:
            raise SystemExit("redis-server not found (scripts/test.sh installs it)")
        port = _free_port()
        redis_url = f"redis://127.0.0.1:{port}/0"
        redis_proc = subprocess.Popen([binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                                       "--appendonly", "no"], stdout=subprocess.DEVNULL)
        _wait_redis(port)
        env["RECSVC_EVENTS__REDIS_URL"] = redis_url
    handle = start_server(root, workers, work, extra_env=env)
    out: dict[str, Any] = {"backend": backend, "workers": workers, "callers": callers}
    try:
        out["visibility"] = visibility(handle.target, trials)
        for batch in (1, 100):
            # more than any caller sends in ``seconds`` on this machine; the run stops on the clock
            per = [(f"t{batch}-{c}", 0, 200_000 if batch == 100 else 40_000, batch) for c in range(callers)]
            out[f"throughput_batch_{batch}"] = _drive(handle.target, per, seconds)
        before = stored_count(backend, work / "events.sqlite", redis_url)
        share = BURST // callers
        burst = _drive(handle.target, [("burst", c * share, share, 100) for c in range(callers)], 0)
        again = _drive(handle.target, [("burst", 0, BURST_REPEAT, 100)], 0)
        counted = stored_count(backend, work / "events.sqlite", redis_url) - before
        out["burst"] = {**burst, "repeat_accepted": again["accepted"], "repeat_duplicates": again["duplicates"],
                        "counted_back": counted, "lost": BURST - counted, "doubled": again["accepted"]}
        out["visibility_after_burst"] = visibility(handle.target, trials)
    finally:
        handle.stop()
        if redis_proc is not None:
            redis_proc.terminate()
            redis_proc.wait(timeout=10)
    return out


def markdown(results: list[dict[str, Any]], command: str) -> str:
    lines = ["# Live events", "", f"`{command}`", "",
             "| backend | workers | callers | batch 1 events/s | batch 100 events/s | burst events/s | counted back "
             "| lost | doubled | visible p50 / p95 / max ms | right after the burst |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in results:
        b, v, w = r["burst"], r["visibility"], r["visibility_after_burst"]
        one, hundred = r["throughput_batch_1"]["events_per_s"], r["throughput_batch_100"]["events_per_s"]
        lines.append(f"| {r['backend']} | {r['workers']} | {r['callers']} | {one:,.0f} "
                     f"| {hundred:,.0f} | {b['events_per_s']:,.0f} "
                     f"| {b['counted_back']:,} | {b['lost']} | {b['doubled']} "
                     f"| {v['p50_ms']} / {v['p95_ms']} / {v['max_ms']} "
                     f"| {w['p50_ms']} / {w['p95_ms']} / {w['max_ms']} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backend", choices=["sqlite", "redis", "all"], default="all")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--callers", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--trials", type=int, default=50)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/events.json"))
    args = parser.parse_args(argv)
    backends = ["sqlite", "redis"] if args.backend == "all" else [args.backend]
    with tempfile.TemporaryDirectory(prefix="recsvc-events-bench-") as tmp:
        root = Path(tmp) / "artifacts"
        ensure_published(root, SPEC, "events-bench")
        results = []
        for backend in backends:
            work = Path(tmp) / backend
            work.mkdir()
            results.append(run_backend(backend, root, work, args.workers, args.callers, args.seconds, args.trials))
            print(json.dumps(results[-1]))
    command = "python -m benchmarks.events --out " + str(args.out)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"command": command, "results": results}, indent=2) + "\n")
    args.out.with_suffix(".md").write_text(markdown(results, command))
    print(markdown(results, command))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
