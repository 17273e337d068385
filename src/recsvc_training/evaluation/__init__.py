"""Offline evaluation: time split, ranking metrics, baselines, cart completion, reports.

Typical use at the end of training::

    split = time_split(data.events, test_days=28)
    models = {**fit_baselines(split), "recsvc": engine_adapter}
    report = evaluate(split, models, fit_completers(split), default_model="recsvc")
    write_report(report, out_dir)
    print(format_table(report))
"""

from __future__ import annotations

from recsvc_training.evaluation.baseline_set import fit_baselines
from recsvc_training.evaluation.baselines import (
    ALSRecommender,
    BaselineRecommender,
    BuyItAgain,
    BuyItAgainByCount,
    ChannelPopularity,
    GlobalPopularity,
    ItemKNN,
)
from recsvc_training.evaluation.cart_completion import (
    CartQueries,
    CompletionResult,
    CoOccurrenceCompleter,
    PopularityCompleter,
    build_cart_queries,
    evaluate_completer,
    fit_completers,
)
from recsvc_training.evaluation.cold_baselines import AttributePopularity, BuyerPopularity
from recsvc_training.evaluation.metrics import (
    RepeatNewSplit,
    coverage,
    hit_matrix,
    hit_rate_at_k,
    map_at_k,
    mrr_at_k,
    ndcg_at_k,
    precision_at_k,
    ranking_metrics,
    recall_at_k,
    repeat_new_split,
    truth_from_lists,
)
from recsvc_training.evaluation.nextbasket import TifuKNN, TifuParams, tune_tifu_knn
from recsvc_training.evaluation.protocols import Completer, Recommender
from recsvc_training.evaluation.report import format_table, render_markdown, write_report
from recsvc_training.evaluation.runner import METRICS, EvaluationReport, evaluate
from recsvc_training.evaluation.split import EvalIndex, TestTruth, TimeSplit, time_split, validation_split

__all__ = [
    "METRICS",
    "ALSRecommender",
    "AttributePopularity",
    "BaselineRecommender",
    "BuyItAgain",
    "BuyItAgainByCount",
    "BuyerPopularity",
    "CartQueries",
    "ChannelPopularity",
    "CoOccurrenceCompleter",
    "Completer",
    "CompletionResult",
    "EvalIndex",
    "EvaluationReport",
    "GlobalPopularity",
    "ItemKNN",
    "PopularityCompleter",
    "Recommender",
    "RepeatNewSplit",
    "TestTruth",
    "TifuKNN",
    "TifuParams",
    "TimeSplit",
    "build_cart_queries",
    "coverage",
    "evaluate",
    "evaluate_completer",
    "fit_baselines",
    "fit_completers",
    "format_table",
    "hit_matrix",
    "hit_rate_at_k",
    "map_at_k",
    "mrr_at_k",
    "ndcg_at_k",
    "precision_at_k",
    "ranking_metrics",
    "recall_at_k",
    "render_markdown",
    "repeat_new_split",
    "time_split",
    "truth_from_lists",
    "tune_tifu_knn",
    "validation_split",
    "write_report",
]
