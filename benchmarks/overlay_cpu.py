"""What the live-event overlay costs a Recommend call (issue 13: at most +0.2 ms), in-process, without gRPC.

The servicer's ``Recommend`` is called in this process (as :mod:`benchmarks.engine_cpu` does, same synthetic
sets and request mix, one thread, one BLAS thread) three ways:

* ``off``: no overlay (events ``off``), the servicer as before issue 13;
* ``no events``: a real :class:`~recsvc.events.overlay.EventOverlay` that holds events, but none for the
  requested customers (the lookup runs and finds nothing);
* ``fresh events``: every requested customer has ``--events`` live events after the model's cut-off (a
  purchase, then carts and views of random items), fed to the overlay as its feed would;
* ``same as context ids``: no overlay, the same items sent as ``context_item_ids``: what using those items
  costs the ranking (fold-in, co-purchase seeds) whoever supplies them, so ``fresh events`` minus this is the
  overlay's own cost (lookup, the value object, hiding, reasons).

The ways take turns call by call (a busy neighbour slows all alike); the set-up and the turns are
:mod:`benchmarks.recommend_turns`'.

::

    python -m benchmarks.overlay_cpu                      # 100k and 100k-blend, 3,000 calls, 3 events each
    python -m benchmarks.overlay_cpu --sets 1m --events 10

prints CPU ms per call per set and way, and the overlay's cost (difference to ``off``).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from benchmarks.recommend_turns import Way, add_set_arguments, check_requests
from recsvc.server.workers import limit_blas_threads


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="In-process CPU per Recommend call with and without live events.")
    add_set_arguments(parser, ["100k", "100k-blend"])
    parser.add_argument("--events", type=int, default=3, help="live events per customer (1..200)")
    args = parser.parse_args(argv)
    check_requests(parser, args)
    if not 1 <= args.events <= 200:
        parser.error("--events must be 1..200")
    limit_blas_threads(os.environ)  # before numpy: one BLAS thread, as each server process runs

    import numpy as np

    from benchmarks.recommend_turns import bench_sets, print_header, print_rows, take_turns
    from recsvc.events.overlay import EventOverlay, cutoff_ms
    from recsvc.events.sqlite_store import SqliteEventStore
    from recsvc.events.store import FeedBatch
    from recsvc.server.holder import ModelHolder
    from recsvc.server.servicer import RecommenderServicer
    from recsvc.v1 import recsvc_pb2

    print_header("way", "vs off ms", 11)
    for bench in bench_sets(args.sets, args.work_dir, args.requests):
        spec, engine, requests = bench.spec, bench.engine, bench.requests
        customers = sorted({r.customer_id for r in requests if r.customer_id})
        rng = np.random.default_rng(7)
        start = cutoff_ms(bench.model) + 3_600_000
        with tempfile.TemporaryDirectory() as tmp:
            overlays = []
            for prefix, ids in (("x", [f"other-{i}" for i in range(len(customers))]), ("e", customers)):
                overlay = EventOverlay(SqliteEventStore(Path(tmp) / f"{prefix}.sqlite"))  # fed here, never polled
                records, items = live_records(spec, ids, args.events, start, prefix, rng)
                overlay.apply(FeedBatch(tuple(records), (), ""))
                overlays.append(overlay)
            nobody, fresh = overlays  # ``items``: the fresh customers' live items
            with_context = []
            for r in requests:
                copy = recsvc_pb2.RecommendRequest()
                copy.CopyFrom(r)
                copy.context_item_ids.extend(items.get(r.customer_id, []))
                with_context.append(copy)
            ways = [Way("off", RecommenderServicer(ModelHolder(engine)), requests),
                    Way("no events", RecommenderServicer(ModelHolder(engine), nobody.activity), requests),
                    Way("fresh events", RecommenderServicer(ModelHolder(engine), fresh.activity), requests),
                    Way("same as context ids", RecommenderServicer(ModelHolder(engine)), with_context)]
            # call by call; the warm-up (caches, the fold-in's Gramian, scratch buffers) runs into the timed
            # calls, which then start where it stopped and wrap around: every request is timed once per way
            n, warm = len(requests), len(requests) // 10
            take_turns(ways, range(warm), 1, timed=False)
            spent = take_turns(ways, range(warm, n + warm), 1)
            print_rows(bench.label, ways, spent, n, 11)
    return 0


def live_records(spec: Any, customers: Sequence[str], per_customer: int, start_ms: int, prefix: str,
                 rng: Any) -> tuple[list[Any], dict[str, list[str]]]:
    """``per_customer`` events per customer from ``start_ms`` on (a purchase, then carts and views of random
    items), as the overlay's feed delivers them, and each customer's items."""
    from recsvc.events.validation import EventRecord

    records, items = [], {}
    for n, customer in enumerate(customers):
        items[customer] = [spec.item_id(int(r)) for r in rng.integers(0, spec.n_items, per_customer)]
        for k, item in enumerate(items[customer]):
            kind = "purchase" if k == 0 else ("cart" if k % 2 else "view")
            at = start_ms + n * 10 + k
            records.append(EventRecord(f"{prefix}{n}:{k}", customer, item, kind, "web", "", f"o{n}", 1.0, 1.0,
                                       at, at))
    return records, items


if __name__ == "__main__":
    sys.exit(main())
