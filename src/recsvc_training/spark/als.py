"""Collaborative filtering on Spark: the confidence cells as a Spark aggregation, ALS by Spark MLlib.

The cells are :func:`recsvc_training.models.interactions.build_confidence`'s: per (customer, item) the
purchase part (purchases minus returns) floored at 0, plus views and carts, floored at 0, kept when positive.

Spark's ALS (``implicitPrefs``) reads a rating ``r`` as preference ``r > 0`` with confidence ``1 + alpha r``
and scales each row's regularisation by its number of ratings (ALS-WR); implicit reads the stored value as the
confidence and regularises every row alike. So the rating here is ``log1p(w)`` (the trainer's damping of heavy
buyers) and alpha and the regularisation are Spark's own: :class:`SparkAlsParams`, whose defaults were tuned on
Ta Feng's validation window (README, Trainer on Spark; ``benchmarks/spark_als_tafeng.py``). The factor count
and iteration count are the trainer's settings.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from recsvc.config import TrainingSettings
from recsvc_training.spark.events import CUSTOMER, ITEM, NETTED, WEIGHT

if TYPE_CHECKING:
    from pyspark.sql import DataFrame

logger = logging.getLogger(__name__)

RATING = "rating"


@dataclass(frozen=True)
class SparkAlsParams:
    """Spark ALS's own knobs (they do not carry over from implicit; see the module docstring).

    ``reg_param`` is Spark's ``regParam`` (multiplied by each row's rating count), ``alpha`` Spark's confidence
    slope (confidence ``1 + alpha x log1p(w)``).
    """

    reg_param: float = 0.1
    alpha: float = 5.0


def confidence_cells(rows: DataFrame) -> DataFrame:
    """(c, i, rating = log1p(w)) for every cell with net weight ``w > 0`` (see the module docstring)."""
    from pyspark.sql import functions as F

    netted = F.when(F.col(NETTED), F.col(WEIGHT))
    rest = F.when(~F.col(NETTED), F.col(WEIGHT))
    cells = rows.groupBy(CUSTOMER, ITEM).agg(F.sum(netted).alias("_net"), F.sum(rest).alias("_rest"))
    total = F.greatest(F.greatest(F.coalesce(F.col("_net"), F.lit(0.0)), F.lit(0.0))
                       + F.coalesce(F.col("_rest"), F.lit(0.0)), F.lit(0.0))
    return cells.select(CUSTOMER, ITEM, F.log1p(total).alias(RATING)).where(F.col(RATING) > 0)


def fit_spark_als(cells: DataFrame, n_customers: int, n_items: int, settings: TrainingSettings,
                  params: SparkAlsParams) -> tuple[np.ndarray, np.ndarray]:
    """Fit Spark MLlib ALS (implicit preferences) on confidence cells; factors as the artifact's arrays.

    Returns
    -------
    user_factors : float32 ``[n_customers, als_factors]``
    item_factors : float32 ``[n_items, als_factors]``
        Rows without any cell are exactly zero (Spark returns factors only for ids it saw), as in
        :func:`recsvc_training.models.als.fit_als`.

    Raises
    ------
    FloatingPointError
        The factors hold NaN or infinity.
    """
    from pyspark.ml.recommendation import ALS

    factors = int(settings.als_factors)
    user_factors = np.zeros((n_customers, factors), dtype=np.float32)
    item_factors = np.zeros((n_items, factors), dtype=np.float32)
    if cells.limit(1).count() == 0:
        logger.warning("ALS skipped: no positive interaction; every factor is zero")
        return user_factors, item_factors
    als = ALS(rank=factors, maxIter=int(settings.als_iterations), regParam=float(params.reg_param),
              alpha=float(params.alpha), implicitPrefs=True, userCol=CUSTOMER, itemCol=ITEM, ratingCol=RATING,
              seed=int(settings.als_random_state), nonnegative=False, coldStartStrategy="nan")
    model = als.fit(cells)
    for frame, out in ((model.userFactors, user_factors), (model.itemFactors, item_factors)):
        collected = frame.toPandas()
        if len(collected):
            rows = collected["id"].to_numpy(dtype=np.int64)
            out[rows] = np.asarray(np.stack(collected["features"].to_numpy()), dtype=np.float32)
    if not (np.all(np.isfinite(user_factors)) and np.all(np.isfinite(item_factors))):
        raise FloatingPointError("Spark ALS produced NaN or infinite factors; raise the regularisation")
    logger.info("Spark ALS: %d factors, %d iterations, regParam %s, alpha %s", factors, settings.als_iterations,
                params.reg_param, params.alpha)
    return user_factors, item_factors
