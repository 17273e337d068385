"""The training run on Spark: ingest, build, publish; what ``recsvc train --engine spark`` runs.

It can also run under ``spark-submit`` (``python -m recsvc_training.spark.train --data DIR --artifacts ROOT``
as the application), which then owns the master and the resources; see README, Trainer on Spark.

Publishing is :func:`recsvc.artifacts.publish_artifacts`, the single-node trainer's: staged, verified
(checksums), renamed into ``versions/`` and only then pointed at by ``CURRENT``, so a server never sees half a
set, whichever engine wrote it. The held-out evaluation, the quality gate, the learned ranker and LightFM are not
run here; :data:`recsvc_training.spark.assemble.SKIPPED` says so in the run summary and in the manifest.
"""

from __future__ import annotations

import argparse
import logging
import time
from dataclasses import dataclass
from pathlib import Path

from recsvc.artifacts import new_version_name, publish_artifacts
from recsvc.artifacts.stock import publish_stock
from recsvc.artifacts.stock_table import StockTable
from recsvc.config import TrainingSettings
from recsvc_training.input import columns as C
from recsvc_training.run_summary import TrainResult, peak_rss_mb
from recsvc_training.spark.als import SparkAlsParams
from recsvc_training.spark.assemble import SKIPPED, build_spark_artifacts
from recsvc_training.spark.ingest import load_spark_training_data
from recsvc_training.spark.session import DEFAULT_MASTER, spark_session

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class SparkTrainResult:
    """A Spark run: the :class:`~recsvc_training.run_summary.TrainResult` plus the master and what was skipped.

    ``result.peak_rss_mb`` is the driver's Python process only; the JVM's is not in it (the benchmark measures
    the whole process tree).
    """

    result: TrainResult
    master: str

    def summary(self) -> str:
        lines = [self.result.summary(), f"  engine       spark ({self.master})"]
        lines += [f"  skipped      {why}" for why in SKIPPED.values()]
        return "\n".join(lines)


def train_spark(data_dir: Path, artifact_root: Path, settings: TrainingSettings, *,
                master: str | None = DEFAULT_MASTER, als_params: SparkAlsParams | None = None,
                shuffle_partitions: int | None = None) -> SparkTrainResult:
    """Ingest ``data_dir`` with Spark, build every Spark-built part, publish under ``artifact_root``.

    ``master`` None keeps the session spark-submit configured. Errors are those of the single-node
    :func:`recsvc_training.pipeline.train` (``InputError``, ``ArtifactError``) plus
    :class:`~recsvc_training.spark.session.SparkUnavailableError`.
    """
    data_dir, artifact_root = Path(data_dir), Path(artifact_root)
    started = time.perf_counter()
    version = new_version_name()
    quarantine_dir = artifact_root / "quarantine" / version
    timings: dict[str, float] = {}
    spark = spark_session(master, shuffle_partitions=shuffle_partitions)
    timings["spark_start"] = round(time.perf_counter() - started, 3)
    step = time.perf_counter()
    data = load_spark_training_data(spark, data_dir, settings, quarantine_dir)
    timings["ingest"] = round(time.perf_counter() - step, 3)
    artifacts = build_spark_artifacts(spark, data, settings, als_params)
    timings.update(artifacts.extra.get("build_seconds", {}))
    data.events.unpersist()

    step = time.perf_counter()
    artifacts.version = version
    path = publish_artifacts(artifacts, artifact_root, keep=settings.keep_versions)
    if len(data.stock):
        stock, _ = StockTable.from_rows(data.stock[C.STORE_ID], data.stock[C.ITEM_ID], data.stock[C.QUANTITY_ON_HAND])
        publish_stock(artifact_root, stock, source=f"training run {version} ({data_dir})", keep=settings.keep_versions)
    timings["publish"] = round(time.perf_counter() - step, 3)
    timings["total"] = round(time.perf_counter() - started, 3)
    result = TrainResult(version=version, path=path, artifact_root=str(artifact_root),
                         quarantine_dir=str(quarantine_dir), timings=timings,
                         peak_rss_mb=round(peak_rss_mb(), 1), report=data.report,
                         row_counts=dict(artifacts.row_counts), evaluation={})
    logger.info("Spark training run %s finished in %.1fs", version, timings["total"])
    return SparkTrainResult(result=result, master=str(spark.sparkContext.master))


def main(argv: list[str] | None = None) -> int:
    """Entry point for ``spark-submit``: the master and resources come from spark-submit's options."""
    from recsvc.config import load_settings

    parser = argparse.ArgumentParser(prog="recsvc_training.spark.train", description=__doc__)
    parser.add_argument("--data", required=True)
    parser.add_argument("--artifacts", required=True)
    parser.add_argument("--config", default=None)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    settings = load_settings(args.config)
    print(train_spark(Path(args.data), Path(args.artifacts), settings.training, master=None).summary())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
