"""The artifact contract, part by part: every registered part round-trips, refuses a wrong shape, and a set
without a required part is refused. Parts are discovered from the registry (``recsvc.artifacts.schema.PARTS``)
and the package folder, not listed here, so a new part is covered the day it is added."""

from __future__ import annotations

import ast
import dataclasses
import importlib
import pkgutil
from pathlib import Path

import numpy as np
import pytest

import recsvc.artifacts.parts as parts_package
from recsvc.artifacts import PARTS, REQUIRED_ARRAYS, ArtifactError, ArtifactSet, load_artifact_set, read_parts
from recsvc.artifacts.part import Part
from recsvc.artifacts.parts.foldin import FoldInParams
from recsvc.artifacts.parts.ranker import RankerPart
from recsvc.artifacts.parts.stock import TrainingStock
from recsvc.artifacts.stock_table import StockTable
from recsvc.config import TrainingSettings
from recsvc.ranking.trees import TreeEnsemble
from recsvc_training.assemble import foldin_params
from tests.toy_model import build_toy_artifacts

SRC = Path(__file__).resolve().parents[1] / "src"


def _discovered() -> list[type[Part]]:
    """Every Part subclass defined in a module of recsvc.artifacts.parts."""
    found: list[type[Part]] = []
    for info in pkgutil.iter_modules(parts_package.__path__):
        module = importlib.import_module(f"{parts_package.__name__}.{info.name}")
        found += [obj for obj in vars(module).values()
                  if isinstance(obj, type) and issubclass(obj, Part) and obj is not Part
                  and obj.__module__ == module.__name__]
    return found


def _full_set() -> ArtifactSet:
    """The toy set plus one instance of every optional part, so each part has arrays to test."""
    artifacts = build_toy_artifacts()
    a, n_items, n_customers = artifacts.arrays, artifacts.arrays["item_ids"].size, artifacts.arrays["customer_ids"].size
    n_ch = len(artifacts.channels)
    ensemble = TreeEnsemble(split_feature=np.array([0]), threshold=np.array([0.5]), left_child=np.array([-1]),
                            right_child=np.array([-2]), default_left=np.array([True]), missing_type=np.array([0]),
                            leaf_value=np.array([0.1, -0.1]), tree_root=np.array([0]), feature_names=["f0"])
    a.update(ensemble.to_arrays())
    a.update(TrainingStock(StockTable.from_rows(["S01"], ["B01"], [2.0])[0], as_of="2026-05-08T03:00:00").to_arrays())
    a.update(ann_index=np.arange(16, dtype=np.uint8), ann_cosine_index=np.arange(16, dtype=np.uint8))
    a.update(rfm_scores=np.ones((n_customers, 3), dtype=np.int8), rfm_segment=np.zeros(n_customers, dtype=np.int8),
             cust_monetary=np.ones(n_customers, dtype=np.float32), cust_channels=np.ones((n_customers, n_ch), bool),
             lfm_user_embeddings=np.ones((n_customers, 2), np.float32),
             lfm_user_biases=np.zeros(n_customers, np.float32),
             lfm_item_embeddings=np.ones((n_items, 2), np.float32), lfm_item_biases=np.zeros(n_items, np.float32),
             coldstart_customer=np.zeros(n_customers, dtype=bool),
             hist_decayed=np.ones(a["hist_items"].shape, np.float32), item_trend=np.zeros(n_items, np.float32),
             pop_newcomer_channel=np.ones((n_ch, n_items), np.float32),
             pop_newcomer_global=np.ones(n_items, np.float32),
             coldstart_group=np.zeros(n_customers, np.int32), coldstart_group_items=np.zeros((2, 3), np.int32),
             coldstart_newcomer_items=np.zeros((n_ch + 1, 3), np.int32),
             knn_indptr=np.concatenate([[0, 1], np.full(n_items - 1, 1)]).astype(np.int64),
             knn_items=np.array([1], np.int32), knn_scores=np.array([0.5], np.float32))
    a.update(next_basket_indptr=np.arange(n_customers + 1, dtype=np.int64),
             next_basket_items=np.zeros(n_customers, np.int32), next_basket_scores=np.ones(n_customers, np.float32))
    artifacts.extra.update(ann={"kind": "faiss-ivf"}, ann_cosine={"kind": "faiss-ivf", "space": "cosine"})
    lists = np.full((n_ch, 2, 3), -1, dtype=np.int32)
    lists[:, :, 0] = 0
    a.update(stored_customers=np.array([0, 1], dtype=np.int32), stored_items=lists,
             stored_scores=np.where(lists >= 0, np.float32(1.0), np.float32(np.nan)).astype(np.float32),
             stored_source=np.where(lists >= 0, 0, -1).astype(np.int8), stored_anchor=lists.copy())
    artifacts.extra.update(stored_lists={"day": 0, "length": 3, "channels": list(artifacts.channels)})
    return artifacts


def test_every_part_module_is_registered_and_every_array_has_one_owner() -> None:
    assert set(_discovered()) == set(PARTS), "a part module is missing from recsvc.artifacts.schema.PARTS"
    owners: dict[str, str] = {}
    for part in PARTS:
        assert dataclasses.is_dataclass(part) and part.__dataclass_params__.frozen, f"{part.NAME} is not frozen"
        for name in part.ARRAYS:
            assert name not in owners, f"{name} is owned by {owners[name]} and {part.NAME}"
            owners[name] = part.NAME
    assert len({p.NAME for p in PARTS}) == len(PARTS)


@pytest.mark.parametrize("part", PARTS, ids=lambda p: p.NAME)
def test_each_part_round_trips(part: type[Part]) -> None:
    artifacts = _full_set()
    found = read_parts(artifacts.arrays, artifacts.channels, artifacts.extra).get(part)
    assert found is not None
    arrays = found.to_arrays()
    assert set(arrays) <= set(part.ARRAYS)
    for name, value in arrays.items():
        same = np.array_equal(value, artifacts.arrays[name], equal_nan=value.dtype.kind == "f")
        assert same and value.dtype == artifacts.arrays[name].dtype
    again = read_parts({**artifacts.arrays, **arrays}, artifacts.channels, {**artifacts.extra, **found.to_extra()})
    assert again.get(part) is not None and set(again[part].to_arrays()) == set(arrays)


@pytest.mark.parametrize("part", [p for p in PARTS if p.ARRAYS], ids=lambda p: p.NAME)
def test_each_part_refuses_a_wrong_shape(part: type[Part]) -> None:
    artifacts = _full_set()
    for name in part.ARRAYS:
        arrays = {**artifacts.arrays, name: artifacts.arrays[name][..., None]}  # one axis too many
        with pytest.raises(ArtifactError, match=name.removeprefix("ranker_").removeprefix("stock_") + "|stock"):
            read_parts(arrays, artifacts.channels, artifacts.extra)


@pytest.mark.parametrize("name", REQUIRED_ARRAYS)
def test_a_set_without_a_required_array_is_refused(name: str) -> None:
    artifacts = build_toy_artifacts()
    del artifacts.arrays[name]
    with pytest.raises(ArtifactError, match=name):
        artifacts.validate()


@pytest.mark.parametrize("part", [p for p in PARTS if not p.REQUIRED and len(p.ARRAYS) > 1], ids=lambda p: p.NAME)
def test_an_incomplete_optional_part_is_refused(part: type[Part]) -> None:
    artifacts = _full_set()
    del artifacts.arrays[part.ARRAYS[0]]
    with pytest.raises(ArtifactError):
        artifacts.validate()


def test_a_set_with_every_part_survives_the_disk(tmp_path: Path) -> None:
    from recsvc.artifacts import write_artifact_set

    artifacts = _full_set()
    write_artifact_set(artifacts, tmp_path / "set")
    loaded = load_artifact_set(tmp_path / "set")
    assert loaded.catalog_id == artifacts.catalog_id and len(loaded.catalog_id) == 16
    assert isinstance(loaded.validate()[RankerPart], RankerPart)


def test_a_set_published_before_catalog_ids_still_loads(tmp_path: Path) -> None:
    """Schema 1.0 (today's main before this change): no catalog_id, no stock part; read as before."""
    from recsvc.artifacts import write_artifact_set

    folder = tmp_path / "set"
    write_artifact_set(build_toy_artifacts(), folder)
    manifest = (folder / "manifest.json").read_text()
    (folder / "manifest.json").write_text(manifest.replace('"schema_version": "1.1"', '"schema_version": "1.0"')
                                          .replace('"catalog_id"', '"catalog_id_unknown"'))
    loaded = load_artifact_set(folder)
    assert loaded.catalog_id == "" and TrainingStock not in loaded.validate()


def test_the_foldin_defaults_are_the_trainers() -> None:
    assert foldin_params(TrainingSettings()) == FoldInParams.DEFAULT


def test_array_names_are_string_literals_only_inside_their_part() -> None:
    """No module of src/ outside recsvc/artifacts/parts names an array of a part as a string literal (the
    trainer and the server meet only in the parts). Not array names, though spelled alike: the snapshot files
    of recsvc.artifacts.stock (a format of its own) and the ranker's feature names (recsvc.ranking.features).
    """
    names = {name for part in PARTS for name in part.ARRAYS}
    pending = {"recsvc/artifacts/stock.py", "recsvc/ranking/features.py"}
    offenders = []
    for path in sorted(SRC.rglob("*.py")):
        rel = path.relative_to(SRC).as_posix()
        if rel.startswith(("recsvc/artifacts/parts/", "recsvc/v1/")) or rel in pending:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value in names:
                offenders.append(f"{rel}:{node.lineno} {node.value!r}")
    assert not offenders, offenders
