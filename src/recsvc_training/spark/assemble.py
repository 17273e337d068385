"""One artifact set from Spark's results: every Spark builder in order, then the parts the single-node trainer
writes (:mod:`recsvc.artifacts.parts`), validated.

The set is the same contract (the same arrays, dtypes, manifest keys, schema version) so the unchanged server
loads it; what differs is recorded in the manifest: ``params.engine = "spark"``, the Spark ALS knobs, and in
``extra.spark`` what this engine did not build (the LightFM cold-start model and the learned ranker: a set
without them is valid, the server then ranks by rank fusion and has no cold-start source).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import numpy as np

from recsvc.artifacts import ArtifactSet, fingerprint_files
from recsvc.artifacts.parts.als import AlsFactors
from recsvc.artifacts.parts.ann import ANN_EXTRA
from recsvc.artifacts.parts.ann_cosine import COSINE_EXTRA
from recsvc.artifacts.parts.catalog import ITEM_PRICES
from recsvc.artifacts.parts.coldstart import COLDSTART_EXTRA
from recsvc.artifacts.parts.copurchase import COPURCHASE_ITEMS
from recsvc.artifacts.parts.customer_summary import SEGMENTS_EXTRA
from recsvc.artifacts.parts.foldin import FoldInParams
from recsvc.artifacts.parts.history import HALF_LIFE_EXTRA, HIST_INDPTR, HIST_ITEMS
from recsvc.artifacts.parts.stock import TrainingStock
from recsvc.artifacts.schema import parts_to_arrays
from recsvc.artifacts.stock_table import StockTable
from recsvc.config import TrainingSettings
from recsvc_training.assemble import foldin_params, settings_params
from recsvc_training.input import columns as C
from recsvc_training.input.catalog import build_catalog
from recsvc_training.models.ann import build_ann_index, build_cosine_index
from recsvc_training.models.interactions import QUANTITY_CAP
from recsvc_training.models.rfm import RFM_SEGMENTS
from recsvc_training.spark.als import SparkAlsParams, confidence_cells, fit_spark_als
from recsvc_training.spark.copurchase import build_spark_copurchase
from recsvc_training.spark.events import CUSTOMER, EVENT, build_spark_id_maps, event_rows
from recsvc_training.spark.history import build_spark_history
from recsvc_training.spark.ingest import SparkTrainingData
from recsvc_training.spark.popularity import build_spark_popularity
from recsvc_training.spark.rfm import build_spark_customer_summary

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

logger = logging.getLogger(__name__)

#: Manifest ``extra`` key: what the Spark engine did and did not build.
SPARK_EXTRA = "spark"
#: What this engine leaves out, as the run summary says it.
SKIPPED = {
    "coldstart": "LightFM cold start not built by the Spark engine (no cold-start source in this set)",
    "ranker": "learned ranker not fitted by the Spark engine (the server ranks by rank fusion)",
    "evaluation": "held-out evaluation and quality gate not run by the Spark engine (run `recsvc evaluate`)",
}


@contextmanager
def _step(timings: dict[str, float], name: str) -> Iterator[None]:
    started = time.perf_counter()
    yield
    timings[name] = round(time.perf_counter() - started, 3)
    logger.info("spark step %s done in %.2fs", name, timings[name])


def build_spark_artifacts(spark: SparkSession, data: SparkTrainingData, settings: TrainingSettings,
                          als_params: SparkAlsParams | None = None) -> ArtifactSet:
    """Build every array of the set with Spark jobs; validated, unpublished (empty ``version``).

    Raises
    ------
    ValueError
        When there are no events to learn from.
    """
    from pyspark import StorageLevel
    from pyspark.sql import functions as F

    als_params = als_params or SparkAlsParams()
    timings: dict[str, float] = {}
    end = data.events.agg(F.max(C.DAY)).collect()[0][0]
    if end is None:
        raise ValueError("no events to train on: the events table is empty after cleaning")
    end_day = int(end)
    arrays: dict[str, np.ndarray] = {}
    with _step(timings, "id_maps"):
        maps = build_spark_id_maps(data)
        rows = event_rows(spark, data, maps, settings, end_day).persist(StorageLevel.MEMORY_AND_DISK)
        per_type = {int(r[0]): int(r[1]) for r in rows.groupBy(EVENT).count().collect()}
        arrays.update(item_ids=maps.item_ids, customer_ids=maps.customer_ids, store_ids=maps.store_ids,
                      alias_ids=maps.alias_ids, alias_customer=maps.alias_customer)
    with _step(timings, "catalog"):
        arrays.update(build_catalog(data.items, maps))
    with _step(timings, "als"):
        cells = confidence_cells(rows).persist(StorageLevel.MEMORY_AND_DISK)
        customers_with_interactions = int(cells.select(CUSTOMER).distinct().count())
        als = AlsFactors(*fit_spark_als(cells, maps.n_customers, maps.n_items, settings, als_params))
        cells.unpersist()
        arrays.update(als.to_arrays())
    with _step(timings, "ann"):
        ann_arrays, ann_meta = build_ann_index(als.user_factors, als.item_factors, settings)
        arrays.update(ann_arrays)
        cosine_arrays, cosine_meta = build_cosine_index(als.item_factors, settings)
        arrays.update(cosine_arrays)
    with _step(timings, "popularity"):
        arrays.update(build_spark_popularity(rows, maps, settings, end_day))
    with _step(timings, "repurchase"):
        arrays.update(build_spark_history(rows, maps, end_day, settings.recency_half_life_days))
    with _step(timings, "copurchase"):
        copurchase, n_baskets = build_spark_copurchase(rows, maps, settings)
        arrays.update(copurchase)
    with _step(timings, "customers"):
        arrays.update(build_spark_customer_summary(spark, rows, maps, arrays[ITEM_PRICES], end_day))
    n_events = sum(per_type.values())
    rows.unpersist()

    report = data.report
    row_counts = {
        "events": n_events,
        **{f"events_{name}": per_type.get(index, 0) for index, name in enumerate(C.EVENT_TYPES)},
        "customers": maps.n_customers,
        "customers_with_interactions": customers_with_interactions,
        "customers_with_history": int((np.diff(arrays[HIST_INDPTR]) > 0).sum()),
        "items": maps.n_items,
        "aliases": int(maps.alias_ids.size),
        "stores": maps.n_stores,
        "channels": maps.n_channels,
        "baskets": n_baskets,
        "history_pairs": int(arrays[HIST_ITEMS].size),
        "copurchase_pairs": int(arrays[COPURCHASE_ITEMS].size),
        "quarantined": report.total_quarantined(),
        "identity_conflicts": report.identity_conflicts,
        "items_added_from_events": report.items_added_from_events,
        "negative_quantities_as_returns": report.negative_quantities_as_returns,
    }
    extra_parts: list[Any] = [spark_foldin_params(settings, als_params, n_events_per_customer(
        len(arrays[HIST_ITEMS]), customers_with_interactions))]
    if len(data.stock):
        table, _ = StockTable.from_rows(data.stock[C.STORE_ID], data.stock[C.ITEM_ID], data.stock[C.QUANTITY_ON_HAND])
        extra_parts.append(TrainingStock(table, as_of=datetime.now(UTC).isoformat(timespec="microseconds")))
    part_arrays, part_extra = parts_to_arrays(extra_parts)
    arrays.update(part_arrays)
    params = settings_params(settings)
    params.update(engine="spark", spark_als=asdict(als_params), spark_master=spark.sparkContext.master)
    files = [p for p in report.input_files if p.is_file()]
    artifacts = ArtifactSet(
        arrays=arrays,
        channels=list(maps.channels),
        data_end_day=end_day,
        input_fingerprint=fingerprint_files(files) if files else "",
        row_counts={k: int(v) for k, v in row_counts.items()},
        params=params,
        extra={"build_seconds": timings, "quantity_cap": QUANTITY_CAP, ANN_EXTRA: ann_meta,
               COSINE_EXTRA: cosine_meta, SEGMENTS_EXTRA: list(RFM_SEGMENTS), COLDSTART_EXTRA: {},
               HALF_LIFE_EXTRA: settings.recency_half_life_days,
               SPARK_EXTRA: {"version": spark.version, "skipped": dict(SKIPPED)}, **part_extra},
    )
    artifacts.validate()
    logger.info("built artifact set on Spark: %s", ", ".join(f"{k} {v}" for k, v in artifacts.row_counts.items()))
    return artifacts


def n_events_per_customer(n_pairs: int, n_customers: int) -> float:
    """Mean purchase pairs per customer with interactions (>= 1): the scale of Spark's per-row regularisation."""
    return max(n_pairs / n_customers, 1.0) if n_customers else 1.0


def spark_foldin_params(settings: TrainingSettings, als: SparkAlsParams, mean_ratings: float) -> FoldInParams:
    """The server's request-time fold-in knobs for Spark factors.

    The fold-in solves implicit's equations with one regularisation for every customer; Spark regularised each
    row by ``regParam x its rating count``, so the fold-in gets ``regParam`` times a typical count (the mean
    pairs per customer) and Spark's alpha. An approximation (README, Trainer on Spark).
    """
    base = foldin_params(settings)
    return FoldInParams(regularization=float(als.reg_param * mean_ratings), alpha=float(als.alpha),
                        purchase_weight=base.purchase_weight, context_weight=base.context_weight,
                        half_life_days=base.half_life_days)
