"""Baselines for customers without history: plain buyer-count popularity and popularity within an attribute group.

Issue 14's outside measurement scored the list the server gives an unknown customer against these two: plain
all-time buyer counts (0.048 NDCG@10 on Ta Feng's new customers against 0.028 for the quantity- and
recency-weighted list), and popularity within the customer's age group (the bar LightFM's cold start has to
clear). Both serve new customers (``serves_new_customers``), so the runner scores them on that slice too.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np
import pandas as pd
import scipy.sparse as sp

from recsvc_training.evaluation.baselines import BaselineRecommender, _purchases, _tile, popularity_score
from recsvc_training.evaluation.metrics import ranking_metrics
from recsvc_training.evaluation.split import EvalIndex, validation_split
from recsvc_training.evaluation.topk import fill_unique, top_k_sparse
from recsvc_training.input import columns as C

logger = logging.getLogger(__name__)

#: A group with fewer buyers in the train split than this gets the all-customers list: a handful of
#: customers' baskets are noise, not a taste.
MIN_GROUP_BUYERS = 20
#: The attribute choice is judged on NDCG at this cut-off on the validation window's new customers.
_CHOICE_K = 10


def buyer_counts(purchases: pd.DataFrame, n_items: int) -> np.ndarray:
    """Distinct customers who bought each item row (float64, ``[n_items]``)."""
    pairs = purchases.drop_duplicates(["c", "i"])
    return np.bincount(pairs["i"].to_numpy(), minlength=n_items).astype(np.float64)


def buyer_ranking(purchases: pd.DataFrame, n_items: int) -> np.ndarray:
    """Every item row by all-time distinct buyers, ties by purchase events, then by item row."""
    events = np.bincount(purchases["i"].to_numpy(), minlength=n_items).astype(np.float64)
    return np.lexsort((np.arange(n_items), -events, -buyer_counts(purchases, n_items))).astype(np.int64)


class BuyerPopularity(BaselineRecommender):
    """The same list for everyone: items by how many distinct customers bought them in the whole train split.

    No window and no quantities: a wholesale order of 500 mugs is one buyer, like a single mug.
    """

    name = "buyer_popularity"
    serves_new_customers = True

    def __init__(self) -> None:
        self.ranking = np.zeros(0, dtype=np.int64)

    def fit(self, train_events: pd.DataFrame, index: EvalIndex) -> BuyerPopularity:
        self.ranking = buyer_ranking(_purchases(train_events, index), index.n_items)
        return self

    def recommend(self, customer_rows: np.ndarray, channels: Sequence[str], k: int) -> np.ndarray:
        return _tile(self.ranking, len(customer_rows), k)


class AttributePopularity(BaselineRecommender):
    """Buyer-count popularity within the customer's attribute group, filled with :class:`BuyerPopularity`.

    A group is one combination of values of ``columns`` of the customers table (a missing value is a value of
    its own: on Ta Feng "age unknown" is a large group). Which columns make the group is chosen on a validation
    window (the last ``validation_days`` of the train split), never on the test window: each attribute alone
    and all of them together are tried on the validation window's new customers, and the best NDCG@10 wins
    (all of them together when that window has no new customer). Pass ``columns`` to fix the choice.
    Customers without a row in the table, or in a group with fewer than ``min_group_buyers`` buyers, get the
    all-customers list.
    """

    name = "attribute_popularity"
    serves_new_customers = True

    def __init__(self, customers: pd.DataFrame, columns: Sequence[str] | None = None,
                 min_group_buyers: int = MIN_GROUP_BUYERS, validation_days: int = 28) -> None:
        attributes = [c for c in customers.columns if c != C.CUSTOMER_ID]
        if C.CUSTOMER_ID not in customers.columns:
            raise ValueError(f"the customers table needs a {C.CUSTOMER_ID!r} column")
        if columns is not None and (not columns or set(columns) - set(attributes)):
            raise ValueError(f"attribute columns {list(columns)} must be a non-empty subset of {attributes}")
        if not attributes:
            raise ValueError("the customers table has no attribute columns: nothing to group customers by")
        self.customers = customers
        self.candidates = [list(columns)] if columns is not None else _column_choices(attributes)
        self.min_group_buyers = min_group_buyers
        self.validation_days = validation_days
        self.columns: list[str] = []
        self.validation: dict[str, float] = {}  # "a+b" -> validation NDCG@10, for the log and the report
        self._groups = np.zeros(0, dtype=np.int64)
        self._counts = sp.csr_matrix((0, 0))
        self._global = np.zeros(0, dtype=np.int64)

    def fit(self, train_events: pd.DataFrame, index: EvalIndex) -> AttributePopularity:
        self.columns = self._choose(train_events) if len(self.candidates) > 1 else self.candidates[0]
        self._fit_columns(train_events, index, self.columns)
        return self

    def recommend(self, customer_rows: np.ndarray, channels: Sequence[str], k: int) -> np.ndarray:
        rows = np.asarray(customer_rows, dtype=np.int64)
        groups = self._groups[rows]
        known = groups >= 0
        own = np.full((len(rows), k), -1, dtype=np.int64)
        if known.any():  # one list per group (a few hundred at most), then one row per customer
            per_group = top_k_sparse(self._counts, k, tiebreak=popularity_score(self._global))
            own[known] = per_group[groups[known]]
        return fill_unique(np.hstack([own, _tile(self._global, len(rows), k)]), k, len(self._global))

    def _fit_columns(self, train_events: pd.DataFrame, index: EvalIndex, columns: list[str]) -> None:
        bought = _purchases(train_events, index)
        self._global = buyer_ranking(bought, index.n_items)
        self._groups = _group_codes(self.customers, columns, index.customer_ids)
        pairs = bought.drop_duplicates(["c", "i"])
        group = self._groups[pairs["c"].to_numpy()]
        pairs, group = pairs[group >= 0], group[group >= 0]
        n_groups = int(self._groups.max()) + 1 if len(self._groups) else 0
        counts = sp.csr_matrix((np.ones(len(pairs)), (group, pairs["i"].to_numpy())),
                               shape=(n_groups, index.n_items), dtype=np.float64)
        counts.sum_duplicates()
        buyer_groups = self._groups[np.unique(bought["c"].to_numpy())]
        buyers = np.bincount(buyer_groups[buyer_groups >= 0], minlength=n_groups)
        small = np.flatnonzero(buyers < self.min_group_buyers)
        self._groups[np.isin(self._groups, small)] = -1  # too few buyers: the all-customers list
        self._counts = counts

    def _choose(self, train_events: pd.DataFrame) -> list[str]:
        try:
            val = validation_split(train_events, self.validation_days)
        except ValueError:  # the train side is too short for a validation window
            return self.candidates[-1]
        truth = val.new_customer_truth
        if not len(truth):
            return self.candidates[-1]
        for columns in self.candidates:
            self._fit_columns(val.train, val.index, columns)
            recs = self.recommend(truth.customer_rows, list(truth.channels), _CHOICE_K)
            self.validation["+".join(columns)] = ranking_metrics(recs, truth.items, _CHOICE_K)[f"ndcg@{_CHOICE_K}"]
        best = max(self.candidates, key=lambda cols: self.validation["+".join(cols)])
        logger.info("attribute popularity: validation NDCG@%d %s; grouping by %s", _CHOICE_K,
                    {k: round(v, 4) for k, v in self.validation.items()}, "+".join(best))
        return best


def _column_choices(attributes: list[str]) -> list[list[str]]:
    """Each attribute alone, then all of them together (the fallback when nothing can be validated)."""
    return [[a] for a in attributes] + ([attributes] if len(attributes) > 1 else [])


def _group_codes(customers: pd.DataFrame, columns: list[str], customer_ids: np.ndarray) -> np.ndarray:
    """The group (int >= 0) of every customer id, -1 for ids the table does not list."""
    table = customers.drop_duplicates(C.CUSTOMER_ID)
    values = table[columns].astype("string").fillna("").astype(str)
    key = values.agg("\x1f".join, axis=1) if len(columns) > 1 else values[columns[0]]
    codes = pd.Series(pd.factorize(key.to_numpy())[0], index=table[C.CUSTOMER_ID].astype(str).to_numpy())
    return np.array(codes.reindex(np.asarray(customer_ids).astype(str)).fillna(-1), dtype=np.int64)
