"""The baselines issue 14 added, each against a toy log whose right answer is worked out by hand here: buy it
again by count, buyer-count popularity, attribute popularity, TIFU-KNN (user vectors, the neighbour blend, the
fast exact top-k, tuning on a validation window only)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from recsvc_training.evaluation import EvalIndex, fit_baselines, time_split
from recsvc_training.evaluation.baselines import BuyItAgainByCount, _purchases
from recsvc_training.evaluation.cold_baselines import AttributePopularity, BuyerPopularity
from recsvc_training.evaluation.nextbasket import (
    TifuKNN,
    TifuParams,
    _Neighbourhood,
    _rank,
    tifu_user_vectors,
    top_k_rows,
    tune_tifu_knn,
)
from recsvc_training.evaluation.topk import top_k_sparse


def _events(rows: Sequence[tuple[str, str, int]], basket: Sequence[str] | None = None) -> pd.DataFrame:
    """Purchases (customer, item, day) on the web, one basket per customer and day unless ``basket`` says."""
    frame = pd.DataFrame(rows, columns=["customer_id", "item_id", "day"])
    frame["event"] = "purchase"
    frame["channel"] = "web"
    frame["day"] = frame["day"].astype("int32")
    frame["timestamp"] = pd.to_datetime(frame["day"].astype("int64"), unit="D", utc=True)
    frame["store_id"] = ""
    frame["order_id"] = ""
    frame["basket_id"] = (list(basket) if basket is not None
                          else list(frame["customer_id"] + "@" + frame["day"].astype(str)))
    frame["quantity"] = 1.0
    frame["price"] = np.nan
    return frame.sort_values("timestamp", kind="stable").reset_index(drop=True)


def _ids(index: EvalIndex, rows: np.ndarray) -> list[str]:
    return [str(index.item_ids[r]) if r >= 0 else "-" for r in rows]


# ------------------------------------------------------------------------------------ buy it again by count


def test_buy_it_again_by_count_orders_by_times_bought_then_recency_then_fills_with_popularity() -> None:
    rows = [("ann", "tea", d) for d in (1, 2, 3)]          # tea: 3 baskets, last on day 3
    rows += [("ann", "jam", d) for d in (4, 5, 6)]         # jam: 3 baskets, last on day 6 -> before tea
    rows += [("ann", "salt", 7), ("ann", "salt", 7)]       # salt: two lines of one basket = bought once
    rows += [("ann", "soap", 8)]                           # soap: once, more recent than salt -> before salt
    rows += [(f"c{i}", "milk", 2) for i in range(4)] + [(f"c{i}", "eggs", 3) for i in range(2)]
    rows += [("ann", "tea", 10)]                           # the test window
    split = time_split(_events(rows), test_days=1)
    model = BuyItAgainByCount(window_days=None).fit(split.train, split.index)
    ann = split.index.customer_rows(["ann"])
    # jam 3 (day 6) > tea 3 (day 3) > soap 1 (day 8) > salt 1 (day 7), then popularity: milk 4, jam/tea 3 (taken),
    # salt 2 lines (taken), eggs 2.
    assert _ids(split.index, model.recommend(ann, ["web"], 6)[0]) == ["jam", "tea", "soap", "salt", "milk", "eggs"]


def test_buy_it_again_by_count_gives_the_popularity_list_without_history() -> None:
    rows = [("ann", "tea", 1), ("bob", "milk", 1), ("cat", "milk", 2), ("new", "milk", 5), ("ann", "tea", 5)]
    split = time_split(_events(rows), test_days=1)
    model = BuyItAgainByCount(window_days=None).fit(split.train, split.index)
    assert _ids(split.index, model.recommend(split.index.customer_rows(["new"]), ["web"], 2)[0]) == ["milk", "tea"]


# --------------------------------------------------------------------------------------- cold popularity


def test_buyer_popularity_counts_customers_not_events() -> None:
    # One wholesale buyer orders mugs ten times; three customers buy a pen once each.
    rows = [("big", "mug", d) for d in range(10)] + [(f"c{i}", "pen", 3) for i in range(3)]
    rows += [("c0", "cup", 4), ("c1", "cup", 4), ("new", "pen", 11)]
    split = time_split(_events(rows), test_days=1)
    model = BuyerPopularity().fit(split.train, split.index)
    # pen 3 buyers > cup 2 > mug 1 buyer (its 10 events only break ties); the same for everyone.
    recs = model.recommend(np.array([0, split.index.n_customers - 1]), ["web", "web"], 3)
    assert _ids(split.index, recs[0]) == ["pen", "cup", "mug"] == _ids(split.index, recs[1])


def _attribute_world() -> tuple[pd.DataFrame, pd.DataFrame]:
    """Young customers buy cola, old ones tea; area is noise. A small group of three 'teen' buyers."""
    rows, customers = [], []
    for i in range(6):
        rows += [(f"y{i}", "cola", 1 + i), (f"o{i}", "tea", 1 + i), (f"o{i}", "bread", 2)]
        customers += [(f"y{i}", "young", "north" if i % 2 else "south"),
                      (f"o{i}", "old", "south" if i % 2 else "north")]
    rows += [(f"t{i}", "gum", 3) for i in range(3)]
    customers += [(f"t{i}", "teen", "north") for i in range(3)]
    rows += [("bread_fan", "bread", 4)]  # bread: 7 buyers, the all-customers favourite
    customers += [("bread_fan", "old", "north")]
    rows += [("newy", "cola", 20), ("newo", "tea", 20), ("newt", "gum", 20), ("stranger", "tea", 20)]
    customers += [("newy", "young", "south"), ("newo", "old", "north"), ("newt", "teen", "south")]
    return _events(rows), pd.DataFrame(customers, columns=["customer_id", "age_group", "area"])


def test_attribute_popularity_ranks_within_the_group_and_falls_back_for_small_or_unknown_groups() -> None:
    events, customers = _attribute_world()
    split = time_split(events, test_days=1)
    model = AttributePopularity(customers, columns=["age_group"], min_group_buyers=4).fit(split.train, split.index)
    newy, newo, newt, stranger = split.index.customer_rows(["newy", "newo", "newt", "stranger"])
    recs = model.recommend(np.array([newy, newo, newt, stranger]), ["web"] * 4, 3)
    # young: cola (6 young buyers), then the all-customers list: bread 7, tea 6 (cola taken).
    assert _ids(split.index, recs[0]) == ["cola", "bread", "tea"]
    # old (7 buyers): bread 7, tea 6, then all customers: cola 6.
    assert _ids(split.index, recs[1]) == ["bread", "tea", "cola"]
    # teen has 3 buyers < 4, and the stranger is not in the customers table: the all-customers list.
    assert _ids(split.index, recs[2]) == ["bread", "cola", "tea"] == _ids(split.index, recs[3])


def test_attribute_popularity_chooses_the_telling_attribute_on_the_validation_window() -> None:
    events, customers = _attribute_world()
    # A validation window before the test window with new customers of both ages (areas mixed).
    more = [("vy0", "cola", 12), ("vy1", "cola", 12), ("vo0", "tea", 12), ("vo1", "tea", 12)]
    customers = pd.concat([customers, pd.DataFrame(
        [("vy0", "young", "north"), ("vy1", "young", "south"), ("vo0", "old", "south"), ("vo1", "old", "north")],
        columns=customers.columns)])
    events = pd.concat([events, _events(more)]).sort_values("timestamp", kind="stable").reset_index(drop=True)
    split = time_split(events, test_days=1)
    model = AttributePopularity(customers, min_group_buyers=1, validation_days=9).fit(split.train, split.index)
    assert set(model.validation) == {"age_group", "area", "age_group+area"}
    assert model.columns == ["age_group"]  # the first of the best: age alone ties age+area on this toy
    assert model.validation["age_group"] > model.validation["area"]


def test_fit_baselines_adds_attribute_popularity_only_with_a_customers_table() -> None:
    events, customers = _attribute_world()
    split = time_split(events, test_days=1)
    assert "attribute_popularity" in fit_baselines(split, customers=customers)
    assert "attribute_popularity" not in fit_baselines(split, customers=customers[["customer_id"]])
    with pytest.raises(ValueError, match="customers table"):
        fit_baselines(split, include=["attribute_popularity"])


# --------------------------------------------------------------------------------------------------- TIFU-KNN


def test_tifu_user_vector_by_hand() -> None:
    # ann's baskets, oldest first: b1 {x}, b2 {x, y}, b3 {y}; m = 2 from the newest: g0 = {b2, b3}, g1 = {b1}.
    # g0 = (b3 + 0.5 b2) / 2 = {x: .25, y: .75}; g1 = b1 / 1 = {x: 1}; u = (g0 + 0.8 g1) / 2 = {x: .525, y: .375}.
    rows = [("ann", "x", 1), ("ann", "x", 2), ("ann", "y", 2), ("ann", "y", 3), ("ann", "y", 3)]
    events = _events([*rows, ("ann", "x", 9)])
    split = time_split(events, test_days=1)
    params = TifuParams(group_size=2, within_decay=0.5, across_decay=0.8)
    vectors = tifu_user_vectors(_purchases(split.train, split.index), split.index.n_customers,
                                split.index.n_items, params)
    x, y = split.index.item_rows(["x", "y"])
    assert vectors[0, x] == pytest.approx(0.525) and vectors[0, y] == pytest.approx(0.375)


def test_tifu_knn_blends_own_vector_with_the_nearest_customer() -> None:
    # One basket each. ann {a, b}; bob {a, b, c} is nearest to ann (squared distance 1); cat {d}.
    rows = [("ann", "a", 1), ("ann", "b", 1), ("bob", "a", 2), ("bob", "b", 2), ("bob", "c", 2), ("cat", "d", 3),
            ("dan", "e", 3), ("dan", "e", 4), ("ann", "a", 9)]
    split = time_split(_events(rows), test_days=1)
    model = TifuKNN(TifuParams(group_size=1, neighbours=1, alpha=0.5), popularity_window_days=None)
    model.fit(split.train, split.index)
    ann = split.index.customer_rows(["ann"])
    # ann: 0.5 * {a: 1, b: 1} + 0.5 * bob {a, b, c} = {a: 1, b: 1, c: .5}; then popularity fill: e (2 events).
    scores = model.scores(ann).toarray()[0]
    a, b, c = split.index.item_rows(["a", "b", "c"])
    assert (scores[a], scores[b], scores[c]) == pytest.approx((1.0, 1.0, 0.5))
    assert _ids(split.index, model.recommend(ann, ["web"], 4)[0]) == ["a", "b", "c", "e"]


def test_tifu_neighbourhood_skips_self_and_customers_without_purchases() -> None:
    vectors = sp.csr_matrix(np.array([[1.0, 0, 0], [1.0, 0.1, 0], [0, 0, 0], [0, 0, 5.0]]))
    nearest = _Neighbourhood(vectors, "euclidean").nearest(np.array([0, 2]), 3)
    assert list(nearest[0]) == [1, 3, -1]  # 1 at distance .01, 3 at 26; 2 is empty
    assert list(nearest[1]) == [-1, -1, -1]  # no vector, no neighbours
    cosine = _Neighbourhood(vectors, "cosine").nearest(np.array([1]), 2)
    assert list(cosine[0]) == [0, 3]  # cos(1, 0) = 0.995, cos(1, 3) = 0


def test_tifu_fast_top_k_equals_full_sparse_top_k() -> None:
    """Pins that the candidate shortcut of ``_rank`` and ``top_k_rows`` are exact, ties included."""
    rng = np.random.default_rng(3)
    vectors = sp.random(60, 40, density=0.15, random_state=4, format="csr")
    # Quarters, and 4 or 2 neighbours: every sum is exact in floating point, so ties are real ties.
    vectors.data = np.ceil(vectors.data * 4) / 4
    neighbours = np.array([rng.choice(60, 4, replace=False) for _ in range(60)])
    neighbours[::7, 2:] = -1
    tiebreak = rng.permutation(40).astype(float)
    rows = np.arange(60)
    fast = _rank(vectors, rows, neighbours, (0.0, 0.5, 1.0), 6, tiebreak)
    for alpha, recs in fast.items():
        weights = np.zeros((60, 60))
        for r, nb in enumerate(neighbours):
            nb = nb[nb >= 0]
            weights[r, nb] = 1.0 / len(nb)
        full = sp.csr_matrix(alpha * vectors.toarray() + (1 - alpha) * (weights @ vectors.toarray()))
        assert (recs == top_k_sparse(full, 6, tiebreak)).all(), alpha
        assert (top_k_rows(full.toarray(), 6, tiebreak) == recs).all(), alpha


def test_tifu_knn_is_tuned_on_a_validation_window_before_the_test_window() -> None:
    # Two tastes; repeat buyers. The validation window is the last 7 days of the train side.
    rows = [(f"c{i}", item, d) for i in range(12) for d in range(0, 28, 4) for item in ("a", "b")]
    rows += [(f"d{i}", item, d) for i in range(12) for d in range(1, 28, 4) for item in ("x", "y")]
    rows += [("c0", "a", 30), ("d0", "x", 30)]
    split = time_split(_events(rows), test_days=3)
    params, summary = tune_tifu_knn(split.train, validation_days=7, grid={"group_size": (3, 7)})
    assert summary["tuned"] and summary["validation_cutoff_day"] == int(split.train["day"].max()) + 1 - 7
    assert summary["validation_cutoff_day"] + 7 <= split.cutoff_day  # never the test window
    assert params.group_size in (3, 7) and summary["trials"] == 2 * 3 * 6
    model = TifuKNN(validation_days=7).fit(split.train, split.index)
    assert model.tuned["tuned"] and model.params is not None
    c0 = split.index.customer_rows(["c0"])
    assert sorted(_ids(split.index, model.recommend(c0, ["web"], 2)[0])) == ["a", "b"]


def test_tifu_params_name_what_is_wrong() -> None:
    with pytest.raises(ValueError, match="alpha"):
        TifuParams(alpha=1.5)
    with pytest.raises(ValueError, match="metric"):
        TifuParams(metric="manhattan")
