"""Model builders on toy data whose right answer is known by hand.

Each test builds a tiny :class:`TrainingData` (the ingest output) directly, so the builders are tested on
their own, independent of parsing and cleaning.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from recsvc.config import TrainingSettings
from recsvc_training.input import columns as C
from recsvc_training.input.catalog import build_catalog
from recsvc_training.input.dataset import IngestReport, TrainingData
from recsvc_training.input.id_maps import build_id_maps, event_rows, lookup_rows
from recsvc_training.models.als import fit_als
from recsvc_training.models.copurchase import build_copurchase, wilson_lower_bound
from recsvc_training.models.interactions import QUANTITY_CAP, build_confidence, top_k_per_row
from recsvc_training.models.popularity import build_popularity
from recsvc_training.models.repurchase import build_repurchase

DAY0 = 19_000  # 2022-01-08, days since the epoch


def make_data(rows: list[tuple], items: list[str] | pd.DataFrame | None = None,
              channels: tuple[str, ...] = ("web", "app", "store"), customers: tuple[str, ...] = (),
              aliases: dict[str, str] | None = None) -> TrainingData:
    """TrainingData from ``(customer, item, event, day, quantity, channel, store, order)`` tuples.

    Trailing fields may be left out: quantity 1, channel "web", no store, no order (the basket is then the
    customer's day, as ingest makes it). ``day`` is an offset from DAY0.
    """
    defaults: tuple = (1.0, "web", "", "")  # quantity, channel, store, order
    full = []
    for seq, row in enumerate(rows):
        customer, item, event, day, quantity, channel, store, order = (*row, *defaults[len(row) - 4:])
        full.append({
            C.TIMESTAMP: pd.Timestamp((DAY0 + day) * 86_400 + seq, unit="s", tz="UTC"),
            C.CUSTOMER_ID: customer, C.ITEM_ID: item, C.EVENT: event, C.CHANNEL: channel,
            C.STORE_ID: store, C.ORDER_ID: order, C.QUANTITY: float(quantity), C.PRICE: np.nan,
            C.DAY: DAY0 + day, C.BASKET_ID: order or f"{customer}@{DAY0 + day}",
        })
    events = pd.DataFrame(full).sort_values(C.TIMESTAMP, kind="stable", ignore_index=True)
    events[C.DAY] = events[C.DAY].astype(np.int32)
    if not isinstance(items, pd.DataFrame):
        ids = items if items is not None else sorted(events[C.ITEM_ID].unique())
        items = pd.DataFrame({C.ITEM_ID: ids, C.TITLE: [f"title {i}" for i in ids],
                              C.CATEGORY: "cat", C.PRICE: 1.0, C.CHANNELS: ""})
    alias_map = aliases or {}
    return TrainingData(
        events=events, items=items,
        customers=pd.DataFrame({C.CUSTOMER_ID: list(customers)}, dtype=object),
        aliases=pd.DataFrame({C.ALIAS_ID: list(alias_map), C.CUSTOMER_ID: list(alias_map.values())},
                             dtype=object),
        stock=pd.DataFrame({c: [] for c in C.STOCK_COLUMNS}),
        channels=list(channels), report=IngestReport())


def prepared(data: TrainingData):
    maps = build_id_maps(data)
    return maps, event_rows(data, maps), int(data.events[C.DAY].max())


def cell(matrix: sp.csr_matrix, row: int, col: int) -> float:
    return float(matrix[row, col])


# --- id maps -------------------------------------------------------------------------------------------------

def test_id_maps_are_sorted_and_cover_events_customers_and_alias_targets():
    data = make_data([("c2", "i2", C.PURCHASE, 0, 1, "app", "s9"), ("c1", "i1", C.VIEW, 0)],
                     items=["i3", "i1", "i2"], customers=["c0"], aliases={"card-7": "c3", "app-1": "c1"})
    maps = build_id_maps(data)
    assert maps.item_ids.tolist() == ["i1", "i2", "i3"]
    assert maps.customer_ids.tolist() == ["c0", "c1", "c2", "c3"]
    assert maps.store_ids.tolist() == ["s9"]
    assert maps.alias_ids.tolist() == ["app-1", "card-7"]
    assert maps.customer_ids[maps.alias_customer].tolist() == ["c1", "c3"]
    assert maps.alias_customer.dtype == np.int32
    assert maps.channels == ("web", "app", "store")  # manifest order, not sorted

    rows = event_rows(data, maps)
    assert rows.channel.tolist() == [1, 0]  # app, web
    assert rows.store.tolist() == [0, -1]


def test_lookup_rows_does_not_truncate_longer_unknown_ids():
    """Pins: a query longer than the id width ('i10' vs U2 ids) must not match its prefix 'i1'."""
    ids = np.array(["i1", "i2"])
    assert lookup_rows(ids, pd.Series(["i2", "i10", None, "", "i1"])).tolist() == [1, -1, -1, -1, 0]


def test_channels_seen_only_in_events_are_appended():
    data = make_data([("c1", "i1", C.VIEW, 0, 1, "kiosk")], channels=("web",))
    assert build_id_maps(data).channels == ("web", "kiosk")


# --- interactions -------------------------------------------------------------------------------------------

def test_confidence_weights_quantity_cap_and_recency_decay():
    settings = TrainingSettings(recency_half_life_days=10.0, als_alpha=2.0)
    data = make_data([
        ("c1", "i1", C.PURCHASE, 20, 2),      # today: 10 * 2
        ("c1", "i2", C.VIEW, 10),             # one half-life ago: 1 * 0.5
        ("c2", "i1", C.PURCHASE, 20, 500),    # capped at QUANTITY_CAP units
    ])
    maps, rows, end_day = prepared(data)
    matrix = build_confidence(rows, maps, settings, end_day)
    assert matrix.dtype == np.float32 and matrix.shape == (2, 2)
    assert cell(matrix, 0, 0) == pytest.approx(2.0 * math.log1p(20.0), rel=1e-6)
    assert cell(matrix, 0, 1) == pytest.approx(2.0 * math.log1p(0.5), rel=1e-6)
    assert cell(matrix, 1, 0) == pytest.approx(2.0 * math.log1p(10.0 * QUANTITY_CAP), rel=1e-6)


def test_returns_cancel_purchases_in_confidence_but_not_views():
    settings = TrainingSettings(recency_half_life_days=0.0, als_alpha=1.0)  # no decay: exact numbers
    data = make_data([
        ("c1", "i1", C.VIEW, 0), ("c1", "i1", C.PURCHASE, 0), ("c1", "i1", C.RETURN, 1),
        ("c1", "i2", C.PURCHASE, 0, 3), ("c1", "i2", C.RETURN, 1, 1),
        ("c2", "i1", C.PURCHASE, 0), ("c2", "i1", C.RETURN, 1, 5),  # over-return floors at 0
    ])
    maps, rows, end_day = prepared(data)
    matrix = build_confidence(rows, maps, settings, end_day)
    assert cell(matrix, 0, 0) == pytest.approx(math.log1p(1.0))   # the view stays, the purchase is gone
    assert cell(matrix, 0, 1) == pytest.approx(math.log1p(20.0))  # 3 bought, 1 returned
    assert matrix[1].nnz == 0                                      # everything returned: no interaction


def test_top_k_per_row_orders_by_value_then_column():
    matrix = sp.csr_matrix(np.array([[0, 3, 1, 3], [0, 0, 0, 0], [5, 0, 0, 2]], dtype=np.float64))
    indptr, positions, rows = top_k_per_row(matrix, 2)
    assert indptr.tolist() == [0, 2, 2, 4]
    assert matrix.indices[positions].tolist() == [1, 3, 0, 3]
    assert rows.tolist() == [0, 0, 2, 2]


# --- collaborative filtering --------------------------------------------------------------------------------

def test_als_ranks_unseen_same_block_item_above_other_block():
    # two taste groups: customers 0-5 buy items 0-4, customers 6-11 buy items 5-9; customer 0 never saw item 4
    dense = np.zeros((13, 10), dtype=np.float32)
    dense[:6, :5] = 5.0
    dense[6:12, 5:] = 5.0
    dense[0, 4] = 0.0
    matrix = sp.csr_matrix(dense)  # customer 12 has no interactions
    settings = TrainingSettings(als_factors=4, als_iterations=15, als_regularization=0.01, als_random_state=1)
    users, items = fit_als(matrix, settings)
    assert users.shape == (13, 4) and items.shape == (10, 4)
    assert users.dtype == np.float32 and items.dtype == np.float32
    scores = users[0] @ items.T
    assert scores[4] > scores[5:].max()
    assert not users[12].any()  # no interactions: exactly zero, not random noise


def test_als_on_empty_matrix_returns_zero_factors():
    users, items = fit_als(sp.csr_matrix((3, 2), dtype=np.float32), TrainingSettings(als_factors=2))
    assert users.shape == (3, 2) and items.shape == (2, 2) and not users.any() and not items.any()


# --- popularity ---------------------------------------------------------------------------------------------

def test_popularity_per_channel_ranks_the_channels_best_seller_first():
    rows = [(f"w{k}", "web-hit", C.PURCHASE, 30, 1, "web") for k in range(3)]
    rows += [(f"a{k}", "app-hit", C.PURCHASE, 30, 1, "app") for k in range(4)]
    rows += [("w0", "app-hit", C.PURCHASE, 30, 1, "web"), ("a0", "web-hit", C.VIEW, 30, 1, "app")]
    data = make_data(rows, channels=("web", "app"))
    maps, events, end_day = prepared(data)
    pop = build_popularity(events, maps, TrainingSettings(), end_day)
    web_hit, app_hit = (int(np.flatnonzero(maps.item_ids == i)[0]) for i in ("web-hit", "app-hit"))
    assert pop["pop_channel"].shape == (2, 2) and pop["pop_channel"].dtype == np.float32
    assert np.argmax(pop["pop_channel"][0]) == web_hit
    assert np.argmax(pop["pop_channel"][1]) == app_hit
    assert np.argmax(pop["pop_global"]) == app_hit  # 5 purchases overall against 3 (+ a view)


def test_popularity_window_with_all_time_fallback_and_returns():
    settings = TrainingSettings(popularity_window_days=7, recency_half_life_days=60.0)
    rows = [("c1", "recent", C.VIEW, 100),                              # one view in the window
            *[(f"c{k}", "old", C.PURCHASE, 10) for k in range(50)],    # a best seller, long ago
            ("c1", "returned", C.PURCHASE, 99), ("c1", "returned", C.RETURN, 100)]
    data = make_data(rows, items=["never", "old", "recent", "returned"])
    maps, events, end_day = prepared(data)
    pop = build_popularity(events, maps, settings, end_day)["pop_global"]
    never, old, recent, returned = range(4)
    assert pop[recent] > pop[old] > 0.0   # anything sold in the window beats any all-time seller
    assert pop[old] <= 0.5 * pop[recent]
    assert pop[never] == 0.0 and pop[returned] == 0.0
    assert np.all(np.isfinite(pop))


def test_popularity_per_store_top_k_is_padded():
    rows = [("c1", "a", C.PURCHASE, 0, 1, "store", "s1"), ("c2", "a", C.PURCHASE, 0, 1, "store", "s1"),
            ("c3", "b", C.PURCHASE, 0, 1, "store", "s1"), ("c1", "c", C.PURCHASE, 0, 1, "store", "s2"),
            ("c4", "b", C.PURCHASE, 0, 1, "web")]
    data = make_data(rows)
    maps, events, end_day = prepared(data)
    pop = build_popularity(events, maps, TrainingSettings(popularity_store_top_k=3), end_day)
    assert maps.store_ids.tolist() == ["s1", "s2"]
    assert pop["pop_store_items"].dtype == np.int32 and pop["pop_store_items"].shape == (2, 3)
    assert maps.item_ids[pop["pop_store_items"][0, :2]].tolist() == ["a", "b"]
    assert pop["pop_store_items"][0, 2] == -1 and pop["pop_store_scores"][0, 2] == 0.0
    assert maps.item_ids[pop["pop_store_items"][1, 0]] == "c"
    assert pop["pop_store_items"][1, 1:].tolist() == [-1, -1]
    assert pop["pop_store_scores"][0, 0] > pop["pop_store_scores"][0, 1] > 0


def test_item_trend_compares_this_weeks_buyers_with_the_four_week_rate():
    # end day 40; the last 7 days are days 34..40, the last 28 days 13..40
    rows = [*[(f"c{k}", "rising", C.PURCHASE, 38) for k in range(3)],       # 3 buyers, all this week
            ("c9", "rising", C.PURCHASE, 39, 5),                            # a 4th buyer, bulk: still one
            ("c9", "rising", C.PURCHASE, 40),                               # ... and again: still one
            *[(f"c{k}", "fading", C.PURCHASE, 20) for k in range(8)],       # 8 buyers three weeks ago
            ("c0", "fading", C.PURCHASE, 36),                               # one of them again this week
            ("c0", "old", C.PURCHASE, 1),                                   # before the 28 days
            ("c1", "viewed", C.VIEW, 40)]                                   # views are not buyers
    data = make_data(rows, items=["rising", "fading", "old", "viewed", "never"])
    maps, events, end_day = prepared(data)
    trend = build_popularity(events, maps, TrainingSettings(), end_day)["item_trend"]
    assert trend.dtype == np.float32 and trend.shape == (5,)
    rising, fading, old, viewed, never = (int(np.flatnonzero(maps.item_ids == name)[0])
                                          for name in ("rising", "fading", "old", "viewed", "never"))
    np.testing.assert_allclose(trend[rising], np.log1p(4 * 4) - np.log1p(4), rtol=1e-6)
    np.testing.assert_allclose(trend[fading], np.log1p(1 * 4) - np.log1p(8), rtol=1e-6)
    assert trend[rising] > 0 > trend[fading]
    assert trend[old] == trend[viewed] == trend[never] == 0.0


# --- repurchase ---------------------------------------------------------------------------------------------

def test_history_nets_returns_and_keeps_last_purchase_place():
    data = make_data([
        ("c1", "milk", C.PURCHASE, 0, 1, "store", "s1"),
        ("c1", "milk", C.PURCHASE, 5, 1, "web"),
        ("c1", "tv", C.PURCHASE, 1), ("c1", "tv", C.RETURN, 3),          # fully returned: gone
        ("c1", "eggs", C.PURCHASE, 2, 4), ("c1", "eggs", C.RETURN, 3, 1),  # a quarter returned
        ("c2", "tv", C.RETURN, 3),                                         # return without a purchase
    ])
    maps, events, _ = prepared(data)
    hist = build_repurchase(events, maps)
    c1 = int(np.flatnonzero(maps.customer_ids == "c1")[0])
    lo, hi = hist["hist_indptr"][c1], hist["hist_indptr"][c1 + 1]
    items = maps.item_ids[hist["hist_items"][lo:hi]].tolist()
    assert items == ["eggs", "milk"]
    assert hist["hist_count"][lo:hi].tolist() == pytest.approx([0.75, 2.0])
    milk = lo + 1
    assert hist["hist_first_day"][milk] == DAY0 and hist["hist_last_day"][milk] == DAY0 + 5
    assert maps.channels[hist["hist_last_channel"][milk]] == "web"
    assert hist["hist_last_store"][milk] == -1
    assert hist["hist_last_store"][lo] == -1
    c2 = int(np.flatnonzero(maps.customer_ids == "c2")[0])
    assert hist["hist_indptr"][c2 + 1] == hist["hist_indptr"][c2]
    assert hist["hist_indptr"].dtype == np.int64 and hist["hist_last_channel"].dtype == np.int16


def test_repurchase_interval_of_an_item_bought_every_30_days_is_30():
    rows = [("c1", "coffee", C.PURCHASE, d) for d in (0, 30, 60, 90)]
    rows += [("c2", "coffee", C.PURCHASE, d) for d in (5, 35, 35)]  # same day twice counts once
    rows += [("c3", "coffee", C.PURCHASE, 7), ("c3", "sofa", C.PURCHASE, 7)]
    data = make_data(rows)
    maps, events, _ = prepared(data)
    out = build_repurchase(events, maps)
    coffee, sofa = (int(np.flatnonzero(maps.item_ids == i)[0]) for i in ("coffee", "sofa"))
    assert out["item_repurchase_days"][coffee] == 30.0
    assert np.isnan(out["item_repurchase_days"][sofa])
    assert out["item_repurchase_rate"][coffee] == pytest.approx(2 / 3)
    assert out["item_repurchase_rate"][sofa] == 0.0


# --- co-purchase --------------------------------------------------------------------------------------------

def _basket(order: str, items: list[str], customer: str = "c") -> list[tuple]:
    return [(customer, item, C.PURCHASE, 0, 1, "web", "", order) for item in items]


def test_copurchase_support_confidence_min_support_and_order():
    rows = (_basket("o1", ["a", "b", "c"]) + _basket("o2", ["a", "b"]) + _basket("o3", ["a", "b", "b"])
            + _basket("o4", ["a", "d"]) + _basket("o5", ["a", "d"]) + _basket("o6", ["a"]))
    rows.append(("c", "c", C.VIEW, 0, 1, "web", "", "o6"))  # views never make a pair
    data = make_data(rows)
    maps, events, _ = prepared(data)
    settings = TrainingSettings(copurchase_min_support=2, copurchase_confidence_z=1.96)
    co = build_copurchase(events, maps, settings)
    a, b, c, d = range(4)
    lo, hi = co["copurchase_indptr"][a], co["copurchase_indptr"][a + 1]
    assert co["copurchase_items"][lo:hi].tolist() == [b, d]   # c (1 basket) is below min support
    assert co["copurchase_support"][lo:hi].tolist() == [3, 2]
    # Wilson 95 % lower bounds of 3/6 and 2/6 (hand-computed)
    assert co["copurchase_scores"][lo:hi].tolist() == pytest.approx([0.1876, 0.0968], abs=1e-4)
    lo, hi = co["copurchase_indptr"][b], co["copurchase_indptr"][b + 1]
    assert co["copurchase_items"][lo:hi].tolist() == [a]
    assert co["copurchase_scores"][lo] == pytest.approx(0.4385, abs=1e-4)  # 3/3: b counted once in o3
    assert co["copurchase_indptr"][c + 1] == co["copurchase_indptr"][c]
    assert co["copurchase_indptr"].dtype == np.int64 and co["copurchase_support"].dtype == np.int32


def test_wilson_lower_bound_trusts_many_baskets_over_a_few() -> None:
    # the case the bound is for: 2 of 20 baskets (10 %; the old n_ab / (n_a + 5) gave 0.080) can be luck,
    # 30 of 600 (5 %; old 0.050) cannot, so the second must score higher
    low = wilson_lower_bound(np.array([2.0, 30.0, 20.0]), np.array([20.0, 600.0, 20.0]), 1.96)
    assert low.tolist() == pytest.approx([0.0279, 0.0352, 0.8389], abs=1e-4)
    assert low[0] < low[1] < low[2]
    assert wilson_lower_bound(np.array([3.0]), np.array([6.0]), 0.0)[0] == pytest.approx(0.5)  # z 0: p
    assert wilson_lower_bound(np.array([0.0]), np.array([9.0]), 1.96)[0] == 0.0


def test_copurchase_skips_oversized_baskets_and_keeps_top_k():
    rows = _basket("big", ["a", "b", "c", "d"]) * 3 + _basket("o1", ["a", "b"]) * 1
    rows += _basket("o2", ["a", "b", "c"]) + _basket("o3", ["a", "b", "c"]) + _basket("o4", ["a", "c"])
    data = make_data(rows)
    maps, events, _ = prepared(data)
    co = build_copurchase(events, maps, TrainingSettings(copurchase_max_basket=3, copurchase_min_support=1,
                                                         copurchase_top_k=1))
    a, b, _, d = range(4)
    lo, hi = co["copurchase_indptr"][a], co["copurchase_indptr"][a + 1]
    assert hi - lo == 1
    assert co["copurchase_items"][lo] == b and co["copurchase_support"][lo] == 3  # b 3, c 3: tie -> lower row
    assert d not in co["copurchase_items"].tolist()  # d was only in the skipped basket


# --- catalog ------------------------------------------------------------------------------------------------

def test_catalog_channels_prices_and_items_seen_only_in_events():
    items = pd.DataFrame({C.ITEM_ID: ["x", "y", "z"], C.TITLE: ["X", None, "Z"], C.CATEGORY: ["k", "k", None],
                          C.PRICE: [2.5, np.nan, 1.0], C.CHANNELS: ["", "web|store", " app | mars "]})
    data = make_data([("c1", "x", C.VIEW, 0), ("c1", "w", C.VIEW, 0)], items=items)
    maps = build_id_maps(data)
    cat = build_catalog(data.items, maps)
    assert maps.item_ids.tolist() == ["w", "x", "y", "z"]
    assert cat["item_titles"].tolist() == ["", "X", "", "Z"]
    assert cat["item_categories"].tolist() == ["", "k", "k", ""]
    assert np.isnan(cat["item_prices"][0]) and cat["item_prices"][1] == 2.5 and np.isnan(cat["item_prices"][2])
    assert cat["item_channels"].dtype == bool and cat["item_channels"].shape == (4, 3)
    assert cat["item_channels"].tolist() == [[True, True, True], [True, True, True],
                                             [True, False, True], [False, True, False]]
