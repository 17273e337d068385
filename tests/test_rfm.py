"""RFM scores and segments (recsvc_training.models.rfm) and the customer profile built on them."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
import pytest

from recsvc.errors import InvalidRequest, NotFound
from recsvc.ranking import LoadedModel
from recsvc.ranking.profile import customer_profile
from recsvc_training.input import columns as C
from recsvc_training.input.dataset import IngestReport, TrainingData
from recsvc_training.input.id_maps import EventRows, IdMaps
from recsvc_training.models.rfm import RFM_SEGMENTS, build_customer_summary, purchase_baskets, rank_scores, rfm_segments
from tests.toy_model import CUSTOMERS, DATA_END_DAY, build_toy_artifacts

EVENT = {name: i for i, name in enumerate(C.EVENT_TYPES)}
CHANNELS = ("app", "store", "web")


def test_rank_scores_share_a_score_on_ties_and_the_worst_value_scores_one() -> None:
    assert rank_scores(np.array([10, 10, 20, 30, 40])).tolist() == [1, 1, 3, 4, 5]
    assert rank_scores(np.array([40, 30, 20, 10, 10])).tolist() == [5, 4, 3, 1, 1]  # order does not matter
    assert rank_scores(np.array([7.0])).tolist() == [1]
    assert rank_scores(np.zeros(0)).size == 0


@pytest.mark.parametrize(("r", "f", "m", "baskets", "segment"), [
    (5, 1, 5, 1, "new"),            # one basket, recent: new even when it was a big one
    (5, 5, 5, 12, "champion"),
    (4, 4, 4, 6, "champion"),
    (3, 3, 3, 4, "loyal"),
    (5, 3, 2, 3, "potential loyalist"),
    (3, 1, 2, 1, "potential loyalist"),
    (2, 4, 4, 6, "at risk"),
    (1, 5, 5, 9, "at risk"),
    (2, 1, 2, 2, "hibernating"),
    (1, 1, 1, 1, "lost"),
])
def test_segment_rules(r: int, f: int, m: int, baskets: int, segment: str) -> None:
    got = rfm_segments(np.array([r]), np.array([f]), np.array([m]), np.array([baskets]))
    assert RFM_SEGMENTS[int(got[0])] == segment


def _rows(events: Sequence[tuple[int, int, str, int, int, int, float]]) -> EventRows:
    """(customer, item, event, channel, day, basket, quantity) per event."""
    c, i, e, ch, d, b, q = (np.array(col) for col in zip(*events, strict=True))
    return EventRows(customer=c.astype(np.int32), item=i.astype(np.int32), store=np.full(c.size, -1, np.int32),
                     channel=ch.astype(np.int16), day=d.astype(np.int32), time=d.astype(np.int64),
                     quantity=q.astype(np.float64), event=np.array([EVENT[x] for x in e], dtype=np.int8),
                     basket=b.astype(np.int64))


def _data(prices: list[float]) -> TrainingData:
    empty = pd.DataFrame()
    return TrainingData(events=pd.DataFrame({C.PRICE: prices}), items=empty, customers=empty, aliases=empty,
                        stock=empty, channels=list(CHANNELS), report=IngestReport())


def test_customer_summary_scores_spend_and_channels() -> None:
    app, store, web = range(3)
    events = [
        # c0: three baskets in store and on the web, recent, 2 x 10 + 5 + 5 spent
        (0, 0, "purchase", store, 95, 0, 2), (0, 1, "purchase", store, 95, 0, 1), (0, 0, "purchase", web, 99, 1, 1),
        (0, 2, "purchase", web, 100, 2, 1),
        # c1: one basket long ago, the price unknown on the line: the catalog price (3.0) counts
        (1, 1, "purchase", store, 10, 3, 1),
        # c2: only looks in the app
        (2, 0, "view", app, 100, -1, 1),
        # c3: bought and returned everything; the purchase has no basket id (counted by its day)
        (3, 2, "purchase", web, 50, -1, 2), (3, 2, "return", web, 55, -1, 2),
    ]
    prices = [10.0, 5.0, 10.0, 5.0, float("nan"), float("nan"), 5.0, 5.0]
    maps = IdMaps(item_ids=np.array(["a", "b", "c"]), customer_ids=np.array(["c0", "c1", "c2", "c3"]),
                  store_ids=np.array(["S01"]), alias_ids=np.zeros(0, dtype="U1"),
                  alias_customer=np.zeros(0, dtype=np.int32), channels=CHANNELS)
    rows = _rows(events)
    assert purchase_baskets(rows, 4).tolist() == [3, 1, 0, 1]
    out = build_customer_summary(_data(prices), rows, maps, np.array([10.0, 3.0, 5.0]), end_day=100)

    np.testing.assert_allclose(out["cust_monetary"], [40.0, 3.0, 0.0, 0.0])
    # buyers c0, c1, c3: recency 0 / 90 / 50 days, baskets 3 / 1 / 1, spend 40 / 3 / 0
    assert out["rfm_scores"].tolist() == [[4, 4, 4], [1, 1, 2], [0, 0, 0], [2, 1, 1]]
    assert [RFM_SEGMENTS[s] if s >= 0 else None for s in out["rfm_segment"]] == ["champion", "lost", None,
                                                                              "hibernating"]
    assert out["cust_channels"].tolist() == [[False, True, True], [False, True, False], [True, False, False],
                                             [False, False, True]]
    assert out["rfm_scores"].dtype == np.int8 and out["rfm_segment"].dtype == np.int8


def _with_summary():
    artifacts = build_toy_artifacts()
    n = len(CUSTOMERS)
    artifacts.arrays.update(
        rfm_scores=np.tile(np.array([[5, 4, 3]], dtype=np.int8), (n, 1)),
        rfm_segment=np.array([0, 1, 2, 3, -1], dtype=np.int8), cust_monetary=np.arange(n, dtype=np.float32),
        cust_channels=np.ones((n, 3), dtype=bool))
    artifacts.extra["rfm_segments"] = list(RFM_SEGMENTS)
    return artifacts


def test_profile_lists_recent_purchases_across_channels_through_an_alias() -> None:
    model = LoadedModel(_with_summary())
    profile = customer_profile(model, "LOY-1")  # C001's loyalty card
    assert profile.customer_id == "C001"
    assert [p.item_id for p in profile.recent_purchases] == ["B03", "H04", "D02"]  # most recent first
    bagels, detergent, butter = profile.recent_purchases
    assert (bagels.channel, bagels.store_id, bagels.title) == ("store", "S01", "Bagels 4-pack")
    assert (butter.channel, butter.store_id) == ("web", "")
    assert detergent.count == 5.0 and detergent.date == "2026-04-10"
    assert profile.rfm is not None and profile.rfm.segment == "champion"
    assert (profile.rfm.recency, profile.rfm.frequency, profile.rfm.monetary) == (5, 4, 3)
    assert profile.rfm.days_since_last_purchase == DATA_END_DAY - (DATA_END_DAY - 5)
    assert profile.channels == ("app", "store", "web") and profile.coldstart is False
    assert len(customer_profile(model, "C001", num_purchases=1).recent_purchases) == 1


def test_profile_without_summary_arrays_still_answers_and_errors_name_the_field() -> None:
    model = LoadedModel(build_toy_artifacts())
    profile = customer_profile(model, "C001")
    assert profile.rfm is None and profile.channels == ("store", "web")  # from the purchases alone
    with pytest.raises(NotFound, match="'nobody'"):
        customer_profile(model, "nobody")
    with pytest.raises(InvalidRequest, match="customer_id"):
        customer_profile(model, "")
    with pytest.raises(InvalidRequest, match="num_purchases"):
        customer_profile(model, "C001", num_purchases=101)
