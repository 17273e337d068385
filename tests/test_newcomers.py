"""Answers for customers without history (issue 14): the popularity definitions against hand-computed lists,
the choice on a validation window, and the server following the choice (unknown customers, cold customers).
"""

from __future__ import annotations

import dataclasses
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from recsvc.artifacts.parts.coldstart import ColdStart
from recsvc.artifacts.parts.popularity import NEWCOMER_EXTRA, Popularity
from recsvc.config import ServerSettings, TrainingSettings
from recsvc.ranking import RecommendationEngine, RecommendQuery
from recsvc.ranking.coldstart import ColdStartSource, fuse_cold_lists
from recsvc.ranking.model import LoadedModel
from recsvc.ranking.popularity import PopularitySource
from recsvc.ranking.reasons import ReasonKind
from recsvc.ranking.sources import RankingContext
from recsvc_training.assemble import build_artifacts
from recsvc_training.input.ingest import load_training_data
from recsvc_training.models.newcomers import (
    DEFINITIONS,
    attach_newcomer_answers,
    build_window_models,
    channel_pairs,
    choose_newcomer_answers,
    definition_scores,
    newcomer_answers_for,
    ordered_values,
    validation_window,
)

# ---------------------------------------------------------------------------------------- hand-computed cases


def _rows(*triples: tuple[int, int, int]) -> pd.DataFrame:
    return pd.DataFrame(triples, columns=["c", "i", "day"])


def test_the_definitions_count_what_their_names_say() -> None:
    # customer 0 buys item 0 on day 1 twice and item 1 on day 9; customer 1 buys item 1 on day 2, item 2 on 9
    p = _rows((0, 0, 1), (0, 0, 1), (0, 1, 9), (1, 1, 2), (1, 2, 9))
    assert DEFINITIONS["buyers"](p, 3, 10).tolist() == [1, 2, 1]  # distinct buyers, not events
    assert DEFINITIONS["first_baskets"](p, 3, 10).tolist() == [1, 1, 0]  # day 1 for c0, day 2 for c1
    assert DEFINITIONS["buyers_last_7d"](p, 3, 10).tolist() == [0, 1, 1]  # only days >= 3
    decayed = DEFINITIONS["buyers_half_life_14d"](p, 3, 15)  # each pair's last purchase, halved per 14 days
    assert decayed == pytest.approx([0.5 ** (14 / 14), 0.5 ** (6 / 14) + 0.5 ** (13 / 14), 0.5 ** (6 / 14)])


def test_one_pass_over_every_channel_counts_what_each_channel_alone_counts() -> None:
    # the batch the choice uses (one sort for every channel and the overall list) against each channel's rows
    rng = np.random.default_rng(7)
    n = 400
    p = pd.DataFrame({"c": rng.integers(0, 30, n), "i": rng.integers(0, 12, n), "day": rng.integers(0, 60, n),
                      "ch": rng.integers(0, 3, n)})
    pairs = channel_pairs(p, 12, 3)
    for name, definition in DEFINITIONS.items():
        batch = definition_scores(name, pairs, 61)
        for ch in range(3):
            assert batch[ch] == pytest.approx(definition(p[p["ch"] == ch], 12, 61)), (name, ch)
        assert batch[3] == pytest.approx(definition(p, 12, 61)), name


def test_ordered_values_break_ties_by_buyers_then_row() -> None:
    values = ordered_values(np.array([1.0, 3.0, 1.0, 1.0]), buyers=np.array([5.0, 0.0, 5.0, 7.0]))
    assert np.argsort(-values, kind="stable").tolist() == [1, 3, 0, 2]
    assert values.dtype == np.float32


def test_fuse_cold_lists_is_weighted_reciprocal_rank() -> None:
    # list 0: [5, 6], list 1: [6, 7]; weights 2 and 1, offset 60
    items, scores, source = fuse_cold_lists((np.array([5, 6]), np.array([6, 7, -1])), (2.0, 1.0))
    expected = {5: 2 / 61, 6: 2 / 62 + 1 / 61, 7: 1 / 62}
    assert items.tolist() == sorted(expected, key=lambda i: -expected[i])
    assert scores == pytest.approx(sorted(expected.values(), reverse=True))
    assert source.tolist() == [0, 0, 1]  # 6 owes more to list 0 (2/62 > 1/61)
    assert fuse_cold_lists((np.array([5]),), (0.0,))[0].size == 0  # a zero weight contributes nothing


# ------------------------------------------------------------------ a log where first baskets are the answer

START = date(2026, 1, 1)
VALIDATION_START = 50  # day offsets from START
END = 64


def _shop(folder: Path) -> Path:
    """60 regulars (segments A and B, 30 each) and 12 newcomers of segment A in the last 14 days.

    Regulars: 40 of them buy ``I7`` on their first day (day 0) and never again; from day 10 every regular
    buys ``I0``, and ``I1``..``I4``, 50 each, so by distinct buyers ``I7`` ranks sixth. Segment A also buys
    ``I9`` (30 buyers, only A), and 45 regulars buy ten fillers ``I10``..``I19``.
    Newcomers buy ``I7`` and ``I9`` on their first day, which falls from day 50
    (the validation window is days 50..63 with a 14-day window). Two more segment-A customers are in the
    customers table only: the cold customers of the published set.
    """
    rows = []

    def buy(customer: str, item: str, day: int) -> None:
        rows.append(((START + timedelta(days=day)).isoformat() + "T10:00:00Z", customer, item, "purchase"))

    for n in range(60):
        customer = f"R{n:02d}"
        if n < 40:
            buy(customer, "I7", 0)
        buy(customer, "I0", 10 + n % 20)
        if n < 50:
            for item in ("I1", "I2", "I3", "I4"):
                buy(customer, item, 20 + n % 20)
        if n < 30:
            buy(customer, "I9", 20 + n % 10)
        if n < 45:  # ten fillers with more buyers than I7, so buyer counts leave it out of a top 10
            for f in range(10, 20):
                buy(customer, f"I{f}", 20 + n % 20)
    for n in range(12):
        for item in ("I7", "I9"):
            buy(f"N{n:02d}", item, VALIDATION_START + n)
    folder.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(rows, columns=["timestamp", "customer_id", "item_id", "event"]).to_csv(folder / "events.csv",
                                                                                     index=False)
    pd.DataFrame({"item_id": [f"I{i}" for i in range(20)], "title": [f"Item {i}" for i in range(20)],
                  "category": ["x"] * 20}).to_csv(folder / "items.csv", index=False)
    customers = [(f"R{n:02d}", "A" if n < 30 else "B") for n in range(60)]
    customers += [(f"N{n:02d}", "A") for n in range(12)] + [("COLD1", "A"), ("COLD2", "A")]
    pd.DataFrame(customers, columns=["customer_id", "segment"]).to_csv(folder / "customers.csv", index=False)
    return folder


@pytest.fixture(scope="module")
def shop(tmp_path_factory: pytest.TempPathFactory):
    folder = _shop(tmp_path_factory.mktemp("shop") / "data")
    settings = dataclasses.replace(TrainingSettings(), progress=False, lfm_threads=1, lfm_epochs=5,
                                   als_iterations=3, eval_test_days=14)
    data = load_training_data(folder, settings, tmp_path_factory.mktemp("quarantine"))
    start = int(data.events["day"].min()) + VALIDATION_START
    answers = choose_newcomer_answers([(build_window_models(data.before(start), settings), data, start)])
    artifacts = build_artifacts(data, settings)
    assert answers is not None
    attach_newcomer_answers(artifacts, data, answers)
    return data, start, answers, artifacts


def test_the_validation_window_holds_the_newcomers_and_what_they_bought(shop) -> None:
    data, start, _, artifacts = shop
    window = validation_window(data.events, start, artifacts.arrays["item_ids"], artifacts.channels)
    assert sorted(window.customer_ids.tolist()) == [f"N{n:02d}" for n in range(12)]
    assert (np.asarray(window.truth.sum(axis=1)).ravel() == 2).all()


def test_first_baskets_are_chosen_where_newcomers_buy_what_regulars_bought_first(shop) -> None:
    _, _, answers, artifacts = shop
    assert answers.channel_definitions == {artifacts.channels[0]: "first_baskets"}
    chosen = answers.validation["newcomer"][artifacts.channels[0]]["windows"][0]
    assert chosen["first_baskets"]["ndcg@10"] > chosen["buyers"]["ndcg@10"]
    assert artifacts.extra[NEWCOMER_EXTRA]["definitions"] == answers.channel_definitions


def test_an_unknown_customer_gets_the_chosen_list(shop) -> None:
    _, _, _, artifacts = shop
    engine = RecommendationEngine(LoadedModel(artifacts), ServerSettings(artifact_root="/nonexistent"))
    result = engine.recommend(RecommendQuery(customer_id="nobody", channel=artifacts.channels[0], num_items=3))
    assert result.policy == "popular" and not result.known_customer
    assert result.items[0].item_id in ("I7", "I9")  # the newcomers' first baskets (I7: 40 + 12, I9: 12)
    assert result.items[0].item_id == "I7"
    assert result.items[0].reason.kind == ReasonKind.POPULAR_ON_CHANNEL
    # known customers read the recency-decayed lists (the learned ranker's feature), unknown ones the newcomer's
    model = LoadedModel(artifacts)
    source = PopularitySource(model)
    known = source.candidates(RankingContext(customer_row=model.customers.row("R00"), channel_row=0), 12)
    unknown = source.candidates(RankingContext(customer_row=-1, channel_row=0), 12)
    assert known.items.tolist() == model.pop_order_channel[0][:12].tolist()
    newcomer = model.parts[Popularity].newcomer_channel
    assert newcomer is not None
    assert unknown.items.tolist() == np.argsort(-newcomer[0], kind="stable")[:12].tolist()
    assert known.items.tolist() != unknown.items.tolist()


def test_a_cold_customer_gets_the_validated_blend_alone(shop) -> None:
    _, _, answers, artifacts = shop
    assert answers.cold_weights is not None and answers.attribute_columns == ("segment",)
    model = LoadedModel(artifacts)
    part = model.parts[ColdStart]
    assert part.choice is not None and part.group is not None and part.group_items is not None
    engine = RecommendationEngine(model, ServerSettings(artifact_root="/nonexistent"))
    result = engine.recommend(RecommendQuery(customer_id="COLD1", channel=artifacts.channels[0], num_items=5))
    assert result.policy == "coldstart"
    # the same fusion the trainer validated, computed by hand from the set's lists
    row = model.customers.row("COLD1")
    source = ColdStartSource(model)
    lightfm = source.lightfm_top(row, 100)[0]
    group = part.group_items[part.group[row]]
    assert part.newcomer_items is not None
    newcomer = part.newcomer_items[0]
    assert (answers.cold_meta() is not None and answers.cold_meta()["newcomer_definition"] in answers.validation[
        "cold"]["chosen"]) or answers.cold_weights[2] == 0
    expected = fuse_cold_lists((lightfm, group, newcomer), answers.cold_weights)[0]
    assert [s.item_id for s in result.items] == model.items.ids[expected[:5]].tolist()


def test_the_run_step_judges_the_cold_blend_with_its_own_lightfm(shop) -> None:
    # Regression: the step read the run's label-window sets, which carry no LightFM, so no training run ever
    # chose a cold blend (Ta Feng: `choices.coldstart` null). It now builds the few models it reads itself.
    data, start, answers, _ = shop

    class Run:  # what the step reads of the run's model builder
        settings = dataclasses.replace(TrainingSettings(), progress=False, lfm_threads=1, lfm_epochs=5)

    found = newcomer_answers_for(start + 14, data, Run(), 14, int(data.events["day"].min()))
    assert found is not None and found.cold_weights is not None
    assert found.channel_definitions == answers.channel_definitions
    assert found.validation["cold"]["customers"] == [12]


def test_a_candidate_must_hold_in_every_window_to_replace_the_reference() -> None:
    from recsvc_training.models.newcomers import _select

    ref = {"ndcg@10": 0.10, "recall@10": 0.10}
    holiday = {"ndcg@10": 0.30, "recall@10": 0.30}  # far better in one window ...
    steady = {"ndcg@10": 0.11, "recall@10": 0.11}
    tied = {"ndcg@10": 0.20, "recall@10": 0.10}  # a tie on one metric is no evidence
    windows = [{"buyers": ref, "holiday": holiday, "steady": steady, "tied": tied},
               {"buyers": ref, "holiday": {"ndcg@10": 0.12, "recall@10": 0.09}, "steady": steady, "tied": tied}]
    assert _select(windows, "buyers") == "steady"  # holiday is worse in the second window
    assert _select(windows[:1], "buyers") == "holiday"
    assert _select([{"buyers": ref, "worse": {"ndcg@10": 0.2, "recall@10": 0.05}}], "buyers") == "buyers"


def test_the_batch_fusion_is_the_servers_fusion() -> None:
    from recsvc_training.models.newcomers import fuse_cold_batch

    rng = np.random.default_rng(3)
    lists = [np.stack([rng.permutation(40)[:15] for _ in range(6)]) for _ in range(3)]
    lists[1][2, 10:] = -1  # a short list
    for weights in ((1.0, 2.0, 1.0), (0.0, 1.0, 0.0), (4.0, 4.0, 1.0)):
        batch = fuse_cold_batch(lists, weights, 10)
        for i in range(6):
            one = fuse_cold_lists((lists[0][i], lists[1][i], lists[2][i]), weights)[0][:10]
            assert batch[i, : one.size].tolist() == one.tolist()
