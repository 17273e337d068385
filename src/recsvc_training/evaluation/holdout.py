"""The evaluation step of a training run: score the server's own ranking on a held-out test window.

The protocol (time split, full ranking, baselines on the same split) is the evaluation package's; this module
decides *what* is evaluated: the server's own ranking code (:class:`RecommendationEngine`) on models built
from the events before the test window, with a ranker learned on the window before that, so no number here
has seen its test data. (The published set gets a ranker learned on the most recent windows instead: the
ranker step, :mod:`recsvc_training.ranker.step`.)

Windows, with L = ``ranker_label_days`` and T = ``eval_test_days``, for a log ending on day E::

    ... models for evaluation's ranker | ranker labels (L) | test window (T) = E-T+1 .. E
    ... models under evaluation ................................| (cut-off)
    ... published models (everything) ...........................................| E
"""

from __future__ import annotations

import logging
import math
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from recsvc.config import ServerSettings, TrainingSettings
from recsvc.ranking import BundleQuery, RecommendationEngine
from recsvc.ranking.model import LoadedModel
from recsvc_training.evaluation.baseline_set import fit_baselines
from recsvc_training.evaluation.cart_completion import fit_completers
from recsvc_training.evaluation.metrics import coverage, ranking_metrics
from recsvc_training.evaluation.protocols import Completer, Recommender
from recsvc_training.evaluation.report import render_markdown, write_report
from recsvc_training.evaluation.runner import EvaluationReport, evaluate
from recsvc_training.evaluation.similar_items import attach_similar_items, similar_choice_for, window_summary
from recsvc_training.evaluation.split import EvalIndex, TimeSplit, time_split
from recsvc_training.input import columns as C
from recsvc_training.models.newcomers import attach_newcomer_answers, newcomer_answers_for
from recsvc_training.models.next_basket import TunedNextBasket
from recsvc_training.ranker.learned_blend import MIN_WINDOW_HISTORY_DAYS, fit_learned_ranker
from recsvc_training.ranker.selection import selection_markdown, selection_summary
from recsvc_training.ranker.step import ModelsBefore, attach_ranker

logger = logging.getLogger(__name__)

#: The name of the server's default ranking in every report (the other models are baselines).
DEFAULT_MODEL = "recsvc"


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


class UnknownCustomerRecommender(EngineRecommender):
    """The answer Recommend gives a customer id the model does not know (policy ``popular``), for any row."""

    name = f"{DEFAULT_MODEL} (unknown customer)"

    def __init__(self, engine: RecommendationEngine, index: EvalIndex) -> None:
        super().__init__(engine, index)
        self._customer_rows = np.full(len(index.customer_ids), -1, dtype=np.int64)


def unknown_customer_metrics(engine: RecommendationEngine, split: TimeSplit, report: EvaluationReport
                             ) -> dict[str, float]:
    """Metrics at 10 (and ``report.k``) of the unknown-customer answer on the new customers of ``split``; also
    put in ``report.new_customers`` under :class:`UnknownCustomerRecommender`'s name (empty: no new customer)."""
    truth = split.new_customer_truth
    if not len(truth):
        return {}
    recs = UnknownCustomerRecommender(engine, split.index).recommend(truth.customer_rows, list(truth.channels),
                                                                     max(report.ks))
    metrics: dict[str, float] = {}
    for k in report.ks:
        metrics.update(ranking_metrics(recs, truth.items, k))
        metrics[f"coverage@{k}"] = coverage(recs, report.catalog_size, k)
    report.new_customers[UnknownCustomerRecommender.name] = metrics
    return {m: round(metrics[m], 6) for m in ("ndcg@10", "recall@10", "hit_rate@10")}


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


@dataclass(frozen=True)
class HoldoutEvaluation:
    """One run's evaluation: the full report, the manifest's ``evaluation`` block, the evaluation ranker's
    training statistics (``extra["evaluation_ranker"]``)."""

    report: EvaluationReport
    summary: dict[str, Any]
    ranker_stats: dict[str, Any]

    def files(self) -> dict[str, bytes]:
        """evaluation.json, evaluation.md and the PNG charts, as bytes for the artifact set's attachments."""
        with tempfile.TemporaryDirectory() as tmp:
            paths = write_report(self.report, tmp)
            files = {Path(p).name: Path(p).read_bytes() for p in paths.values()}
        files.setdefault("evaluation.md", render_markdown(self.report).encode())
        files["evaluation.md"] += selection_markdown(self.ranker_stats).encode()
        return files


def evaluation_summary(report: EvaluationReport) -> dict[str, Any]:
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


def evaluate_holdout(models: ModelsBefore, settings: TrainingSettings,
                     next_basket: TunedNextBasket | None = None) -> HoldoutEvaluation | None:
    """Evaluate the server's ranking on the last ``eval_test_days`` of the log, against the baselines.

    None when the log is too short for a test window after a label window (logged). Models built here are
    left in ``models`` for the ranker step. ``next_basket``: the run's TIFU-KNN hyperparameters (tuned on
    the same validation window the TIFU-KNN baseline would tune on; it reuses them); None: it tunes its own.
    What the server ranks is the model selection's choice per channel (the ranker's ``selection`` block),
    reported in ``summary["model_selection"]["evaluated"]``.
    """
    data = models.data
    label_days = settings.ranker_label_days
    cutoff = models.end_day + 1 - settings.eval_test_days
    if cutoff - label_days - models.first_day < MIN_WINDOW_HISTORY_DAYS:
        logger.warning("log spans %d days: too short for a %d-day test window after a %d-day ranker window; "
                       "no evaluation", models.end_day - models.first_day + 1, settings.eval_test_days,
                       label_days)
        return None
    started = time.perf_counter()
    split = time_split(data.events, settings.eval_test_days, cutoff_day=cutoff,
                       catalog_item_ids=data.items[C.ITEM_ID].to_numpy())
    eval_ranker, eval_stats = (fit_learned_ranker(models.label_windows(cutoff), data.events, settings,
                                                  cache=models.examples)
                               if settings.learn_ranker else (None, {}))
    test_artifacts = models.artifacts(cutoff)
    attach_ranker(test_artifacts, eval_ranker, eval_stats)
    # the unknown customer's list and the cold-start blend, chosen on the window before the test window
    answers = newcomer_answers_for(cutoff, data, models, settings.eval_test_days, models.first_day)
    if answers is not None:
        attach_newcomer_answers(test_artifacts, data.before(cutoff), answers)
    similar = similar_choice_for(cutoff, data, models.for_similar_items, settings.eval_test_days, models.first_day)
    if similar is not None:
        attach_similar_items(test_artifacts, similar)
    test_model = LoadedModel(test_artifacts)
    models.remember(cutoff, test_model)
    engine = RecommendationEngine(test_model)
    recommenders: dict[str, Recommender] = {**fit_baselines(split, settings, customers=data.customers,
                                                          tifu=next_basket.params if next_basket else None),
                                            DEFAULT_MODEL: EngineRecommender(engine, split.index)}
    completers: dict[str, Completer] = {**fit_completers(split), DEFAULT_MODEL: EngineCompleter(engine, split.index)}
    report = evaluate(split, recommenders, completers, k=settings.eval_k, catalog_size=len(data.items),
                      default_model=DEFAULT_MODEL)
    unknown = unknown_customer_metrics(engine, split, report)
    summary = evaluation_summary(report)
    evaluated = selection_summary(eval_stats)
    if evaluated:
        summary["model_selection"] = {"evaluated": evaluated}
    summary["new_customers_unknown"] = unknown
    summary["similar_items"] = window_summary(test_model, data.events, cutoff, models.end_day + 1, similar)
    report.choices["similar_items"] = {**summary["similar_items"],
                                       "validation": similar.meta() if similar is not None else None}
    if answers is not None:
        report.choices["newcomer_popularity"] = answers.newcomer_meta()
        report.choices["coldstart"] = answers.cold_meta()
    summary["seconds"] = round(time.perf_counter() - started, 2)
    return HoldoutEvaluation(report=report, summary=summary,
                             ranker_stats={k: v for k, v in eval_stats.items() if k != "feature_gain"})
