"""The cold-start slice: customers whose first event falls in the test window, known only by their attributes.

Protocol (``shared/data/README.md``): time split with a ``test_days`` window at the end of the log; LightFM is
fitted on the train side exactly as the trainer fits it (:mod:`recsvc_training.models.coldstart`: attribute-only
customer features, item identity plus attributes); every customer first seen in the window is ranked from
their attributes alone (their vector is the sum of their attribute embeddings, as the server computes it),
over the whole catalog, and scored on what they bought in the window. The reference is per-channel
popularity over the last ``popularity_window_days`` of the train side, the baseline a new customer gets
without this model.

Reproduce the README numbers::

    recsvc import tafeng --src ../shared/data/tafeng.csv.gz --out data/tafeng
    python -m recsvc_training.evaluation.coldstart --data data/tafeng
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import scipy.sparse as sp

from recsvc.config import TrainingSettings, load_settings
from recsvc_training.evaluation import ChannelPopularity, ranking_metrics, time_split
from recsvc_training.evaluation.split import DEFAULT_TEST_DAYS
from recsvc_training.input import columns as C
from recsvc_training.input.dataset import TrainingData
from recsvc_training.input.ingest import load_training_data
from recsvc_training.models.coldstart import (
    ALL_CUSTOMERS_FEATURE,
    attribute_features,
    customer_attribute_columns,
    fit_lightfm,
    item_attribute_columns,
)

logger = logging.getLogger(__name__)

#: Customers scored per batch (a batch's score matrix is batch x n_items float32).
_BATCH = 2048


@dataclass(frozen=True)
class ColdStartReport:
    """Metrics at ``k`` of LightFM and of per-channel popularity on the new-customer slice, and their ratio."""

    k: int
    test_days: int
    new_customers: int
    items: int
    lightfm: dict[str, float]
    channel_popularity: dict[str, float]
    ndcg_ratio: float
    fit_seconds: float

    def table(self) -> str:
        """A small Markdown table for the README."""
        names = [f"ndcg@{self.k}", f"recall@{self.k}", f"hit_rate@{self.k}", f"precision@{self.k}"]
        lines = [f"| model | {' | '.join(names)} |", "|---|" + "---:|" * len(names)]
        for model, values in (("LightFM (attributes only)", self.lightfm),
                              ("per-channel popularity", self.channel_popularity)):
            lines.append(f"| {model} | " + " | ".join(f"{values[n]:.4f}" for n in names) + " |")
        return "\n".join(lines)


def _top_k(scores: np.ndarray, k: int) -> np.ndarray:
    part = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    order = np.argsort(-np.take_along_axis(scores, part, axis=1), axis=1, kind="stable")
    return np.take_along_axis(part, order, axis=1).astype(np.int64)


def evaluate_coldstart(data: TrainingData, settings: TrainingSettings, test_days: int = DEFAULT_TEST_DAYS,
                       k: int = 10) -> ColdStartReport:
    """Fit LightFM on the train side of a time split and score the new customers of the test window.

    Raises
    ------
    ValueError
        The customers table has no attribute column, or the window holds no new customer who bought anything.
    """
    columns = customer_attribute_columns(data.customers)
    if not columns:
        raise ValueError("the customers table has no attribute columns: nothing to describe a new customer by")
    split = time_split(data.events, test_days=test_days, catalog_item_ids=data.items[C.ITEM_ID])
    index, truth = split.index, split.new_customer_truth
    if not len(truth):
        raise ValueError(f"no customer makes a first purchase in the last {test_days} days")
    users = attribute_features(data.customers, C.CUSTOMER_ID, index.customer_ids, columns, identity=False,
                               shared_feature=ALL_CUSTOMERS_FEATURE)
    items = attribute_features(data.items, C.ITEM_ID, index.item_ids, item_attribute_columns(data.items),
                               identity=True)
    bought = split.train[split.train[C.EVENT] == C.PURCHASE]
    rows = index.customer_rows(bought[C.CUSTOMER_ID].to_numpy())
    cols = index.item_rows(bought[C.ITEM_ID].to_numpy())
    interactions = sp.csr_matrix((np.ones(rows.size, dtype=np.float32), (rows, cols)),
                                 shape=(index.n_customers, index.n_items))
    embeddings = fit_lightfm(interactions, users, items, settings)

    recs = np.vstack([_top_k(embeddings.scores(truth.customer_rows[i:i + _BATCH]), k)
                      for i in range(0, len(truth), _BATCH)])
    popularity = ChannelPopularity(settings.popularity_window_days).fit(split.train, index)
    baseline = popularity.recommend(truth.customer_rows, list(truth.channels), k)
    lightfm = ranking_metrics(recs, truth.items, k)
    reference = ranking_metrics(baseline, truth.items, k)
    ndcg = f"ndcg@{k}"
    return ColdStartReport(k=k, test_days=test_days, new_customers=len(truth), items=index.n_items,
                           lightfm=lightfm, channel_popularity=reference,
                           ndcg_ratio=lightfm[ndcg] / reference[ndcg] if reference[ndcg] else float("nan"),
                           fit_seconds=round(embeddings.seconds, 1))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m recsvc_training.evaluation.coldstart", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", required=True, help="data folder in the input contract (e.g. imported Ta Feng)")
    parser.add_argument("--test-days", type=int, default=DEFAULT_TEST_DAYS)
    parser.add_argument("-k", type=int, default=10)
    parser.add_argument("--json", help="also write the report as JSON to this file")
    parser.add_argument("--config", help="TOML settings (lfm_* knobs); RECSVC_TRAINING__<KEY> overrides too")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    settings = load_settings(args.config).training
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as quarantine:
        data = load_training_data(Path(args.data), settings, Path(quarantine))
    report = evaluate_coldstart(data, settings, args.test_days, args.k)
    print(f"Cold-start slice: {report.new_customers:,} customers first seen in the last {report.test_days} days, "
          f"{report.items:,} items; LightFM fit {report.fit_seconds:.1f}s "
          f"({settings.lfm_components} components, {settings.lfm_epochs} epochs, {settings.lfm_threads} threads); "
          f"total {time.perf_counter() - started:.0f}s")
    print(report.table())
    print(f"NDCG@{report.k} ratio LightFM / per-channel popularity: {report.ndcg_ratio:.2f}")
    if args.json:
        Path(args.json).write_text(json.dumps(asdict(report), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
