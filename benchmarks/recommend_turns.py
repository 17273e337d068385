"""The harness of the in-process Recommend benchmarks (:mod:`benchmarks.feedback_cpu`, :mod:`benchmarks.overlay_cpu`):
the synthetic sets, their engine and request mix, and the ways of serving a call taking turns.

Each benchmark compares a few ways of serving the same Recommend calls (a servicer built one way or another)
in this process, one thread, one BLAS thread. What they share lives here:

* :data:`SETS` and :func:`add_set_arguments`: the synthetic sets (``--sets``), ``--requests`` (calls per way)
  and ``--work-dir`` (where the sets are built once and reused);
* :func:`bench_sets`: per set, the published synthetic set loaded as the server loads it, its engine and the
  load test's Recommend mix (:func:`benchmarks.load.build_requests`);
* :func:`take_turns`: the ways take turns block by block, so a busy neighbour on the shared cores slows them
  all alike; CPU is ``time.process_time`` of the whole process (threads a way starts included);
* :func:`print_rows`: CPU ms per call per way, and its difference to the first way.

Call :func:`recsvc.server.workers.limit_blas_threads` before anything imports numpy (the commands do it right
after parsing their arguments); this module imports the model code only inside :func:`bench_sets`.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

#: label -> (items, learned ranker); every set has the synthetic set's default 1M customers.
SETS = {"100k": (100_000, True), "100k-blend": (100_000, False), "1m": (1_000_000, True)}
MAX_REQUESTS = 100_000


def add_set_arguments(parser: argparse.ArgumentParser, default_sets: Sequence[str]) -> None:
    """``--sets``, ``--requests`` (calls per way, 1..100000) and ``--work-dir``; check with :func:`check_requests`."""
    parser.add_argument("--sets", nargs="+", choices=sorted(SETS), default=list(default_sets))
    parser.add_argument("--requests", type=int, default=3000, help=f"calls per way (max {MAX_REQUESTS})")
    parser.add_argument("--work-dir", default="benchmarks/results/raw")


def check_requests(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Exit with the parser's usage error when ``--requests`` is out of range."""
    if not 1 <= args.requests <= MAX_REQUESTS:
        parser.error(f"--requests must be 1..{MAX_REQUESTS}")


@dataclass(frozen=True)
class BenchSet:
    """One synthetic set as the server serves it: its spec, the loaded model, an engine and the request mix."""

    label: str
    spec: Any  # benchmarks.synthetic.SyntheticSpec
    model: Any  # recsvc.ranking.LoadedModel
    engine: Any  # recsvc.ranking.RecommendationEngine (default ServerSettings)
    #: ``--requests`` RecommendRequest messages of the load test's mix
    requests: list[Any]


def bench_sets(labels: Sequence[str], work_dir: str | Path, n_requests: int) -> Iterator[BenchSet]:
    """Each set of ``labels`` in turn, published under ``work_dir/artifacts-<label>`` (built only when the cache
    does not hold it) and loaded memory-mapped without verification, as a benchmark's server would."""
    from benchmarks.load import build_requests
    from benchmarks.synthetic import SyntheticSpec, ensure_published
    from recsvc.artifacts import load_current
    from recsvc.config import ServerSettings
    from recsvc.ranking import LoadedModel, RecommendationEngine
    from recsvc.v1 import recsvc_pb2

    for label in labels:
        n_items, ranker = SETS[label]
        spec = SyntheticSpec(n_items=n_items, learned_ranker=ranker)
        root = Path(work_dir) / f"artifacts-{label}"
        ensure_published(root, spec, f"bench-{label}-a")
        model = LoadedModel(load_current(root, verify=False, mmap=True))
        engine = RecommendationEngine(model, ServerSettings())
        requests = [recsvc_pb2.RecommendRequest.FromString(r)
                    for r in build_requests("Recommend", vars(spec), 1, n_requests)]
        yield BenchSet(label=label, spec=spec, model=model, engine=engine, requests=requests)


@dataclass(frozen=True)
class Way:
    """One way of serving the calls: a servicer and the requests it gets (the i-th call sends
    ``requests[i % len(requests)]``)."""

    name: str
    servicer: Any  # recsvc.server.servicer.RecommenderServicer
    requests: Sequence[Any]
    #: Work the calls leave to a thread (a log's writes): done before a timed block (so an earlier block's
    #: work is not counted) and at its end inside the timing (so the block's own work is).
    settle: Callable[[], None] | None = None

    def call(self, i: int) -> None:
        self.servicer.Recommend(self.requests[i % len(self.requests)], None)


def take_turns(ways: Sequence[Way], calls: Sequence[int], block: int, *, timed: bool = True) -> list[float]:
    """Run the calls numbered ``calls`` on every way, the ways taking turns every ``block`` calls; returns the
    CPU seconds each way spent (zeros when not ``timed``, e.g. a warm-up, which also settles nothing)."""
    spent = [0.0] * len(ways)
    for start in range(0, len(calls), block):
        numbers = calls[start:start + block]
        for w, way in enumerate(ways):
            if not timed:
                for i in numbers:
                    way.call(i)
                continue
            if way.settle is not None:
                way.settle()
            began = time.process_time()
            for i in numbers:
                way.call(i)
            if way.settle is not None:
                way.settle()
            spent[w] += time.process_time() - began
    return spent


def print_header(way_title: str, versus_title: str, versus_width: int) -> None:
    print(f"{'set':<12} {way_title:<20} {'CPU ms per call':>16} {versus_title:>{versus_width}}")


def print_rows(label: str, ways: Sequence[Way], spent: Sequence[float], calls: int, versus_width: int) -> None:
    """One line per way: CPU ms per call over ``calls`` calls, and (but for the first) the difference to the
    first way's."""
    base = spent[0] / calls * 1e3
    for w, (way, total) in enumerate(zip(ways, spent, strict=True)):
        per_call = total / calls * 1e3
        extra = f"{per_call - base:+.3f}" if w else ""
        print(f"{label:<12} {way.name:<20} {per_call:>16.3f} {extra:>{versus_width}}", flush=True)
