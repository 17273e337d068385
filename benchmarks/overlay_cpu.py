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

The ways take turns call by call (a busy neighbour slows all alike).

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
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from recsvc.server.workers import limit_blas_threads

SETS = {"100k": (100_000, True), "100k-blend": (100_000, False), "1m": (1_000_000, True)}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="In-process CPU per Recommend call with and without live events.")
    parser.add_argument("--sets", nargs="+", choices=sorted(SETS), default=["100k", "100k-blend"])
    parser.add_argument("--requests", type=int, default=3000, help="calls per way (max 100000)")
    parser.add_argument("--events", type=int, default=3, help="live events per customer (1..200)")
    parser.add_argument("--work-dir", default="benchmarks/results/raw")
    args = parser.parse_args(argv)
    if not 1 <= args.requests <= 100_000:
        parser.error("--requests must be 1..100000")
    if not 1 <= args.events <= 200:
        parser.error("--events must be 1..200")
    limit_blas_threads(os.environ)  # before numpy: one BLAS thread, as each server process runs

    import numpy as np

    from benchmarks.load import build_requests
    from benchmarks.synthetic import SyntheticSpec, ensure_published
    from recsvc.artifacts import load_current
    from recsvc.config import ServerSettings
    from recsvc.events.overlay import EventOverlay, cutoff_ms
    from recsvc.events.sqlite_store import SqliteEventStore
    from recsvc.events.store import FeedBatch
    from recsvc.ranking import LoadedModel, RecommendationEngine
    from recsvc.server.holder import ModelHolder
    from recsvc.server.servicer import RecommenderServicer
    from recsvc.v1 import recsvc_pb2

    print(f"{'set':<12} {'way':<20} {'CPU ms per call':>16} {'vs off ms':>11}")
    for label in args.sets:
        n_items, ranker = SETS[label]
        spec = SyntheticSpec(n_items=n_items, learned_ranker=ranker)
        root = Path(args.work_dir) / f"artifacts-{label}"
        ensure_published(root, spec, f"bench-{label}-a")
        model = LoadedModel(load_current(root, verify=False, mmap=True))
        engine = RecommendationEngine(model, ServerSettings())
        requests = [recsvc_pb2.RecommendRequest.FromString(r) for r in build_requests("Recommend", vars(spec), 1,
                                                                                      args.requests)]
        customers = sorted({r.customer_id for r in requests if r.customer_id})
        rng = np.random.default_rng(7)
        start = cutoff_ms(model) + 3_600_000
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
            # (way, servicer, requests); the ways take turns call by call, so a busy neighbour on the shared
            # cores slows them all alike
            ways: list[tuple[str, Any, Sequence[Any]]] = [
                ("off", RecommenderServicer(ModelHolder(engine)), requests),
                ("no events", RecommenderServicer(ModelHolder(engine), nobody.activity), requests),
                ("fresh events", RecommenderServicer(ModelHolder(engine), fresh.activity), requests),
                ("same as context ids", RecommenderServicer(ModelHolder(engine)), with_context)]
            spent = [0.0] * len(ways)
            for i in range(len(requests) + len(requests) // 10):
                warm = i < len(requests) // 10  # warm-up: caches, the fold-in's Gramian, scratch buffers
                for w, (_, servicer, calls) in enumerate(ways):
                    started = time.process_time()
                    servicer.Recommend(calls[i % len(calls)], None)
                    if not warm:
                        spent[w] += time.process_time() - started
            for (way, _, _), total in zip(ways, spent, strict=True):
                per_call = total / len(requests) * 1e3
                extra = f"{per_call - spent[0] / len(requests) * 1e3:+.3f}" if way != "off" else ""
                print(f"{label:<12} {way:<20} {per_call:>16.3f} {extra:>11}", flush=True)
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
