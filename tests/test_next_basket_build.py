"""The TIFU-KNN list builder (issue 19: a build that scales in events) against a straightforward reference.

Pinned here: the user vectors of a hand-made log with groups of two baskets, worked out by hand; the
builder's lists (sparse scores, bounded neighbour pool) equal to those of a dense brute-force TIFU-KNN written
from the paper's definitions, with every customer in the pool and with a pool smaller than the log; the
sparse top-k equal to the dense one, ties included.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from recsvc_training.evaluation.nextbasket import TifuParams, tifu_user_vectors, top_k_csr, top_k_rows
from recsvc_training.models.next_basket import TunedNextBasket, _purchase_frame, build_next_basket
from tests.test_model_selection import _events, _maps


def test_tifu_vectors_of_groups_of_two_baskets_match_a_hand_computed_case() -> None:
    """Group size 2, within-group decay 0.5, across-group decay 0.5.

    Customer 0 bought baskets, oldest first, {A} (day 1), {A, B} (day 2), {C} (day 3). From the newest: group 0
    = [{C} (j 0), {A, B} (j 1)], group 1 = [{A}] (the oldest group holds the rest). Group 0's vector:
    (C 1 + 0.5 (A + B)) / 2 = A .25, B .25, C .5; group 1's: A 1. Customer vector: (1 * group 0 + 0.5 * group
    1) / 2 = A (.25 + .5) / 2 = .375, B .125, C .25. Customer 1 bought B twice in one basket: B counts once.
    """
    events = _events([(0, 0, 1, 0), (0, 0, 2, 1), (0, 1, 2, 1), (0, 2, 3, 2), (1, 1, 5, 3), (1, 1, 5, 3)])
    params = TifuParams(group_size=2, within_decay=0.5, across_decay=0.5)
    vectors = tifu_user_vectors(_purchase_frame(events), 2, 3, params).toarray()
    np.testing.assert_allclose(vectors[0], [0.375, 0.125, 0.25])
    np.testing.assert_allclose(vectors[1], [0.0, 1.0, 0.0])


def _reference_lists(vectors: np.ndarray, pool: np.ndarray, params: TifuParams, k: int,
                     tiebreak: np.ndarray) -> dict[int, tuple[list[int], np.ndarray]]:
    """TIFU-KNN from the definitions: each customer with a vector, the ``neighbours`` nearest pool customers
    (squared Euclidean, never oneself), score = alpha own + (1 - alpha) mean, top k positive (ties to the
    higher tiebreak, then the lower item)."""
    out = {}
    for c in np.flatnonzero(vectors.any(axis=1)):
        others = [p for p in pool if p != c]
        dist = [float(((vectors[c] - vectors[p]) ** 2).sum()) for p in others]
        nearest = [others[i] for i in np.argsort(dist, kind="stable")[:params.neighbours]]
        score = params.alpha * vectors[c] + (1 - params.alpha) * vectors[nearest].mean(axis=0)
        ranked = sorted((i for i in range(score.size) if score[i] > 0), key=lambda i: (-score[i], -tiebreak[i], i))
        out[int(c)] = (ranked[:k], score[ranked[:k]])
    return out


def test_tifu_lists_equal_a_dense_brute_force_reference_with_and_without_a_pool_cap() -> None:
    rng = np.random.default_rng(7)
    n_customers, n_items, rows, basket = 40, 25, [], 0
    for c in range(n_customers - 2):  # the last two customers buy nothing
        for day in np.sort(rng.choice(60, int(rng.integers(1, 7)), replace=False)):
            for item in rng.choice(n_items, int(rng.integers(1, 5)), replace=False):
                rows.append((c, int(item), int(day), basket))
            basket += 1
    events, maps = _events(rows), _maps(n_customers, n_items)
    params = TifuParams(group_size=3, within_decay=0.9, across_decay=0.7, neighbours=5, alpha=0.6)
    tiebreak = rng.permutation(n_items).astype(np.float64)
    vectors = tifu_user_vectors(_purchase_frame(events), n_customers, n_items, params).toarray()
    baskets = np.bincount(np.array([r[0] for r in {(r[0], r[3]) for r in rows}]), minlength=n_customers)
    for cap in (1000, 12):
        part = build_next_basket(events, maps, tiebreak, TunedNextBasket(params, {}), k=8, max_neighbour_pool=cap)
        buyers = np.flatnonzero(baskets > 0)
        pool = buyers if buyers.size <= cap else np.sort(buyers[np.lexsort((buyers, -baskets[buyers]))[:cap]])
        expected = _reference_lists(vectors, pool, params, 8, tiebreak)
        assert part.params["neighbour_pool"] == pool.size
        for c in range(n_customers):
            items, scores = part.row(c)
            want_items, want_scores = expected.get(c, ([], np.zeros(0)))
            assert items.tolist() == want_items, (cap, c)
            np.testing.assert_allclose(scores, want_scores, rtol=1e-6)


def test_sparse_top_k_equals_dense_top_k_ties_included() -> None:
    rng = np.random.default_rng(11)
    dense = rng.integers(0, 4, size=(30, 50)) / 4.0  # quarters: many exact ties
    dense[rng.random((30, 50)) < 0.6] = 0.0
    dense[5] = 0.0  # a row without a positive score
    tiebreak = rng.integers(0, 3, 50).astype(np.float64)
    for k in (1, 7, 60):
        assert (top_k_csr(sp.csr_matrix(dense), k, tiebreak) == top_k_rows(dense, k, tiebreak)).all(), k


def test_item_knn_equals_a_dense_cosine_reference() -> None:
    """The item-kNN build (one vectorised pass per block of items, issue 19) against cosine of buyer sets
    computed densely: the same neighbours in the same order (ties to the lower item), the same scores."""
    from recsvc_training.models.item_knn import build_item_neighbours

    rng = np.random.default_rng(5)
    bought = (rng.random((80, 30)) < 0.15).astype(np.float64)
    knn = build_item_neighbours(sp.csr_matrix(bought), k=4, min_common=2)
    assert knn is not None
    common = bought.T @ bought
    norms = np.sqrt(bought.sum(axis=0))
    for item in range(30):
        cols = [c for c in range(30) if c != item and common[item, c] >= 2]
        sims = {c: common[item, c] / (norms[item] * norms[c]) for c in cols}
        want = sorted(cols, key=lambda c: (-sims[c], c))[:4]
        lo, hi = knn.indptr[item], knn.indptr[item + 1]
        assert knn.items[lo:hi].tolist() == want, item
        np.testing.assert_allclose(knn.scores[lo:hi], [sims[c] for c in want], rtol=1e-6)


def test_similar_items_pairs_keep_at_most_max_queries_query_items() -> None:
    """SimilarItems' measurement calls the serving code once per query item and method, each call scoring the
    catalog: the pairs are bounded in query items, and every pair kept is a pair of the window."""
    import pandas as pd

    from recsvc_training.evaluation.similar_items import next_basket_pairs
    from recsvc_training.input import columns as C

    rng = np.random.default_rng(2)
    rows = []
    for c in range(60):  # two baskets per customer: day 1 (the previous basket) and day 10 (in the window)
        for day in (1, 10):
            for item in rng.choice(40, 5, replace=False):
                rows.append({C.CUSTOMER_ID: f"c{c}", C.ITEM_ID: f"i{item:02d}", C.DAY: day,
                             C.EVENT: C.PURCHASE, C.BASKET_ID: f"b{c}-{day}"})
    events = pd.DataFrame(rows)
    item_ids = np.array(sorted({r[C.ITEM_ID] for r in rows}))
    every = next_basket_pairs(events, 5, 20, item_ids, max_queries=10_000)
    capped = next_basket_pairs(events, 5, 20, item_ids, max_queries=7)
    assert np.unique(every.a).size > 7 and np.unique(capped.a).size == 7
    assert set(zip(capped.a.tolist(), capped.b.tolist(), strict=True)) <= set(
        zip(every.a.tolist(), every.b.tolist(), strict=True))
    again = next_basket_pairs(events, 5, 20, item_ids, max_queries=7)  # seeded: the same pairs each time
    assert (again.a == capped.a).all() and (again.b == capped.b).all()
