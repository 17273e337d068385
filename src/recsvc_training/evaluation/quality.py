"""Evaluation inside every training run, the learned blend, and the quality gate before publishing.

The protocol (time split, full ranking, baselines on the same split) is the evaluation package's; this module
decides *what* is evaluated: the server's own ranking code (:class:`RecommendationEngine`) on models built
from the events before the test window, with a ranker learned on the window before that, so no number here
has seen its test data. The published set gets a ranker learned on the most recent window instead.

Windows, with L = ``ranker_label_days`` and T = ``eval_test_days``, for a log ending on day E::

    ... models for evaluation's ranker | ranker labels (L) | test window (T) = E-T+1 .. E
    ... models under evaluation ................................| (cut-off)
    ... published models (everything) ...........................................| E
"""

from __future__ import annotations

import dataclasses
import logging
import math
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from threadpoolctl import threadpool_limits

from recsvc.artifacts import ArtifactError, ArtifactSet, current_version, read_manifest
from recsvc.config import ServerSettings, TrainingSettings
from recsvc.ranking.model import LoadedModel
from recsvc.ranking.recommender import BundleQuery, RecommendationEngine
from recsvc.ranking.trees import TreeEnsemble
from recsvc_training.evaluation import (
    Completer,
    EvalIndex,
    EvaluationReport,
    Recommender,
    evaluate,
    fit_baselines,
    fit_completers,
    format_table,
    render_markdown,
)
from recsvc_training.evaluation.report import write_report
from recsvc_training.input import columns as C
from recsvc_training.input.dataset import TrainingData
from recsvc_training.ranker.learned_blend import MIN_WINDOW_HISTORY_DAYS, fit_learned_ranker, label_window_starts

logger = logging.getLogger(__name__)

DEFAULT_MODEL = "recsvc"
GATE_METRIC = "ndcg@10"
GATE_BASELINE = "buy_it_again"


class QualityGateError(RuntimeError):
    """The new set is worse than the gate allows; nothing was published. The message says why."""


class EngineRecommender:
    """The server's default Recommend as an evaluation model: maps evaluation rows to model rows and back."""

    name = DEFAULT_MODEL
    serves_new_customers = True

    def __init__(self, engine: RecommendationEngine, index: EvalIndex) -> None:
        self.engine = engine
        model = engine.model
        self._customer_rows = model.customers.lookup(index.customer_ids)
        self._to_eval = index.item_rows(model.items.ids)

    def recommend(self, customer_rows: np.ndarray, channels: Sequence[str], k: int) -> np.ndarray:
        out = np.full((len(customer_rows), k), -1, dtype=np.int64)
        model = self.engine.model
        for i, (row, channel) in enumerate(zip(customer_rows, channels, strict=True)):
            items = self.engine.top_item_rows(int(self._customer_rows[row]), model.channel_row(str(channel)), k)
            mapped = self._to_eval[items]
            mapped = mapped[mapped >= 0][:k]
            out[i, : mapped.size] = mapped
        return out


class EngineCompleter:
    """The server's RecommendBundle completions as a cart completer."""

    name = DEFAULT_MODEL

    def __init__(self, engine: RecommendationEngine, index: EvalIndex) -> None:
        self.engine = engine
        self._ids = index.item_ids
        self._to_eval = index.item_rows(engine.model.items.ids)
        self._limit = ServerSettings().max_context_items

    def complete(self, basket_item_rows: Sequence[np.ndarray], k: int) -> np.ndarray:
        out = np.full((len(basket_item_rows), k), -1, dtype=np.int64)
        model = self.engine.model
        for i, basket in enumerate(basket_item_rows):
            # A caller may send at most max_context_items ids (wholesale baskets in Online Retail hold
            # hundreds); the evaluation sends what a real caller could.
            ids = [str(x) for x in self._ids[np.asarray(basket, dtype=np.int64)][: self._limit]]
            result = self.engine.bundle(BundleQuery(basket_item_ids=tuple(ids), num_items=k))
            rows = self._to_eval[model.items.lookup([s.item_id for s in result.items])]
            rows = rows[rows >= 0][:k]
            out[i, : rows.size] = rows
        return out


def _attach_ranker(artifacts: ArtifactSet, ranker: TreeEnsemble | None, stats: dict[str, Any]) -> None:
    if ranker is not None:
        artifacts.arrays.update(ranker.to_arrays())
    artifacts.extra["ranker"] = dict(stats)


def _summary(report: EvaluationReport) -> dict[str, Any]:
    """The manifest's ``evaluation`` block: the default model's headline numbers, baselines, ratios, cart."""
    def clean(values: dict[str, float]) -> dict[str, float | None]:
        return {k: (round(v, 6) if isinstance(v, float) and math.isfinite(v) else None) for k, v in values.items()}

    at = f"@{report.k}"
    headline: tuple[str, ...] = ("ndcg@10", "recall@10", "precision@10", "hit_rate@10", "map@10", "coverage@10")
    if report.k != 10:
        headline += tuple(f"{m}{at}" for m in ("ndcg", "recall"))
    default = report.overall.get(DEFAULT_MODEL, {})
    return {
        "split": {"cutoff_date": report.cutoff_date, "test_days": report.test_days,
                  "test_customers": report.n_test_customers, "new_customers": report.n_new_customers,
                  "test_events": report.n_test_events},
        "default": clean({m: default.get(m, math.nan) for m in headline}),
        "baselines": {name: clean({m: report.overall[name].get(m, math.nan) for m in ("ndcg@10", "recall@10")})
                      for name in report.baselines},
        "ratios": {m: clean({"ratio": r["ratio"], "baseline_value": r["baseline_value"]}) | {"baseline": r["baseline"]}
                   for m, r in report.ratios_to_best_baseline(("ndcg@10", "recall@10")).items()},
        "new_customers": clean({m: report.new_customers.get(DEFAULT_MODEL, {}).get(m, math.nan)
                                for m in ("ndcg@10", "recall@10")}),
        "cart_completion": {name: clean({k: v for k, v in values.items() if k != "seconds"})
                            for name, values in report.cart_completion.items()},
    }


def gate_failures(summary: dict[str, Any], previous: dict[str, Any] | None,
                  settings: TrainingSettings) -> list[str]:
    """Why the gate refuses this set (empty: it passes).

    Refuses when the default ranking's NDCG@10 is below ``gate_min_ratio_to_buy_it_again`` x buy-it-again on
    the set's own split, or more than ``gate_max_drop`` (relative) below the NDCG@10 recorded by the version it
    replaces.
    """
    failures = []
    value = summary.get("default", {}).get(GATE_METRIC)
    if value is None:
        return [f"the evaluation produced no {GATE_METRIC} for the default ranking"]
    baseline = summary.get("baselines", {}).get(GATE_BASELINE, {}).get(GATE_METRIC)
    if baseline is not None and value < settings.gate_min_ratio_to_buy_it_again * baseline:
        failures.append(f"{GATE_METRIC} {value:.4f} is below {settings.gate_min_ratio_to_buy_it_again:g} x the "
                        f"'{GATE_BASELINE}' baseline ({baseline:.4f}) on this run's own split")
    before = ((previous or {}).get("default") or {}).get(GATE_METRIC)
    if before is not None and value < before * (1.0 - settings.gate_max_drop):
        failures.append(f"{GATE_METRIC} {value:.4f} is more than {settings.gate_max_drop:.0%} below the "
                        f"current version's {before:.4f}")
    return failures


def previous_evaluation(artifact_root: Path) -> dict[str, Any] | None:
    """The ``evaluation`` block of the version now current under ``artifact_root`` (None if none/unreadable)."""
    version = current_version(artifact_root)
    if version is None:
        return None
    try:
        evaluation: dict[str, Any] = read_manifest(Path(artifact_root) / "versions" / version).get("evaluation", {})
    except ArtifactError as exc:
        logger.warning("cannot read the current version's evaluation (%s); gating on this run alone", exc)
        return None
    return evaluation or None


def evaluate_and_learn(data: TrainingData, artifacts: ArtifactSet, settings: TrainingSettings
                       ) -> EvaluationReport | None:
    """Evaluate on a time split and attach the learned ranker to ``artifacts``; returns the report (None when
    evaluation is off or the log is too short for a split)."""
    from recsvc_training.evaluation import time_split
    from recsvc_training.pipeline import build_artifacts  # pipeline imports this module

    quiet = dataclasses.replace(settings, progress=False)
    end_day = int(data.events[C.DAY].max())
    first_day = int(data.events[C.DAY].min())
    label_days = settings.ranker_label_days
    models: dict[int, LoadedModel] = {}

    def model_before(day: int) -> LoadedModel:
        """Models built from the events before ``day``, shared by the windows that need them."""
        if day not in models:
            models[day] = LoadedModel(build_artifacts(data.before(day), quiet))
        return models[day]

    def windows_ending(end: int) -> list[tuple[LoadedModel, int]]:
        """Label windows ending at ``end`` (exclusive) with enough history before them, newest first."""
        return [(model_before(start), start) for start in label_window_starts(end, first_day, settings)]

    report = None
    cutoff = end_day + 1 - settings.eval_test_days
    if settings.evaluate and cutoff - label_days - first_day >= MIN_WINDOW_HISTORY_DAYS:
        started = time.perf_counter()
        split = time_split(data.events, settings.eval_test_days, cutoff_day=cutoff,
                           catalog_item_ids=data.items[C.ITEM_ID].to_numpy())
        eval_ranker, eval_stats = (fit_learned_ranker(windows_ending(cutoff), data.events, settings)
                                   if settings.learn_ranker else (None, {}))
        test_artifacts = build_artifacts(data.before(cutoff), quiet)
        _attach_ranker(test_artifacts, eval_ranker, eval_stats)
        test_model = LoadedModel(test_artifacts)
        models[cutoff] = test_model  # without the ranker arrays the same models; features ignore them
        engine = RecommendationEngine(test_model)
        recommenders: dict[str, Recommender] = {**fit_baselines(split, settings, customers=data.customers),
                                                DEFAULT_MODEL: EngineRecommender(engine, split.index)}
        completers: dict[str, Completer] = {**fit_completers(split),
                                            DEFAULT_MODEL: EngineCompleter(engine, split.index)}
        report = evaluate(split, recommenders, completers, k=settings.eval_k, catalog_size=len(data.items),
                          default_model=DEFAULT_MODEL)
        artifacts.evaluation = _summary(report)
        artifacts.evaluation["seconds"] = round(time.perf_counter() - started, 2)
        artifacts.extra["evaluation_ranker"] = {k: v for k, v in eval_stats.items() if k != "feature_gain"}
    elif settings.evaluate:
        logger.warning("log spans %d days: too short for a %d-day test window after a %d-day ranker window; "
                       "publishing without evaluation", end_day - first_day + 1, settings.eval_test_days,
                       label_days)
    if settings.learn_ranker:
        # The published ranker learns from the most recent windows.
        windows = windows_ending(end_day + 1)
        if windows:
            ranker, stats = fit_learned_ranker(windows, data.events, settings)
            _attach_ranker(artifacts, ranker, stats)
    return report


def make_quality_hook(artifact_root: Path, settings: TrainingSettings, force: bool = False,
                      echo: Callable[[str], None] | None = None) -> Callable[[TrainingData, ArtifactSet], None]:
    """The ``before_publish`` hook of a training run: evaluate, learn the blend, write the report into the
    set, and apply the gate (``force`` publishes anyway and records ``forced`` in the manifest)."""

    def hook(data: TrainingData, artifacts: ArtifactSet) -> None:
        # One BLAS thread: the per-customer scoring loops do small products, which OpenBLAS slows down when
        # it spreads them over threads on a busy machine (LightGBM keeps its own threads).
        with threadpool_limits(1, "blas"):
            report = evaluate_and_learn(data, artifacts, settings)
        if report is None:
            return
        artifacts.attachments.update(_report_files(report))
        if echo is not None:
            echo(format_table(report))
        failures = gate_failures(artifacts.evaluation, previous_evaluation(artifact_root), settings)
        artifacts.evaluation["gate"] = {"passed": not failures, "failures": failures,
                                        "forced": bool(force and failures)}
        if failures and not force:
            raise QualityGateError("quality gate refused the new model (nothing published; the current version "
                                   "keeps serving): " + "; ".join(failures) + ". Use --force to publish anyway.")
        if failures:
            logger.warning("quality gate failed but --force was given: %s", "; ".join(failures))
            artifacts.forced = True

    return hook


def _report_files(report: EvaluationReport) -> dict[str, bytes]:
    """evaluation.json, evaluation.md and the PNG charts, as bytes for the artifact set's attachments."""
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        paths = write_report(report, tmp)
        files = {Path(p).name: Path(p).read_bytes() for p in paths.values()}
    files.setdefault("evaluation.md", render_markdown(report).encode())
    return files
