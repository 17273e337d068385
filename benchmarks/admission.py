"""Admission at the door under 10x overload, against the echo server, in one run (issue 15).

Three closed-loop runs of ``Recommend`` on one server process (``workers`` 1, so the cap is the process's),
with the load benchmark's callers (:func:`benchmarks.load.run_load`: one process and one connection each):

1. the echo server (:mod:`benchmarks.echo_server`, the same sync grpc stack) at ``10 x cap`` callers: what a
   bare call costs at that concurrency;
2. ``recsvc serve`` at ``cap`` callers: admitted calls' latency when nothing is refused;
3. ``recsvc serve`` at ``10 x cap`` callers, and a prober calling health ``Check`` and Admin ``GetStatus``
   every 50 ms: refused and admitted calls' latency, probes refused;
4. the same on a second server with ``RECSVC_ADMISSION_REFUSALS=pool``: refusals answered by a pool thread
   that reads the request and aborts (the design before :class:`recsvc.server.admission.DoorRefusal`), to
   show what answering at the door, without the request, is worth (``--no-pool-run`` skips it);
5. the echo server again: the host's load drifts over the minutes of a run, so the ratios divide by the
   better (lower) of the two echo p99s, which is the stricter yardstick.

``--pin`` puts every server (echo included) on the first CPU and the callers on the others, so that the
ranking does not take the callers' CPU (with 30 callers on the server's cores, the callers' share of the CPU
sets the latency more than the server does).

The issue's targets are the two ratios: refused p99 / echo p99 at the same concurrency (<= 1: a refusal
costs what a bare call costs) and admitted p99 at 10x / admitted p99 at the cap (<= 1), with 0 probes
refused. Run: ``python -m benchmarks.admission`` (``--cap``, ``--duration``; the synthetic set is cached
in ``benchmarks/results/raw/``). Prints a table and writes ``benchmarks/results/admission.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.load import STATUS_OK, machine_info, run_load, running, start_echo, start_server, wait_for_quiet
from benchmarks.synthetic import SyntheticSpec, ensure_published
from recsvc.server.admission import REFUSALS_ENV

#: A catalog small enough to build in about a minute, ranked by the learned ranker (the default path).
SPEC = SyntheticSpec(n_items=20_000, n_customers=100_000, learned_ranker=True)
_EXHAUSTED = 8  # grpc.StatusCode.RESOURCE_EXHAUSTED's value


def _p99(latencies: np.ndarray) -> float:
    return round(float(np.percentile(latencies, 99)) * 1e3, 2) if latencies.size else float("nan")


def _split(data: np.ndarray, warmup: float, duration: float) -> dict[str, Any]:
    window = data[(data[:, 0] >= warmup) & (data[:, 0] < warmup + duration)]
    codes = window[:, 2].astype(int)
    ok, refused = window[codes == STATUS_OK, 1], window[codes == _EXHAUSTED, 1]
    return {"requests": int(codes.size), "ok": int(ok.size), "refused": int(refused.size),
            "other": int(codes.size - ok.size - refused.size), "ok_p99_ms": _p99(ok),
            "refused_p99_ms": _p99(refused),
            "ok_p50_ms": round(float(np.median(ok)) * 1e3, 2) if ok.size else float("nan"),
            "refused_p50_ms": round(float(np.median(refused)) * 1e3, 2) if refused.size else float("nan")}


class Prober:
    """Calls health Check and Admin GetStatus every ``interval`` seconds from a thread; counts the codes."""

    def __init__(self, target: str, interval: float = 0.05) -> None:
        self.codes: dict[str, int] = {}
        self.latencies: list[float] = []
        self._target, self._interval = target, interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        import grpc
        from grpc_health.v1 import health_pb2, health_pb2_grpc

        from recsvc.v1 import admin_pb2, admin_pb2_grpc

        with grpc.insecure_channel(self._target) as channel:
            health, admin = health_pb2_grpc.HealthStub(channel), admin_pb2_grpc.AdminStub(channel)
            while not self._stop.wait(self._interval):
                for call, request in ((health.Check, health_pb2.HealthCheckRequest()),
                                      (admin.GetStatus, admin_pb2.GetStatusRequest())):
                    start = time.perf_counter()
                    try:
                        call(request, timeout=5)
                        code = "OK"
                    except grpc.RpcError as exc:
                        code = exc.code().name
                    self.latencies.append(time.perf_counter() - start)
                    self.codes[code] = self.codes.get(code, 0) + 1

    def __enter__(self) -> Prober:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)


def _pin(handle: Any, cpus: set[int] | None) -> None:
    """Every thread of every process of ``handle`` onto ``cpus`` (threads started later inherit it)."""
    if not cpus:
        return
    for pid in handle.pids():
        try:
            for tid in os.listdir(f"/proc/{pid}/task"):
                os.sched_setaffinity(int(tid), cpus)
        except (FileNotFoundError, ProcessLookupError):
            continue


def _overload(name: str, server: Any, overload: int, duration: float, warmup: float, scratch: Path,
              startup: float) -> dict[str, Any]:
    """One run at 10x the cap with the prober: the callers' split and the probes' codes."""
    with Prober(server.target) as prober:
        _, data, sampler = run_load(name, server, "Recommend", SPEC, overload, duration, warmup, scratch,
                                    startup=startup)
    out = _split(data, warmup, duration)
    out["other_cpu_cores"] = round(sampler.cores()[2], 2)
    out["probes"] = {"codes": prober.codes, "p99_ms": _p99(np.array(prober.latencies))}
    out["probes_refused"] = sum(n for code, n in prober.codes.items() if code != "OK")
    return out


def measure(cap: int, duration: float, warmup: float, work: Path, pool_run: bool = True,
            pin: bool = False) -> dict[str, Any]:
    """The runs (module docstring) and their ratios; ``pin``: servers on CPU 0, callers on the others."""
    server_cpus: set[int] | None = None
    if pin and len(os.sched_getaffinity(0)) >= 2:
        server_cpus = {min(os.sched_getaffinity(0))}
        os.sched_setaffinity(0, os.sched_getaffinity(0) - server_cpus)  # the callers inherit it
    root = work / "raw" / "artifacts-admission"
    scratch = work / "raw"  # the callers' raw results and the servers' logs (git-ignored)
    ensure_published(root, SPEC, "bench-admission-a")
    overload = 10 * cap
    env = {"RECSVC_SERVER__MAX_CONCURRENT_RPCS": str(cap), "RECSVC_SERVER__METRICS_PORT": "0"}
    out: dict[str, Any] = {"cap": cap, "callers_at_overload": overload, "duration_s": duration,
                           "server_cpus": sorted(server_cpus) if server_cpus else "all"}
    out["quiet_wait_s"] = wait_for_quiet(30.0)
    # 30 caller processes importing numpy and grpc on a busy 2-core host need more than load.py's default
    startup = 10.0 + 0.5 * overload

    def echo_run(label: str) -> dict[str, Any]:
        with running(start_echo(1, scratch)) as echo:
            _pin(echo, server_cpus)
            _, data, sampler = run_load(label, echo, "Recommend", SPEC, overload, duration, warmup, scratch,
                                        startup=startup)
            split = _split(data, warmup, duration)
            split["other_cpu_cores"] = round(sampler.cores()[2], 2)
            return split

    out["echo"] = echo_run("admission-echo")
    with running(start_server(root, 1, scratch, env)) as server:
        _pin(server, server_cpus)
        _, data, sampler = run_load("admission-cap", server, "Recommend", SPEC, cap, duration, warmup, scratch,
                                    startup=startup)
        out["at_cap"] = _split(data, warmup, duration)
        out["at_cap"]["other_cpu_cores"] = round(sampler.cores()[2], 2)
        out["overload"] = _overload("admission-10x", server, overload, duration, warmup, scratch, startup)
    out["probes"], out["probes_refused"] = out["overload"].pop("probes"), out["overload"].pop("probes_refused")
    if pool_run:
        with running(start_server(root, 1, scratch, {**env, REFUSALS_ENV: "pool"})) as server:
            _pin(server, server_cpus)
            out["overload_pool_refusals"] = _overload("admission-10x-pool", server, overload, duration, warmup,
                                                      scratch, startup)
    # the echo again, after: the host's load drifts over minutes, and the ratios use the better echo p99
    out["echo_after"] = echo_run("admission-echo-after")
    # a run the host starved of every call has no p99 (nan): the other one is the yardstick then
    echo_p99 = float(np.nanmin([out["echo"]["ok_p99_ms"], out["echo_after"]["ok_p99_ms"]]))
    out["echo_p99_ms"] = echo_p99
    for key in ("overload", "overload_pool_refusals"):
        if key in out:
            run = out[key] if key != "overload" else out
            run["refused_p99_over_echo_p99"] = round(out[key]["refused_p99_ms"] / echo_p99, 3)
            run["admitted_p99_over_at_cap_p99"] = round(out[key]["ok_p99_ms"] / out["at_cap"]["ok_p99_ms"], 3)
    return out


def table(result: dict[str, Any]) -> str:
    rows = [("echo", result["callers_at_overload"], result["echo"]),
            ("echo, after the rest", result["callers_at_overload"], result["echo_after"]),
            ("recsvc at the cap", result["cap"], result["at_cap"]),
            ("recsvc at 10x the cap", result["callers_at_overload"], result["overload"])]
    if "overload_pool_refusals" in result:
        rows.append(("same, refusals on a pool thread", result["callers_at_overload"],
                     result["overload_pool_refusals"]))
    lines = ["| run | callers | calls | OK | refused | OK p50 / p99 ms | refused p50 / p99 ms | other CPU |",
             "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for name, callers, r in rows:
        lines.append(f"| {name} | {callers} | {r['requests']} | {r['ok']} | {r['refused']} | "
                     f"{r['ok_p50_ms']} / {r['ok_p99_ms']} | {r['refused_p50_ms']} / {r['refused_p99_ms']} | "
                     f"{r['other_cpu_cores']} |")
    probes = result["probes"]
    lines += ["", f"refused p99 / echo p99 (the better echo run, {result['echo_p99_ms']} ms): "
                  f"{result['refused_p99_over_echo_p99']} (target <= 1); "
                  f"admitted p99 at 10x / at the cap: {result['admitted_p99_over_at_cap_p99']} (target <= 1); "
                  f"probes: {sum(probes['codes'].values())} sent, {result['probes_refused']} refused, "
                  f"p99 {probes['p99_ms']} ms"]
    if "overload_pool_refusals" in result:
        pool = result["overload_pool_refusals"]
        lines.append(f"refusals on a pool thread: refused p99 / echo p99 {pool['refused_p99_over_echo_p99']}, "
                     f"admitted p99 at 10x / at the cap {pool['admitted_p99_over_at_cap_p99']}, "
                     f"probes refused {pool['probes_refused']}")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--cap", type=int, default=3, help="max_concurrent_rpcs of the server (default 3)")
    parser.add_argument("--duration", type=float, default=15.0, help="measured seconds per run (default 15)")
    parser.add_argument("--warmup", type=float, default=3.0, help="unmeasured seconds first (default 3)")
    parser.add_argument("--work", type=Path, default=Path("benchmarks/results"), help="results folder")
    parser.add_argument("--pin", action="store_true",
                        help="servers on the first CPU, the callers on the others (the server's cost alone)")
    parser.add_argument("--no-pool-run", dest="pool_run", action="store_false",
                        help="skip run 4 (refusals on a pool thread, for comparison)")
    args = parser.parse_args(argv)
    args.work.mkdir(parents=True, exist_ok=True)
    result = measure(args.cap, args.duration, args.warmup, args.work, pool_run=args.pool_run, pin=args.pin)
    result["machine"] = machine_info()
    result["command"] = "python -m benchmarks.admission " + " ".join(argv if argv is not None else sys.argv[1:])
    (args.work / "admission.json").write_text(json.dumps(result, indent=2, sort_keys=True))
    print(table(result))
    return 0


if __name__ == "__main__":
    import logging

    logging.basicConfig(level=logging.WARNING)
    raise SystemExit(main())
