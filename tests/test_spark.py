"""The trainer on Spark (issue 19): a real Spark job (``local[2]``) on a small sample, checked against the
single-node trainer's rules, and served by the real server, which answers every RPC from its set.

Skipped only when pyspark or Java is missing (``scripts/test.sh`` installs both). One Spark run serves every
test of the module (a SparkSession takes most of the time here).
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import signal
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from recsvc.artifacts import load_current
from recsvc.config import TrainingSettings
from recsvc_training.assemble import build_artifacts
from recsvc_training.input import columns as C
from recsvc_training.input.ingest import load_training_data
from recsvc_training.sample import generate_sample

pytest.importorskip("pyspark", reason="the spark extra is not installed")
if shutil.which("java") is None and not os.environ.get("JAVA_HOME"):
    pytest.skip("Spark needs Java 17 or newer (scripts/test.sh installs it)", allow_module_level=True)

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from recsvc.v1 import recsvc_pb2, recsvc_pb2_grpc
from recsvc_training.spark.train import SparkTrainResult, train_spark
from tests.conftest import ServeProcess, serve_command

# pyspark 4.1's Arrow conversion calls astype(copy=False), which pandas 3 deprecates: not ours to fix
pytestmark = pytest.mark.filterwarnings("ignore:The copy keyword is deprecated")

FAST = TrainingSettings(progress=False, als_factors=8, als_iterations=3, evaluate=False, learn_ranker=False,
                        popularity_store_top_k=20)


@dataclass(frozen=True)
class SparkRun:
    data: Path
    root: Path
    result: SparkTrainResult
    reference_quarantine: Path


@pytest.fixture(scope="module")
def spark_run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SparkRun]:
    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    tmp = tmp_path_factory.mktemp("spark")
    data, root = tmp / "data", tmp / "artifacts"
    generate_sample(data, seed=5, n_customers=120, n_items=80, days=60)
    # a store line sold with a negative quantity (a return), and an alias written with a tab and NBSP around it
    events = pd.read_csv(data / "events.csv.gz", dtype=str, keep_default_na=False)
    odd = events[events[C.EVENT] == C.PURCHASE].head(2).copy()
    odd[C.QUANTITY] = ["-1", "2"]
    odd[C.CUSTOMER_ID] = odd[C.CUSTOMER_ID].map(lambda c: f"\t{c}\u00a0")
    odd[C.TIMESTAMP] = odd[C.TIMESTAMP].str.slice(0, 10)  # a plain date, midnight UTC
    pd.concat([events, odd], ignore_index=True).to_csv(data / "events.csv.gz", index=False)
    with pytest.MonkeyPatch.context() as env:
        # as `/venv/bin/recsvc train --engine spark` without an activated venv: the first python3 on PATH is
        # not this interpreter, so the pandas UDFs of the ingest only work if the session names it
        env.delenv("PYSPARK_PYTHON", raising=False)
        venv_bin = os.path.dirname(sys.executable)
        env.setenv("PATH", os.pathsep.join(p for p in os.environ.get("PATH", "").split(os.pathsep)
                                           if os.path.abspath(p) != os.path.abspath(venv_bin)))
        result = train_spark(data, root, FAST, master="local[2]", shuffle_partitions=2)
    from pyspark.sql import SparkSession

    active = SparkSession.getActiveSession()
    if active is not None:
        active.stop()  # free the JVM's memory and cores before the server starts
    yield SparkRun(data=data, root=root, result=result, reference_quarantine=tmp / "reference-quarantine")


def test_ingest_counts_and_quarantine_match_the_single_node_trainer(spark_run: SparkRun) -> None:
    reference = load_training_data(spark_run.data, FAST, spark_run.reference_quarantine).report
    report = spark_run.result.result.report
    assert report.rows_read == reference.rows_read and report.rows_kept == reference.rows_kept
    assert report.quarantined == reference.quarantined and report.total_quarantined() >= 5
    assert report.negative_quantities_as_returns == reference.negative_quantities_as_returns == 1
    name = f"{C.EVENTS}.quarantine.csv"
    ours = pd.read_csv(Path(spark_run.result.result.quarantine_dir) / name, dtype=str, keep_default_na=False)
    theirs = pd.read_csv(spark_run.reference_quarantine / name, dtype=str, keep_default_na=False)
    pd.testing.assert_frame_equal(ours, theirs)


def test_spark_builders_agree_with_the_single_node_builders(spark_run: SparkRun) -> None:
    """Everything but the ALS factors (another solver) is the same arithmetic on the same events."""
    with_quarantine = spark_run.reference_quarantine.parent / "reference-quarantine-2"
    data = load_training_data(spark_run.data, FAST, with_quarantine)
    reference = build_artifacts(data, dataclasses.replace(FAST, coldstart_max_purchases=-1))
    ours = load_current(spark_run.root)
    exact = ["item_ids", "customer_ids", "store_ids", "alias_ids", "alias_customer", "item_titles",
             "item_channels", "hist_indptr", "hist_items", "hist_first_day", "hist_last_day", "hist_last_channel",
             "hist_last_store", "copurchase_indptr", "copurchase_items", "copurchase_support", "pop_store_items",
             "rfm_scores", "rfm_segment", "cust_channels"]
    for name in exact:
        np.testing.assert_array_equal(ours[name], reference.arrays[name], err_msg=name)
    close = ["hist_count", "hist_decayed", "copurchase_scores", "pop_global", "pop_channel", "pop_store_scores",
             "item_trend", "item_repurchase_days", "item_repurchase_rate", "cust_monetary"]
    for name in close:
        np.testing.assert_allclose(ours[name], reference.arrays[name], rtol=1e-5, atol=1e-6, err_msg=name)
    assert ours.channels == reference.channels
    assert ours.row_counts == reference.row_counts
    assert ours["als_item_factors"].shape == reference.arrays["als_item_factors"].shape
    has_interactions = np.abs(ours["als_user_factors"]).sum(axis=1) > 0
    assert has_interactions.sum() == reference.row_counts["customers_with_interactions"]


def test_the_manifest_says_spark_and_what_was_skipped(spark_run: SparkRun) -> None:
    assert load_current(spark_run.root, verify=True).version == spark_run.result.result.version
    manifest = json.loads((Path(spark_run.result.result.path) / "manifest.json").read_text())
    assert manifest["params"]["engine"] == "spark" and manifest["params"]["spark_master"] == "local[2]"
    assert set(manifest["extra"]["spark"]["skipped"]) == {"coldstart", "ranker", "evaluation"}
    assert manifest["schema_version"] and manifest["files"]  # load_current verified every checksum above
    summary = spark_run.result.summary()
    assert "engine       spark (local[2])" in summary and summary.count("skipped") == 3


def test_the_real_server_answers_every_rpc_from_the_spark_set(spark_run: SparkRun, tmp_path: Path) -> None:
    arts = load_current(spark_run.root)
    counts = np.diff(arts["hist_indptr"])
    owner = int(np.argmax(counts))
    customer = str(arts["customer_ids"][owner])
    alias = str(arts["alias_ids"][np.flatnonzero(arts["alias_customer"] == owner)[0]])
    anchor = int(np.argmax(np.diff(arts["copurchase_indptr"])))
    partner = int(arts["copurchase_items"][arts["copurchase_indptr"][anchor]])
    basket = [str(arts["item_ids"][anchor]), str(arts["item_ids"][partner])]
    env = dict(os.environ, RECSVC_SERVER__ARTIFACT_ROOT=str(spark_run.root), RECSVC_SERVER__PORT="0",
               RECSVC_SERVER__HOST="127.0.0.1", RECSVC_SERVER__RELOAD_POLL_SECONDS="0")
    with ServeProcess(serve_command(), tmp_path / "serve.log", env=env) as server:
        try:
            with grpc.insecure_channel(server.target) as channel:
                stub = recsvc_pb2_grpc.RecommenderStub(channel)
                health = health_pb2_grpc.HealthStub(channel)
                assert health.Check(health_pb2.HealthCheckRequest(service=""), timeout=10).status == \
                    health_pb2.HealthCheckResponse.SERVING
                known = stub.Recommend(recsvc_pb2.RecommendRequest(customer_id=alias, channel="web", num_items=8),
                                       timeout=10)
                assert known.known_customer and known.resolved_customer_id == customer and len(known.items) == 8
                assert known.model_version == arts.version and all(item.reason.text for item in known.items)
                store = stub.Recommend(recsvc_pb2.RecommendRequest(customer_id=customer, channel="store",
                                                                   store_id=str(arts["store_ids"][0])), timeout=10)
                assert len(store.items) == 10
                unknown = stub.Recommend(recsvc_pb2.RecommendRequest(customer_id="nobody", channel="app"), timeout=10)
                assert not unknown.known_customer and unknown.policy == "popular" and len(unknown.items) == 10
                bundle = stub.RecommendBundle(recsvc_pb2.RecommendBundleRequest(
                    basket_item_ids=[*basket, "no-such-item"], channel="web", num_items=5), timeout=10)
                assert len(bundle.items) == 5 and not set(basket) & {i.item_id for i in bundle.items}
                assert list(bundle.unknown_item_ids) == ["no-such-item"]
                similar = stub.SimilarItems(recsvc_pb2.SimilarItemsRequest(item_id=basket[0], num_items=5),
                                            timeout=10)
                assert 0 < len(similar.items) <= 5 and basket[0] not in {i.item_id for i in similar.items}
                with pytest.raises(grpc.RpcError) as error:
                    stub.SimilarItems(recsvc_pb2.SimilarItemsRequest(item_id="no-such-item"), timeout=10)
                assert error.value.code() == grpc.StatusCode.NOT_FOUND
                info = stub.GetModelInfo(recsvc_pb2.GetModelInfoRequest(), timeout=10)
                assert info.version == arts.version and info.num_items == arts["item_ids"].size
                profile = stub.GetCustomerProfile(recsvc_pb2.GetCustomerProfileRequest(customer_id=alias),
                                                  timeout=10)
                assert profile.customer_id == customer and len(profile.recent_purchases) > 0
        finally:
            server.send_signal(signal.SIGTERM)
            server.wait(timeout=30)
