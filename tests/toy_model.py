"""A hand-built artifact set whose right answers are known, shared by the ranking and server tests.

No trainer is involved: every array below is written by hand, so each test can say exactly why an item must
(or must not) come first. The story:

* 12 items in 3 categories (bakery B*, dairy D*, household H*). ``B02`` croissant is sold in stores only,
  ``D04`` oat milk online only (app, web).
* ALS factors in 2 blocks: food items and food customers live in dims 0-1, household in dims 2-3. Within food,
  ``D04`` points almost exactly where ``D01`` does, then ``D03``.
* Co-purchase: milk ``D01`` -> bread ``B01`` (0.6); bread ``B01`` -> milk 0.5, muffins ``B04`` 0.45, butter
  ``D02`` 0.4; milk -> butter 0.3 (so a bundle around bread takes milk, then butter — which goes with both —
  before muffins); dish soap ``H01`` <-> sponges ``H02``.
* ``C001`` buys laundry detergent ``H04`` every 30 days, last 27 days ago (due now), and bought bagels once
  5 days ago and butter once 200 days ago; ``C002`` bought milk 3 days ago in store ``S02``; ``C003`` buys
  oat milk online; ``C004`` (aliases ``APP-4``, ``LOY-4``) bought dish soap in the app; ``C005`` buys
  croissants in store ``S01``.
* Popularity: global ``B01`` first; on app ``D04``, in stores ``B02``, on web ``H03``; store ``S01`` top list
  ``B02, B01, H04``, ``S02`` ``D01, B01``.

:func:`build_synthetic_artifacts` builds a large random set of the same shape for latency measurements.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from pathlib import Path

import numpy as np

from recsvc.artifacts import ArtifactSet, publish_artifacts, string_array

CHANNELS = ["app", "store", "web"]
APP, STORE, WEB = 0, 1, 2
DATA_END = date(2026, 5, 7)
DATA_END_DAY = (DATA_END - date(1970, 1, 1)).days
CREATED_AT = datetime(2026, 5, 8, 3, 0, tzinfo=UTC)
VERSION = "toy-1"

ITEMS: list[tuple[str, str, str, float, tuple[bool, bool, bool]]] = [  # id, title, category, price, sold on
    # (app, store, web)
    ("B01", "Bread loaf", "bakery", 2.5, (True, True, True)),
    ("B02", "Croissant", "bakery", 1.2, (False, True, False)),
    ("B03", "Bagels 4-pack", "bakery", 3.0, (True, True, True)),
    ("B04", "Muffins", "bakery", 3.5, (True, True, True)),
    ("D01", "Milk 1 l", "dairy", 1.1, (True, True, True)),
    ("D02", "Butter 250 g", "dairy", 2.9, (True, True, True)),
    ("D03", "Yoghurt 500 g", "dairy", 1.9, (True, True, True)),
    ("D04", "Oat milk 1 l", "dairy", 2.2, (True, False, True)),
    ("H01", "Dish soap", "household", 3.2, (True, True, True)),
    ("H02", "Sponges", "household", 1.5, (True, True, True)),
    ("H03", "Paper towels", "household", 4.0, (True, True, True)),
    ("H04", "Laundry detergent", "household", 9.9, (True, True, True)),
]
ROW = {item_id: row for row, (item_id, *_rest) in enumerate(ITEMS)}

ITEM_FACTORS = {
    "B01": (1.0, 0.2, 0, 0), "B02": (0.9, 0.3, 0, 0), "B03": (0.95, 0.1, 0, 0), "B04": (0.7, 0.5, 0, 0),
    "D01": (0.3, 1.0, 0, 0), "D02": (0.5, 0.8, 0, 0), "D03": (0.2, 0.9, 0, 0), "D04": (0.3, 0.95, 0, 0),
    "H01": (0, 0, 1.0, 0.2), "H02": (0, 0, 0.95, 0.3), "H03": (0, 0, 0.5, 0.8), "H04": (0, 0, 0.2, 1.0),
}

CUSTOMERS = ["C001", "C002", "C003", "C004", "C005"]
USER_FACTORS = {
    "C001": (0, 0, 0.3, 1.0), "C002": (0.2, 1.0, 0, 0), "C003": (0.3, 0.9, 0, 0),
    "C004": (0, 0, 1.0, 0.2), "C005": (1.0, 0.2, 0, 0),
}
ALIASES = {"APP-4": "C004", "LOY-1": "C001", "LOY-4": "C004"}
STORES = ["S01", "S02"]

# customer -> [(item, net count, first day ago, last day ago, channel, store or None)]
HISTORY: dict[str, list[tuple[str, int, int, int, int, str | None]]] = {
    "C001": [("H04", 5, 147, 27, STORE, "S01"), ("B03", 1, 5, 5, STORE, "S01"), ("D02", 1, 200, 200, WEB, None)],
    "C002": [("D01", 1, 3, 3, STORE, "S02")],
    "C003": [("D04", 2, 40, 12, WEB, None)],
    "C004": [("H01", 1, 10, 10, APP, None)],
    "C005": [("B02", 3, 60, 4, STORE, "S01")],
}

REPURCHASE = {"H04": (30.0, 0.6), "D01": (7.0, 0.5), "B01": (4.0, 0.7), "D04": (14.0, 0.4)}

POP_GLOBAL = {"B01": 10, "D01": 9, "H04": 8, "B02": 7, "D03": 6, "H01": 5, "D02": 4, "H03": 3, "B03": 2,
              "D04": 1.5, "H02": 1, "B04": 0.5}
POP_BOOST = {APP: ("D04", 20.0), STORE: ("B02", 30.0), WEB: ("H03", 20.0)}
POP_STORE = {"S01": [("B02", 30.0), ("B01", 20.0), ("H04", 10.0)], "S02": [("D01", 15.0), ("B01", 12.0)]}
STORE_TOP_K = 4

# item -> [(neighbour, P(neighbour | item), baskets)], best first
COPURCHASE = {
    "B01": [("D01", 0.5, 20), ("B04", 0.45, 18), ("D02", 0.4, 16)],
    "B03": [("D03", 0.3, 5)],
    "B04": [("B01", 0.2, 18)],
    "D01": [("B01", 0.6, 20), ("D02", 0.3, 9)],
    "D02": [("B01", 0.4, 16), ("D01", 0.3, 9)],
    "D03": [("B03", 0.25, 5)],
    "H01": [("H02", 0.7, 12)],
    "H02": [("H01", 0.5, 12)],
}


def day(days_ago: int) -> int:
    """Day number ``days_ago`` days before the toy data's last day."""
    return DATA_END_DAY - days_ago


def build_toy_artifacts() -> ArtifactSet:
    """The toy artifact set described in the module docstring (validated, not yet published)."""
    n_items = len(ITEMS)
    item_channels = np.array([sold for *_rest, sold in ITEMS], dtype=bool)
    hist_rows = [HISTORY[c] for c in CUSTOMERS]
    hist = [entry for rows in hist_rows for entry in rows]
    repurchase_days = np.full(n_items, np.nan, dtype=np.float32)
    repurchase_rate = np.zeros(n_items, dtype=np.float32)
    for item, (interval, rate) in REPURCHASE.items():
        repurchase_days[ROW[item]], repurchase_rate[ROW[item]] = interval, rate
    pop_global = np.array([POP_GLOBAL[i] for i, *_ in ITEMS], dtype=np.float32)
    pop_channel = np.stack([pop_global * scale for scale in (0.2, 1.0, 0.5)]).astype(np.float32)
    pop_channel[~item_channels.T] = 0.0
    for channel, (item, value) in POP_BOOST.items():
        pop_channel[channel, ROW[item]] = value
    pop_store_items = np.full((len(STORES), STORE_TOP_K), -1, dtype=np.int32)
    pop_store_scores = np.zeros((len(STORES), STORE_TOP_K), dtype=np.float32)
    for s, store in enumerate(STORES):
        for j, (item, value) in enumerate(POP_STORE[store]):
            pop_store_items[s, j], pop_store_scores[s, j] = ROW[item], value
    co_rows = [COPURCHASE.get(i, []) for i, *_ in ITEMS]
    co = [entry for rows in co_rows for entry in rows]
    arrays = {
        "item_ids": string_array(i for i, *_ in ITEMS),
        "item_titles": string_array(t for _, t, *_ in ITEMS),
        "item_categories": string_array(c for _, _, c, *_ in ITEMS),
        "item_prices": np.array([p for _, _, _, p, _ in ITEMS], dtype=np.float32),
        "item_channels": item_channels,
        "customer_ids": string_array(CUSTOMERS),
        "alias_ids": string_array(sorted(ALIASES)),
        "alias_customer": np.array([CUSTOMERS.index(ALIASES[a]) for a in sorted(ALIASES)], dtype=np.int32),
        "als_user_factors": np.array([USER_FACTORS[c] for c in CUSTOMERS], dtype=np.float32),
        "als_item_factors": np.array([ITEM_FACTORS[i] for i, *_ in ITEMS], dtype=np.float32),
        "hist_indptr": np.concatenate([[0], np.cumsum([len(r) for r in hist_rows])]).astype(np.int64),
        "hist_items": np.array([ROW[e[0]] for e in hist], dtype=np.int32),
        "hist_count": np.array([e[1] for e in hist], dtype=np.float32),
        "hist_first_day": np.array([day(e[2]) for e in hist], dtype=np.int32),
        "hist_last_day": np.array([day(e[3]) for e in hist], dtype=np.int32),
        "hist_last_channel": np.array([e[4] for e in hist], dtype=np.int16),
        "hist_last_store": np.array([STORES.index(e[5]) if e[5] else -1 for e in hist], dtype=np.int32),
        "item_repurchase_days": repurchase_days,
        "item_repurchase_rate": repurchase_rate,
        "store_ids": string_array(STORES),
        "pop_global": pop_global,
        "pop_channel": pop_channel,
        "pop_store_items": pop_store_items,
        "pop_store_scores": pop_store_scores,
        "copurchase_indptr": np.concatenate([[0], np.cumsum([len(r) for r in co_rows])]).astype(np.int64),
        "copurchase_items": np.array([ROW[e[0]] for e in co], dtype=np.int32),
        "copurchase_scores": np.array([e[1] for e in co], dtype=np.float32),
        "copurchase_support": np.array([e[2] for e in co], dtype=np.int32),
    }
    artifacts = ArtifactSet(
        arrays=arrays, channels=list(CHANNELS), data_end_day=DATA_END_DAY, input_fingerprint="toy0123456789abc",
        row_counts={"events": 42, "items": n_items, "customers": len(CUSTOMERS)},
        params={"als_factors": 4}, evaluation={"ndcg@10": {"blend": 0.5, "popular": 0.25}, "users": 5,
                                               "note": "hand-built", "passed": True},
        version=VERSION, created_at=CREATED_AT.isoformat())
    artifacts.validate()
    return artifacts


def publish_toy(root: Path) -> Path:
    """Publish the toy set under ``root`` (``CURRENT`` points at it); returns the version folder."""
    return Path(publish_artifacts(build_toy_artifacts(), Path(root)))


def build_synthetic_artifacts(n_items: int = 100_000, n_customers: int = 20_000, factors: int = 64,
                              history_per_customer: int = 40, copurchase_per_item: int = 50,
                              n_stores: int = 20, store_top_k: int = 200, seed: int = 0) -> ArtifactSet:
    """A random artifact set of realistic size and shape, for latency measurements (answers meaningless)."""
    rng = np.random.default_rng(seed)
    n_ch = len(CHANNELS)
    width = len(str(max(n_items, n_customers)))
    item_ids = np.array([f"I{i:0{width}d}" for i in range(n_items)])
    customer_ids = np.array([f"C{i:0{width}d}" for i in range(n_customers)])
    n_categories = 50
    categories = np.array([f"cat{c:02d}" for c in range(n_categories)])[rng.integers(0, n_categories, n_items)]
    item_channels = rng.random((n_items, n_ch)) < 0.9
    item_channels[:, 0] |= ~item_channels.any(axis=1)
    hist_len = rng.poisson(history_per_customer, n_customers).clip(1, n_items)
    indptr = np.concatenate([[0], np.cumsum(hist_len)]).astype(np.int64)
    nnz = int(indptr[-1])
    popularity = rng.zipf(1.3, n_items).astype(np.float64)
    p = popularity / popularity.sum()
    hist_items = rng.choice(n_items, size=nnz, p=p).astype(np.int32)
    last = DATA_END_DAY - rng.integers(0, 365, nnz)
    count = rng.integers(1, 6, nnz).astype(np.float32)
    first = last - (count.astype(np.int64) - 1) * rng.integers(5, 60, nnz)
    co_len = rng.integers(0, copurchase_per_item + 1, n_items)
    co_indptr = np.concatenate([[0], np.cumsum(co_len)]).astype(np.int64)
    co_nnz = int(co_indptr[-1])
    co_scores = rng.random(co_nnz).astype(np.float32)
    owner = np.repeat(np.arange(n_items), co_len)
    co_scores = co_scores[np.lexsort((-co_scores, owner))]  # best first per row
    pop_global = (popularity * rng.random(n_items)).astype(np.float32)
    pop_channel = (pop_global[None, :] * rng.random((n_ch, n_items)) * item_channels.T).astype(np.float32)
    store_items = np.stack([rng.choice(n_items, store_top_k, replace=False) for _ in range(n_stores)]).astype(np.int32)
    store_scores = -np.sort(-rng.random((n_stores, store_top_k)), axis=1).astype(np.float32)
    rep_days = np.where(rng.random(n_items) < 0.3, rng.uniform(3, 60, n_items), np.nan).astype(np.float32)
    arrays = {
        "item_ids": item_ids, "item_titles": np.array([f"Item {i}" for i in range(n_items)]),
        "item_categories": categories, "item_prices": rng.uniform(1, 50, n_items).astype(np.float32),
        "item_channels": item_channels, "customer_ids": customer_ids,
        "alias_ids": np.array([f"A{i:0{width}d}" for i in range(n_customers)]),
        "alias_customer": np.arange(n_customers, dtype=np.int32),
        "als_user_factors": rng.standard_normal((n_customers, factors)).astype(np.float32) * 0.1,
        "als_item_factors": rng.standard_normal((n_items, factors)).astype(np.float32) * 0.1,
        "hist_indptr": indptr, "hist_items": hist_items, "hist_count": count,
        "hist_first_day": first.astype(np.int32), "hist_last_day": last.astype(np.int32),
        "hist_last_channel": rng.integers(0, n_ch, nnz).astype(np.int16),
        "hist_last_store": rng.integers(-1, n_stores, nnz).astype(np.int32),
        "item_repurchase_days": rep_days, "item_repurchase_rate": rng.random(n_items).astype(np.float32),
        "store_ids": np.array([f"S{s:03d}" for s in range(n_stores)]),
        "pop_global": pop_global, "pop_channel": pop_channel,
        "pop_store_items": store_items, "pop_store_scores": store_scores,
        "copurchase_indptr": co_indptr, "copurchase_items": rng.integers(0, n_items, co_nnz).astype(np.int32),
        "copurchase_scores": co_scores, "copurchase_support": rng.integers(2, 100, co_nnz).astype(np.int32),
    }
    artifacts = ArtifactSet(arrays=arrays, channels=list(CHANNELS), data_end_day=DATA_END_DAY,
                            version="synthetic", created_at=CREATED_AT.isoformat())
    artifacts.validate()
    return artifacts
