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


def test_the_fast_path_targets_are_ratios_of_the_reports_own_columns() -> None:
    """Issue 16: stored-path throughput over the echo server's, paced p99 over the echo's at the same rate,
    the live path's server CPU per call over the echo's, and the nightly ranking's extrapolation."""
    runs = {r["name"]: r for r in (
        _run("echo-Recommend", 4000, 1.0, 3.0),
        _run("100k-stored-Recommend", 2000, 2.0, 6.0),
        _run("100k-stored-Recommend-paced", 1000, 1.0, 5.0, "paced"),
        _run("100k-stored-Recommend-paced-echo", 1000, 0.5, 2.0, "paced"),
        _run("100k-context-Recommend", 500, 8.0, 20.0),
        _run("100k-context-Recommend-paced", 250, 3.0, 9.0, "paced"),
        _run("100k-context-Recommend-paced-echo", 250, 0.5, 4.0, "paced"),
    )}
    nightly = {"customers": 1000, "channels": 3, "length": 50, "seconds": 30.0, "ms_per_customer_channel": 10.0,
               "extrapolated_1m_x3_minutes": 500.0, "peak_rss_mb": 900.0, "peak_rss_mb_before": 800.0,
               "stored_mb_per_1m_customers": 1950.0}
    report = {"runs": runs, "nightly": {"100k": nightly}}
    targets = {t["target"]: t for t in evaluate_targets(report)}
    stored = targets["Recommend 100k stored path throughput / echo"]
    assert (stored["value"], stored["met"]) == (0.5, True)
    assert targets["Recommend 100k stored path p99 (paced) / echo p99, same rate"]["value"] == 2.5
    # 1 core at 500 req/s against 1 core at 4,000: 8x the echo server's CPU per call
    context = targets["Recommend live path (2 context ids) server CPU per call / echo"]
    assert (context["value"], context["met"]) == (8.0, False)
    assert targets["Recommend live path (2 context ids) p99 (paced) / echo p99, same rate"]["value"] == 2.25
    assert targets["RecommendBundle server CPU per call / echo"]["met"] is None  # not run
    assert targets["Nightly ranking 1M customers x 3 channels, minutes (extrapolated)"]["met"] is False
    text = markdown({**report, "targets": list(targets.values()), "sets": {}, "command": "c", "date": "d",
                     "machine": {"cpus": 2, "cpu_model": "x", "memory_gb": 1, "python": "3", "numpy": "2",
                                 "grpcio": "1", "faiss": "1"},
                     "options": {"callers": 8, "workers": 2, "duration": 15.0, "warmup": 3.0, "paced_share": 0.5}})
    assert "## Nightly ranking" in text and "1M x 3 would take ~500.0 min" in text


def test_the_report_names_the_handler_threads_when_a_run_set_them() -> None:
    base: dict[str, Any] = {"runs": {}, "targets": [], "sets": {}, "command": "c", "date": "d",
                            "machine": {"cpus": 2, "cpu_model": "x", "memory_gb": 1, "python": "3", "numpy": "2",
                                        "grpcio": "1", "faiss": "1"},
                            "options": {"callers": 8, "workers": 4, "duration": 15.0, "warmup": 3.0,
                                        "paced_share": 0.5}}
    assert "4 worker processes and metrics on" in markdown(base)  # an older report, no threads option
    threaded = markdown({**base, "options": {**base["options"], "threads": 1}})
    assert "4 worker processes of 1 handler threads (echo too) and metrics on" in threaded
