"""Time-based train/test split and the shared integer index every evaluated model speaks.

The protocol (``shared/data/README.md``): train on everything before a cut-off day, test on the following
window; test customers are those with any event before the cut-off, customers first seen in the window are a
separate slice. Everything downstream works on integer rows of one :class:`EvalIndex`, so models, metrics and
reports agree on what "item 17" is.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cached_property

import numpy as np
import pandas as pd
import scipy.sparse as sp

from recsvc_training.input import columns as C

logger = logging.getLogger(__name__)

#: Default length of the test window, in days.
DEFAULT_TEST_DAYS = 28


@dataclass(frozen=True, eq=False)
class EvalIndex:
    """Item and customer ids to integer rows, shared by every model in one evaluation run.

    ``item_ids`` is sorted. ``customer_ids`` holds the customers with at least one event before the cut-off
    (sorted, rows ``0 .. n_train_customers - 1``) followed by the customers first seen in the test window
    (sorted, rows ``n_train_customers ..``). A row ``>= n_train_customers`` therefore means "no history";
    models trained on the train split must not expect anything for those rows.
    """

    item_ids: np.ndarray
    customer_ids: np.ndarray
    n_train_customers: int

    @property
    def n_items(self) -> int:
        return len(self.item_ids)

    @property
    def n_customers(self) -> int:
        return len(self.customer_ids)

    @cached_property
    def _item_lookup(self) -> pd.Index:
        return pd.Index(self.item_ids)

    @cached_property
    def _customer_lookup(self) -> pd.Index:
        return pd.Index(self.customer_ids)

    def item_rows(self, item_ids: Iterable[str] | np.ndarray | pd.Series) -> np.ndarray:
        """Rows (int64) of ``item_ids``; -1 for ids the index does not know."""
        return np.asarray(self._item_lookup.get_indexer(_as_array(item_ids)), dtype=np.int64)

    def customer_rows(self, customer_ids: Iterable[str] | np.ndarray | pd.Series) -> np.ndarray:
        """Rows (int64) of ``customer_ids``; -1 for ids the index does not know."""
        return np.asarray(self._customer_lookup.get_indexer(_as_array(customer_ids)), dtype=np.int64)


def _as_array(ids: Iterable[str] | np.ndarray | pd.Series) -> np.ndarray:
    if isinstance(ids, pd.Series):
        return ids.to_numpy()
    if isinstance(ids, np.ndarray):
        return ids
    return np.asarray(list(ids), dtype=object)


@dataclass(frozen=True, eq=False)
class TestTruth:
    """What a group of test customers bought in the test window, row-aligned with ``customer_rows``.

    ``items`` is a CSR matrix [len(customer_rows), n_items] of 0/1: the items each customer purchased in the
    window, net of returns in the same window (purchased quantity minus returned quantity > 0). Rows are never
    empty. ``history`` has the same shape and marks the items each customer purchased before the cut-off (used
    to split hits into repeat and new items; all-zero for new customers). ``channels`` is each customer's main
    channel in the window (most purchase events; ties go to the alphabetically first channel).
    """

    customer_rows: np.ndarray
    channels: np.ndarray
    items: sp.csr_matrix
    history: sp.csr_matrix

    def __len__(self) -> int:
        return len(self.customer_rows)

    def subset(self, mask: np.ndarray) -> TestTruth:
        """The customers where ``mask`` (bool, one per customer) is true."""
        return TestTruth(self.customer_rows[mask], self.channels[mask], self.items[mask], self.history[mask])


@dataclass(frozen=True, eq=False)
class TimeSplit:
    """One train/test split of a cleaned events frame (``TrainingData.events``).

    ``train`` holds every event with ``day < cutoff_day``, ``test`` every event with
    ``cutoff_day <= day < cutoff_day + test_days``; both keep the events frame's columns and order.
    ``truth`` covers returning customers (any event before the cut-off) who bought something in the window;
    ``new_customer_truth`` covers customers with no event before the cut-off who bought something in it.
    """

    train: pd.DataFrame
    test: pd.DataFrame
    cutoff_day: int
    test_days: int
    index: EvalIndex
    truth: TestTruth
    new_customer_truth: TestTruth

    @property
    def channels(self) -> list[str]:
        """Channels seen in the split (train or test), sorted."""
        seen = pd.concat([self.train[C.CHANNEL], self.test[C.CHANNEL]]).unique()
        return sorted(str(c) for c in seen)


def time_split(events: pd.DataFrame, test_days: int = DEFAULT_TEST_DAYS, cutoff_day: int | None = None,
               catalog_item_ids: Iterable[str] | None = None) -> TimeSplit:
    """Split ``events`` at a cut-off day into train (before) and a test window of ``test_days`` days.

    Parameters
    ----------
    events
        The cleaned events frame (columns as in ``TrainingData.events``; needs at least customer_id, item_id,
        event, channel, quantity, day).
    test_days
        Length of the test window in days (> 0).
    cutoff_day
        First day of the test window (int days since 1970-01-01). Default: the last day in ``events`` + 1 -
        ``test_days``, i.e. the window is the last ``test_days`` days of the log.
    catalog_item_ids
        Extra item ids to put in the index (e.g. the whole catalog), so full ranking and coverage run over
        items nobody touched. Items seen in ``events`` are always included.

    Returns
    -------
    TimeSplit
        Raises ``ValueError`` if either side of the split is empty.
    """
    if test_days <= 0:
        raise ValueError(f"test_days must be positive, got {test_days}")
    missing = {C.CUSTOMER_ID, C.ITEM_ID, C.EVENT, C.CHANNEL, C.QUANTITY, C.DAY} - set(events.columns)
    if missing:
        raise ValueError(f"events frame lacks column(s): {', '.join(sorted(missing))}")
    if events.empty:
        raise ValueError("cannot split an empty events frame")
    day = events[C.DAY].to_numpy()
    if cutoff_day is None:
        cutoff_day = int(day.max()) + 1 - test_days
    end_day = cutoff_day + test_days
    train = events[day < cutoff_day]
    test = events[(day >= cutoff_day) & (day < end_day)]
    if train.empty or test.empty:
        raise ValueError(f"split at day {cutoff_day} with a {test_days}-day window leaves "
                         f"{len(train)} train and {len(test)} test events; both must be non-empty")
    split = _build_split(train, test, int(cutoff_day), int(test_days), catalog_item_ids)
    logger.info("time split at day %d (+%d days): %d train events, %d test events, %d returning test "
                "customers, %d new test customers, %d items", cutoff_day, test_days, len(train), len(test),
                len(split.truth), len(split.new_customer_truth), split.index.n_items)
    return split


def validation_split(train_events: pd.DataFrame, val_days: int = DEFAULT_TEST_DAYS,
                     catalog_item_ids: Iterable[str] | None = None) -> TimeSplit:
    """A split of the train side itself, for tuning (the learned blend) without touching the test window.

    Same shape as :func:`time_split`: the last ``val_days`` days of ``train_events`` become the validation
    window. Pass ``split.train`` of the outer split, never the full log.
    """
    return time_split(train_events, test_days=val_days, cutoff_day=None, catalog_item_ids=catalog_item_ids)


def _build_split(train: pd.DataFrame, test: pd.DataFrame, cutoff_day: int, test_days: int,
                 catalog_item_ids: Iterable[str] | None) -> TimeSplit:
    item_parts = [train[C.ITEM_ID].unique(), test[C.ITEM_ID].unique()]
    if catalog_item_ids is not None:
        item_parts.append(np.asarray(list(catalog_item_ids), dtype=object))
    item_ids = np.unique(np.concatenate([np.asarray(p, dtype=object) for p in item_parts]).astype(str))
    train_customers = np.unique(train[C.CUSTOMER_ID].to_numpy().astype(str))
    test_customers = np.unique(test[C.CUSTOMER_ID].to_numpy().astype(str))
    new_customers = np.setdiff1d(test_customers, train_customers, assume_unique=True)
    index = EvalIndex(item_ids=item_ids.astype(object),
                      customer_ids=np.concatenate([train_customers, new_customers]).astype(object),
                      n_train_customers=len(train_customers))

    truth_all = _window_truth(test, index)
    history = _purchase_matrix(train, index)
    returning = truth_all.customer_rows < index.n_train_customers
    truth = TestTruth(truth_all.customer_rows[returning], truth_all.channels[returning],
                      truth_all.items[returning], history[truth_all.customer_rows[returning]])
    new_rows = truth_all.customer_rows[~returning]
    new_truth = TestTruth(new_rows, truth_all.channels[~returning], truth_all.items[~returning],
                          sp.csr_matrix((len(new_rows), index.n_items), dtype=np.float32))
    return TimeSplit(train=train, test=test, cutoff_day=cutoff_day, test_days=test_days, index=index,
                     truth=truth, new_customer_truth=new_truth)


def _purchase_matrix(events: pd.DataFrame, index: EvalIndex) -> sp.csr_matrix:
    """0/1 CSR [n_customers, n_items]: customer purchased item at least once in ``events``."""
    bought = events[events[C.EVENT] == C.PURCHASE]
    rows = index.customer_rows(bought[C.CUSTOMER_ID].to_numpy())
    cols = index.item_rows(bought[C.ITEM_ID].to_numpy())
    return _binary_csr(rows, cols, (index.n_customers, index.n_items))


def _binary_csr(rows: np.ndarray, cols: np.ndarray, shape: tuple[int, int]) -> sp.csr_matrix:
    mat = sp.csr_matrix((np.ones(len(rows), dtype=np.float32), (rows, cols)), shape=shape)
    mat.data[:] = 1.0  # duplicates were summed; relevance is binary
    mat.sort_indices()
    return mat


def _window_truth(test: pd.DataFrame, index: EvalIndex) -> TestTruth:
    """Truth for every customer who bought something (net of returns) in the window, in customer-row order."""
    moves = test[test[C.EVENT].isin([C.PURCHASE, C.RETURN])]
    sign = np.where(moves[C.EVENT].to_numpy() == C.RETURN, -1.0, 1.0)
    net = (pd.DataFrame({"c": index.customer_rows(moves[C.CUSTOMER_ID].to_numpy()),
                         "i": index.item_rows(moves[C.ITEM_ID].to_numpy()),
                         "q": sign * moves[C.QUANTITY].to_numpy(dtype=np.float64)})
           .groupby(["c", "i"], sort=False)["q"].sum())
    # Net of returns in the same window: an item bought and fully returned is not what the customer wanted.
    kept = net[net > 0].index
    cust = kept.get_level_values(0).to_numpy(dtype=np.int64)
    item = kept.get_level_values(1).to_numpy(dtype=np.int64)
    rows, inverse = np.unique(cust, return_inverse=True)
    items = _binary_csr(inverse, item, (len(rows), index.n_items))

    bought = test[test[C.EVENT] == C.PURCHASE]
    per_channel = (pd.DataFrame({"c": index.customer_rows(bought[C.CUSTOMER_ID].to_numpy()),
                                 "ch": bought[C.CHANNEL].astype(str).to_numpy()})
                   .groupby(["c", "ch"]).size().rename("n").reset_index())
    main = (per_channel.assign(neg=-per_channel["n"]).sort_values(["c", "neg", "ch"])
            .drop_duplicates("c").set_index("c")["ch"])
    channels = main.reindex(rows).fillna("").to_numpy(dtype=object)
    empty_history = sp.csr_matrix((len(rows), index.n_items), dtype=np.float32)
    return TestTruth(rows, channels, items, empty_history)
