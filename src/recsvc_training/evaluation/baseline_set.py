"""Every baseline of an evaluation, fitted together: the set the default model is compared with.

Apart from :mod:`recsvc_training.evaluation.baselines` (the base class and the simple baselines) because the
stronger ones (:mod:`~recsvc_training.evaluation.nextbasket`, :mod:`~recsvc_training.evaluation.cold_baselines`)
build on that module.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence

import pandas as pd

from recsvc.config import TrainingSettings
from recsvc_training.evaluation.baselines import (
    ALSRecommender,
    BaselineRecommender,
    BuyItAgain,
    BuyItAgainByCount,
    ChannelPopularity,
    GlobalPopularity,
    ItemKNN,
)
from recsvc_training.evaluation.cold_baselines import AttributePopularity, BuyerPopularity
from recsvc_training.evaluation.nextbasket import TifuKNN, TifuParams
from recsvc_training.evaluation.split import TimeSplit
from recsvc_training.input import columns as C

logger = logging.getLogger(__name__)


def fit_baselines(split: TimeSplit, settings: TrainingSettings | None = None,
                  include: Sequence[str] | None = None, customers: pd.DataFrame | None = None,
                  tifu: TifuParams | None = None) -> dict[str, BaselineRecommender]:
    """Fit every baseline (or those named in ``include``) on ``split.train``, keyed by name.

    ``attribute_popularity`` needs ``customers`` (the customers table with at least one attribute column) and
    is left out of the default set without it. ``tifu`` fixes TIFU-KNN's hyperparameters (a training run
    tunes them once, on the validation window TIFU-KNN would tune on itself). Each fitted model gets a
    ``fit_seconds`` attribute, which the runner copies into the report.
    """
    s = settings or TrainingSettings()
    factories: dict[str, Callable[[], BaselineRecommender]] = {
        "popularity": lambda: GlobalPopularity(s.popularity_window_days),
        "buyer_popularity": BuyerPopularity,
        "channel_popularity": lambda: ChannelPopularity(s.popularity_window_days),
        "buy_it_again": lambda: BuyItAgain(s.recency_half_life_days, s.popularity_window_days),
        "buy_it_again_by_count": lambda: BuyItAgainByCount(s.popularity_window_days),
        "tifu_knn": lambda: TifuKNN(params=tifu, popularity_window_days=s.popularity_window_days,
                                    validation_days=s.eval_test_days),
        "als": lambda: ALSRecommender(s.als_factors, s.als_iterations, s.als_regularization, s.als_alpha,
                                      s.als_random_state, s.event_weights, s.recency_half_life_days),
        "item_knn": lambda: ItemKNN(100, s.event_weights, s.recency_half_life_days),
    }
    has_attributes = customers is not None and any(c != C.CUSTOMER_ID for c in customers.columns)
    if customers is not None and has_attributes:
        table = customers
        factories["attribute_popularity"] = lambda: AttributePopularity(table, validation_days=s.eval_test_days)
    names = list(factories) if include is None else list(include)
    unknown = sorted(set(names) - set(factories))
    if "attribute_popularity" in unknown:
        raise ValueError("baseline 'attribute_popularity' needs a customers table with attribute columns")
    if unknown:
        raise ValueError(f"unknown baseline(s) {unknown}; known: {sorted(factories)}")
    fitted: dict[str, BaselineRecommender] = {}
    for name in names:
        start = time.perf_counter()
        model = factories[name]().fit(split.train, split.index)
        model.fit_seconds = time.perf_counter() - start
        logger.info("fitted baseline %s in %.2fs", name, model.fit_seconds)
        fitted[name] = model
    return fitted
