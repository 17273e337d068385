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
flush, so its writes fall inside its own block. The ways take turns block by block; the set-up and the
turns are :mod:`benchmarks.recommend_turns`'.

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

from benchmarks.recommend_turns import Way, add_set_arguments, check_requests
from recsvc.server.workers import limit_blas_threads


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="In-process CPU per Recommend call with and without the "
                                                 "served-recommendation log.")
    add_set_arguments(parser, ["100k-blend"])
    parser.add_argument("--block", type=int, default=250, help="calls per block")
    parser.add_argument("--redis", default="", help="also log into this Redis (redis://host:port/db)")
    parser.add_argument("--isolated", type=int, default=20_000, help="calls of the feedback path alone (0: skip)")
    args = parser.parse_args(argv)
    check_requests(parser, args)
    limit_blas_threads(os.environ)  # before numpy: one BLAS thread, as each server process runs

    from benchmarks.recommend_turns import bench_sets, print_header, print_rows, take_turns
    from recsvc.config import ExperimentArm, ExperimentsSettings, FeedbackSettings, Settings
    from recsvc.events.sqlite_store import SqliteEventStore
    from recsvc.server.feedback import FeedbackRuntime
    from recsvc.server.holder import ModelHolder
    from recsvc.server.servicer import RecommenderServicer

    class Before(FeedbackRuntime):
        """The servicer's path before issue 18: the engine's answer, nothing else."""

        def recommend(self, engine: Any, query: Any) -> tuple[Any, str, str]:
            return engine.recommend(query), "", ""

    print_header("way", "vs before ms", 13)
    model = None
    for bench in bench_sets(args.sets, args.work_dir, args.requests):
        model = bench.model
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
            # a block that logs ends with a flush, so its writes fall inside its own block
            ways = [Way(name, RecommenderServicer(ModelHolder(bench.engine), feedback=runtime), bench.requests,
                        settle=runtime.log.flush if runtime.log is not None else None)
                    for name, runtime in runtimes]
            warm = max(1, args.requests // 10)
            take_turns(ways, range(warm), warm, timed=False)  # warm-up: caches, scratch buffers, connections
            spent = take_turns(ways, range(args.requests), args.block)
            print_rows(bench.label, ways, spent, args.requests, 13)
            for _, runtime in runtimes:
                if runtime.log is not None:
                    status = runtime.log.status()
                    assert status.dropped_full == status.dropped_store == 0, status
                runtime.close()
            for store in stores:
                store.close()
    if args.isolated and model is not None:
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
