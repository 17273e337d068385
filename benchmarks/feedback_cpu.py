"""What recommendation ids, experiment assignment and the served-recommendation log cost a Recommend call
(issue 18: at most +0.1 ms of server CPU), in-process, without gRPC.

The servicer's ``Recommend`` is called in this process (as :mod:`benchmarks.overlay_cpu` does: same synthetic
sets and request mix, one thread, one BLAS thread) four ways:

* ``before``: the answer as before issue 18 (the engine alone, no id, no arm, no log);
* ``ids``: a recommendation id and the served counter, no log (``feedback.log_served`` false);
* ``ids + log``: the id, the counter and the log into a real SQLite event store (WAL, ``synchronous=FULL``);
* ``ids + log + arms``: the same with an experiment of two plain arms (the hash, the arm lookup).

CPU is ``time.process_time`` of the whole process, so the log's writer thread (serialising and committing the
batches) is counted too: each way runs in blocks of ``--block`` calls and a block that logs ends with a
flush, so its writes fall inside its own block. The ways take turns block by block.

::

    python -m benchmarks.feedback_cpu                     # 100k-blend, 3,000 calls per way
    python -m benchmarks.feedback_cpu --sets 100k --redis redis://127.0.0.1:6379/0

prints CPU ms per call per set and way and the difference to ``before``. On shared cores the difference of
two ~1-2 ms calls is noisy (±0.05 ms between runs), so the benchmark then measures the feedback path alone
(``--isolated`` calls, 20,000 by default): :class:`~recsvc.server.feedback.FeedbackRuntime` around an engine
that returns a prepared 10-item answer at once, with the log's writer thread committing to SQLite in the same
measured time — the cost the feedback path adds to any Recommend, whatever the model.
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
    parser = argparse.ArgumentParser(description="In-process CPU per Recommend call with and without the "
                                                 "served-recommendation log.")
    parser.add_argument("--sets", nargs="+", choices=sorted(SETS), default=["100k-blend"])
    parser.add_argument("--requests", type=int, default=3000, help="calls per way (max 100000)")
    parser.add_argument("--block", type=int, default=250, help="calls per block")
    parser.add_argument("--redis", default="", help="also log into this Redis (redis://host:port/db)")
    parser.add_argument("--isolated", type=int, default=20_000, help="calls of the feedback path alone (0: skip)")
    parser.add_argument("--work-dir", default="benchmarks/results/raw")
    args = parser.parse_args(argv)
    if not 1 <= args.requests <= 100_000:
        parser.error("--requests must be 1..100000")
    limit_blas_threads(os.environ)  # before numpy: one BLAS thread, as each server process runs

    from benchmarks.load import build_requests
    from benchmarks.synthetic import SyntheticSpec, ensure_published
    from recsvc.artifacts import load_current
    from recsvc.config import ExperimentArm, ExperimentsSettings, FeedbackSettings, ServerSettings, Settings
    from recsvc.events.sqlite_store import SqliteEventStore
    from recsvc.ranking import LoadedModel, RecommendationEngine
    from recsvc.server.feedback import FeedbackRuntime
    from recsvc.server.holder import ModelHolder
    from recsvc.server.servicer import RecommenderServicer
    from recsvc.v1 import recsvc_pb2

    class Before(FeedbackRuntime):
        """The servicer's path before issue 18: the engine's answer, nothing else."""

        def recommend(self, engine: Any, query: Any) -> tuple[Any, str, str]:
            return engine.recommend(query), "", ""

    print(f"{'set':<12} {'way':<20} {'CPU ms per call':>16} {'vs before ms':>13}")
    for label in args.sets:
        n_items, ranker = SETS[label]
        spec = SyntheticSpec(n_items=n_items, learned_ranker=ranker)
        root = Path(args.work_dir) / f"artifacts-{label}"
        ensure_published(root, spec, f"bench-{label}-a")
        model = LoadedModel(load_current(root, verify=False, mmap=True))
        engine = RecommendationEngine(model, ServerSettings())
        requests = [recsvc_pb2.RecommendRequest.FromString(r) for r in build_requests("Recommend", vars(spec), 1,
                                                                                      args.requests)]
        arms = ExperimentsSettings(name="bench", arms={"a": ExperimentArm(share=0.5), "b": ExperimentArm(share=0.5)})
        with tempfile.TemporaryDirectory() as tmp:
            stores: list[Any] = [SqliteEventStore(Path(tmp) / "log.sqlite"),
                                 SqliteEventStore(Path(tmp) / "arms.sqlite")]
            runtimes: list[tuple[str, FeedbackRuntime]] = [
                ("before", Before(Settings())),
                ("ids", FeedbackRuntime(Settings(feedback=FeedbackSettings(log_served=False)))),
                ("ids + log", FeedbackRuntime(Settings(), stores[0])),
                ("ids + log + arms", FeedbackRuntime(Settings(experiments=arms), stores[1]))]
            if args.redis:
                from recsvc.events.redis_store import RedisEventStore

                stores.append(RedisEventStore(args.redis, prefix=f"bench-feedback-{os.getpid()}"))
                runtimes.append(("ids + log (redis)", FeedbackRuntime(Settings(), stores[-1])))
            ways = [(name, RecommenderServicer(ModelHolder(engine), feedback=runtime), runtime)
                    for name, runtime in runtimes]
            spent = [0.0] * len(ways)
            done = [0] * len(ways)
            warm = max(1, args.requests // 10)
            for _, servicer, _ in ways:  # warm-up: caches, scratch buffers, connections
                for r in requests[:warm]:
                    servicer.Recommend(r, None)
            for start in range(0, args.requests, args.block):
                block = requests[start:start + args.block]
                for w, (_, servicer, runtime) in enumerate(ways):
                    if runtime.log is not None:
                        runtime.log.flush()  # the warm-up's (or the last block's) writes are not this block's
                    began = time.process_time()
                    for r in block:
                        servicer.Recommend(r, None)
                    if runtime.log is not None:
                        runtime.log.flush()
                    spent[w] += time.process_time() - began
                    done[w] += len(block)
            base = spent[0] / done[0] * 1e3
            for (way, _, runtime), total, n in zip(ways, spent, done, strict=True):
                per_call = total / n * 1e3
                extra = f"{per_call - base:+.3f}" if way != "before" else ""
                print(f"{label:<12} {way:<20} {per_call:>16.3f} {extra:>13}", flush=True)
                if runtime.log is not None:
                    status = runtime.log.status()
                    assert status.dropped_full == status.dropped_store == 0, status
                runtime.close()
            for store in stores:
                store.close()
    if args.isolated:
        isolated(model, args.isolated, args.redis)
    return 0


def isolated(model: Any, calls: int, redis_url: str = "") -> None:
    """CPU ms per call of the feedback path alone (ids, arms, log with its writer thread), without ranking."""
    from recsvc.config import ExperimentArm, ExperimentsSettings, FeedbackSettings, Settings
    from recsvc.events.sqlite_store import SqliteEventStore
    from recsvc.ranking import RecommendQuery, RecommendResult, Suggestion
    from recsvc.ranking.reasons import Reason, ReasonKind
    from recsvc.server.feedback import FeedbackRuntime

    answer = RecommendResult(items=tuple(Suggestion(f"I{i:07d}", 1.0 / (i + 1), f"Item {i}", "cat",
                                                    Reason(kind=ReasonKind.POPULAR, text="Popular"))
                                         for i in range(10)),
                             model_version="bench", resolved_customer_id="C0000042", known_customer=True,
                             policy="blend")

    class Canned:
        """Stands in for the engine: the same answer at once (resolution goes through the real code)."""

        def __init__(self) -> None:
            self.model = model  # the real model: alias resolution costs what it costs in the server

        def recommend(self, query: Any) -> RecommendResult:
            return answer

    engine: Any = Canned()
    queries = [RecommendQuery(customer_id=model.customer_id(i % model.n_customers), channel="web")
               for i in range(calls)]
    arms = ExperimentsSettings(name="bench", arms={"a": ExperimentArm(share=0.5), "b": ExperimentArm(share=0.5)})
    print(f"\n{'feedback path alone':<33} {'CPU us per call':>16}")
    with tempfile.TemporaryDirectory() as tmp:
        stores: list[Any] = []
        ways: list[tuple[str, Any]] = [
            ("ids", lambda: FeedbackRuntime(Settings(feedback=FeedbackSettings(log_served=False)))),
            ("ids + log (sqlite)", lambda: FeedbackRuntime(Settings(), stores[-1])),
            ("ids + log + arms (sqlite)", lambda: FeedbackRuntime(Settings(experiments=arms), stores[-1]))]
        if redis_url:
            from recsvc.events.redis_store import RedisEventStore

            ways.append(("ids + log (redis)", lambda: FeedbackRuntime(Settings(), stores[-1])))
        for name, make in ways:
            if "redis" in name:
                from recsvc.events.redis_store import RedisEventStore

                stores.append(RedisEventStore(redis_url, prefix=f"bench-feedback-{os.getpid()}"))
            else:
                stores.append(SqliteEventStore(Path(tmp) / f"{len(stores)}.sqlite"))
            runtime = make()
            for q in queries[:1000]:  # warm-up
                runtime.recommend(engine, q)
            if runtime.log is not None:
                runtime.log.flush()
            began = time.process_time()
            for q in queries:
                runtime.recommend(engine, q)
            if runtime.log is not None:
                runtime.log.flush()
            spent = time.process_time() - began
            print(f"{name:<33} {spent / calls * 1e6:>16.1f}", flush=True)
            runtime.close()
            stores[-1].close()


if __name__ == "__main__":
    sys.exit(main())
