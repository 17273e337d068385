"""Run every model on the same split and collect one report.

The runner only calls the duck-typed interfaces of :mod:`~recsvc_training.evaluation.protocols`, so the real
serving engine is scored exactly like the baselines: same customers, same channels, same truth, same k.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from recsvc.days import iso_of_day
from recsvc_training.evaluation.cart_completion import (
    DEFAULT_MAX_BASKETS,
    DEFAULT_SEED,
    CartQueries,
    build_cart_queries,
    evaluate_completer,
)
from recsvc_training.evaluation.metrics import coverage, ranking_metrics, repeat_new_split
from recsvc_training.evaluation.protocols import Completer, Recommender
from recsvc_training.evaluation.split import TestTruth, TimeSplit

logger = logging.getLogger(__name__)

#: Metric names, in report order; report keys are ``"<metric>@<k>"``.
METRICS = ("recall", "ndcg", "precision", "hit_rate", "map", "coverage")
#: Every report has metrics at this cut-off, plus the caller's ``k`` when different.
STANDARD_K = 10

ModelMetrics = dict[str, float]


@dataclass(frozen=True)
class EvaluationReport:
    """Results of one evaluation run; plain dicts and numbers, so it serialises as it is.

    ``overall[model]["ndcg@10"]`` is the metric over returning test customers; ``per_channel[channel][model]``
    the same restricted to customers whose main test channel is ``channel`` (only when the test window has
    more than one channel); ``new_customers[model]`` covers customers first seen in the test window, for
    models that serve them; ``repeat_new[model]`` splits hits at ``k`` into repeat and new items;
    ``cart_completion[completer]`` holds ``hit_rate@k`` and ``mrr@k`` of basket completion. Metrics over no
    customers are NaN (``null`` in JSON).
    """

    k: int
    ks: tuple[int, ...]
    cutoff_day: int
    test_days: int
    n_items: int
    catalog_size: int
    n_train_events: int
    n_test_events: int
    n_test_customers: int
    n_new_customers: int
    default_model: str | None
    models: tuple[str, ...]
    overall: dict[str, ModelMetrics]
    repeat_new: dict[str, ModelMetrics]
    channels: tuple[str, ...] = ()
    channel_customers: dict[str, int] = field(default_factory=dict)
    per_channel: dict[str, dict[str, ModelMetrics]] = field(default_factory=dict)
    new_customers: dict[str, ModelMetrics] = field(default_factory=dict)
    cart_completion: dict[str, ModelMetrics] = field(default_factory=dict)
    n_cart_baskets: int = 0
    #: model -> {"fit": seconds (when the model reports it), "recommend": seconds for the returning customers}
    seconds: dict[str, dict[str, float]] = field(default_factory=dict)
    total_seconds: float = 0.0
    #: What the run chose on validation windows and how it scored on the test window, by topic
    #: (``similar_items``, ``newcomer_popularity``, ``coldstart``); filled by the evaluation step.
    choices: dict[str, Any] = field(default_factory=dict)

    @property
    def cutoff_date(self) -> str:
        """First day of the test window, ISO date."""
        return iso_of_day(self.cutoff_day)

    @property
    def baselines(self) -> tuple[str, ...]:
        """Every model except the default one."""
        return tuple(m for m in self.models if m != self.default_model)

    def best_baseline(self, metric: str, channel: str | None = None) -> tuple[str, float] | None:
        """The baseline with the highest ``metric`` (e.g. ``"ndcg@10"``), overall or within ``channel``.

        None when no baseline has a finite value for it.
        """
        table = self.overall if channel is None else self.per_channel.get(channel, {})
        scored = [(name, table[name][metric]) for name in self.baselines
                  if name in table and metric in table[name] and math.isfinite(table[name][metric])]
        return max(scored, key=lambda nv: nv[1]) if scored else None

    def ratios_to_best_baseline(self, metrics: tuple[str, ...] | None = None) -> dict[str, dict[str, Any]]:
        """Default model vs the best baseline per metric (overall): values, baseline name and ratio.

        Empty when there is no default model. The ratio is NaN when the baseline scores 0.
        """
        if self.default_model is None or self.default_model not in self.overall:
            return {}
        names = metrics or tuple(f"{m}@{k}" for k in self.ks for m in METRICS)
        out: dict[str, dict[str, Any]] = {}
        for metric in names:
            best = self.best_baseline(metric)
            value = self.overall[self.default_model].get(metric, math.nan)
            if best is None:
                continue
            out[metric] = {"model": self.default_model, "value": value, "baseline": best[0],
                           "baseline_value": best[1], "ratio": value / best[1] if best[1] else math.nan}
        return out

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (NaN becomes None), with the derived cutoff date and ratios."""
        data = asdict(self)
        data["cutoff_date"] = self.cutoff_date
        data["baselines"] = list(self.baselines)
        data["ratios_to_best_baseline"] = self.ratios_to_best_baseline()
        return _json_safe(data)

    def to_json(self, indent: int | None = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent, sort_keys=False, allow_nan=False)


def _json_safe(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    if isinstance(value, float | np.floating):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, np.integer):
        return int(value)
    return value


def evaluate(split: TimeSplit, recommenders: Mapping[str, Recommender],
             completers: Mapping[str, Completer] | None = None, k: int = STANDARD_K,
             catalog_size: int | None = None, *, default_model: str | None = None,
             cart_queries: CartQueries | None = None, max_cart_baskets: int = DEFAULT_MAX_BASKETS,
             seed: int = DEFAULT_SEED) -> EvaluationReport:
    """Score every recommender and completer on ``split``.

    Parameters
    ----------
    split
        From :func:`~recsvc_training.evaluation.split.time_split`; every model must speak its index's rows.
    recommenders
        Name -> fitted recommender. Each is asked once for the returning test customers (with their main test
        channel) and, if it has ``serves_new_customers = True``, once for the new customers.
    completers
        Name -> fitted completer, scored on hide-one basket queries (``cart_queries``, or drawn from the test
        window with ``max_cart_baskets`` and ``seed``).
    k
        Metrics are reported at 10 and at ``k``.
    catalog_size
        Denominator of coverage; default: items in the split's index.
    default_model
        The model under test (a key of ``recommenders``); every other model is a baseline.
    """
    if k <= 0:
        raise ValueError(f"k must be positive, got {k}")
    if default_model is not None and default_model not in recommenders:
        raise ValueError(f"default_model {default_model!r} is not one of the recommenders "
                         f"{sorted(recommenders)}")
    started = time.perf_counter()
    ks = tuple(sorted({STANDARD_K, k}))
    width = max(ks)
    index = split.index
    catalog = catalog_size if catalog_size is not None else index.n_items
    truth, new_truth = split.truth, split.new_customer_truth
    channels = tuple(sorted({str(c) for c in truth.channels}))
    by_channel = len(channels) > 1

    overall: dict[str, ModelMetrics] = {}
    repeat_new: dict[str, ModelMetrics] = {}
    per_channel: dict[str, dict[str, ModelMetrics]] = {ch: {} for ch in channels} if by_channel else {}
    new_customers: dict[str, ModelMetrics] = {}
    seconds: dict[str, dict[str, float]] = {}
    for name, model in recommenders.items():
        t0 = time.perf_counter()
        recs = _recommend(name, model, truth, width, index.n_items)
        seconds[name] = {"recommend": time.perf_counter() - t0}
        fit_seconds = getattr(model, "fit_seconds", None)
        if isinstance(fit_seconds, int | float) and fit_seconds > 0:
            seconds[name]["fit"] = float(fit_seconds)
        overall[name] = _all_metrics(recs, truth, ks, catalog)
        repeat_new[name] = repeat_new_split(recs, truth.items, truth.history, k).to_dict()
        if by_channel:
            for ch in channels:
                mask = truth.channels == ch
                per_channel[ch][name] = _all_metrics(recs[mask], truth.subset(mask), ks, catalog)
        if getattr(model, "serves_new_customers", False) and len(new_truth):
            new_recs = _recommend(name, model, new_truth, width, index.n_items)
            new_customers[name] = _all_metrics(new_recs, new_truth, ks, catalog)
        logger.info("evaluated %s: %s", name, ", ".join(f"{m}={v:.4f}" for m, v in overall[name].items()
                                                         if m.endswith(f"@{k}")))

    cart: dict[str, ModelMetrics] = {}
    n_baskets = 0
    if completers:
        queries = cart_queries if cart_queries is not None else build_cart_queries(split, max_cart_baskets, seed)
        n_baskets = len(queries)
        for name, completer in completers.items():
            result = evaluate_completer(queries, completer, STANDARD_K)
            cart[name] = {f"hit_rate@{STANDARD_K}": result.hit_rate, f"mrr@{STANDARD_K}": result.mrr,
                          "seconds": result.seconds}
            logger.info("cart completion %s: hit_rate@%d=%.4f mrr@%d=%.4f", name, STANDARD_K, result.hit_rate,
                        STANDARD_K, result.mrr)

    return EvaluationReport(
        k=k, ks=ks, cutoff_day=split.cutoff_day, test_days=split.test_days, n_items=index.n_items,
        catalog_size=catalog, n_train_events=len(split.train), n_test_events=len(split.test),
        n_test_customers=len(truth), n_new_customers=len(new_truth), default_model=default_model,
        models=tuple(recommenders), overall=overall, repeat_new=repeat_new,
        channels=channels if by_channel else (),
        channel_customers={ch: int((truth.channels == ch).sum()) for ch in channels} if by_channel else {},
        per_channel=per_channel, new_customers=new_customers, cart_completion=cart, n_cart_baskets=n_baskets,
        seconds=seconds, total_seconds=time.perf_counter() - started)


def _recommend(name: str, model: Recommender, truth: TestTruth, width: int, n_items: int) -> np.ndarray:
    """Ask ``model`` for ``truth``'s customers and check the answer's shape, dtype and range."""
    if not len(truth):
        return np.zeros((0, width), dtype=np.int64)
    recs = np.asarray(model.recommend(truth.customer_rows, list(truth.channels), width))
    if recs.ndim != 2 or recs.shape[0] != len(truth) or not np.issubdtype(recs.dtype, np.integer):
        raise ValueError(f"recommender {name!r} returned {recs.dtype} {recs.shape}; "
                         f"expected integer [{len(truth)}, {width}]")
    if recs.size and (recs.min() < -1 or recs.max() >= n_items):
        raise ValueError(f"recommender {name!r} returned item rows outside [-1, {n_items})")
    return recs[:, :width].astype(np.int64, copy=False)


def _all_metrics(recs: np.ndarray, truth: TestTruth, ks: tuple[int, ...], catalog: int) -> ModelMetrics:
    out: ModelMetrics = {}
    for k in ks:
        out.update(ranking_metrics(recs, truth.items, k))
        out[f"coverage@{k}"] = coverage(recs, catalog, k)
    return out
