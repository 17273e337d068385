"""Offline evaluation: metrics against hand-computed cases, the time split, baselines on toy logs with a
known answer, cart completion with oracle/never completers, the report files, and one real Ta Feng slice."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from recsvc_training.evaluation import (
    ALSRecommender,
    BuyItAgain,
    CartQueries,
    ChannelPopularity,
    CoOccurrenceCompleter,
    EvalIndex,
    GlobalPopularity,
    ItemKNN,
    PopularityCompleter,
    Recommender,
    build_cart_queries,
    coverage,
    evaluate,
    evaluate_completer,
    fit_baselines,
    fit_completers,
    format_table,
    hit_rate_at_k,
    map_at_k,
    mrr_at_k,
    ndcg_at_k,
    precision_at_k,
    ranking_metrics,
    recall_at_k,
    repeat_new_split,
    time_split,
    truth_from_lists,
    validation_split,
    write_report,
)

TAFENG = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "tafeng.csv.gz"


def _events(rows: Sequence[tuple[str, str, str, str, int]]) -> pd.DataFrame:
    """An events frame shaped like ``TrainingData.events`` from (customer, item, event, channel, day) tuples.

    One basket per customer and day, quantity 1, events sorted by time.
    """
    frame = pd.DataFrame(rows, columns=["customer_id", "item_id", "event", "channel", "day"])
    frame["day"] = frame["day"].astype("int32")
    frame["timestamp"] = pd.to_datetime(frame["day"].astype("int64"), unit="D", utc=True)
    frame["store_id"] = ""
    frame["order_id"] = ""
    frame["basket_id"] = frame["customer_id"] + "@" + frame["day"].astype(str)
    frame["quantity"] = 1.0
    frame["price"] = np.nan
    return frame.sort_values("timestamp", kind="stable").reset_index(drop=True)


def _truth(lists: list[list[int]], n_items: int = 10) -> sp.csr_matrix:
    return truth_from_lists(lists, n_items)


# --------------------------------------------------------------------------------------------------- metrics


LOG3 = math.log2(3)


def test_metrics_one_customer_by_hand() -> None:
    # recs [a, b, c] = [0, 1, 2], truth {b, d} = {1, 3}: one hit, at position 2.
    recs = np.array([[0, 1, 2]])
    truth = _truth([[1, 3]])
    assert recall_at_k(recs, truth, 3) == pytest.approx(1 / 2)  # 1 hit / 2 relevant
    assert precision_at_k(recs, truth, 3) == pytest.approx(1 / 3)  # 1 hit / k
    assert hit_rate_at_k(recs, truth, 3) == 1.0
    # DCG = 1/log2(2+1); IDCG for min(|truth|, k) = 2 hits = 1/log2(2) + 1/log2(3).
    assert ndcg_at_k(recs, truth, 3) == pytest.approx((1 / LOG3) / (1 + 1 / LOG3))
    # AP: precision@2 = 1/2 at the only hit, over min(|truth|, k) = 2 -> 1/4.
    assert map_at_k(recs, truth, 3) == pytest.approx(1 / 4)
    assert mrr_at_k(recs, truth, 3) == pytest.approx(1 / 2)


def test_metrics_average_over_customers_and_skip_empty_truth() -> None:
    # A: [0, 1, 2] vs {1, 3} (as above); B: [5, 6, 7] vs {5}: perfect; C: empty truth -> excluded.
    recs = np.array([[0, 1, 2], [5, 6, 7], [0, 1, 2]])
    truth = _truth([[1, 3], [5], []])
    assert recall_at_k(recs, truth, 3) == pytest.approx((1 / 2 + 1) / 2)
    assert precision_at_k(recs, truth, 3) == pytest.approx((1 / 3 + 1 / 3) / 2)
    assert ndcg_at_k(recs, truth, 3) == pytest.approx(((1 / LOG3) / (1 + 1 / LOG3) + 1) / 2)
    assert map_at_k(recs, truth, 3) == pytest.approx((1 / 4 + 1) / 2)
    assert hit_rate_at_k(recs, truth, 3) == 1.0
    all_at_3 = ranking_metrics(recs, truth, 3)
    assert all_at_3["ndcg@3"] == pytest.approx(ndcg_at_k(recs, truth, 3))
    assert set(all_at_3) == {"recall@3", "ndcg@3", "precision@3", "hit_rate@3", "map@3"}


def test_metrics_at_smaller_k_use_only_the_first_columns() -> None:
    # recs [0, 1, 2] vs {1, 3} at k=1: position 1 misses -> everything 0.
    recs, truth = np.array([[0, 1, 2]]), _truth([[1, 3]])
    assert ranking_metrics(recs, truth, 1) == {"recall@1": 0.0, "ndcg@1": 0.0, "precision@1": 0.0,
                                               "hit_rate@1": 0.0, "map@1": 0.0}


def test_map_and_ndcg_normalise_by_min_of_truth_and_k() -> None:
    # Five relevant items, k = 2, both slots hit: AP = (1/1 + 2/2) / min(5, 2) = 1, NDCG = 1, recall = 2/5.
    recs, truth = np.array([[0, 1]]), _truth([[0, 1, 2, 3, 4]])
    assert map_at_k(recs, truth, 2) == pytest.approx(1.0)
    assert ndcg_at_k(recs, truth, 2) == pytest.approx(1.0)
    assert recall_at_k(recs, truth, 2) == pytest.approx(2 / 5)


def test_fewer_than_k_recommendations_count_as_misses() -> None:
    # Padded [3, -1, -1] and a narrower [3] array are the same list: one hit at position 1.
    truth = _truth([[3]])
    for recs in (np.array([[3, -1, -1]]), np.array([[3]])):
        assert recall_at_k(recs, truth, 3) == 1.0
        assert precision_at_k(recs, truth, 3) == pytest.approx(1 / 3)  # divided by k, not by list length
        assert ndcg_at_k(recs, truth, 3) == pytest.approx(1.0)
        assert map_at_k(recs, truth, 3) == pytest.approx(1.0)


def test_a_repeated_item_counts_once() -> None:
    # [1, 1, 2] vs {1, 2}: hits at positions 1 and 3 (the repeat at 2 is not a hit).
    recs, truth = np.array([[1, 1, 2]]), _truth([[1, 2]])
    assert precision_at_k(recs, truth, 3) == pytest.approx(2 / 3)
    # DCG = 1 + 1/log2(4) = 1.5; IDCG = 1 + 1/log2(3).
    assert ndcg_at_k(recs, truth, 3) == pytest.approx(1.5 / (1 + 1 / LOG3))
    # AP = (1/1 + 2/3) / 2.
    assert map_at_k(recs, truth, 3) == pytest.approx(5 / 6)


def test_no_customer_with_truth_gives_nan_and_mismatched_rows_raise() -> None:
    assert math.isnan(recall_at_k(np.array([[0, 1]]), _truth([[]]), 2))
    with pytest.raises(ValueError, match="truth rows"):
        recall_at_k(np.array([[0, 1]]), _truth([[0], [1]]), 2)


def test_coverage_counts_distinct_items_over_catalog() -> None:
    # {0, 1, 2, 3} recommended (padding ignored) out of 10 items.
    assert coverage(np.array([[0, 1, -1], [1, 2, 3]]), catalog_size=10) == pytest.approx(0.4)
    # At k=1 only {0, 1}.
    assert coverage(np.array([[0, 1, -1], [1, 2, 3]]), catalog_size=10, k=1) == pytest.approx(0.2)


def test_repeat_new_split_separates_hits_on_items_bought_before() -> None:
    # Customer bought 0 and 5 before; test truth {0, 1, 2}; recs [0, 1, 9]: hit 0 is a repeat, hit 1 is new.
    recs, truth, history = np.array([[0, 1, 9]]), _truth([[0, 1, 2]]), _truth([[0, 5]])
    split = repeat_new_split(recs, truth, history, 3)
    assert (split.repeat_hits, split.new_hits) == (1, 1)
    assert (split.repeat_truth, split.new_truth) == (1, 2)  # 0 is a repeat item; 1 and 2 are new
    assert split.repeat_hit_share == pytest.approx(1 / 2)
    assert split.repeat_recall == pytest.approx(1.0)
    assert split.new_recall == pytest.approx(1 / 2)


# ----------------------------------------------------------------------------------------------------- split


def _split_log() -> pd.DataFrame:
    return _events([
        # train: days 0..9
        ("alice", "milk", "purchase", "web", 1),
        ("alice", "bread", "purchase", "web", 3),
        ("bob", "milk", "view", "app", 2),
        ("bob", "eggs", "purchase", "app", 9),
        # test: days 10..13
        ("alice", "milk", "purchase", "app", 10),
        ("alice", "eggs", "purchase", "app", 11),
        ("alice", "jam", "purchase", "web", 12),
        ("alice", "tea", "purchase", "web", 12),
        ("alice", "tea", "return", "web", 13),  # bought and returned: not in the truth
        ("alice", "cake", "view", "web", 13),  # a view is not a purchase
        ("bob", "jam", "view", "app", 11),  # bob has history but buys nothing: not a test customer
        ("carol", "milk", "purchase", "store", 12),  # new customer
        ("dave", "cake", "view", "web", 13),  # new, but buys nothing
    ])


def test_time_split_puts_events_and_customers_on_the_right_side() -> None:
    split = time_split(_split_log(), test_days=4)
    assert split.cutoff_day == 10  # last day 13 + 1 - 4
    assert split.train["day"].max() < 10 <= split.test["day"].min()
    assert len(split.train) == 4 and len(split.test) == 9
    index = split.index
    assert list(index.item_ids) == sorted(["milk", "bread", "eggs", "jam", "tea", "cake"])
    # Train customers first (sorted), then customers first seen in the window (sorted).
    assert list(index.customer_ids) == ["alice", "bob", "carol", "dave"] and index.n_train_customers == 2

    truth = split.truth
    assert list(index.customer_ids[truth.customer_rows]) == ["alice"]
    assert sorted(index.item_ids[truth.items[0].indices]) == ["eggs", "jam", "milk"]
    assert list(truth.channels) == ["app"]  # 2 app purchases vs 2 web purchases incl. the returned tea -> tie
    assert sorted(index.item_ids[truth.history[0].indices]) == ["bread", "milk"]

    new = split.new_customer_truth
    assert list(index.customer_ids[new.customer_rows]) == ["carol"]
    assert list(index.item_ids[new.items[0].indices]) == ["milk"] and list(new.channels) == ["store"]
    assert new.history.nnz == 0


def test_main_channel_is_the_one_with_most_purchases() -> None:
    log = _events([("x", "a", "purchase", "web", 0),
                   ("x", "a", "purchase", "app", 5), ("x", "b", "purchase", "store", 5),
                   ("x", "c", "purchase", "store", 6)])
    split = time_split(log, test_days=2)
    assert list(split.truth.channels) == ["store"]


def test_explicit_cutoff_drops_events_after_the_window_and_validation_split_cuts_earlier() -> None:
    split = time_split(_split_log(), test_days=2, cutoff_day=9)
    assert set(split.test["day"]) == {9, 10}  # days 11..13 are in neither side
    assert split.train["day"].max() == 3
    val = validation_split(time_split(_split_log(), test_days=4).train, val_days=2)
    assert val.cutoff_day == 8 and val.test_days == 2  # train ends on day 9 -> window 8..9
    # bob viewed milk on day 2 (history) and bought eggs on day 9: a returning customer of the validation window.
    assert list(val.index.customer_ids[val.truth.customer_rows]) == ["bob"]
    assert list(val.index.customer_ids[val.new_customer_truth.customer_rows]) == []
    with pytest.raises(ValueError, match="non-empty"):
        time_split(_split_log(), test_days=4, cutoff_day=20)


# ------------------------------------------------------------------------------------------------- baselines


def _baseline_log() -> pd.DataFrame:
    rows = [
        # alice buys bread three times and jam once; the web crowd buys milk, the app crowd buys soda.
        ("alice", "bread", "purchase", "web", 1), ("alice", "bread", "purchase", "web", 5),
        ("alice", "bread", "purchase", "web", 8), ("alice", "jam", "purchase", "web", 8),
        # recency: old_fan bought tea long ago and coffee yesterday, once each.
        ("old_fan", "tea", "purchase", "web", 0), ("old_fan", "coffee", "purchase", "web", 9),
    ]
    rows += [(f"w{i}", "milk", "purchase", "web", 2 + i % 5) for i in range(6)]
    rows += [(f"w{i}", "eggs", "purchase", "web", 3) for i in range(3)]
    rows += [(f"a{i}", "soda", "purchase", "app", 2 + i % 5) for i in range(4)]
    rows += [(f"a{i}", "chips", "purchase", "app", 4) for i in range(2)]
    # test window (day 10) so the split exists
    rows += [("alice", "bread", "purchase", "web", 10), ("newbie", "milk", "purchase", "app", 10)]
    return _events(rows)


def _ids(index: EvalIndex, rows: np.ndarray) -> list[str]:
    """Item ids of a recommendation row, "-" for padding (readable assertions)."""
    return [str(index.item_ids[r]) if r >= 0 else "-" for r in rows]


def test_global_popularity_ranks_by_purchases() -> None:
    split = time_split(_baseline_log(), test_days=1)
    model = GlobalPopularity(window_days=None).fit(split.train, split.index)
    recs = model.recommend(np.array([0, 1]), ["web", "app"], 3)
    assert (recs[0] == recs[1]).all()
    assert _ids(split.index, recs[0]) == ["milk", "soda", "bread"]  # 6, 4, 3 purchases


def test_buy_it_again_puts_the_most_bought_item_first_and_fills_with_popularity() -> None:
    split = time_split(_baseline_log(), test_days=1)
    model = BuyItAgain(half_life_days=60.0, window_days=None).fit(split.train, split.index)
    alice, old_fan = split.index.customer_rows(["alice", "old_fan"])
    recs = model.recommend(np.array([alice, old_fan]), ["web", "web"], 4)
    # alice: bread (3 purchases) > jam (1), then popularity without repeating bread: milk, soda.
    assert _ids(split.index, recs[0]) == ["bread", "jam", "milk", "soda"]
    # old_fan: one purchase each; coffee (1 day old) outweighs tea (10 days old): 0.5**(1/60) > 0.5**(10/60).
    assert _ids(split.index, recs[1])[:2] == ["coffee", "tea"]
    # A customer without history gets the popularity list.
    newbie = split.index.customer_rows(["newbie"])
    assert _ids(split.index, model.recommend(newbie, ["app"], 2)[0]) == ["milk", "soda"]


def test_channel_popularity_differs_per_channel() -> None:
    split = time_split(_baseline_log(), test_days=1)
    model = ChannelPopularity(window_days=None).fit(split.train, split.index)
    recs = model.recommend(np.array([0, 0, 0]), ["web", "app", "kiosk"], 2)
    assert _ids(split.index, recs[0]) == ["milk", "bread"]  # web: milk 6, bread 3 (eggs 3 ties, less popular)
    assert _ids(split.index, recs[1]) == ["soda", "chips"]  # app: soda 4, chips 2
    assert _ids(split.index, recs[2]) == ["milk", "soda"]  # unknown channel: global list


def _cluster_log() -> pd.DataFrame:
    # Two tastes: customers c0..c9 buy {a, b, c}, d0..d9 buy {x, y, z}; "probe" bought a and b only.
    rows = [(f"c{i}", item, "purchase", "web", i % 7) for i in range(10) for item in ("a", "b", "c")]
    rows += [(f"d{i}", item, "purchase", "web", i % 7) for i in range(10) for item in ("x", "y", "z")]
    rows += [("probe", "a", "purchase", "web", 3), ("probe", "b", "purchase", "web", 4)]
    rows += [("probe", "c", "purchase", "web", 8), ("newbie", "a", "purchase", "web", 8)]
    return _events(rows)


@pytest.mark.parametrize("model", [ALSRecommender(factors=4, iterations=10), ItemKNN(neighbours=10)],
                         ids=["als", "item_knn"])
def test_collaborative_baselines_recommend_the_missing_item_of_the_taste(model: ALSRecommender | ItemKNN) -> None:
    split = time_split(_cluster_log(), test_days=1)
    model.fit(split.train, split.index)
    probe, newbie = split.index.customer_rows(["probe", "newbie"])
    recs = model.recommend(np.array([probe, newbie]), ["web", "web"], 3)
    # Already-bought items stay (filter_already_liked_items=False): the top 3 are the whole taste a, b, c.
    assert sorted(_ids(split.index, recs[0])) == ["a", "b", "c"]
    assert (recs[1] == -1).all()  # no history, nothing from the model alone


def test_fit_baselines_fits_all_with_timings() -> None:
    split = time_split(_cluster_log(), test_days=1)
    models = fit_baselines(split)
    assert list(models) == ["popularity", "buyer_popularity", "channel_popularity", "buy_it_again",
                            "buy_it_again_by_count", "tifu_knn", "als", "item_knn"]
    assert all(m.fit_seconds > 0 for m in models.values())
    with pytest.raises(ValueError, match="unknown baseline"):
        fit_baselines(split, include=["nope"])


# ------------------------------------------------------------------------------------------- cart completion


def _basket_log() -> pd.DataFrame:
    # Train: bread goes with butter (5 baskets), milk is bought alone a lot (popular, no partner).
    rows = [(f"t{i}", item, "purchase", "web", 1) for i in range(5) for item in ("bread", "butter")]
    rows += [(f"m{i}", "milk", "purchase", "web", 2) for i in range(8)]
    # Test: 12 baskets with 2..3 items, one single-item basket (not eligible).
    rows += [(f"q{i}", item, "purchase", "web", 10) for i in range(12) for item in ("bread", "butter", "jam")[
        : 2 + i % 2]]
    rows += [("single", "milk", "purchase", "web", 10)]
    return _events(rows)


class OracleCompleter:
    """Knows the hidden item of every query, in order."""

    name = "oracle"

    def __init__(self, queries: CartQueries) -> None:
        self.hidden = queries.hidden

    def complete(self, basket_item_rows: Sequence[np.ndarray], k: int) -> np.ndarray:
        out = np.full((len(basket_item_rows), k), -1, dtype=np.int64)
        out[:, 0] = self.hidden
        return out


class NeverCompleter:
    name = "never"

    def complete(self, basket_item_rows: Sequence[np.ndarray], k: int) -> np.ndarray:
        return np.full((len(basket_item_rows), k), -1, dtype=np.int64)


def test_cart_queries_hide_one_item_of_each_multi_item_basket_deterministically() -> None:
    split = time_split(_basket_log(), test_days=1)
    queries = build_cart_queries(split, max_baskets=100, seed=7)
    assert len(queries) == 12 and queries.n_eligible == 12  # the single-item basket is not eligible
    for context, hidden in zip(queries.context, queries.hidden, strict=True):
        assert hidden not in context and 1 <= len(context) <= 2
    capped = build_cart_queries(split, max_baskets=5, seed=7)
    again = build_cart_queries(split, max_baskets=5, seed=7)
    assert len(capped) == 5 and list(capped.basket_ids) == list(again.basket_ids)
    assert (capped.hidden == again.hidden).all()


def test_cart_completion_oracle_scores_one_and_never_scores_zero() -> None:
    split = time_split(_basket_log(), test_days=1)
    queries = build_cart_queries(split)
    oracle = evaluate_completer(queries, OracleCompleter(queries), k=10)
    never = evaluate_completer(queries, NeverCompleter(), k=10)
    assert (oracle.hit_rate, oracle.mrr) == (1.0, 1.0)
    assert (never.hit_rate, never.mrr) == (0.0, 0.0)


def test_reference_completers_use_train_baskets() -> None:
    split = time_split(_basket_log(), test_days=1)
    bread = split.index.item_rows(["bread"])
    cooc = CoOccurrenceCompleter().fit(split.train, split.index)
    pop = PopularityCompleter().fit(split.train, split.index)
    # Co-occurrence: butter shares every bread basket (5/5), then popularity fills: milk.
    assert _ids(split.index, cooc.complete([bread], 3)[0])[:2] == ["butter", "milk"]
    # Popularity: milk (8 baskets), butter (5); bread is in the basket, so it is never suggested.
    assert _ids(split.index, pop.complete([bread], 2)[0]) == ["milk", "butter"]


# ------------------------------------------------------------------------------------------ runner and report


class FixedRecommender:
    """Recommends the same item rows to everyone (a stand-in for the serving engine)."""

    serves_new_customers = True

    def __init__(self, name: str, rows: list[int]) -> None:
        self.name = name
        self.rows = np.asarray(rows, dtype=np.int64)

    def recommend(self, customer_rows: np.ndarray, channels: Sequence[str], k: int) -> np.ndarray:
        return np.tile(self.rows[:k], (len(customer_rows), 1))


def test_evaluate_and_write_report(tmp_path: Path) -> None:
    split = time_split(_split_log(), test_days=4)
    milk, eggs, jam = (int(r) for r in split.index.item_rows(["milk", "eggs", "jam"]))
    models: dict[str, Recommender] = {
        "engine": FixedRecommender("engine", [milk, eggs, jam]),
        "popularity": GlobalPopularity(window_days=None).fit(split.train, split.index),
        "buy_it_again": BuyItAgain().fit(split.train, split.index)}
    report = evaluate(split, models, fit_completers(split), k=5, default_model="engine")
    assert report.ks == (5, 10) and report.n_test_customers == 1 and report.n_new_customers == 1
    # alice's truth is {milk, eggs, jam}: the engine gets all three in the first three slots.
    assert report.overall["engine"]["recall@10"] == 1.0 and report.overall["engine"]["ndcg@5"] == 1.0
    assert set(report.new_customers) == {"engine", "popularity"}  # buy_it_again does not serve new customers
    assert report.channels == ()  # one test channel (alice's main channel is app): no per-channel tables
    best = report.best_baseline("ndcg@10")
    assert best is not None and best[0] in {"popularity", "buy_it_again"}
    assert report.ratios_to_best_baseline()["ndcg@10"]["baseline"] == best[0]

    paths = write_report(report, tmp_path / "eval")
    data = json.loads(paths["json"].read_text())
    assert data["overall"]["engine"]["ndcg@10"] == 1.0
    assert data["overall"]["popularity"]["ndcg@10"] == pytest.approx(report.overall["popularity"]["ndcg@10"])
    assert data["default_model"] == "engine" and "cart_completion" in data
    markdown = paths["markdown"].read_text()
    assert f"{report.overall['popularity']['ndcg@10']:.4f}" in markdown and "**engine**" in markdown
    for kind in ("chart_models", "chart_cart"):
        assert paths[kind].read_bytes()[:4] == b"\x89PNG" and paths[kind].name in markdown
    table = format_table(report)
    assert "engine *" in table and "buy_it_again" in table


def test_per_channel_tables_when_the_test_window_has_several_channels(tmp_path: Path) -> None:
    log = _events([("u1", "a", "purchase", "web", 0), ("u2", "b", "purchase", "app", 0),
                   ("u1", "a", "purchase", "web", 5), ("u2", "b", "purchase", "app", 5)])
    split = time_split(log, test_days=1)
    model = ChannelPopularity(window_days=None).fit(split.train, split.index)
    report = evaluate(split, {"channel_popularity": model, "popularity": GlobalPopularity().fit(
        split.train, split.index)})
    assert report.channels == ("app", "web") and report.channel_customers == {"app": 1, "web": 1}
    assert report.per_channel["web"]["channel_popularity"]["hit_rate@10"] == 1.0
    paths = write_report(report, tmp_path)
    assert paths["chart_channels"].exists() and "### web" in paths["markdown"].read_text()


def test_evaluate_rejects_malformed_recommendations() -> None:
    split = time_split(_split_log(), test_days=4)
    with pytest.raises(ValueError, match="outside"):
        evaluate(split, {"bad": FixedRecommender("bad", [99, 0, 1])})
    with pytest.raises(ValueError, match="default_model"):
        evaluate(split, {"ok": FixedRecommender("ok", [0])}, default_model="missing")


# ------------------------------------------------------------------------------------------ real data: Ta Feng


def _tafeng_events(nrows: int) -> pd.DataFrame:
    """Ta Feng rows as the cleaned events frame: one store channel, a basket per customer and day."""
    raw = pd.read_csv(TAFENG, encoding="utf-8-sig", dtype=str, nrows=nrows)
    ts = pd.to_datetime(raw["TRANSACTION_DT"], format="%m/%d/%Y").dt.tz_localize("UTC")
    qty = raw["AMOUNT"].astype(float)
    day = ((ts - pd.Timestamp("1970-01-01", tz="UTC")).dt.days).astype("int32")
    events = pd.DataFrame({
        "customer_id": raw["CUSTOMER_ID"], "item_id": raw["PRODUCT_ID"],
        "event": np.where(qty > 0, "purchase", "return"), "channel": "store", "store_id": "", "order_id": "",
        "basket_id": raw["CUSTOMER_ID"] + "@" + day.astype(str), "quantity": qty.abs(),
        "price": raw["SALES_PRICE"].astype(float) / qty.abs(), "timestamp": ts, "day": day})
    return events.sort_values("timestamp", kind="stable").reset_index(drop=True)


@pytest.mark.slow
def test_tafeng_slice_buy_it_again_beats_global_popularity() -> None:
    """Pins the known grocery property on Ta Feng's first 150k rows (2000-11-01..22, last 7 days as test)."""
    if not TAFENG.exists():
        pytest.skip(f"{TAFENG} not available")
    split = time_split(_tafeng_events(150_000), test_days=7)
    models = fit_baselines(split)
    report = evaluate(split, models, fit_completers(split), max_cart_baskets=1000)
    ndcg = {name: report.overall[name]["ndcg@10"] for name in models}
    assert ndcg["buy_it_again"] > ndcg["popularity"], ndcg
    assert all(math.isfinite(v) and v > 0 for v in ndcg.values()), ndcg
    cart = report.cart_completion
    assert cart["cooccurrence"]["hit_rate@10"] > cart["popularity"]["hit_rate@10"], cart
