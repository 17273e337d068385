"""How long a server takes to load a 1M-item x 64-factor model, and what a hot reload costs the requests.

One command reproduces ``benchmarks/results/model_load.{json,md}``::

    python -m benchmarks.model_load --out benchmarks/results/model_load.json

It builds (once, cached under ``--work``) a synthetic artifact set with numpy — 1M items, 64 ALS factors,
100k customers with short histories, 10 co-purchase neighbours per item; ~0.5 GB of arrays — and times,
``--repeat`` times each (median and min reported):

``verify``        sha256 of every file against the manifest (what ``verify_checksums`` adds to a load)
``open mmap``     ``load_artifact_set(verify=False, mmap=True)``: parse headers, map the files, validate
``open read``     the same with ``mmap=False`` (every array read into memory)
``model``         ``LoadedModel``: the engine's own precomputation (transposed and normalised factors,
                  popularity orders, category codes) on the mapped arrays
``engine+warm``   ``RecommendationEngine`` plus the lifecycle's warm-up queries
``reload``        a whole :meth:`ModelLifecycle.reload` (verify + load + model + warm-up + swap) in a background
                  thread while 2 threads rank requests on the old model: the swap itself, and request
                  latency p50/p99 before and during the load

The page cache is warm (the set was just written or read); on a cold cache ``verify`` reads the files from
disk first, which is exactly why verification comes first: afterwards the mapped pages are in memory.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from recsvc.artifacts import (
    VERSIONS,
    ArtifactSet,
    current_version,
    load_artifact_set,
    publish_artifacts,
    read_manifest,
    set_current,
    sha256_file,
)
from recsvc.config import ServerSettings
from recsvc.ranking import LoadedModel, RecommendationEngine, RecommendQuery
from recsvc.server.app import ModelHolder
from recsvc.server.lifecycle import ModelLifecycle
from recsvc.server.versions import build_engine, warm_up

CHANNELS = ["app", "store", "web"]


def build_set(n_items: int, n_customers: int, factors: int, seed: int) -> ArtifactSet:
    """A valid artifact set of the given size; random content, realistic shapes and dtypes."""
    rng = np.random.default_rng(seed)
    width = len(str(max(n_items, n_customers)))
    n_ch, n_stores, store_k = len(CHANNELS), 50, 200
    hist_len = rng.integers(1, 8, n_customers)
    indptr = np.concatenate([[0], np.cumsum(hist_len)]).astype(np.int64)
    nnz = int(indptr[-1])
    co_len = np.full(n_items, 10)
    co_indptr = np.concatenate([[0], np.cumsum(co_len)]).astype(np.int64)
    co_nnz = int(co_indptr[-1])
    pop = rng.pareto(1.2, n_items).astype(np.float32)
    item_channels = rng.random((n_items, n_ch)) < 0.9
    item_channels[:, 0] = True
    last = 20_580 - rng.integers(0, 365, nnz)
    arrays = {
        "item_ids": np.char.add("I", np.char.zfill(np.arange(n_items).astype(str), width)),
        "item_titles": np.char.add("Item ", np.arange(n_items).astype(str)),
        "item_categories": np.char.add("cat", (rng.integers(0, 200, n_items)).astype(str)),
        "item_prices": rng.uniform(1, 50, n_items).astype(np.float32),
        "item_channels": item_channels,
        "customer_ids": np.char.add("C", np.char.zfill(np.arange(n_customers).astype(str), width)),
        "alias_ids": np.zeros(0, dtype="U1"), "alias_customer": np.zeros(0, dtype=np.int32),
        "als_user_factors": (rng.standard_normal((n_customers, factors)) * 0.1).astype(np.float32),
        "als_item_factors": (rng.standard_normal((n_items, factors)) * 0.1).astype(np.float32),
        "hist_indptr": indptr, "hist_items": rng.integers(0, n_items, nnz).astype(np.int32),
        "hist_count": rng.integers(1, 4, nnz).astype(np.float32),
        "hist_first_day": (last - 30).astype(np.int32), "hist_last_day": last.astype(np.int32),
        "hist_last_channel": rng.integers(0, n_ch, nnz).astype(np.int16),
        "hist_last_store": rng.integers(-1, n_stores, nnz).astype(np.int32),
        "item_repurchase_days": np.where(rng.random(n_items) < 0.2, 30.0, np.nan).astype(np.float32),
        "item_repurchase_rate": rng.random(n_items).astype(np.float32),
        "store_ids": np.char.add("S", np.char.zfill(np.arange(n_stores).astype(str), 3)),
        "pop_global": pop, "pop_channel": (pop[None, :] * rng.random((n_ch, n_items))).astype(np.float32),
        "pop_store_items": np.stack([rng.choice(n_items, store_k, replace=False)
                                     for _ in range(n_stores)]).astype(np.int32),
        "pop_store_scores": -np.sort(-rng.random((n_stores, store_k)), axis=1).astype(np.float32),
        "copurchase_indptr": co_indptr, "copurchase_items": rng.integers(0, n_items, co_nnz).astype(np.int32),
        "copurchase_scores": np.tile(np.linspace(0.9, 0.1, 10, dtype=np.float32), n_items),
        "copurchase_support": rng.integers(2, 100, co_nnz).astype(np.int32),
    }
    return ArtifactSet(arrays=arrays, channels=list(CHANNELS), data_end_day=20_580, version=f"bench-{seed}",
                       created_at=datetime.now(UTC).isoformat(timespec="seconds"))


def ensure_versions(root: Path, n_items: int, n_customers: int, factors: int) -> list[str]:
    """Two published versions (built once, reused by later runs); CURRENT names the first."""
    versions = []
    for seed in (1, 0):  # the second publish leaves CURRENT on bench-0
        version = f"bench-{seed}"
        folder = root / VERSIONS / version
        if not folder.is_dir() or read_manifest(folder)["row_counts"].get("items") != n_items:
            t0 = time.perf_counter()
            artifacts = build_set(n_items, n_customers, factors, seed)
            artifacts.row_counts = {"items": n_items, "customers": n_customers}
            publish_artifacts(artifacts, root, keep=10)
            print(f"built and published {version} in {time.perf_counter() - t0:.1f} s")
        versions.append(version)
    set_current(root, "bench-0")
    return ["bench-0", "bench-1"]


def timed(run: Callable[[], Any], repeat: int) -> tuple[list[float], Any]:
    times, result = [], None
    for _ in range(repeat):
        t0 = time.perf_counter()
        result = run()
        times.append(time.perf_counter() - t0)
    return times, result


def stats(times: list[float]) -> dict[str, float]:
    return {"median_s": round(statistics.median(times), 4), "min_s": round(min(times), 4)}


def latency_during_reload(root: Path, settings: ServerSettings) -> dict[str, Any]:
    """Rank requests on 2 threads while a background reload loads the other version; report the swap."""
    holder = ModelHolder()
    lifecycle = ModelLifecycle(settings, holder)
    lifecycle.load_initial()
    serving = holder.current()
    customers = [str(c) for c in serving.model.customers.ids[:: max(1, serving.model.n_customers // 500)]]
    stop = threading.Event()
    samples: list[tuple[float, float, str]] = []  # (start, latency, version)

    def caller(offset: int) -> None:
        i = offset
        while not stop.is_set() and len(samples) < 200_000:
            engine = holder.current()
            t0 = time.perf_counter()
            result = engine.recommend(RecommendQuery(customer_id=customers[i % len(customers)], channel="web"))
            samples.append((t0, time.perf_counter() - t0, result.model_version))
            i += 2

    threads = [threading.Thread(target=caller, args=(k,)) for k in range(2)]
    for thread in threads:
        thread.start()
    time.sleep(2.0)
    set_current(root, "bench-1")
    reload_start = time.perf_counter()
    result = lifecycle.reload()
    reload_end = time.perf_counter()
    time.sleep(1.0)
    stop.set()
    for thread in threads:
        thread.join()
    set_current(root, "bench-0")

    def pct(rows: list[tuple[float, float, str]]) -> dict[str, float]:
        lat = np.array([r[1] for r in rows]) * 1e3
        if lat.size == 0:
            return {}
        return {"requests": int(lat.size), "p50_ms": round(float(np.percentile(lat, 50)), 3),
                "p99_ms": round(float(np.percentile(lat, 99)), 3), "max_ms": round(float(lat.max()), 3)}

    before = [s for s in samples if s[0] < reload_start]
    during = [s for s in samples if reload_start <= s[0] < reload_end]
    return {"outcome": result.outcome.name, "load_seconds": round(result.load_seconds, 3),
            "swap_microseconds": round(result.swap_seconds * 1e6, 2), "before": pct(before),
            "during": pct(during), "versions_seen": sorted({s[2] for s in samples})}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--items", type=int, default=1_000_000)
    parser.add_argument("--customers", type=int, default=100_000)
    parser.add_argument("--factors", type=int, default=64)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--work", default="/tmp/recsvc-bench-model-load", help="cache of the synthetic sets")
    parser.add_argument("--out", help="write the results as JSON here (and Markdown beside it)")
    args = parser.parse_args(argv)
    root = Path(args.work)
    ensure_versions(root, args.items, args.customers, args.factors)
    folder = root / VERSIONS / (current_version(root) or "")
    manifest = read_manifest(folder)
    size = sum((folder / f"{name}.npy").stat().st_size for name in manifest["files"])
    settings = ServerSettings(artifact_root=str(root))
    load_at_start = [round(x, 2) for x in os.getloadavg()]  # other work on the machine skews medians, not mins

    verify_t, _ = timed(lambda: [sha256_file(folder / f"{name}.npy") for name in manifest["files"]], args.repeat)
    mmap_t, artifacts = timed(lambda: load_artifact_set(folder, verify=False, mmap=True), args.repeat)
    read_t, _ = timed(lambda: load_artifact_set(folder, verify=False, mmap=False), args.repeat)
    model_t, model = timed(lambda: LoadedModel(artifacts), args.repeat)
    engine_t, _ = timed(lambda: warm_up(RecommendationEngine(model, settings)), args.repeat)
    full_t, _ = timed(lambda: warm_up(build_engine(load_artifact_set(folder, verify=False, mmap=True), settings)),
                      args.repeat)
    results: dict[str, Any] = {
        "set": {"items": args.items, "customers": args.customers, "factors": args.factors,
                "files": len(manifest["files"]), "size_mb": round(size / 1e6, 1)},
        "machine": {"python": platform.python_version(), "numpy": np.__version__, "cpus": os.cpu_count(),
                    "platform": platform.platform(), "load_average_at_start": load_at_start,
                    "load_average_at_end": [round(x, 2) for x in os.getloadavg()]},
        "verify": stats(verify_t), "open_mmap": stats(mmap_t), "open_read": stats(read_t), "model": stats(model_t),
        "engine_and_warm_up": stats(engine_t), "load_without_verify": stats(full_t),
        "reload_under_load": latency_during_reload(root, settings),
    }
    results["verify"]["mb_per_s"] = round(size / 1e6 / results["verify"]["median_s"])
    text = markdown(results)
    print(text)
    if args.out:
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(results, indent=2))
        out.with_suffix(".md").write_text(text)
    return 0


def markdown(r: dict[str, Any]) -> str:
    s = r["set"]
    rows = [("verify (sha256 of every file)", r["verify"]), ("open, mmap=True", r["open_mmap"]),
            ("open, mmap=False", r["open_read"]), ("LoadedModel precomputation", r["model"]),
            ("engine + warm-up queries", r["engine_and_warm_up"]),
            ("load without verify (open mmap + model + engine + warm-up)", r["load_without_verify"])]
    lines = [f"# Model load: {s['items']:,} items x {s['factors']} factors, {s['customers']:,} customers "
             f"({s['size_mb']} MB in {s['files']} files)", "",
             "`python -m benchmarks.model_load --out benchmarks/results/model_load.json`", "",
             "| step | median s | min s |", "|---|---:|---:|"]
    lines += [f"| {name} | {v['median_s']:.3f} | {v['min_s']:.3f} |" for name, v in rows]
    rl = r["reload_under_load"]
    lines += ["", f"verify throughput: {r['verify']['mb_per_s']} MB/s (warm page cache).", "",
              f"Hot reload in a background thread while 2 threads rank (outcome {rl['outcome']}): load + verify + "
              f"warm-up {rl['load_seconds']:.2f} s, swap {rl['swap_microseconds']:.1f} µs; "
              f"versions seen {', '.join(rl['versions_seen'])}.", "",
              "| requests | n | p50 ms | p99 ms | max ms |", "|---|---:|---:|---:|---:|"]
    for phase in ("before", "during"):
        p = rl[phase]
        if p:
            lines.append(f"| {phase} the reload | {p['requests']} | {p['p50_ms']} | {p['p99_ms']} | {p['max_ms']} |")
    m = r["machine"]
    lines += ["", f"Python {m['python']}, numpy {m['numpy']}, {m['cpus']} CPUs, {m['platform']}; load average "
              f"{m['load_average_at_start'][0]} at start, {m['load_average_at_end'][0]} at end (other work on the "
              "machine inflates medians; the minimum is the closer estimate of an idle machine).", ""]
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
