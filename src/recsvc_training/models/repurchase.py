"""Purchase history per customer and repurchase cycles per item ("buy it again", replenishment reminders).

The history is a CSR over customers (rows of ``customer_ids``): for each item a customer bought, the net
purchase count, first and last purchase day and where the last purchase happened. Per item, the median gap
between one customer's consecutive purchase days and the share of its buyers who came back for it.
"""

from __future__ import annotations

import logging

import numpy as np

from recsvc.artifacts.parts.history import (
    HIST_COUNT,
    HIST_DECAYED,
    HIST_FIRST_DAY,
    HIST_INDPTR,
    HIST_ITEMS,
    HIST_LAST_CHANNEL,
    HIST_LAST_DAY,
    HIST_LAST_STORE,
)
from recsvc.artifacts.parts.repurchase import ITEM_REPURCHASE_DAYS, ITEM_REPURCHASE_RATE
from recsvc_training.input import columns as C
from recsvc_training.input.id_maps import EventRows, IdMaps

logger = logging.getLogger(__name__)

#: Net units at or below this count as "everything was returned".
_NET_EPSILON = 1e-9


def build_repurchase(events: EventRows, maps: IdMaps, end_day: int | None = None,
                     half_life_days: float = 60.0) -> dict[str, np.ndarray]:
    """History and repurchase arrays, named as in :mod:`recsvc.artifacts`.

    ``hist_count`` is the number of purchase lines of the (customer, item) pair weighed down by the share of
    units returned: ``lines × (bought − returned) / bought``. So returns cancel purchases (a fully returned
    item is absent from the history), a partial return lowers the count in proportion, and a wholesale line
    of 24 units counts once, like any other purchase, rather than 24 times. Returns without a purchase in the
    data change nothing. ``hist_last_channel`` / ``hist_last_store`` describe the latest purchase event of
    the pair (store -1 when it had none). Within a row, items are sorted by item row.

    ``item_repurchase_days`` is the median, over all customers, of days between consecutive *distinct*
    purchase days of the item by the same customer (NaN when no one bought it on two days);
    ``item_repurchase_rate`` is the share of the item's buyers with at least two distinct purchase days
    (0 for items nobody bought). Both use every purchase, returned or not: a return says little about when
    the customer needed the item again.

    With ``end_day``, ``hist_decayed`` is the recency-weighted purchase count as of that day,
    ``sum over purchase lines of 0.5 ** ((end_day - day) / half_life_days)``, scaled like ``hist_count`` by the
    share kept after returns: the "buy it again" score itself, which the learned ranker uses as a feature.
    """
    n_items, n_customers = maps.n_items, maps.n_customers
    purchases = events.subset(events.mask(C.PURCHASE))
    returns = events.subset(events.mask(C.RETURN))

    key = purchases.customer.astype(np.int64) * n_items + purchases.item
    order = np.lexsort((purchases.time, key))
    key, day = key[order], purchases.day[order]
    quantity = purchases.quantity[order]
    starts = np.flatnonzero(np.r_[True, key[1:] != key[:-1]]) if key.size else np.zeros(0, dtype=np.int64)
    ends = np.r_[starts[1:], key.size].astype(np.int64)
    pair_key = key[starts]

    bought = np.add.reduceat(quantity, starts) if starts.size else np.zeros(0)
    returned = _returned_units(returns, n_items, pair_key)
    lines = (ends - starts).astype(np.float64)
    net = bought - returned
    kept = net > _NET_EPSILON
    count = np.where(kept, lines * np.clip(net, 0.0, None) / np.where(bought > 0, bought, 1.0), 0.0)

    decay = (0.5 ** ((end_day - day.astype(np.float64)) / half_life_days) if end_day is not None
             else np.zeros(day.size))
    decayed = np.add.reduceat(decay, starts) if starts.size else np.zeros(0)
    decayed = np.where(kept, decayed * np.clip(net, 0.0, None) / np.where(bought > 0, bought, 1.0), 0.0)
    first_day = np.minimum.reduceat(day, starts) if starts.size else np.zeros(0, dtype=np.int32)
    last_day = np.maximum.reduceat(day, starts) if starts.size else np.zeros(0, dtype=np.int32)
    last_event = order[ends - 1]  # the latest purchase of each pair, as a row of ``purchases``

    hist_customer = (pair_key[kept] // n_items).astype(np.int64)
    hist_indptr = np.zeros(n_customers + 1, dtype=np.int64)
    np.cumsum(np.bincount(hist_customer, minlength=n_customers), out=hist_indptr[1:])
    arrays = {
        HIST_INDPTR: hist_indptr,
        HIST_ITEMS: (pair_key[kept] % n_items).astype(np.int32),
        HIST_COUNT: count[kept].astype(np.float32),
        HIST_FIRST_DAY: first_day[kept].astype(np.int32),
        HIST_LAST_DAY: last_day[kept].astype(np.int32),
        HIST_LAST_CHANNEL: purchases.channel[last_event][kept].astype(np.int16),
        HIST_LAST_STORE: purchases.store[last_event][kept].astype(np.int32),
    }
    if end_day is not None:
        arrays[HIST_DECAYED] = decayed[kept].astype(np.float32)
    arrays.update(_repurchase_cycles(key, day, starts, n_items))
    logger.info("purchase history: %d (customer, item) pairs, %d fully returned and dropped, "
                "%d customers with history", int(kept.sum()), int((~kept).sum()),
                int((np.diff(hist_indptr) > 0).sum()))
    return arrays


def _returned_units(returns: EventRows, n_items: int, pair_key: np.ndarray) -> np.ndarray:
    """Units returned per purchase pair (aligned with the sorted ``pair_key``); 0 where none."""
    out = np.zeros(pair_key.size, dtype=np.float64)
    if len(returns) == 0 or pair_key.size == 0:
        return out
    return_key = returns.customer.astype(np.int64) * n_items + returns.item
    unique_key, inverse = np.unique(return_key, return_inverse=True)
    units = np.bincount(inverse, weights=returns.quantity, minlength=unique_key.size)
    pos = np.minimum(np.searchsorted(pair_key, unique_key), pair_key.size - 1)
    matched = pair_key[pos] == unique_key
    np.add.at(out, pos[matched], units[matched])
    return out


def _repurchase_cycles(key: np.ndarray, day: np.ndarray, starts: np.ndarray,
                       n_items: int) -> dict[str, np.ndarray]:
    """Median repeat gap and repeat-buyer share per item, from purchases sorted by (pair key, time)."""
    days_out = np.full(n_items, np.nan, dtype=np.float32)
    rate_out = np.zeros(n_items, dtype=np.float32)
    if key.size == 0:
        return {ITEM_REPURCHASE_DAYS: days_out, ITEM_REPURCHASE_RATE: rate_out}
    # one entry per distinct (pair, day); purchases are sorted by pair then time, so days ascend per pair
    new_day = np.r_[True, (key[1:] != key[:-1]) | (day[1:] != day[:-1])]
    key_d, day_d = key[new_day], day[new_day].astype(np.int64)
    same_pair = key_d[1:] == key_d[:-1]
    gap = (day_d[1:] - day_d[:-1])[same_pair]
    gap_item = (key_d[1:] % n_items)[same_pair]

    if gap.size:
        order = np.lexsort((gap, gap_item))
        gap, gap_item = gap[order], gap_item[order]
        counts = np.bincount(gap_item, minlength=n_items)
        first = np.cumsum(counts) - counts
        has = counts > 0
        lo = first[has] + (counts[has] - 1) // 2
        hi = first[has] + counts[has] // 2
        days_out[has] = ((gap[lo] + gap[hi]) / 2.0).astype(np.float32)

    pair_item = key[starts] % n_items
    buyers = np.bincount(pair_item, minlength=n_items)
    pair_of_day = np.cumsum(np.r_[True, key_d[1:] != key_d[:-1]]) - 1  # pair ordinal of each distinct day
    days_per_pair = np.bincount(pair_of_day, minlength=starts.size)
    repeaters = np.bincount(pair_item, weights=(days_per_pair >= 2).astype(np.float64), minlength=n_items)
    bought = buyers > 0
    rate_out[bought] = (repeaters[bought] / buyers[bought]).astype(np.float32)
    return {ITEM_REPURCHASE_DAYS: days_out, ITEM_REPURCHASE_RATE: rate_out}
