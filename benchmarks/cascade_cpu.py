"""What the ranker's cascade saves a live Recommend call, in-process, without gRPC (issue 16: score fewer pairs).

The servicer's ``Recommend`` is called in this process on the synthetic set (:mod:`benchmarks.recommend_turns`:
the load test's request mix, one thread, one BLAS thread) four ways, taking turns call by call:

* ``cascade``: the set as published, its ranker with the cascade its manifest names (the spec's
  ``ranker_cascade_trees`` / ``ranker_cascade_keep``, set to what the trainer chose on Ta Feng);
* ``full``: the same model, every pool row through every tree (the cascade off);
* ``cascade, 2 context``: the first way with two context ids per call (the live path issue 16 measures);
* ``full, 2 context``: the second with the same two context ids.

::

    python -m benchmarks.cascade_cpu --requests 3000

prints CPU ms per call per way and the difference to ``cascade``.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from benchmarks.recommend_turns import Way, add_set_arguments, check_requests
from recsvc.server.workers import limit_blas_threads


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_set_arguments(parser, ["100k"])
    args = parser.parse_args(argv)
    check_requests(parser, args)
    limit_blas_threads(os.environ)  # before numpy: one BLAS thread, as each server process runs

    import numpy as np

    from benchmarks.recommend_turns import bench_sets, print_header, print_rows, take_turns
    from recsvc.config import ServerSettings
    from recsvc.ranking import RecommendationEngine
    from recsvc.server.holder import ModelHolder
    from recsvc.server.servicer import RecommenderServicer
    from recsvc.v1 import recsvc_pb2

    print_header("way", "vs cascade ms", 13)
    for bench in bench_sets(args.sets, args.work_dir, args.requests):
        served = bench.engine
        full = RecommendationEngine(bench.model, ServerSettings())  # as bench_sets builds the served one
        if served.learned_ranker is None or served.learned_ranker.cascade is None or full.learned_ranker is None:
            parser.error(f"set {bench.label}: its ranker has no cascade")
        full.learned_ranker.cascade = None
        rng = np.random.default_rng(11)
        with_context = []
        for request in bench.requests:
            copy = recsvc_pb2.RecommendRequest()
            copy.CopyFrom(request)
            copy.context_item_ids.extend(bench.spec.item_id(int(r)) for r in rng.integers(0, bench.spec.n_items, 2))
            with_context.append(copy)
        ways = [Way("cascade", RecommenderServicer(ModelHolder(served)), bench.requests),
                Way("full", RecommenderServicer(ModelHolder(full)), bench.requests),
                Way("cascade, 2 context", RecommenderServicer(ModelHolder(served)), with_context),
                Way("full, 2 context", RecommenderServicer(ModelHolder(full)), with_context)]
        n, warm = len(bench.requests), len(bench.requests) // 10
        take_turns(ways, range(warm), 1, timed=False)
        spent = take_turns(ways, range(warm, n + warm), 1)
        print_rows(bench.label, ways, spent, n, 13)
    return 0


if __name__ == "__main__":
    sys.exit(main())
