"""Customer summaries for the profile: RFM scores and segment, net spend, and the channels each customer uses.

RFM (recency, frequency, monetary) is computed over the customers with at least one purchase:

* **recency** = days from the customer's last purchase to the last day of the data;
* **frequency** = distinct purchase baskets (orders; customer x day where there is no order id);
* **monetary** = net spend, ``sum(quantity x unit price)`` of purchases minus returns, floored at 0; a line
  without a price counts at the catalog price, and at 0 when that is unknown too.

Each becomes a score 1..5 by rank among buyers: ``score = 1 + floor(5 x share of buyers strictly worse)``, so
tied customers share a score, the worst value always scores 1 and scores are the same whichever order the
customers come in (recency: fewer days is better; frequency and monetary: more is better).

The segment is the first rule that matches (``R``, ``F``, ``M`` the scores, ``FM = (F + M) / 2``):

=====================  ==========================================================
segment                rule
=====================  ==========================================================
new                    one basket only and ``R >= 4``
champion               ``R >= 4`` and ``FM >= 4``
loyal                  ``R >= 3`` and ``FM >= 3``
potential loyalist     ``R >= 3`` (recent, buys less or spends less)
at risk                ``FM >= 3`` (good customers whose recency has dropped, R <= 2)
hibernating            ``R == 2``
lost                   ``R == 1``
=====================  ==========================================================

Customers without a purchase get scores 0 and segment -1 (none). Segment names travel in the manifest's
``extra["rfm_segments"]`` in index order (:data:`RFM_SEGMENTS`).
"""

from __future__ import annotations

import logging

import numpy as np

from recsvc.artifacts.parts.customer_summary import CUST_CHANNELS, CUST_MONETARY, RFM_SCORES, RFM_SEGMENT
from recsvc_training.input import columns as C
from recsvc_training.input.dataset import TrainingData
from recsvc_training.input.id_maps import EventRows, IdMaps

logger = logging.getLogger(__name__)

#: Segment names, index = value of ``rfm_segment`` (``-1`` = no purchase).
RFM_SEGMENTS: tuple[str, ...] = ("champion", "loyal", "potential loyalist", "new", "at risk", "hibernating",
                                 "lost")
_CHAMPION, _LOYAL, _POTENTIAL, _NEW, _AT_RISK, _HIBERNATING, _LOST = range(len(RFM_SEGMENTS))


def purchase_baskets(events: EventRows, n_customers: int) -> np.ndarray:
    """Distinct purchase baskets per customer row (int64 ``[n_customers]``); a purchase without a basket
    id counts by its day."""
    bought = events.subset(events.mask(C.PURCHASE))
    if len(bought) == 0:
        return np.zeros(n_customers, dtype=np.int64)
    # basket ids are >= 0; a missing one (-1) is replaced by a negative per-day key, so it never meets a basket
    key = np.where(bought.basket >= 0, bought.basket, -2 - bought.day.astype(np.int64))
    pairs = np.unique(np.stack([bought.customer.astype(np.int64), key]), axis=1)
    return np.bincount(pairs[0], minlength=n_customers).astype(np.int64)


def rank_scores(values: np.ndarray) -> np.ndarray:
    """Scores 1..5 (int8) by rank: ``1 + floor(5 x share of values strictly below``, so ties share a score.

    Higher values are better; pass ``-values`` for a measure where less is better.
    """
    values = np.asarray(values, dtype=np.float64)
    if values.size == 0:
        return np.zeros(0, dtype=np.int8)
    below = np.searchsorted(np.sort(values), values, side="left")
    return (1 + (5 * below) // values.size).astype(np.int8)


def rfm_segments(recency: np.ndarray, frequency: np.ndarray, monetary: np.ndarray,
                 baskets: np.ndarray) -> np.ndarray:
    """Segment index (int8) per customer from the three scores and the raw basket count (rules above)."""
    r = np.asarray(recency, dtype=np.int64)
    fm = (np.asarray(frequency, dtype=np.float64) + np.asarray(monetary, dtype=np.float64)) / 2.0
    rules = [
        (np.asarray(baskets) == 1) & (r >= 4),
        (r >= 4) & (fm >= 4),
        (r >= 3) & (fm >= 3),
        r >= 3,
        fm >= 3,
        r == 2,
        r <= 1,
    ]
    segment_of_rule = [_NEW, _CHAMPION, _LOYAL, _POTENTIAL, _AT_RISK, _HIBERNATING, _LOST]
    return np.select(rules, segment_of_rule, default=_LOST).astype(np.int8)



def score_rfm(last_day: np.ndarray, baskets: np.ndarray, monetary: np.ndarray, end_day: int
              ) -> tuple[np.ndarray, np.ndarray]:
    """RFM scores (int8 ``[n, 3]``, 1..5 among buyers, 0 without a purchase) and segments (int8, -1 without a
    purchase) from each customer's last purchase day, basket count and net spend: the one rule both trainers
    apply to their per-customer totals."""
    n = baskets.size
    buyers = np.flatnonzero(baskets > 0)
    scores = np.zeros((n, 3), dtype=np.int8)
    scores[buyers, 0] = rank_scores(-(end_day - last_day[buyers]).astype(np.float64))
    scores[buyers, 1] = rank_scores(baskets[buyers])
    scores[buyers, 2] = rank_scores(monetary[buyers])
    segment = np.full(n, -1, dtype=np.int8)
    segment[buyers] = rfm_segments(scores[buyers, 0], scores[buyers, 1], scores[buyers, 2], baskets[buyers])
    return scores, segment

def build_customer_summary(data: TrainingData, events: EventRows, maps: IdMaps, item_prices: np.ndarray,
                           end_day: int) -> dict[str, np.ndarray]:
    """RFM and channel arrays, named as in :mod:`recsvc.artifacts`.

    Parameters
    ----------
    data
        The cleaned tables; ``events`` is ``data.events`` as rows of ``maps`` (same order), whose ``price``
        column is the unit price paid (NaN unknown).
    events
        Every event as rows of ``maps``.
    maps
        The run's id maps (row order of every array).
    item_prices
        Catalog price per item row (float, NaN unknown): the price of a line paid at an unknown price.
    end_day
        Last day of the data (days since 1970-01-01): recency counts from it.

    Returns
    -------
    dict with ``rfm_scores`` (int8 ``[n_customers, 3]``: recency, frequency, monetary, 0 without a purchase),
    ``rfm_segment`` (int8 ``[n_customers]``, index into :data:`RFM_SEGMENTS`, -1 without a purchase),
    ``cust_monetary`` (float32 ``[n_customers]``, net spend) and ``cust_channels`` (bool
    ``[n_customers, n_channels]``: any event, views included, on the channel).
    """
    n = maps.n_customers
    paid = (data.events[C.PRICE].to_numpy(dtype=np.float64) if C.PRICE in data.events
            else np.full(len(events), np.nan))
    prices = np.where(np.isfinite(paid), paid, np.asarray(item_prices, dtype=np.float64)[events.item])
    prices = np.nan_to_num(prices, nan=0.0)
    sign = np.where(events.mask(C.RETURN), -1.0, np.where(events.mask(C.PURCHASE), 1.0, 0.0))
    spend = np.bincount(events.customer, weights=sign * events.quantity * prices, minlength=n)
    monetary = np.maximum(spend, 0.0)

    purchases = events.mask(C.PURCHASE)
    last_day = np.full(n, -1, dtype=np.int64)
    np.maximum.at(last_day, events.customer[purchases], events.day[purchases].astype(np.int64))
    baskets = purchase_baskets(events, n)
    scores, segment = score_rfm(last_day, baskets, monetary, end_day)
    buyers = np.flatnonzero(baskets > 0)

    channels = np.zeros((n, maps.n_channels), dtype=bool)
    known = events.channel >= 0
    channels[events.customer[known], events.channel[known]] = True
    counts = np.bincount(segment[buyers].astype(np.int64), minlength=len(RFM_SEGMENTS))
    logger.info("RFM: %d buyers; %s", buyers.size,
                ", ".join(f"{name} {int(c)}" for name, c in zip(RFM_SEGMENTS, counts, strict=True)))
    return {RFM_SCORES: scores, RFM_SEGMENT: segment, CUST_MONETARY: monetary.astype(np.float32),
            CUST_CHANNELS: channels}
