"""Customer summaries on Spark: the sums of :mod:`recsvc_training.models.rfm` per customer, scored on the driver.

Net spend (a line without a price at the catalog price, 0 when unknown too), the last purchase day, distinct
purchase baskets and the channels used are one Spark aggregation per customer; the ranks (1..5 by the share of
buyers strictly worse) and segment rules are then :func:`~recsvc_training.models.rfm.score_rfm` (the
single-node ranks and segments) on those per-customer vectors (the size of the part).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from recsvc.artifacts.parts.customer_summary import CUST_CHANNELS, CUST_MONETARY, RFM_SCORES, RFM_SEGMENT
from recsvc_training.input import columns as C
from recsvc_training.input.id_maps import IdMaps
from recsvc_training.models.rfm import score_rfm
from recsvc_training.spark.events import CHANNEL, CUSTOMER, EVENT, ITEM, event_code

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

logger = logging.getLogger(__name__)


def build_spark_customer_summary(spark: SparkSession, rows: DataFrame, maps: IdMaps, item_prices: np.ndarray,
                                 end_day: int) -> dict[str, np.ndarray]:
    """The arrays of :func:`recsvc_training.models.rfm.build_customer_summary`."""
    from pyspark.sql import functions as F

    n = maps.n_customers
    prices = spark.createDataFrame(pd.DataFrame({
        "_pi": np.arange(maps.n_items, dtype=np.int32),
        "_catalog_price": np.asarray(item_prices, dtype=np.float64)}))
    priced = rows.join(F.broadcast(prices), rows[ITEM] == prices["_pi"], "left")
    catalog_price = F.when(F.isnan("_catalog_price"), F.lit(None)).otherwise(F.col("_catalog_price"))
    price = F.coalesce(F.col(C.PRICE), catalog_price, F.lit(0.0))
    purchase, returned = F.col(EVENT) == event_code(C.PURCHASE), F.col(EVENT) == event_code(C.RETURN)
    sign = F.when(returned, F.lit(-1.0)).when(purchase, F.lit(1.0)).otherwise(F.lit(0.0))
    per_customer = priced.groupBy(CUSTOMER).agg(
        F.sum(sign * F.col(C.QUANTITY) * price).alias("_spend"),
        F.max(F.when(purchase, F.col(C.DAY))).alias("_last"),
        F.countDistinct(F.when(purchase, F.col(C.BASKET_ID))).alias("_baskets")).toPandas()
    c = per_customer[CUSTOMER].to_numpy(dtype=np.int64)
    spend = np.zeros(n)
    spend[c] = per_customer["_spend"].to_numpy(dtype=np.float64)
    monetary = np.maximum(spend, 0.0)
    last_day = np.full(n, -1, dtype=np.int64)
    last_day[c] = per_customer["_last"].fillna(-1).to_numpy(dtype=np.int64)
    baskets = np.zeros(n, dtype=np.int64)
    baskets[c] = per_customer["_baskets"].to_numpy(dtype=np.int64)
    scores, segment = score_rfm(last_day, baskets, monetary, end_day)
    buyers = np.flatnonzero(baskets > 0)

    used = rows.select(CUSTOMER, CHANNEL).where(F.col(CHANNEL).isNotNull()).distinct().toPandas()
    channels = np.zeros((n, maps.n_channels), dtype=bool)
    channels[used[CUSTOMER].to_numpy(dtype=np.int64), used[CHANNEL].to_numpy(dtype=np.int64)] = True
    logger.info("RFM: %d buyers", buyers.size)
    return {RFM_SCORES: scores, RFM_SEGMENT: segment, CUST_MONETARY: monetary.astype(np.float32),
            CUST_CHANNELS: channels}
