"""Stock snapshots: the format, atomic publish, pickup without retraining, the engine's in-store filter, and
stock that follows its model's catalog (issue 15, part 3)."""

from __future__ import annotations

import gzip
import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest

from recsvc.artifacts import IdIndex, publish_artifacts
from recsvc.artifacts.parts.stock import TrainingStock
from recsvc.artifacts.stock import (
    StockCatalog,
    current_catalog,
    load_current_stock,
    load_stock,
    publish_stock,
    read_stock_csv,
    stock_root,
)
from recsvc.artifacts.stock_table import StockError, StockTable
from recsvc.cli import main as cli_main
from recsvc.config import ServerSettings
from recsvc.ranking import BundleQuery, RecommendationEngine, RecommendQuery
from recsvc.server.stock import StockFilter, StockWatcher, describe_stock
from recsvc.server.versions import build_engine, load_version, rollback_current
from tests.toy_model import CREATED_AT, build_toy_artifacts, publish_toy


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
    publish_toy(tmp_path)
    first = Path(publish_stock(tmp_path, _table([("S01", "B02", 0), ("S01", "B01", 4)]), source="test"))
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
    publish_toy(tmp_path)
    catalog = current_catalog(tmp_path).catalog_id
    watcher = StockWatcher(tmp_path)
    assert watcher.newest(catalog) is None
    first = Path(publish_stock(tmp_path, _table([("S01", "B02", 0)])))
    assert watcher.newest(catalog) is not None and watcher.newest(catalog).version == first.name  # type: ignore[union-attr]
    second = Path(publish_stock(tmp_path, _table([("S01", "B02", 5)])))
    assert watcher.newest(catalog).version == second.name  # type: ignore[union-attr]
    # the newest snapshot cannot be loaded: logged, and the previous snapshot stays in use
    third = Path(publish_stock(tmp_path, _table([("S01", "B02", 7)])))
    (third / "quantities.npy").write_bytes(b"garbage")
    with caplog.at_level(logging.WARNING, logger="recsvc.server.stock"):
        assert watcher.newest(catalog).version == second.name  # type: ignore[union-attr]
    assert "keeping the previous one" in caplog.text
    assert StockWatcher.for_root(tmp_path) is StockWatcher.for_root(tmp_path / ".")


def test_out_of_stock_means_quantity_at_most_zero_or_no_row_in_a_store_with_rows(tmp_path: Path) -> None:
    publish_stock(tmp_path, _table([("S01", "A", 3), ("S01", "B", 0), ("S01", "C", -1), ("S01", "ZZ", 9),
                                    ("S02", "A", 1)]), catalog=StockCatalog("c", "v", IdIndex(np.array(["A"]))))
    stock = StockFilter(StockWatcher(tmp_path), IdIndex(np.array(["A", "B", "C", "D"])))
    assert stock.in_stock("S01").tolist() == [True, False, False, False]  # type: ignore[union-attr]
    assert stock.in_stock("S02").tolist() == [True, False, False, False]  # type: ignore[union-attr]
    assert stock.in_stock("S03") is None  # no rows for the store: no stock data, no filter
    assert stock.in_stock("") is None


def _engine(root: Path) -> RecommendationEngine:
    """The engine a server builds for the version CURRENT names under ``root`` (publishing the toy set first
    when nothing is published there)."""
    if not (root / "CURRENT").exists():
        publish_toy(root)
    settings = ServerSettings(artifact_root=str(root))
    version = (root / "CURRENT").read_text().strip()
    return load_version(root, version, settings, lambda a: _at_toy_time(build_engine(a, settings)))


def _at_toy_time(engine: RecommendationEngine) -> RecommendationEngine:
    engine._clock = lambda: CREATED_AT
    return engine


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
    assert cli_main(["stock", "--artifacts", str(tmp_path / "art"), "--file", str(path)]) == 1
    assert "no model published" in capsys.readouterr().err  # a snapshot needs a catalog to belong to
    publish_toy(tmp_path / "art")
    assert cli_main(["stock", "--artifacts", str(tmp_path / "art"), "--file", str(path)]) == 0
    out = capsys.readouterr().out
    assert "2 of 3 rows kept (skipped: duplicate 1)" in out
    assert f"catalog {current_catalog(tmp_path / 'art').catalog_id} (of version toy-1, CURRENT now)" in out
    snapshot = load_current_stock(tmp_path / "art")
    assert snapshot is not None and snapshot.table.quantities.tolist() == [2.0, 0.0]
    (tmp_path / "bad.csv").write_text("sku,qty\n1,2\n")
    assert cli_main(["stock", "--artifacts", str(tmp_path / "art"), "--file", str(tmp_path / "bad.csv")]) == 1
    assert "missing column" in capsys.readouterr().err


# --- issue 15, part 3: stock follows its model's catalog ---------------------------------------------------

IN_S01 = RecommendQuery(customer_id="C005", channel="store", store_id="S01", num_items=12)
#: The toy model's training-time stock: croissants B02 sold out in S01, bread B01 and D01, H04 on the shelf.
OWN_STOCK = [("S01", "B02", 0), ("S01", "B01", 3), ("S01", "D01", 5), ("S01", "H04", 2)]


def _publish_with_stock(root: Path, version: str, rows: Sequence[tuple[str, str, float]], prefix: str = ""
                        ) -> None:
    """The toy set with a training-time stock part; ``prefix`` renames every item (another catalog)."""
    artifacts = build_toy_artifacts()
    artifacts.version = version
    if prefix:
        artifacts.arrays["item_ids"] = np.char.add(prefix, artifacts.arrays["item_ids"])
    part = TrainingStock(_table([(s, prefix + i, q) for s, i, q in rows]), as_of="2026-05-08T03:00:00+00:00")
    artifacts.arrays.update(part.to_arrays())
    artifacts.extra.update(part.to_extra())
    publish_artifacts(artifacts, root)


def test_a_snapshot_of_another_catalog_never_empties_the_store_answer(tmp_path: Path,
                                                                      capsys: pytest.CaptureFixture[str]) -> None:
    """The issue's reproduction: serve v1, push another sample's stock, a store Recommend still gets items —
    filtered by v1's own training-time stock (on main it answered with nothing)."""
    _publish_with_stock(tmp_path, "v1", OWN_STOCK)
    engine = _engine(tmp_path)
    served = _ids(engine.recommend(IN_S01))
    assert served and set(served) <= {"B01", "D01", "H04"}  # the model's own stock filters from the start

    other = tmp_path / "other-sample-stock.csv"
    other.write_text("store_id,item_id,quantity_on_hand\n" + "".join(f"S01,X{i:03d},5\n" for i in range(40)))
    assert cli_main(["stock", "--artifacts", str(tmp_path), "--file", str(other)]) == 1
    assert "belongs to another catalog" in capsys.readouterr().err
    # ... and a snapshot of another catalog already there (a newer model's, published while v1 still serves)
    publish_stock(tmp_path, _table([("S01", f"X{i:03d}", 5) for i in range(40)]),
                  catalog=StockCatalog("another-catalog", "v2", IdIndex(np.array(["X000"]))))
    assert _ids(engine.recommend(IN_S01)) == served


def test_a_newer_push_for_the_same_catalog_replaces_the_models_own_stock(tmp_path: Path) -> None:
    _publish_with_stock(tmp_path, "v1", OWN_STOCK)
    engine = _engine(tmp_path)
    assert "B02" not in _ids(engine.recommend(IN_S01))  # sold out in the training-time stock
    publish_stock(tmp_path, _table([("S01", "B02", 4), ("S01", "D01", 0)]))  # CURRENT is v1: its catalog
    assert _ids(engine.recommend(IN_S01)) == ["B02"]


def test_rollback_restores_the_stock_of_the_version(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """v1 and v2 belong to different catalogs; after a rollback to v1 its own stock filters again, though the
    snapshot pushed last is v2's (on main the rolled-back model answered store calls with nothing)."""
    _publish_with_stock(tmp_path, "v1", OWN_STOCK)
    _publish_with_stock(tmp_path, "v2", [("S01", "B02", 9)], prefix="N-")
    publish_stock(tmp_path, _table([("S01", "N-B01", 9)]))  # a push for v2's catalog
    assert set(_ids(_engine(tmp_path).recommend(IN_S01))) <= {"N-B01"}
    assert cli_main(["rollback", "--artifacts", str(tmp_path)]) == 0
    assert "in stores they filter by its own training-time stock" in capsys.readouterr().out
    rolled_back = _ids(_engine(tmp_path).recommend(IN_S01))
    assert rolled_back and set(rolled_back) <= {"B01", "D01", "H04"}


def test_rollback_keeps_a_newer_push_for_the_versions_catalog(tmp_path: Path) -> None:
    _publish_with_stock(tmp_path, "v1", OWN_STOCK)
    publish_stock(tmp_path, _table([("S01", "H04", 3)]))  # pushed for v1's catalog after its training
    _publish_with_stock(tmp_path, "v2", [("S01", "B02", 9)], prefix="N-")
    publish_stock(tmp_path, _table([("S01", "N-B01", 9)]))
    rollback_current(tmp_path)
    assert _ids(_engine(tmp_path).recommend(IN_S01)) == ["H04"]
    assert describe_stock(tmp_path, "v1").startswith("stock snapshot")


def test_a_set_from_before_catalogs_reads_snapshots_that_name_none(tmp_path: Path) -> None:
    """Schema 1.0 on both sides: a set and a snapshot published by an older recsvc are served as before."""
    publish_toy(tmp_path)
    manifest = tmp_path / "versions" / "toy-1" / "manifest.json"
    manifest.write_text(manifest.read_text().replace('"catalog_id"', '"catalog_id_was"'))
    folder = Path(publish_stock(tmp_path, _table([("S01", "H04", 3)])))
    snapshot_manifest = folder / "manifest.json"
    snapshot_manifest.write_text(snapshot_manifest.read_text().replace('"catalog_id"', '"catalog_id_was"'))
    (tmp_path / "stock" / "CURRENT").write_text(folder.name + "\n")  # a fresh stat signature for the watcher
    assert _ids(_engine(tmp_path).recommend(IN_S01)) == ["H04"]


def test_over_grpc_a_new_models_stock_and_a_rollback_never_empty_the_store_channel(tmp_path: Path) -> None:
    """A real server on port 0: v1 serves; v2 (another catalog) is published with a push for its catalog while
    v1 still serves (the issue's 30 s poll window); then v2 serves; then Admin rolls back to v1. Every store
    answer has items, each filtered by the stock of the model that gives it."""
    from recsvc.v1 import admin_pb2, recsvc_pb2
    from tests.test_lifecycle import LiveServer, settings_for

    _publish_with_stock(tmp_path, "v1", OWN_STOCK)
    live = LiveServer(settings_for(tmp_path), engine_factory=lambda a: _at_toy_time(
        build_engine(a, settings_for(tmp_path))))
    try:
        def store_items() -> tuple[str, list[str]]:
            reply = live.stub.Recommend(recsvc_pb2.RecommendRequest(customer_id="C005", channel="store",
                                                                    store_id="S01", num_items=12), timeout=10)
            return reply.model_version, [i.item_id for i in reply.items]

        version, items = store_items()
        assert version == "v1" and items and set(items) <= {"B01", "D01", "H04"}
        _publish_with_stock(tmp_path, "v2", [("S01", "N-B02", 9)], prefix="N-")
        publish_stock(tmp_path, _table([("S01", "N-B01", 9)]))  # pushed for v2's catalog, v1 still serving
        assert store_items() == (version, items)
        live.admin.ReloadModel(admin_pb2.ReloadModelRequest(), timeout=30)
        assert store_items() == ("v2", ["N-B01"])
        live.admin.RollbackModel(admin_pb2.RollbackModelRequest(to_version="v1"), timeout=30)
        assert store_items() == ("v1", items)
    finally:
        live.close()
