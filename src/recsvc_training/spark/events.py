"""The events as integer rows of the run's id maps, with their weights: the one table every Spark builder reads.

The id maps are the artifact contract's sorted id arrays (:class:`~recsvc_training.input.id_maps.IdMaps`): the
distinct ids are found in Spark, collected (the set stores them anyway) and sorted on the driver by numpy, so
row numbers mean exactly what the server's ``np.searchsorted`` finds; the events are then joined to them.

Weights are :func:`recsvc_training.models.interactions.event_weights`' in Spark SQL:
``event_weights[type] x min(quantity, QUANTITY_CAP) x 0.5 ** (max(end_day - day, 0) / half_life)``, a return
weighing minus the purchase weight; ``w`` is decayed, ``w_all`` not.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from recsvc.config import TrainingSettings
from recsvc_training.input import columns as C
from recsvc_training.input.id_maps import IdMaps, _alias_arrays, sorted_unique_ids
from recsvc_training.models.interactions import QUANTITY_CAP
from recsvc_training.spark.ingest import SOURCE_ROW, TS, SparkTrainingData

if TYPE_CHECKING:
    from pyspark.sql import Column, DataFrame, SparkSession

logger = logging.getLogger(__name__)

# Columns of the event-row table.
CUSTOMER = "c"
ITEM = "i"
STORE = "s"
CHANNEL = "ch"
EVENT = "ev"
WEIGHT = "w"
WEIGHT_ALL_TIME = "w_all"
NETTED = "netted"


def _distinct(frame: DataFrame, column: str) -> np.ndarray:
    values = frame.select(column).where(f"`{column}` != ''").distinct().toPandas()[column]
    return values.astype(str).to_numpy(dtype=object)


def build_spark_id_maps(data: SparkTrainingData) -> IdMaps:
    """The run's id maps: items of the catalog (ingest added those seen only in events), customers of the
    events, the customers table and the alias targets, stores of the events and the stock, channels in
    ``data.channels`` order (as :func:`recsvc_training.input.id_maps.build_id_maps`)."""
    item_ids = sorted_unique_ids(data.items[C.ITEM_ID])
    customer_ids = sorted_unique_ids(_distinct(data.events, C.CUSTOMER_ID), data.customers.get(C.CUSTOMER_ID, []),
                                     data.aliases.get(C.CUSTOMER_ID, []))
    store_ids = sorted_unique_ids(_distinct(data.events, C.STORE_ID), data.stock.get(C.STORE_ID, []))
    alias_ids, alias_customer = _alias_arrays(data.aliases, customer_ids)
    channels = tuple(str(c) for c in data.channels if str(c))
    logger.info("id maps: %d items, %d customers, %d aliases, %d stores, channels %s", item_ids.size,
                customer_ids.size, alias_ids.size, store_ids.size, list(channels))
    return IdMaps(item_ids=item_ids, customer_ids=customer_ids, store_ids=store_ids, alias_ids=alias_ids,
                  alias_customer=alias_customer, channels=channels)


def id_frame(spark: SparkSession, ids: np.ndarray, id_column: str, row_column: str) -> DataFrame:
    """A two-column DataFrame (id, row) of a sorted id array."""
    frame = pd.DataFrame({id_column: pd.Series(ids.astype(object), dtype=object).astype(str),
                          row_column: np.arange(ids.size, dtype=np.int32)})
    if frame.empty:
        from pyspark.sql.types import IntegerType, StringType, StructField, StructType

        schema = StructType([StructField(id_column, StringType()), StructField(row_column, IntegerType())])
        return spark.createDataFrame([], schema)
    return spark.createDataFrame(frame)


def decay(day: Column, end_day: int, half_life_days: float) -> Column:
    """``0.5 ** (max(end_day - day, 0) / half_life)``; 1 when the half-life is not positive."""
    from pyspark.sql import functions as F

    if half_life_days <= 0:
        return F.lit(1.0)
    return F.pow(F.lit(0.5), F.greatest(F.lit(end_day) - day.cast("double"), F.lit(0.0)) / float(half_life_days))


def event_rows(spark: SparkSession, data: SparkTrainingData, maps: IdMaps, settings: TrainingSettings,
               end_day: int) -> DataFrame:
    """Events as rows of ``maps``: c, i (int), s (int, -1 without a store), ch (int), ev (index into
    ``columns.EVENT_TYPES``), day, ts, source_row, quantity, price, basket_id, w, w_all and netted (purchase or
    return)."""
    from pyspark.sql import functions as F

    events = data.events
    customers = id_frame(spark, maps.customer_ids, "_cid", CUSTOMER)
    items = id_frame(spark, maps.item_ids, "_iid", ITEM)
    stores = id_frame(spark, maps.store_ids, "_sid", STORE)
    frame = (events.join(customers, events[C.CUSTOMER_ID] == customers["_cid"], "inner")
             .join(F.broadcast(items), F.col(C.ITEM_ID) == F.col("_iid"), "inner")
             .join(F.broadcast(stores), F.col(C.STORE_ID) == F.col("_sid"), "left"))
    channel_of = F.create_map(*[v for index, name in enumerate(maps.channels) for v in (F.lit(name), F.lit(index))])
    event_of = F.create_map(*[v for index, name in enumerate(C.EVENT_TYPES) for v in (F.lit(name), F.lit(index))])
    weights = {name: float(settings.event_weights.get(name, 0.0)) for name in C.EVENT_TYPES if name != C.RETURN}
    weights[C.RETURN] = -float(settings.event_weights.get(C.PURCHASE, 0.0))
    weight_of = F.create_map(*[v for name, w in weights.items() for v in (F.lit(name), F.lit(w))])
    base = F.coalesce(weight_of[F.col(C.EVENT)], F.lit(0.0)) * F.least(F.col(C.QUANTITY), F.lit(QUANTITY_CAP))
    return frame.select(
        F.col(CUSTOMER), F.col(ITEM), F.coalesce(F.col(STORE), F.lit(-1)).alias(STORE),
        channel_of[F.col(C.CHANNEL)].cast("int").alias(CHANNEL),
        F.coalesce(event_of[F.col(C.EVENT)], F.lit(-1)).cast("int").alias(EVENT),
        F.col(C.DAY), F.col(TS), F.col(SOURCE_ROW), F.col(C.QUANTITY), F.col(C.PRICE), F.col(C.BASKET_ID),
        (base * decay(F.col(C.DAY), end_day, settings.recency_half_life_days)).alias(WEIGHT),
        base.alias(WEIGHT_ALL_TIME),
        F.col(C.EVENT).isin(C.PURCHASE, C.RETURN).alias(NETTED),
    )


def event_code(name: str) -> int:
    """Index of an event type in ``columns.EVENT_TYPES`` (the ``ev`` column)."""
    return C.EVENT_TYPES.index(name)
