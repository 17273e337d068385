"""The training run: ingest a data folder, build every model, evaluate, learn the ranker, gate, publish.

:func:`build_artifacts` is the pure part (cleaned :class:`TrainingData` in, validated :class:`ArtifactSet`
out), :func:`train` the whole job ``recsvc train`` runs and :func:`evaluate` the part ``recsvc evaluate`` runs.
Each step is a function in its own module (ingest in ``input/``, the builders in ``models/``, the ranker in
``ranker/step.py``, the evaluation and the gate in ``evaluation/``); this module only orders them, times them
and fills the manifest metadata. The steps import nothing from here: the ranker and evaluation steps get the
model builder as a value (:class:`~recsvc_training.ranker.step.ModelsBefore`).
"""

from __future__ import annotations

import dataclasses
import logging
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
from threadpoolctl import threadpool_limits
from tqdm import tqdm

from recsvc.artifacts import ArtifactSet, fingerprint_files, new_version_name, publish_artifacts
from recsvc.config import TrainingSettings
from recsvc.ranking.foldin import EXTRA_KEY as FOLDIN_EXTRA_KEY
from recsvc.ranking.foldin import FoldInParams
from recsvc.stock import StockTable, publish_stock
from recsvc_training.evaluation.gate import decide, previous_evaluation
from recsvc_training.evaluation.holdout import evaluate_holdout
from recsvc_training.evaluation.report import format_table, write_report
from recsvc_training.evaluation.runner import EvaluationReport
from recsvc_training.input import columns as C
from recsvc_training.input.catalog import build_catalog
from recsvc_training.input.dataset import IngestReport, TrainingData
from recsvc_training.input.id_maps import build_id_maps, event_rows
from recsvc_training.input.ingest import load_training_data
from recsvc_training.models.als import fit_als
from recsvc_training.models.ann import build_ann_index, build_cosine_index
from recsvc_training.models.coldstart import build_coldstart
from recsvc_training.models.copurchase import build_copurchase, count_baskets
from recsvc_training.models.interactions import QUANTITY_CAP, build_confidence
from recsvc_training.models.popularity import build_popularity
from recsvc_training.models.repurchase import build_repurchase
from recsvc_training.models.rfm import RFM_SEGMENTS, build_customer_summary
from recsvc_training.ranker.step import ModelsBefore, fit_published_ranker
from recsvc_training.run_summary import TrainResult, peak_rss_mb

logger = logging.getLogger(__name__)

#: Build steps in run order (the keys of the per-step timings, after ``ingest``).
BUILD_STEPS: tuple[str, ...] = ("id_maps", "catalog", "interactions", "als", "ann", "popularity", "repurchase",
                                "copurchase", "customers", "coldstart")

#: Signature of the ingest entry point (``recsvc_training.input.ingest.load_training_data``).
Loader = Callable[[Path, TrainingSettings, Path], TrainingData]
#: A check run on the built set before publishing; see :func:`train`.
BeforePublish = Callable[[TrainingData, ArtifactSet], None]


class _StepClock:
    """Times named steps, logs each and advances one progress bar (shown only on a terminal)."""

    def __init__(self, steps: tuple[str, ...], show_progress: bool) -> None:
        self.timings: dict[str, float] = {}
        self._bar = tqdm(total=len(steps), desc="training", unit="step", disable=not show_progress,
                         leave=False)

    @contextmanager
    def step(self, name: str) -> Iterator[None]:
        self._bar.set_description(name)
        started = time.perf_counter()
        yield
        seconds = time.perf_counter() - started
        self.timings[name] = round(seconds, 3)
        logger.info("step %s done in %.2fs", name, seconds)
        self._bar.update(1)

    def close(self) -> None:
        self._bar.close()


def _show_progress(settings: TrainingSettings) -> bool:
    return bool(settings.progress) and sys.stderr.isatty()


def settings_params(settings: TrainingSettings) -> dict[str, Any]:
    """The settings as a JSON-ready dict for the manifest's ``params`` (mappings become plain dicts)."""
    params: dict[str, Any] = {}
    for f in dataclasses.fields(settings):
        value = getattr(settings, f.name)
        params[f.name] = dict(value) if isinstance(value, Mapping) else value
    return params


def build_artifacts(data: TrainingData, settings: TrainingSettings) -> ArtifactSet:
    """Build every model array from cleaned training data.

    Parameters
    ----------
    data
        Output of ingest: events resolved to customers, with ``day`` and ``basket_id`` (see
        :class:`~recsvc_training.input.dataset.TrainingData`).
    settings
        Every knob the builders use; all of them are recorded in ``params``.

    Returns
    -------
    ArtifactSet
        Validated, unpublished (empty ``version``). ``data_end_day`` is the last event day, the reference
        of every recency decay; ``extra["build_seconds"]`` holds the per-step timings.

    Raises
    ------
    ValueError
        When there are no events to learn from.
    """
    if data.events.empty:
        raise ValueError("no events to train on: the events table is empty after cleaning")
    show_progress = _show_progress(settings)
    clock = _StepClock(BUILD_STEPS, show_progress)
    end_day = int(data.events[C.DAY].max())
    arrays: dict[str, np.ndarray] = {}
    try:
        with clock.step("id_maps"):
            maps = build_id_maps(data)
            events = event_rows(data, maps)
            arrays.update(item_ids=maps.item_ids, customer_ids=maps.customer_ids, store_ids=maps.store_ids,
                          alias_ids=maps.alias_ids, alias_customer=maps.alias_customer)
        with clock.step("catalog"):
            arrays.update(build_catalog(data.items, maps))
        with clock.step("interactions"):
            confidence = build_confidence(events, maps, settings, end_day)
        with clock.step("als"):
            arrays["als_user_factors"], arrays["als_item_factors"] = fit_als(confidence, settings,
                                                                            show_progress=show_progress)
        with clock.step("ann"):  # large catalogs only (ann_min_items); ann_meta says what was decided
            ann_arrays, ann_meta = build_ann_index(arrays["als_user_factors"], arrays["als_item_factors"],
                                                   settings)
            arrays.update(ann_arrays)
            cosine_arrays, cosine_meta = build_cosine_index(arrays["als_item_factors"], settings)
            arrays.update(cosine_arrays)
        with clock.step("popularity"):
            arrays.update(build_popularity(events, maps, settings, end_day))
        with clock.step("repurchase"):
            arrays.update(build_repurchase(events, maps, end_day, settings.recency_half_life_days))
        with clock.step("copurchase"):
            arrays.update(build_copurchase(events, maps, settings))
        with clock.step("customers"):  # RFM, net spend and channels, for the customer profile
            arrays.update(build_customer_summary(data, events, maps, arrays["item_prices"], end_day))
        with clock.step("coldstart"):  # LightFM on attributes, for customers with little or no history
            coldstart_arrays, coldstart_meta = build_coldstart(data, events, maps, arrays, settings)
            arrays.update(coldstart_arrays)
    finally:
        clock.close()

    report = data.report
    row_counts = {
        "events": len(events),
        **{f"events_{name}": int(events.mask(name).sum()) for name in C.EVENT_TYPES},
        "customers": maps.n_customers,
        "customers_with_interactions": int((np.diff(confidence.indptr) > 0).sum()),
        "customers_with_history": int((np.diff(arrays["hist_indptr"]) > 0).sum()),
        "items": maps.n_items,
        "aliases": int(maps.alias_ids.size),
        "stores": maps.n_stores,
        "channels": maps.n_channels,
        "baskets": count_baskets(events),
        "history_pairs": int(arrays["hist_items"].size),
        "copurchase_pairs": int(arrays["copurchase_items"].size),
        "quarantined": report.total_quarantined(),
        "identity_conflicts": report.identity_conflicts,
        "items_added_from_events": report.items_added_from_events,
        "negative_quantities_as_returns": report.negative_quantities_as_returns,
    }
    artifacts = ArtifactSet(
        arrays=arrays,
        channels=list(maps.channels),
        data_end_day=end_day,
        input_fingerprint=_fingerprint(report),
        row_counts={k: int(v) for k, v in row_counts.items()},
        params=settings_params(settings),
        extra={"build_seconds": dict(clock.timings), "quantity_cap": QUANTITY_CAP, "ann": ann_meta,
               "ann_cosine": cosine_meta,
               "rfm_segments": list(RFM_SEGMENTS), "coldstart": coldstart_meta,
               FOLDIN_EXTRA_KEY: FoldInParams.from_settings(settings).as_dict(),
               "hist_decayed_half_life_days": settings.recency_half_life_days},
    )
    artifacts.validate()
    logger.info("built artifact set: %s", ", ".join(f"{k} {v}" for k, v in artifacts.row_counts.items()))
    return artifacts


def _fingerprint(report: IngestReport) -> str:
    files = [Path(p) for p in report.input_files]
    if not files or not all(p.is_file() for p in files):
        return ""
    return fingerprint_files(files)


def learning_models(data: TrainingData, settings: TrainingSettings) -> ModelsBefore:
    """The models the evaluation and ranker steps build on (events before a day), built quietly, once each."""
    return ModelsBefore(data, dataclasses.replace(settings, progress=False), build_artifacts)


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
        holdout = evaluate_holdout(learning_models(data, settings), settings)
    if holdout is None:
        return None
    return holdout.report, write_report(holdout.report, out_dir)


@contextmanager
def _timed(timings: dict[str, float], name: str) -> Iterator[None]:
    started = time.perf_counter()
    yield
    timings[name] = round(time.perf_counter() - started, 3)


def train(data_dir: Path, artifact_root: Path, settings: TrainingSettings, *,
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
        Root holding ``CURRENT`` and ``versions/``; quarantined rows of this run go to
        ``<artifact_root>/quarantine/<version>/``.
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
    data_dir, artifact_root = Path(data_dir), Path(artifact_root)
    run_started = time.perf_counter()
    version = new_version_name()
    quarantine_dir = artifact_root / "quarantine" / version
    timings: dict[str, float] = {}

    with _timed(timings, "ingest"):
        data = (loader or load_training_data)(data_dir, settings, quarantine_dir)
    logger.info("ingest done in %.2fs: %d events, %d items", timings["ingest"], len(data.events),
                len(data.items))

    artifacts = build_artifacts(data, settings)
    timings.update(artifacts.extra.get("build_seconds", {}))

    # Everything below runs before anything becomes visible to a server: publishing is atomic, so a refused
    # or crashed run leaves the served version untouched.
    models = learning_models(data, settings)
    holdout = None
    # One BLAS thread: the per-customer scoring loops do small products, which OpenBLAS slows down when it
    # spreads them over threads on a busy machine (LightGBM keeps its own threads).
    with threadpool_limits(1, "blas"):
        if settings.evaluate:
            with _timed(timings, "evaluation"):
                holdout = evaluate_holdout(models, settings)
        if settings.learn_ranker:
            with _timed(timings, "ranker"):
                fit_published_ranker(artifacts, models, settings)
    if holdout is not None:
        artifacts.evaluation = dict(holdout.summary)
        artifacts.extra["evaluation_ranker"] = holdout.ranker_stats
        artifacts.attachments.update(holdout.files())
        if echo is not None:
            echo(format_table(holdout.report))
        decision = decide(artifacts.evaluation, previous_evaluation(artifact_root), settings, force=force)
        artifacts.evaluation["gate"] = decision.as_dict()
        decision.enforce()
        artifacts.forced = decision.forced
    artifacts.validate()
    if before_publish is not None:
        with _timed(timings, "before_publish"):
            before_publish(data, artifacts)
        artifacts.validate()  # the check must not leave a broken set behind

    started = time.perf_counter()
    artifacts.version = version
    path = publish_artifacts(artifacts, artifact_root, keep=settings.keep_versions)
    if len(data.stock):  # the data folder's stock, until `recsvc stock` publishes a newer file
        stock, _ = StockTable.from_rows(data.stock[C.STORE_ID], data.stock[C.ITEM_ID],
                                        data.stock[C.QUANTITY_ON_HAND])
        publish_stock(artifact_root, stock, source=f"training run {version} ({data_dir})",
                      keep=settings.keep_versions)
    timings["publish"] = round(time.perf_counter() - started, 3)
    timings["total"] = round(time.perf_counter() - run_started, 3)

    result = TrainResult(
        version=version, path=path, artifact_root=artifact_root, quarantine_dir=quarantine_dir,
        timings=timings, peak_rss_mb=round(peak_rss_mb(), 1), report=data.report,
        row_counts=dict(artifacts.row_counts), evaluation=dict(artifacts.evaluation),
    )
    logger.info("training run %s finished in %.1fs", version, timings["total"])
    return result
