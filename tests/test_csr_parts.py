"""The CSR parts (co-purchase, next-basket lists, item-kNN neighbours) share one base,
:class:`recsvc.artifacts.csr_part.ItemRowsCsr`; their format on disk, and the stored lists', is the contract
between the trainer and the server, so it is pinned here.

``PINNED`` are the manifest entries (sha256 of the ``.npy`` file, dtype, shape) that main's code wrote for these
parts on the deterministic set below before the parts shared a base (commit 9114aa6): a set published before
the change must load unchanged, and a set written now must be the same bytes.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from recsvc.artifacts import ArtifactError, ArtifactSet, load_artifact_set, read_parts, write_artifact_set
from recsvc.artifacts.csr_part import ItemRowsCsr
from recsvc.artifacts.part import Part
from recsvc.artifacts.parts.copurchase import CoPurchase
from recsvc.artifacts.parts.item_neighbours import ItemNeighbours
from recsvc.artifacts.parts.next_basket import NextBasket
from recsvc.artifacts.parts.stored_lists import StoredLists
from tests.toy_model import build_toy_artifacts

CSR_PARTS = (CoPurchase, NextBasket, ItemNeighbours)
PINNED_PARTS = (*CSR_PARTS, StoredLists)

PINNED: dict[str, dict[str, object]] = {
    "copurchase_indptr": {"dtype": "<i8", "shape": [13],
                          "sha256": "368fb83b7cff3a16a22ee387cdeeccb97ca067304571ecbfc36cf132a2068733"},
    "copurchase_items": {"dtype": "<i4", "shape": [12],
                         "sha256": "383cc0bd1ff983702db0bec24ba95da0315c8efdacf0dcc227fb92f0f3c81ca0"},
    "copurchase_scores": {"dtype": "<f4", "shape": [12],
                          "sha256": "70e03c12468f9461bd481f564ab5fedc588f0749424517e01ef53bd9adfbecbc"},
    "copurchase_support": {"dtype": "<i4", "shape": [12],
                           "sha256": "4cb5cdd3c8b53dac8641d9f165709201d7e7b1dae829828959b2132af772d183"},
    "knn_indptr": {"dtype": "<i8", "shape": [13],
                   "sha256": "6c8e9de688bfb23a7f609c8ea8d4731af39ad415a71439fd29b1821cb2c6a240"},
    "knn_items": {"dtype": "<i4", "shape": [6],
                  "sha256": "c6c1a08eeba57b1680828db43710066c32efed9ebf33f64507509ffd1f422174"},
    "knn_scores": {"dtype": "<f4", "shape": [6],
                   "sha256": "ad8395498c2b43bc06f310858994527b1687c0f2da89d11d20bef10031bff902"},
    "next_basket_indptr": {"dtype": "<i8", "shape": [6],
                           "sha256": "89ebf20fcbc8ecabf953e890ba3283211bf070f770ad79aca10e307e8c4665cd"},
    "next_basket_items": {"dtype": "<i4", "shape": [4],
                          "sha256": "cf1a92925eb3a41d9e736c5196bc83413b7a35a7588b2c9881318da799f4d45b"},
    "next_basket_scores": {"dtype": "<f4", "shape": [4],
                           "sha256": "64029e1ce6dc3dcd29f3c4f00508cbb43ca6fbc3a4196a9e1afb6923bdb206da"},
    "stored_anchor": {"dtype": "<i4", "shape": [3, 2, 3],
                      "sha256": "5998a3f470c2792d77ec65159a8fabbe7f0d16870f9eb78c72568bba452ddb45"},
    "stored_customers": {"dtype": "<i4", "shape": [2],
                         "sha256": "3eb619f04015333c589955f2821fd169d893ed3ee4b04cf2fc52059085c9ae49"},
    "stored_items": {"dtype": "<i4", "shape": [3, 2, 3],
                     "sha256": "d12d5f591785ab0324ae4692e313982ad57fa2bafeb248de769a237bdce015c8"},
    "stored_scores": {"dtype": "<f4", "shape": [3, 2, 3],
                      "sha256": "3766599e7216f6ecd3c7137c4e405d61e54b14881268c23c4c2887421904a4ad"},
    "stored_source": {"dtype": "|i1", "shape": [3, 2, 3],
                      "sha256": "21f2de618aec181bf9e8581bb9a0cb1ee50479e49a5dfd63980f3c9c68953f17"},
}
PINNED_EXTRA: dict[str, object] = {"next_basket": {"k": 10, "tuned": True},
                                   "stored_lists": {"channels": ["app", "store", "web"], "day": 20000, "length": 3}}


def _deterministic_set() -> ArtifactSet:
    """The toy set plus one hand-written instance of each optional pinned part, built through the parts."""
    artifacts = build_toy_artifacts()
    n_items = artifacts.arrays["item_ids"].size
    n_customers = artifacts.arrays["customer_ids"].size
    n_channels = len(artifacts.channels)
    counts = np.arange(n_customers) % 3  # 0, 1, 2, 0, 1 entries per customer
    indptr = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    nnz = int(indptr[-1])
    next_basket = NextBasket(indptr, (np.arange(nnz) * 5 % n_items).astype(np.int32),
                             np.linspace(0.9, 0.1, nnz).astype(np.float32), {"k": 10, "tuned": True})
    knn_counts = np.arange(n_items) % 2
    knn_indptr = np.concatenate([[0], np.cumsum(knn_counts)]).astype(np.int64)
    knn_nnz = int(knn_indptr[-1])
    neighbours = ItemNeighbours(knn_indptr, ((np.arange(knn_nnz) * 7 + 1) % n_items).astype(np.int32),
                                np.linspace(1.0, 0.5, knn_nnz).astype(np.float32))
    lists = np.full((n_channels, 2, 3), -1, dtype=np.int32)
    lists[:, :, 0] = [[0, 1], [2, 3], [4, 5]]
    lists[:, 1, 1] = 6
    stored = StoredLists(np.array([0, 3], np.int32), lists,
                         np.where(lists >= 0, np.float32(0.5), np.float32(np.nan)).astype(np.float32),
                         np.where(lists >= 0, 1, -1).astype(np.int8), np.where(lists >= 0, 0, -1).astype(np.int32),
                         {"day": 20_000, "length": 3, "channels": list(artifacts.channels)})
    for part in (next_basket, neighbours, stored):
        artifacts.arrays.update(part.to_arrays())
        artifacts.extra.update(part.to_extra())
    return artifacts


def _part_entries(manifest: dict[str, object]) -> tuple[dict[str, object], dict[str, object]]:
    files = manifest["files"]
    extra = manifest["extra"]
    assert isinstance(files, dict) and isinstance(extra, dict)
    names = {name for part in PINNED_PARTS for name in part.ARRAYS}
    keys = {key for part in PINNED_PARTS for key in part.EXTRA_KEYS}
    return ({n: e for n, e in files.items() if n in names}, {k: v for k, v in extra.items() if k in keys})


def test_the_csr_parts_write_the_bytes_main_wrote(tmp_path: Path) -> None:
    """Regression pin: file names, dtypes, shapes, checksums and ``extra`` of the four parts, as of 9114aa6."""
    manifest = write_artifact_set(_deterministic_set(), tmp_path / "set")
    files, extra = _part_entries(manifest)
    assert manifest["schema_version"] == "1.1"
    assert files == PINNED
    assert extra == PINNED_EXTRA
    on_disk = json.loads((tmp_path / "set" / "manifest.json").read_text())
    assert _part_entries(on_disk) == (PINNED, PINNED_EXTRA)


def test_a_set_written_with_the_pinned_format_loads_into_equal_parts(tmp_path: Path) -> None:
    artifacts = _deterministic_set()
    write_artifact_set(artifacts, tmp_path / "set")
    loaded = load_artifact_set(tmp_path / "set")
    parts, written = loaded.validate(), artifacts.validate()
    for kind in PINNED_PARTS:
        got, want = parts[kind], written[kind]
        assert got.to_extra() == want.to_extra()
        for name, value in want.to_arrays().items():
            assert np.array_equal(got.to_arrays()[name], value, equal_nan=True)
            assert got.to_arrays()[name].dtype == value.dtype


@pytest.mark.parametrize("kind", CSR_PARTS, ids=lambda k: k.NAME)
def test_a_csr_part_refuses_a_bad_row_pointer_and_an_item_outside_the_catalog(kind: type[Part]) -> None:
    artifacts = _deterministic_set()
    indptr_name, items_name = kind.ARRAYS[0], kind.ARRAYS[1]
    indptr = artifacts.arrays[indptr_name].copy()
    indptr[0] = 1
    with pytest.raises(ArtifactError, match=f"{indptr_name} is not a valid CSR row pointer"):
        read_parts({**artifacts.arrays, indptr_name: indptr}, artifacts.channels, artifacts.extra)
    items = artifacts.arrays[items_name].copy()
    items[-1] = artifacts.arrays["item_ids"].size
    with pytest.raises(ArtifactError, match=f"{items_name} holds rows outside"):
        read_parts({**artifacts.arrays, items_name: items}, artifacts.channels, artifacts.extra)


def test_row_gives_a_rows_items_and_scores_and_nothing_for_an_unknown_row() -> None:
    parts = _deterministic_set().validate()
    basket = parts[NextBasket]
    items, scores = basket.row(2)  # customer row 2 has 2 entries, after 0 + 1
    assert items.tolist() == [5, 10] and scores.tolist() == pytest.approx(basket.scores[1:3].tolist())
    assert basket.row(-1)[0].size == 0 and basket.row(0)[0].size == 0


@pytest.mark.parametrize("kind", CSR_PARTS, ids=lambda k: k.NAME)
def test_every_csr_part_gives_its_rows_through_the_row_pointer(kind: type[ItemRowsCsr]) -> None:
    part = _deterministic_set().validate()[kind]
    for r in range(part.indptr.size - 1):
        items, scores = part.row(r)
        lo, hi = part.indptr[r], part.indptr[r + 1]
        assert items.tolist() == part.items[lo:hi].tolist() and scores.tolist() == part.scores[lo:hi].tolist()
