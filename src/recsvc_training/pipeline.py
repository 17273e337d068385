"""The training run: ingest a data folder, build every model, evaluate, learn the ranker, gate, publish.

:func:`recsvc_training.assemble.build_artifacts` is the pure part (cleaned :class:`TrainingData` in,
validated :class:`ArtifactSet` out), :func:`train` the whole job ``recsvc train`` runs and :func:`evaluate`
the part ``recsvc evaluate`` runs.
Each step is a function in its own module (ingest in ``input/``, the builders in ``models/``, the ranker in
``ranker/step.py``, the evaluation and the gate in ``evaluation/``); this module only orders them, times them
and fills the manifest metadata. The steps import nothing from here: the ranker and evaluation steps get the
model builder as a value (:class:`~recsvc_training.ranker.step.ModelsBefore`).
"""

from __future__ import annotations

import dataclasses
import functools
import json
import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from threadpoolctl import threadpool_limits

from recsvc.artifacts import ArtifactSet, new_version_name, publish_artifacts
from recsvc.artifacts.parts.ranker import RANKER_EXTRA
from recsvc.artifacts.stock import catalog_of, publish_stock
from recsvc.artifacts.stock_table import StockTable
from recsvc.artifacts.store import StoreRoot, open_store, run_folder
from recsvc.config import TrainingSettings
from recsvc_training.assemble import build_artifacts
from recsvc_training.evaluation.gate import decide, previous_evaluation
from recsvc_training.evaluation.holdout import evaluate_holdout
from recsvc_training.evaluation.report import format_table, write_report
from recsvc_training.evaluation.runner import EvaluationReport
from recsvc_training.evaluation.similar_items import attach_similar_items, similar_choice_for
from recsvc_training.input import columns as C
from recsvc_training.input.dataset import TrainingData
from recsvc_training.input.ingest import load_training_data
from recsvc_training.models.newcomers import attach_newcomer_answers, newcomer_answers_for
from recsvc_training.models.next_basket import TunedNextBasket, tune_next_basket
from recsvc_training.ranker.selection import selection_markdown, selection_summary
from recsvc_training.ranker.step import ModelsBefore, fit_published_ranker
from recsvc_training.ranker.stored_lists import add_stored_lists
from recsvc_training.run_summary import TrainResult, peak_rss_mb

logger = logging.getLogger(__name__)

#: Signature of the ingest entry point (``recsvc_training.input.ingest.load_training_data``).
Loader = Callable[[Path, TrainingSettings, Path], TrainingData]
#: A check run on the built set before publishing; see :func:`train`.
BeforePublish = Callable[[TrainingData, ArtifactSet], None]


def learning_models(data: TrainingData, settings: TrainingSettings,
                    next_basket: TunedNextBasket | None = None) -> ModelsBefore:
    """The models the evaluation and ranker steps build on (events before a day), built quietly, once each,
    all with the run's TIFU-KNN hyperparameters (``next_basket``; chosen here when not given)."""
    tuned = next_basket if next_basket is not None else tune_next_basket(data, settings)
    return ModelsBefore(data, dataclasses.replace(settings, progress=False),
                        functools.partial(build_artifacts, next_basket=tuned))


def evaluate(data_dir: Path, out_dir: Path, settings: TrainingSettings, *, as_of: int | None = None
             ) -> tuple[EvaluationReport, dict[str, Path]] | None:
    """What ``recsvc evaluate`` runs: ingest, the evaluation step, the report files in ``out_dir``; no publish.

    ``as_of`` (days since 1970-01-01) leaves out the events from that day on (a back-test). Quarantined rows
    go to ``<out_dir>/quarantine``. Returns the report and the written files, or None when the log is too short
    for a test window after a ranker window. The published ranker is not fitted: nothing here is published.
    """
    out_dir = Path(out_dir)
    data = load_training_data(Path(data_dir), settings, out_dir / "quarantine")
    if as_of is not None:
        data = data.before(as_of)
    with threadpool_limits(1, "blas"):  # see train
        tuned = tune_next_basket(data, settings)
        holdout = evaluate_holdout(learning_models(data, settings, tuned), settings, tuned)
    if holdout is None:
        return None
    paths = write_report(holdout.report, out_dir)
    selection = holdout.ranker_stats.get("selection")
    if selection:  # what model selection chose for the evaluated set, and why (also appended to evaluation.md)
        paths["model_selection"] = out_dir / "model_selection.json"
        paths["model_selection"].write_text(json.dumps(selection, indent=2))
        markdown = paths.get("markdown", out_dir / "evaluation.md")
        if markdown.exists():
            markdown.write_text(markdown.read_text() + selection_markdown(holdout.ranker_stats))
    return holdout.report, paths


@contextmanager
def _timed(timings: dict[str, float], name: str) -> Iterator[None]:
    started = time.perf_counter()
    yield
    timings[name] = round(time.perf_counter() - started, 3)
    logger.info("step %s done in %.2fs", name, timings[name])


def train(data_dir: Path, artifact_root: StoreRoot, settings: TrainingSettings, *,
          before_publish: BeforePublish | None = None, loader: Loader | None = None, force: bool = False,
          echo: Callable[[str], None] | None = None) -> TrainResult:
    """Ingest ``data_dir``, build every model, evaluate, learn the ranker, gate, publish under ``artifact_root``.

    The steps, in order: ingest (:mod:`recsvc_training.input.ingest`), the model builds
    (:func:`build_artifacts`), the evaluation on a held-out window (:mod:`recsvc_training.evaluation.holdout`,
    when ``settings.evaluate``), the published ranker (:mod:`recsvc_training.ranker.step`, when
    ``settings.learn_ranker``), the quality gate over the evaluation (:mod:`recsvc_training.evaluation.gate`),
    ``before_publish``, publish.

    Parameters
    ----------
    data_dir
        Folder of input tables (:mod:`recsvc_training.input.columns`).
    artifact_root
        Root holding ``CURRENT`` and ``versions/``, a folder or a URL (``s3://bucket/prefix``); quarantined
        rows of this run go to ``<artifact_root>/quarantine/<version>/`` (on object storage: written locally,
        uploaded there after ingest).
    settings
        Training settings; ``keep_versions`` bounds the versions kept after publishing.
    before_publish
        An extra check on the finished set (after the gate), called with the cleaned data and the validated
        set just before publishing. It may add to ``artifacts.evaluation`` (it lands in the manifest and the
        summary); it stops the run by raising, and then nothing is published and ``CURRENT`` keeps pointing
        at the previous version.
    loader
        Replaces ingest (tests); defaults to :func:`recsvc_training.input.ingest.load_training_data`.
    force
        Publish even when the quality gate refuses; the manifest records ``forced``.
    echo
        Receives the evaluation table for printing (the command line passes ``print``).

    Raises
    ------
    recsvc_training.input.ingest.InputError
        The data folder is unusable (from ingest).
    recsvc_training.evaluation.gate.QualityGateError
        The gate refused the set (and ``force`` is off).
    recsvc.artifacts.ArtifactError
        Publishing failed; the previous version stays current.
    """
    data_dir, store = Path(data_dir), open_store(artifact_root)
    run_started = time.perf_counter()
    version = new_version_name()
    timings: dict[str, float] = {}

    with _timed(timings, "ingest"), run_folder(store, f"quarantine/{version}") as (quarantine_dir, quarantined_to):
        data = (loader or load_training_data)(data_dir, settings, quarantine_dir)
    logger.info("ingest done in %.2fs: %d events, %d items", timings["ingest"], len(data.events),
                len(data.items))

    # TIFU-KNN's hyperparameters, once for the run (every build below reuses them)
    with _timed(timings, "next_basket_tuning"), threadpool_limits(1, "blas"):
        tuned = tune_next_basket(data, settings)
    artifacts = build_artifacts(data, settings, tuned)
    timings.update(artifacts.extra.get("build_seconds", {}))

    # Everything below runs before anything becomes visible to a server: publishing is atomic, so a refused
    # or crashed run leaves the served version untouched.
    models = learning_models(data, settings, tuned)
    holdout = None
    # One BLAS thread: the per-customer scoring loops do small products, which OpenBLAS slows down when it
    # spreads them over threads on a busy machine (LightGBM keeps its own threads).
    with threadpool_limits(1, "blas"):
        if settings.evaluate:
            with _timed(timings, "evaluation"):
                holdout = evaluate_holdout(models, settings, tuned)
        if settings.learn_ranker:
            with _timed(timings, "ranker"):
                fit_published_ranker(artifacts, models, settings)
    with _timed(timings, "newcomer_answers"):  # unknown and cold customers' answers, chosen on validation
        answers = newcomer_answers_for(models.end_day + 1, data, models, settings.eval_test_days, models.first_day)
        if answers is not None:
            attach_newcomer_answers(artifacts, data, answers)
    with _timed(timings, "similar_items"):  # the SimilarItems method, chosen on the last eval_test_days
        similar = similar_choice_for(models.end_day + 1, data, models.for_similar_items, settings.eval_test_days,
                                     models.first_day)
        if similar is not None:
            attach_similar_items(artifacts, similar)
    if holdout is not None:
        artifacts.evaluation = dict(holdout.summary)
        # what model selection chose for the published set (the evaluated set's choice is in the summary)
        served = selection_summary(artifacts.extra.get(RANKER_EXTRA, {}))
        if served:
            artifacts.evaluation.setdefault("model_selection", {})["served"] = served
        artifacts.extra["evaluation_ranker"] = holdout.ranker_stats
        artifacts.attachments.update(holdout.files())
        if echo is not None:
            echo(format_table(holdout.report))
        decision = decide(artifacts.evaluation, previous_evaluation(store), settings, force=force)
        artifacts.evaluation["gate"] = decision.as_dict()
        decision.enforce()
        artifacts.forced = decision.forced
    if settings.stored_lists:  # the nightly ranking, on the set as it will be published
        with _timed(timings, "stored_lists"), threadpool_limits(1, "blas"):
            add_stored_lists(artifacts, settings)
    artifacts.validate()
    if before_publish is not None:
        with _timed(timings, "before_publish"):
            before_publish(data, artifacts)
        artifacts.validate()  # the check must not leave a broken set behind

    started = time.perf_counter()
    artifacts.version = version
    path = publish_artifacts(artifacts, store, keep=settings.keep_versions)
    if len(data.stock):  # the data folder's stock, until `recsvc stock` publishes a newer file
        stock, _ = StockTable.from_rows(data.stock[C.STORE_ID], data.stock[C.ITEM_ID],
                                        data.stock[C.QUANTITY_ON_HAND])
        publish_stock(store, stock, source=f"training run {version} ({data_dir})",
                      keep=settings.keep_versions, catalog=catalog_of(artifacts))
    timings["publish"] = round(time.perf_counter() - started, 3)
    timings["total"] = round(time.perf_counter() - run_started, 3)

    result = TrainResult(
        version=version, path=path, artifact_root=store.location, quarantine_dir=quarantined_to,
        timings=timings, peak_rss_mb=round(peak_rss_mb(), 1), report=data.report,
        row_counts=dict(artifacts.row_counts), evaluation=dict(artifacts.evaluation),
    )
    logger.info("training run %s finished in %.1fs", version, timings["total"])
    return result
