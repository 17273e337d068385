"""In-process CPU per Recommend call on the stored path, against the live path, on the 100k set (issue 16).

Uses the set ``python -m benchmarks.load --scenario 100k-stored`` publishes (``bench-100k-stored`` under
``--work-dir``, stored lists for its callers' customers) and the same requests::

    python -m benchmarks.stored_engine_cpu

prints CPU milliseconds per call (process time, one thread, one BLAS thread) for the engine with the stored
lists, the same engine on the set without them (live ranking of the same calls) and the live path with two
context ids per call.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import time
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path

from recsvc.server.workers import limit_blas_threads


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--work-dir", default="benchmarks/results/raw")
    parser.add_argument("--callers", type=int, default=8)
    args = parser.parse_args(argv)
    limit_blas_threads(os.environ)  # before numpy: one BLAS thread, as each server process runs
    from benchmarks.load import STORED_REQUESTS_PER_CALLER, _spec, build_requests
    from recsvc.artifacts import load_artifact_set
    from recsvc.artifacts.parts.stored_lists import StoredLists
    from recsvc.ranking import LoadedModel, RecommendationEngine, RecommendQuery
    from recsvc.v1 import recsvc_pb2

    folder = Path(args.work_dir) / "artifacts-100k" / "versions" / "bench-100k-stored"
    stored = load_artifact_set(folder)
    older = dataclasses.replace(stored, arrays={k: v for k, v in stored.arrays.items() if k not in StoredLists.ARRAYS})
    spec = asdict(_spec(100_000))
    out = {}
    for variant in ("", "context"):
        messages = [recsvc_pb2.RecommendRequest.FromString(body) for i in range(args.callers)
                    for body in build_requests("Recommend", spec, 1000 + i, STORED_REQUESTS_PER_CALLER, variant)]
        queries = [RecommendQuery(customer_id=m.customer_id, channel=m.channel, store_id=m.store_id,
                                  num_items=m.num_items, context_item_ids=tuple(m.context_item_ids))
                   for m in messages]
        for name, artifacts in (("stored", stored), ("live", older)):
            if variant and name == "live":
                continue
            engine = RecommendationEngine(LoadedModel(artifacts))
            for q in queries[:200]:
                engine.recommend(q)
            started = time.process_time()
            for q in queries:
                engine.recommend(q)
            label = f"{name}{'-context' if variant else ''}"
            out[label] = round(1000 * (time.process_time() - started) / len(queries), 3)
    print(json.dumps({"cpu_ms_per_call": out, "calls": len(queries)}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
