"""Wall time and memory of the nightly ranking (issue 16) on the load test's 100k set, extrapolated.

Ranks ``--customers`` customers (spread over the 1M) on every channel with the trainer's batch path
(:func:`recsvc.ranking.batch.stored_rows_by_channel`: a customer's channels in one batch, ``--workers``
forked processes over chunks of customers, one BLAS thread each), after the set (built or reused under
``--work-dir`` by :mod:`benchmarks.synthetic`) is loaded::

    python -m benchmarks.nightly_ranking --customers 4000 --workers 2

prints wall and CPU milliseconds per customer and channel (CPU of the parent and its workers), the
extrapolation to 1M customers x 3 channels in wall time with these workers, and the peak RSS of the parent
and of the largest worker (the workers share the model's memory-mapped pages, so RSS counts them in each).

``--against-full`` also ranks every chunk of customers a second time with the ranker's cascade off (every
pool row through every tree), in turns with the served way, one process, and reports both CPU times and
their ratio (a busy neighbour slows both alike)::

    python -m benchmarks.nightly_ranking --customers 2000 --against-full
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from recsvc.server.workers import limit_blas_threads


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--customers", type=int, default=600)
    parser.add_argument("--length", type=int, default=50)
    parser.add_argument("--workers", type=int, default=1, help="processes (0: one per core)")
    parser.add_argument("--work-dir", default="benchmarks/results/raw")
    parser.add_argument("--out", default="", help="also write the JSON here")
    parser.add_argument("--against-full", action="store_true",
                        help="also rank without the cascade, in turns, one process (the CPU ratio)")
    args = parser.parse_args(argv)
    limit_blas_threads(os.environ)  # before numpy
    import numpy as np

    from benchmarks.load import _spec
    from benchmarks.synthetic import ensure_published
    from recsvc.artifacts import load_current
    from recsvc.ranking import LoadedModel, RecommendationEngine
    from recsvc.ranking.batch import stored_rows_by_channel, worker_count

    root = Path(args.work_dir) / "artifacts-100k"
    ensure_published(root, _spec(100_000), "bench-100k-a")
    model = LoadedModel(load_current(root, verify=False, mmap=True))
    engine = RecommendationEngine(model)
    rows = np.linspace(0, model.n_customers - 1, args.customers).astype(np.int64)
    stored_rows_by_channel(engine, rows[:10], model.channels, args.length)  # warm-up
    rss_loaded = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    def cpu_seconds() -> float:
        own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
        return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime

    if args.against_full:
        return compare_with_full(engine, rows, args.length, args.out)
    wall, cpu = time.perf_counter(), cpu_seconds()
    stored_rows_by_channel(engine, rows, model.channels, args.length, workers=args.workers)
    wall, cpu = time.perf_counter() - wall, cpu_seconds() - cpu
    per = wall / (rows.size * len(model.channels))
    report = {"customers": int(rows.size), "channels": len(model.channels), "length": args.length,
              "workers": worker_count(args.workers), "wall_s": round(wall, 2), "cpu_s": round(cpu, 2),
              "ms_per_customer_channel_wall": round(1000 * per, 3),
              "ms_per_customer_channel_cpu": round(1000 * cpu / (rows.size * len(model.channels)), 3),
              "extrapolated_1m_x3_minutes_wall": round(per * 3_000_000 / 60, 1),
              "extrapolated_1m_x3_cpu_minutes": round(cpu / (rows.size * len(model.channels)) * 3_000_000 / 60, 1),
              "peak_rss_mb_loaded": round(rss_loaded, 1),
              "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
              "peak_rss_mb_largest_worker": round(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024, 1),
              "load_average": os.getloadavg()}
    text = json.dumps(report, indent=2)
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n")
    return 0


def compare_with_full(engine: Any, rows: Any, length: int, out: str) -> int:
    """CPU per customer and channel with the ranker's cascade and without, chunk by chunk in turns."""
    import numpy as np

    from recsvc.ranking.batch import stored_rows_by_channel

    learned = engine.learned_ranker
    if learned is None or learned.cascade is None:
        raise SystemExit("the set's ranker has no cascade to compare (ranker_cascade_trees in the spec)")
    served = learned.cascade
    spent = {"cascade": 0.0, "full": 0.0}
    for chunk in np.array_split(rows, max(1, rows.size // 100)):
        for way in spent:
            learned.cascade = served if way == "cascade" else None
            started = time.process_time()
            stored_rows_by_channel(engine, chunk, engine.model.channels, length)
            spent[way] += time.process_time() - started
    learned.cascade = served
    pairs = rows.size * len(engine.model.channels)
    report = {"customers": int(rows.size), "channels": len(engine.model.channels), "length": length,
              "cascade": served.settings.to_stats(),
              "cpu_ms_per_customer_channel": {way: round(1000 * s / pairs, 3) for way, s in spent.items()},
              "full_over_cascade": round(spent["full"] / spent["cascade"], 3),
              "extrapolated_1m_x3_cpu_minutes": {way: round(s / pairs * 3_000_000 / 60, 1)
                                                 for way, s in spent.items()},
              "load_average": os.getloadavg()}
    text = json.dumps(report, indent=2)
    print(text)
    if out:
        Path(out).write_text(text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
