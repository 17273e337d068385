"""The load benchmark's target table (benchmarks/load.py): what it compares, not how fast anything is."""

from __future__ import annotations

from typing import Any

from benchmarks.load import evaluate_targets, markdown


def _run(name: str, qps: float, p50: float, p99: float, mode: str = "closed") -> dict[str, Any]:
    return {"name": name, "rpc": "Recommend", "mode": mode, "offered_qps": qps if mode == "paced" else 0.0,
            "qps": qps, "p50_ms": p50, "p90_ms": p99, "p99_ms": p99, "max_ms": p99, "failed": 0,
            "server_cpu_cores": 1.0, "client_cpu_cores": 0.2, "other_cpu_cores": 0.0, "pss_mb_max": 100.0}


def test_paced_latency_targets_carry_the_echo_servers_latency_under_the_same_load() -> None:
    runs = {r["name"]: r for r in (
        _run("echo-Recommend", 4000, 1.0, 3.0),
        _run("100k-Recommend", 1000, 8.0, 20.0),
        _run("100k-Recommend-paced", 500, 3.0, 12.0, "paced"),
        _run("100k-Recommend-paced-echo", 500, 0.6, 4.5, "paced"),
    )}
    targets = {t["target"]: t for t in evaluate_targets({"runs": runs})}

    p50, p99 = targets["Recommend 100k p50 (paced)"], targets["Recommend 100k p99 (paced)"]
    assert (p50["value"], p50["echo_same_load"], p50["met"]) == (3.0, 0.6, False)
    assert (p99["value"], p99["echo_same_load"], p99["met"]) == (12.0, 4.5, False)
    # closed-loop rows and ratios have no paced echo counterpart; runs that did not happen are n/a
    assert targets["Recommend 100k p50 (closed loop)"]["echo_same_load"] is None
    assert targets["Recommend 100k throughput / echo"]["value"] == 0.25
    assert targets["RecommendBundle 100k p99 (paced)"]["met"] is None

    report = {"runs": runs, "targets": list(targets.values()), "sets": {}, "command": "c", "date": "d",
              "machine": {"cpus": 2, "cpu_model": "x", "memory_gb": 1, "python": "3", "numpy": "2",
                          "grpcio": "1", "faiss": "1"},
              "options": {"callers": 8, "workers": 2, "duration": 15.0, "warmup": 3.0, "paced_share": 0.5}}
    text = markdown(report)
    assert "| Recommend 100k p99 (paced) | 12.0 | <= 10.0 | **no** | 4.5 |" in text
    # server CPU per answered call, ours beside the echo server's: 1.0 core at 1,000 and at 4,000 req/s
    assert "| 100k-Recommend | Recommend | closed | 1000 | 8.00 | 20.00 | 20.00 | 20.0 | 0 | 1.00 | 1.00 |" in text
    assert "| echo-Recommend | Recommend | closed | 4000 | 1.00 | 3.00 | 3.00 | 3.0 | 0 | 1.00 | 0.25 |" in text
