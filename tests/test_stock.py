"""Stock snapshots: the format, atomic publish, pickup without retraining, and the engine's in-store filter."""

from __future__ import annotations

import gzip
import logging
from pathlib import Path

import numpy as np
import pytest

from recsvc.artifacts import IdIndex
from recsvc.cli import main as cli_main
from recsvc.config import ServerSettings
from recsvc.ranking import BundleQuery, LoadedModel, RecommendationEngine, RecommendQuery
from recsvc.stock import (
    StockError,
    StockFilter,
    StockTable,
    StockWatcher,
    load_current_stock,
    load_stock,
    publish_stock,
    read_stock_csv,
    stock_root,
)

try:  # tests/ as a plain folder (pytest puts it on sys.path) or as a package
    from toy_model import CREATED_AT, build_toy_artifacts
except ImportError:  # pragma: no cover
    from tests.toy_model import CREATED_AT, build_toy_artifacts


def _table(rows: list[tuple[str, str, float]]) -> StockTable:
    table, _ = StockTable.from_rows(*zip(*rows, strict=True)) if rows else StockTable.from_rows([], [], [])
    return table


def test_rows_are_sorted_by_store_and_item_and_the_first_duplicate_wins() -> None:
    table, dropped = StockTable.from_rows(["S2", "S1", "S1", "S1"], ["A", "B", "A", "B"], [1, 2, 3, 9])
    assert dropped == 1
    assert list(zip(table.store_ids, table.item_ids, table.quantities, strict=True)) == [
        ("S1", "A", 3.0), ("S1", "B", 2.0), ("S2", "A", 1.0)]
    with pytest.raises(StockError, match="store_id and an item_id"):
        StockTable.from_rows(["S1"], [""], [1])
    with pytest.raises(StockError, match="finite"):
        StockTable.from_rows(["S1"], ["A"], [float("nan")])


def test_read_stock_csv_keeps_leading_zeros_and_counts_what_it_skips(tmp_path: Path) -> None:
    text = ("\ufeffitem_id, store_id ,quantity_on_hand\n"  # a BOM, other column order, padded names
            "0042,S01,3\n 0042 ,S02,0\n,S01,1\n0043,S01,many\n0042,S01,7\n0044,S01,-2\n")
    plain = tmp_path / "stock.csv"
    plain.write_text(text, encoding="utf-8")
    packed = tmp_path / "stock.csv.gz"
    packed.write_bytes(gzip.compress(text.encode("utf-8")))
    for path in (plain, packed):
        table, report = read_stock_csv(path)
        assert report.rows_read == 6 and report.rows_kept == 3
        assert report.skipped == {"missing_id": 1, "bad_quantity": 1, "duplicate": 1}
        assert table.item_ids.tolist() == ["0042", "0044", "0042"] and table.quantities.tolist() == [3, -2, 0]
    (tmp_path / "bad.csv").write_text("store,item\nS01,1\n")
    with pytest.raises(StockError, match="missing column"):
        read_stock_csv(tmp_path / "bad.csv")


def test_publish_is_atomic_verified_and_pruned(tmp_path: Path) -> None:
    assert load_current_stock(tmp_path) is None
    first = publish_stock(tmp_path, _table([("S01", "B02", 0), ("S01", "B01", 4)]), source="test")
    snapshot = load_current_stock(tmp_path)
    assert snapshot is not None and snapshot.version == first.name and snapshot.source == "test"
    assert snapshot.store_rows("S01") == slice(0, 2) and snapshot.store_rows("S02") is None
    for _ in range(3):
        publish_stock(tmp_path, _table([("S01", "B02", 1)]), keep=2)
    versions = sorted(p.name for p in (stock_root(tmp_path) / "versions").iterdir())
    assert len(versions) == 2 and not list(stock_root(tmp_path).glob(".staging-*"))

    # a changed file is caught by its checksum
    latest = stock_root(tmp_path) / "versions" / versions[-1]
    np.save(latest / "quantities.npy", np.array([99], dtype=np.float32), allow_pickle=False)
    with pytest.raises(StockError, match="checksum"):
        load_stock(latest)


def test_the_watcher_picks_up_a_new_snapshot_and_keeps_the_last_good_one(tmp_path: Path,
                                                                          caplog: pytest.LogCaptureFixture) -> None:
    watcher = StockWatcher(tmp_path)
    assert watcher.current() is None
    first = publish_stock(tmp_path, _table([("S01", "B02", 0)]))
    assert watcher.current() is not None and watcher.current().version == first.name  # type: ignore[union-attr]
    second = publish_stock(tmp_path, _table([("S01", "B02", 5)]))
    assert watcher.current().version == second.name  # type: ignore[union-attr]
    # CURRENT names a version that is not there: logged, and the previous snapshot stays in use
    (stock_root(tmp_path) / "CURRENT").write_text("no-such-version\n")
    with caplog.at_level(logging.WARNING, logger="recsvc.stock"):
        assert watcher.current().version == second.name  # type: ignore[union-attr]
    assert "keeping the previous one" in caplog.text
    assert StockWatcher.for_root(tmp_path) is StockWatcher.for_root(tmp_path / ".")


def test_out_of_stock_means_quantity_at_most_zero_or_no_row_in_a_store_with_rows(tmp_path: Path) -> None:
    publish_stock(tmp_path, _table([("S01", "A", 3), ("S01", "B", 0), ("S01", "C", -1), ("S01", "ZZ", 9),
                                    ("S02", "A", 1)]))
    stock = StockFilter(StockWatcher(tmp_path), IdIndex(np.array(["A", "B", "C", "D"])))
    assert stock.in_stock("S01").tolist() == [True, False, False, False]  # type: ignore[union-attr]
    assert stock.in_stock("S02").tolist() == [True, False, False, False]  # type: ignore[union-attr]
    assert stock.in_stock("S03") is None  # no rows for the store: no stock data, no filter
    assert stock.in_stock("") is None


def _engine(root: Path) -> RecommendationEngine:
    model = LoadedModel(build_toy_artifacts())
    return RecommendationEngine(model, ServerSettings(artifact_root=str(root)), clock=lambda: CREATED_AT,
                                stock=StockFilter(StockWatcher(root), model.items))


def _ids(result) -> list[str]:
    return [s.item_id for s in result.items]


def test_out_of_stock_items_are_not_suggested_in_that_store_and_an_update_applies_without_retraining(
        tmp_path: Path) -> None:
    engine = _engine(tmp_path)
    in_s01 = RecommendQuery(customer_id="C005", channel="store", store_id="S01", num_items=12)
    assert "B02" in _ids(engine.recommend(in_s01))  # C005 buys croissants B02 in store S01

    # croissants sold out in S01, bread B01 has no row there (out of stock too); S02 has no stock data
    publish_stock(tmp_path, _table([("S01", "B02", 0), ("S01", "D01", 5), ("S01", "H04", 2)]))
    result = engine.recommend(in_s01)
    assert "B02" not in _ids(result) and "B01" not in _ids(result)
    assert set(_ids(result)) <= {"D01", "H04"}
    assert "B02" in _ids(engine.recommend(RecommendQuery(customer_id="C005", channel="store", store_id="S02")))
    bundle = engine.bundle(BundleQuery(basket_item_ids=["D01"], channel="store", store_id="S01"))
    assert "B01" not in _ids(bundle) and (bundle.bundle is None or "B01" not in _ids(bundle.bundle))

    # back in stock: the same engine (same model, no retraining) suggests it again on the next request
    publish_stock(tmp_path, _table([("S01", "B02", 4), ("S01", "D01", 5)]))
    assert "B02" in _ids(engine.recommend(in_s01))


def test_recsvc_stock_command_publishes_a_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "stock.csv"
    path.write_text("store_id,item_id,quantity_on_hand\nS01,B02,0\nS01,B01,2\nS01,B01,3\n")
    assert cli_main(["stock", "--artifacts", str(tmp_path / "art"), "--file", str(path)]) == 0
    assert "2 of 3 rows kept (skipped: duplicate 1)" in capsys.readouterr().out
    snapshot = load_current_stock(tmp_path / "art")
    assert snapshot is not None and snapshot.table.quantities.tolist() == [2.0, 0.0]
    (tmp_path / "bad.csv").write_text("sku,qty\n1,2\n")
    assert cli_main(["stock", "--artifacts", str(tmp_path / "art"), "--file", str(tmp_path / "bad.csv")]) == 1
    assert "missing column" in capsys.readouterr().err
