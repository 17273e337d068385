"""The trainer against a bare ``implicit`` ALS fit on the same matrix, in one run.

Times (1) ``recsvc train`` end to end on an imported data folder with evaluation and the learned blend off
(ingest, every model, publish), (2) the same with evaluation and the learned blend on, and (3) a bare
``implicit`` ALS fit with the same factors/iterations on the very confidence matrix the trainer builds, and
prints the ratios, so the number holds on a noisy shared machine.

Run (Ta Feng, after ``recsvc import tafeng --src ../shared/data/tafeng.csv.gz --out /tmp/tafeng``)::

    python -m benchmarks.trainer_vs_bare_als /tmp/tafeng
"""

from __future__ import annotations

import dataclasses
import resource
import sys
import tempfile
import time
from pathlib import Path

from threadpoolctl import threadpool_limits

from recsvc.config import TrainingSettings
from recsvc_training.input import columns as C
from recsvc_training.input.id_maps import build_id_maps, event_rows
from recsvc_training.input.ingest import load_training_data
from recsvc_training.models.interactions import build_confidence
from recsvc_training.pipeline import train


def bare_als_fit(data_dir: Path, settings: TrainingSettings) -> tuple[float, dict[str, int]]:
    """A plain implicit fit on the trainer's confidence matrix (matrix building not timed): its seconds and the
    matrix's shape (customers, items, nonzeros, events)."""
    from implicit.als import AlternatingLeastSquares

    with tempfile.TemporaryDirectory() as tmp:
        data = load_training_data(data_dir, settings, Path(tmp))
    maps = build_id_maps(data)
    events = event_rows(data, maps)
    matrix = build_confidence(events, maps, settings, int(data.events[C.DAY].max()))
    model = AlternatingLeastSquares(factors=settings.als_factors, regularization=settings.als_regularization,
                                    iterations=settings.als_iterations, random_state=settings.als_random_state)
    with threadpool_limits(1, "blas"):
        started = time.perf_counter()
        model.fit(matrix, show_progress=False)
        seconds = time.perf_counter() - started
    shape = {"customers": int(matrix.shape[0]), "items": int(matrix.shape[1]), "nonzeros": int(matrix.nnz),
             "events": len(events)}
    return seconds, shape


def bare_als_seconds(data_dir: Path, settings: TrainingSettings) -> float:
    """The seconds of :func:`bare_als_fit`."""
    return bare_als_fit(data_dir, settings)[0]


def main() -> None:
    data_dir = Path(sys.argv[1])
    base = TrainingSettings(progress=False)
    rows = []
    for name, settings in (("train (models only)", dataclasses.replace(base, evaluate=False, learn_ranker=False)),
                           ("train (+ evaluation, learned blend)", base)):
        with tempfile.TemporaryDirectory() as root:
            started = time.perf_counter()
            result = train(data_dir, Path(root), settings, force=True)
            rows.append((name, time.perf_counter() - started, result.timings.get("als", float("nan"))))
    bare = bare_als_seconds(data_dir, base)
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"data: {data_dir}")
    print(f"bare implicit ALS fit ({base.als_factors} factors, {base.als_iterations} iterations): {bare:.2f} s")
    for name, seconds, als in rows:
        print(f"{name}: {seconds:.1f} s wall ({seconds / bare:.1f}x the bare fit; its own ALS step {als:.2f} s)")
    print(f"peak RSS of this process: {peak_mb:.0f} MiB")


if __name__ == "__main__":
    main()
