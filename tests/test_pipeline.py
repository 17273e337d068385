"""build_artifacts and train(): the built set satisfies the artifact contract and survives publishing."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from recsvc.artifacts import (
    REQUIRED_ARRAYS,
    ArtifactError,
    current_version,
    list_versions,
    load_current,
    publish_artifacts,
)
from recsvc.config import TrainingSettings
from recsvc_training.assemble import BUILD_STEPS, build_artifacts
from recsvc_training.input import columns as C
from recsvc_training.input.dataset import IngestReport, TrainingData
from recsvc_training.pipeline import TrainResult, train

# The builders are under test here; evaluation, the learned blend and the gate have tests/test_learned.py.
FAST = TrainingSettings(als_factors=4, als_iterations=3, progress=False, copurchase_min_support=1,
                        popularity_store_top_k=5, evaluate=False, learn_ranker=False)


def shop_data(report: IngestReport | None = None) -> TrainingData:
    """A small omnichannel shop: 40 customers, 12 items, 2 stores, 3 channels, aliases and returns."""
    rng = np.random.default_rng(7)
    rows = []
    for k in range(400):
        customer = f"c{rng.integers(0, 40):02d}"
        day = 19_000 + int(rng.integers(0, 90))
        channel = ["web", "app", "store"][k % 3]
        store = f"s{k % 2}" if channel == "store" else ""
        event = [C.VIEW, C.CART, C.PURCHASE, C.PURCHASE, C.PURCHASE][k % 5]
        for item in rng.choice(12, size=int(rng.integers(1, 4)), replace=False):
            rows.append({C.TIMESTAMP: pd.Timestamp(day * 86_400 + k, unit="s", tz="UTC"),
                         C.CUSTOMER_ID: customer, C.ITEM_ID: f"i{item:02d}", C.EVENT: event,
                         C.CHANNEL: channel, C.STORE_ID: store, C.ORDER_ID: f"o{k}" if channel != "store" else "",
                         C.QUANTITY: 1.0, C.PRICE: 3.0, C.DAY: day})
    rows.append({**rows[2], C.EVENT: C.RETURN, C.TIMESTAMP: rows[2][C.TIMESTAMP] + pd.Timedelta(days=1),
                 C.DAY: rows[2][C.DAY] + 1})
    events = pd.DataFrame(rows)
    events[C.DAY] = events[C.DAY].astype(np.int32)
    events[C.BASKET_ID] = events[C.ORDER_ID].where(events[C.ORDER_ID] != "",
                                                   events[C.CUSTOMER_ID] + "@" + events[C.DAY].astype(str))
    events = events.sort_values(C.TIMESTAMP, kind="stable", ignore_index=True)
    items = pd.DataFrame({C.ITEM_ID: [f"i{i:02d}" for i in range(13)], C.TITLE: [f"Item {i}" for i in range(13)],
                          C.CATEGORY: "food", C.PRICE: 2.0, C.CHANNELS: ["", "web|app", "store"] * 4 + [""]})
    return TrainingData(
        events=events, items=items,
        customers=pd.DataFrame({C.CUSTOMER_ID: ["c99"]}),
        aliases=pd.DataFrame({C.ALIAS_ID: ["card-1", "app-2"], C.CUSTOMER_ID: ["c01", "c99"]}),
        stock=pd.DataFrame({C.STORE_ID: ["s7"], C.ITEM_ID: ["i00"], C.QUANTITY_ON_HAND: [3.0]}),
        channels=["web", "app", "store"],
        report=report or IngestReport(rows_read={"events": 410}, rows_kept={"events": len(events)},
                                      quarantined={"events": {C.REASON_DUPLICATE: 7, C.REASON_BAD_TIMESTAMP: 3}}))


def test_build_artifacts_satisfies_the_contract():
    data = shop_data()
    artifacts = build_artifacts(data, FAST)
    artifacts.validate()
    assert set(REQUIRED_ARRAYS) <= set(artifacts.arrays)
    assert artifacts.channels == ["web", "app", "store"]
    assert artifacts.data_end_day == int(data.events[C.DAY].max())
    a = artifacts.arrays
    assert a["item_ids"].size == 13  # the catalog item nobody touched is still there
    assert a["customer_ids"].tolist()[-1] == "c99"  # a customer without events, via the customer table
    assert a["store_ids"].tolist() == ["s0", "s1", "s7"]
    assert a["als_user_factors"].shape == (a["customer_ids"].size, 4)
    for name, dtype in {"item_prices": np.float32, "alias_customer": np.int32, "hist_indptr": np.int64,
                        "hist_last_channel": np.int16, "pop_store_items": np.int32,
                        "copurchase_scores": np.float32, "als_item_factors": np.float32}.items():
        assert a[name].dtype == dtype, name
    assert artifacts.row_counts["events"] == len(data.events)
    assert artifacts.row_counts["events_return"] == 1
    assert artifacts.row_counts["quarantined"] == 10
    assert artifacts.row_counts["aliases"] == 2
    assert artifacts.params["als_factors"] == 4
    assert artifacts.params["event_weights"] == dict(FAST.event_weights)
    assert set(artifacts.extra["build_seconds"]) == set(BUILD_STEPS)
    assert artifacts.input_fingerprint == ""  # no input files behind hand-built data


def test_build_artifacts_round_trips_through_publish(tmp_path: Path):
    artifacts = build_artifacts(shop_data(), FAST)
    publish_artifacts(artifacts, tmp_path, keep=2)
    loaded = load_current(tmp_path)
    assert loaded.channels == artifacts.channels and loaded.data_end_day == artifacts.data_end_day
    assert loaded.row_counts == artifacts.row_counts and loaded.params == artifacts.params
    for name, array in artifacts.arrays.items():
        np.testing.assert_array_equal(loaded[name], array, err_msg=name)
        assert loaded[name].dtype == array.dtype


def test_fingerprint_covers_input_files(tmp_path: Path):
    events_file = tmp_path / "events.csv"
    events_file.write_text("a,b\n1,2\n")
    report = IngestReport(input_files=[events_file])
    first = build_artifacts(shop_data(report), FAST).input_fingerprint
    events_file.write_text("a,b\n1,3\n")
    assert first and build_artifacts(shop_data(report), FAST).input_fingerprint != first


def test_build_artifacts_refuses_empty_events():
    data = shop_data()
    empty = TrainingData(events=data.events.iloc[:0], items=data.items, customers=data.customers,
                         aliases=data.aliases, stock=data.stock, channels=data.channels, report=data.report)
    with pytest.raises(ValueError, match="no events"):
        build_artifacts(empty, FAST)


def _loader(data: TrainingData):
    seen: dict[str, Path] = {}

    def load(data_dir: Path, settings: TrainingSettings, quarantine_dir: Path) -> TrainingData:
        seen["quarantine_dir"] = quarantine_dir
        return data

    return load, seen


def test_train_publishes_runs_the_hook_and_summarises(tmp_path: Path):
    load, seen = _loader(shop_data())
    calls = []

    def gate(data: TrainingData, artifacts) -> None:
        calls.append(artifacts.version)
        artifacts.evaluation["recall@10"] = 0.25

    result = train(tmp_path / "data", tmp_path / "art", FAST, before_publish=gate, loader=load)
    assert isinstance(result, TrainResult)
    assert current_version(tmp_path / "art") == result.version
    assert result.path == str(tmp_path / "art" / "versions" / result.version)
    assert seen["quarantine_dir"] == tmp_path / "art" / "quarantine" / result.version
    assert calls == [""]  # the hook sees the set before it has a version, i.e. before publishing
    assert load_current(tmp_path / "art").evaluation == {"recall@10": 0.25}
    assert {"ingest", *BUILD_STEPS, "before_publish", "publish", "total"} <= set(result.timings)
    assert result.peak_rss_mb > 0
    text = result.summary()
    for expected in (result.version, "quarantined  10 rows", "events/duplicate 7", "events/bad_timestamp 3",
                     "recall@10 0.2500", "peak memory", str(result.quarantine_dir)):
        assert expected in text, expected


def test_a_refusing_quality_gate_publishes_nothing(tmp_path: Path):
    load, _ = _loader(shop_data())
    first = train(tmp_path / "data", tmp_path / "art", FAST, loader=load)

    def refuse(data: TrainingData, artifacts) -> None:
        raise ArtifactError("quality gate: recall dropped")

    with pytest.raises(ArtifactError, match="quality gate"):
        train(tmp_path / "data", tmp_path / "art", FAST, before_publish=refuse, loader=load)
    assert current_version(tmp_path / "art") == first.version
    assert list_versions(tmp_path / "art") == [first.version]


def test_train_with_real_ingest_on_a_tiny_folder(tmp_path: Path):
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    lines = ["timestamp,customer_id,item_id,event,channel,store_id,order_id,quantity,price"]
    for day in range(1, 21):
        for customer in ("c1", "c2", "c3"):
            for item in (day % 4, (day + 1) % 4):
                lines.append(f"2024-03-{day:02d}T10:00:00Z,{customer},i{item},purchase,web,,o{day}{customer},1,2.0")
    lines.append("not-a-time,c1,i1,purchase,web,,,1,2.0")
    (data_dir / "events.csv").write_text("\n".join(lines) + "\n")
    (data_dir / "items.csv").write_text("item_id,title,category,price,channels\n"
                                        + "".join(f"i{i},Item {i},cat,2.0,\n" for i in range(5)))
    result = train(data_dir, tmp_path / "art", FAST)
    loaded = load_current(tmp_path / "art")
    assert loaded.input_fingerprint
    assert loaded.row_counts["events"] == 120
    assert result.report.total_quarantined() == 1
    assert "quarantined  1 rows" in result.summary()


def test_data_before_a_day_leaves_out_that_day_and_later_only() -> None:
    data = shop_data()
    days = data.events[C.DAY]
    cut = int(days.min()) + (int(days.max()) - int(days.min())) // 2
    earlier = data.before(cut)
    assert int(earlier.events[C.DAY].max()) < cut
    assert len(earlier.events) == int((days < cut).sum()) > 0
    pd.testing.assert_frame_equal(earlier.events, data.events[days < cut])
    assert earlier.items is data.items and earlier.stock is data.stock and earlier.aliases is data.aliases
    assert len(data.events) == len(days)  # the original is untouched


def test_evaluate_as_of_takes_an_iso_date_and_says_what_is_wrong_with_another(
        capsys: pytest.CaptureFixture[str]) -> None:
    from recsvc.cli import build_parser

    args = build_parser().parse_args(["evaluate", "--data", "d", "--out", "o", "--as-of", "1970-02-01"])
    assert args.as_of == 31
    with pytest.raises(SystemExit):
        build_parser().parse_args(["evaluate", "--data", "d", "--out", "o", "--as-of", "01/02/1970"])
    assert "expected a date as YYYY-MM-DD, got '01/02/1970'" in capsys.readouterr().err
