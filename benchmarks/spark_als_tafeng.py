"""Spark ALS on Ta Feng: tune its own knobs, then score the Spark-trained set beside the implicit-trained one.

Spark's ALS (implicit preferences) regularises each row by its rating count and reads a rating as confidence
``1 + alpha r``; implicit does neither, so the trainer's ``als_regularization`` and ``als_alpha`` do not carry
over (:mod:`recsvc_training.spark.als`). Steps, all on the imported Ta Feng folder:

1. **Tuning** on a validation split (the 28 days before the test window; models fitted on the events before
   it): a small grid of Spark ``regParam`` x ``alpha`` (factors and iterations are the trainer's, 64 and 15),
   each scored as ALS alone (a customer's items by ``user_factors @ item_factors``) with the project's
   evaluation runner (:func:`recsvc_training.evaluation.runner.evaluate`), beside implicit ALS fitted on the
   same confidence matrix with the trainer's settings.
2. **Test**: on the test split (the last 28 days; models from the events before it), the implicit-trained set
   (single-node :func:`recsvc_training.assemble.build_artifacts`) and the Spark-trained set
   (:func:`recsvc_training.spark.assemble.build_spark_artifacts` with the best grid point), each scored twice:
   ALS alone, and the server's whole ranking (:class:`recsvc_training.evaluation.holdout.EngineRecommender`,
   rank fusion: neither set has a learned ranker here, and the single-node set is built without LightFM so both
   sets hold the same parts).

Run (after ``recsvc import tafeng --src ../shared/data/tafeng.csv.gz --out /tmp/tafeng``)::

    SPARK_LOCAL_IP=127.0.0.1 python -m benchmarks.spark_als_tafeng /tmp/tafeng

Writes ``benchmarks/results/spark_als_tafeng.json`` and ``.md``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from recsvc.artifacts import ArtifactSet
from recsvc.config import TrainingSettings
from recsvc.ranking import RecommendationEngine
from recsvc.ranking.model import LoadedModel
from recsvc_training.evaluation.holdout import EngineRecommender
from recsvc_training.evaluation.runner import evaluate
from recsvc_training.evaluation.split import EvalIndex, TimeSplit, time_split
from recsvc_training.input import columns as C
from recsvc_training.input.id_maps import lookup_rows
from recsvc_training.input.ingest import load_training_data

RESULTS = Path(__file__).resolve().parent / "results" / "spark_als_tafeng"
GRID = ((0.02, 5.0), (0.02, 30.0), (0.1, 5.0), (0.1, 30.0))
METRICS = ("recall@10", "ndcg@10", "hit_rate@10", "coverage@10")
TEST_DAYS = 28


class FactorRecommender:
    """ALS alone: the top items by ``user_factors @ item_factors`` (already-bought items kept, as in the
    baselines); customers without factors get nothing."""

    def __init__(self, name: str, customer_ids: np.ndarray, item_ids: np.ndarray, user_factors: np.ndarray,
                 item_factors: np.ndarray, index: EvalIndex) -> None:
        self.name = name
        self._rows = lookup_rows(customer_ids, index.customer_ids)
        self._to_eval = index.item_rows(item_ids)
        self._users, self._items = user_factors, item_factors

    def recommend(self, customer_rows: np.ndarray, channels: Sequence[str], k: int) -> np.ndarray:
        out = np.full((len(customer_rows), k), -1, dtype=np.int64)
        rows = self._rows[np.asarray(customer_rows, dtype=np.int64)]
        known = rows >= 0
        known[known] = np.abs(self._users[rows[known]]).sum(axis=1) > 0
        for start in range(0, int(known.sum()), 2048):
            chosen = np.flatnonzero(known)[start:start + 2048]
            scores = self._users[rows[chosen]] @ self._items.T
            top = np.argpartition(-scores, min(k, scores.shape[1] - 1), axis=1)[:, :k]
            order = np.take_along_axis(scores, top, axis=1).argsort(axis=1)[:, ::-1]
            out[chosen, : top.shape[1]] = self._to_eval[np.take_along_axis(top, order, axis=1)]
        return out


def _scores(split: TimeSplit, recommenders: dict[str, Any], catalog: int) -> dict[str, dict[str, float]]:
    report = evaluate(split, recommenders, None, k=10, catalog_size=catalog)
    return {name: {m: round(float(report.overall[name][m]), 4) for m in METRICS} for name in recommenders}


def _set_recommenders(label: str, artifacts: ArtifactSet, split: TimeSplit) -> dict[str, Any]:
    model = LoadedModel(artifacts)
    return {f"{label} ALS alone": FactorRecommender(f"{label} ALS alone", artifacts["customer_ids"],
                                                    artifacts["item_ids"], artifacts["als_user_factors"],
                                                    artifacts["als_item_factors"], split.index),
            f"{label} set (server ranking)": _named(EngineRecommender(RecommendationEngine(model), split.index),
                                                    f"{label} set (server ranking)")}


def _named(recommender: EngineRecommender, name: str) -> EngineRecommender:
    recommender.name = name
    return recommender


def main(argv: list[str] | None = None) -> int:
    from pyspark.sql import functions as F

    from recsvc_training.assemble import build_artifacts
    from recsvc_training.spark.als import SparkAlsParams, confidence_cells, fit_spark_als
    from recsvc_training.spark.assemble import build_spark_artifacts
    from recsvc_training.spark.events import build_spark_id_maps, event_rows
    from recsvc_training.spark.ingest import load_spark_training_data
    from recsvc_training.spark.session import spark_session

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("data", type=Path, help="an imported Ta Feng folder (recsvc import tafeng)")
    parser.add_argument("--master", default="local[2]")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    settings = TrainingSettings(progress=False, evaluate=False, learn_ranker=False, coldstart_max_purchases=-1)
    results: dict[str, Any] = {"grid": [], "settings": {"als_factors": settings.als_factors,
                                                        "als_iterations": settings.als_iterations}}

    def save() -> None:
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        RESULTS.with_suffix(".json").write_text(json.dumps(results, indent=1))
        RESULTS.with_suffix(".md").write_text(format_results(results))

    with tempfile.TemporaryDirectory() as tmp:
        data = load_training_data(args.data, settings, Path(tmp) / "q1")
        end_day = int(data.events[C.DAY].max())
        cutoff = end_day + 1 - TEST_DAYS
        val_cutoff = cutoff - TEST_DAYS
        catalog = data.items[C.ITEM_ID].to_numpy()
        test_split = time_split(data.events, TEST_DAYS, cutoff_day=cutoff, catalog_item_ids=catalog)
        val_split = time_split(data.before(cutoff).events, TEST_DAYS, cutoff_day=val_cutoff,
                               catalog_item_ids=catalog)
        spark = spark_session(args.master)
        spark_data = load_spark_training_data(spark, args.data, settings, Path(tmp) / "q2")

        # 1. tuning on the validation split
        val_single = build_artifacts(data.before(val_cutoff), settings)
        val_data = dataclasses.replace(spark_data, events=spark_data.events.where(F.col(C.DAY) < val_cutoff))
        maps = build_spark_id_maps(val_data)
        rows = event_rows(spark, val_data, maps, settings, val_cutoff - 1).cache()
        cells = confidence_cells(rows).cache()
        recommenders: dict[str, Any] = {"implicit ALS alone": FactorRecommender(
            "implicit ALS alone", val_single["customer_ids"], val_single["item_ids"],
            val_single["als_user_factors"], val_single["als_item_factors"], val_split.index)}
        fit_seconds: dict[str, float] = {}
        for reg, alpha in GRID:
            started = time.perf_counter()
            users, items = fit_spark_als(cells, maps.n_customers, maps.n_items, settings, SparkAlsParams(reg, alpha))
            name = f"spark ALS regParam {reg} alpha {alpha}"
            fit_seconds[name] = round(time.perf_counter() - started, 1)
            recommenders[name] = FactorRecommender(name, maps.customer_ids, maps.item_ids, users, items,
                                                   val_split.index)
            logging.info("%s fitted in %.0fs", name, fit_seconds[name])
        scored = _scores(val_split, recommenders, len(catalog))
        results["grid"] = [{"model": name, **metrics, "fit_seconds": fit_seconds.get(name)}
                           for name, metrics in scored.items()]
        best = max(GRID, key=lambda g: scored[f"spark ALS regParam {g[0]} alpha {g[1]}"]["ndcg@10"])
        results["best"] = {"reg_param": best[0], "alpha": best[1]}
        results["validation_cutoff_day"] = val_cutoff
        save()
        cells.unpersist()
        rows.unpersist()

        # 2. the two sets on the test split
        started = time.perf_counter()
        single = build_artifacts(data.before(cutoff), settings)
        single_seconds = time.perf_counter() - started
        started = time.perf_counter()
        test_data = dataclasses.replace(spark_data, events=spark_data.events.where(F.col(C.DAY) < cutoff))
        on_spark = build_spark_artifacts(spark, test_data, settings, SparkAlsParams(*best))
        spark_seconds = time.perf_counter() - started
        test_recommenders = {**_set_recommenders("implicit-trained", single, test_split),
                             **_set_recommenders("Spark-trained", on_spark, test_split)}
        results["test"] = _scores(test_split, test_recommenders, len(catalog))
        results["test_cutoff_day"] = cutoff
        results["build_seconds"] = {"implicit-trained": round(single_seconds, 1),
                                    "Spark-trained": round(spark_seconds, 1)}
        save()
        spark.stop()
    print(format_results(results))
    return 0


def format_results(results: dict[str, Any]) -> str:
    lines = ["Validation (28 days before the test window), ALS alone:", "",
             "| model | " + " | ".join(METRICS) + " | fit (s) |", "|---|" + "---|" * (len(METRICS) + 1)]
    for row in results.get("grid", []):
        lines.append(f"| {row['model']} | " + " | ".join(f"{row[m]:.4f}" for m in METRICS)
                     + f" | {row.get('fit_seconds') or ''} |")
    if "test" in results:
        lines += ["", f"Test (last 28 days), best Spark point {results['best']}:", "",
                  "| model | " + " | ".join(METRICS) + " |", "|---|" + "---|" * len(METRICS)]
        for name, metrics in results["test"].items():
            lines.append(f"| {name} | " + " | ".join(f"{metrics[m]:.4f}" for m in METRICS) + " |")
        lines.append("")
        lines.append(f"Build seconds (events before the test window): {results['build_seconds']}")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    raise SystemExit(main())
