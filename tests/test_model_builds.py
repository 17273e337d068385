"""What each model set of a run builds: only the parts its role reads, LightFM only when it serves someone,
an ANN index tuned only when it can reach its bar, and one build per day shared by the evaluation and ranker.

The nightly run on a grocery chain's log (issue 14) built nine sets and in each refitted LightFM for nobody and
tuned a cosine index that never shipped; these pin the rules that stopped it.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd

from recsvc.artifacts import ArtifactSet
from recsvc.artifacts.parts.ann import ANN_ARRAY, KIND_EXACT, KIND_FAISS_IVF
from recsvc.artifacts.parts.ann_cosine import COSINE_ARRAY
from recsvc.artifacts.parts.coldstart import COLDSTART_CUSTOMER, LFM_ITEM_EMBEDDINGS
from recsvc.artifacts.parts.next_basket import NextBasket
from recsvc.config import TrainingSettings
from recsvc_training.assemble import ModelRole, build_artifacts
from recsvc_training.input import columns as C
from recsvc_training.input.dataset import TrainingData
from recsvc_training.models.ann import build_cosine_index
from recsvc_training.ranker.step import ModelsBefore
from tests.test_ann import clustered_factors
from tests.test_pipeline import FAST, shop_data

#: An index for the 13-item shop (ann_min_items 1) with a bar it reaches, and LightFM on.
INDEXED = dataclasses.replace(FAST, ann_min_items=1, ann_target_recall=0.5, lfm_epochs=2, lfm_threads=1)


def with_customers(data: TrainingData, customers: pd.DataFrame) -> TrainingData:
    return dataclasses.replace(data, customers=customers)


def never_bought() -> TrainingData:
    """The shop with one customer (c99, only an alias target) who has an attribute and no purchase."""
    return with_customers(shop_data(), pd.DataFrame({C.CUSTOMER_ID: ["c99", "c01"], "age_group": ["25-34", "65+"]}))


def test_a_label_window_set_builds_no_index_and_no_lightfm() -> None:
    built = build_artifacts(never_bought(), INDEXED, role=ModelRole.LABEL_WINDOW)
    assert ANN_ARRAY not in built.arrays and COSINE_ARRAY not in built.arrays
    assert built.extra["ann"]["kind"] == KIND_EXACT and built.extra["ann_cosine"]["kind"] == KIND_EXACT
    assert LFM_ITEM_EMBEDDINGS not in built.arrays and "skipped" in built.extra["coldstart"]
    assert built.extra["built_for"] == "label_window"


def test_a_similar_items_set_is_a_label_window_set_without_the_next_basket_lists() -> None:
    built = build_artifacts(never_bought(), INDEXED, role=ModelRole.SIMILAR_ITEMS)
    window = build_artifacts(never_bought(), INDEXED, role=ModelRole.LABEL_WINDOW)
    assert not set(NextBasket.ARRAYS) & set(built.arrays) and set(NextBasket.ARRAYS) <= set(window.arrays)
    assert ANN_ARRAY not in built.arrays and LFM_ITEM_EMBEDDINGS not in built.arrays
    assert built.extra["built_for"] == "similar_items"
    for name in set(window.arrays) - set(NextBasket.ARRAYS):  # the rest is the same maths on the same events
        np.testing.assert_array_equal(built.arrays[name], window.arrays[name], err_msg=name)


def test_the_evaluation_set_scores_als_as_served_but_builds_no_cosine_index() -> None:
    built = build_artifacts(never_bought(), INDEXED, role=ModelRole.EVALUATION)
    assert built.extra["ann"]["kind"] == KIND_FAISS_IVF and ANN_ARRAY in built.arrays
    assert COSINE_ARRAY not in built.arrays and built.extra["ann_cosine"]["kind"] == KIND_EXACT
    assert bool(built.arrays[COLDSTART_CUSTOMER].any())  # c99 is served, so the evaluation has LightFM


def test_the_published_set_builds_every_part() -> None:
    built = build_artifacts(never_bought(), INDEXED)
    assert ANN_ARRAY in built.arrays and COSINE_ARRAY in built.arrays
    served = built.arrays[COLDSTART_CUSTOMER]
    assert served.sum() == 1 and built.extra["coldstart"]["customers_served"] == 1
    assert built.extra["built_for"] == "published"


def test_lightfm_is_not_fitted_when_no_customer_would_be_served() -> None:
    """Every customer with attributes has bought (a grocery chain's households): the fit would serve nobody."""
    everyone_bought = with_customers(shop_data(), pd.DataFrame({C.CUSTOMER_ID: ["c01", "c02"],
                                                                "age_group": ["25-34", "65+"]}))
    built = build_artifacts(everyone_bought, INDEXED)
    assert LFM_ITEM_EMBEDDINGS not in built.arrays and COLDSTART_CUSTOMER not in built.arrays
    assert built.extra["coldstart"]["customers_served"] == 0 and "skipped" in built.extra["coldstart"]
    # serving more history-light customers brings the model back
    looser = build_artifacts(everyone_bought, dataclasses.replace(INDEXED, coldstart_max_purchases=1_000))
    assert int(looser.arrays[COLDSTART_CUSTOMER].sum()) == 2


def test_an_index_that_cannot_reach_its_bar_is_not_tuned() -> None:
    """The quick check: with every list visited the recall is the best any nprobe gets; under the bar, the
    ladder is not climbed (one measurement recorded) and nothing ships."""
    _, items = clustered_factors(3_000, 10, 16)
    settings = TrainingSettings(ann_min_items=1_000, ann_recall_users=150, progress=False)
    arrays, meta = build_cosine_index(items, dataclasses.replace(settings, ann_target_recall=1.5))
    assert arrays == {} and meta["kind"] == KIND_EXACT and len(meta["tuning"]) == 1
    arrays, meta = build_cosine_index(items, dataclasses.replace(settings, ann_target_recall=0.9))
    assert COSINE_ARRAY in arrays and len(meta["tuning"]) > 1


class RecordingBuilder:
    """The real builder, recording the last event day and the role of every set it is asked for."""

    def __init__(self) -> None:
        self.calls: list[tuple[int, ModelRole]] = []

    def __call__(self, data: TrainingData, settings: TrainingSettings, *,
                 role: ModelRole = ModelRole.PUBLISHED) -> ArtifactSet:
        self.calls.append((int(data.events[C.DAY].max()), role))
        return build_artifacts(data, settings, role=role)


def recording_models(label_windows: int) -> tuple[ModelsBefore, RecordingBuilder, int]:
    """The shop's models before a day, 14-day label windows, every build recorded; and the day after the log."""
    settings = dataclasses.replace(FAST, ranker_label_days=14, ranker_label_windows=label_windows,
                                   ranker_min_history_days=7)
    builder = RecordingBuilder()
    models = ModelsBefore(shop_data(), settings, builder)
    return models, builder, models.end_day + 1


def test_label_windows_are_built_once_each_for_the_ranker_only() -> None:
    models, builder, end = recording_models(3)
    first = models.label_windows(end)
    again = models.label_windows(end)
    assert [m for m, _ in first] == [m for m, _ in again]  # cached: the second call built nothing
    assert len(builder.calls) == 3 and {role for _, role in builder.calls} == {ModelRole.LABEL_WINDOW}
    assert [day for _, day in first] == [end - 14, end - 28, end - 42]
    assert all(last < start for (last, _), start in zip(sorted(builder.calls, reverse=True),
                                                          [d for _, d in first], strict=True))
    evaluated = models.artifacts(end - 14)
    assert builder.calls[-1][1] is ModelRole.EVALUATION and evaluated.extra["built_for"] == "evaluation"
    assert [b["role"] for b in models.built] == ["label_window"] * 3 + ["evaluation"]
    assert np.all(np.diff([b["day"] for b in models.built[:3]]) < 0)


def test_the_similar_items_choice_reuses_a_days_set_and_builds_a_lighter_one_only_when_there_is_none() -> None:
    models, builder, end = recording_models(2)
    window = models(end - 14)
    assert models.for_similar_items(end - 14) is window and len(builder.calls) == 1  # shared, nothing built
    light = models.for_similar_items(end - 28)
    assert builder.calls[-1][1] is ModelRole.SIMILAR_ITEMS
    assert models.for_similar_items(end - 28) is light and len(builder.calls) == 2  # once per day
    later = models(end - 28)  # a label window of that day still gets its TIFU-KNN lists
    assert later is not light and builder.calls[-1][1] is ModelRole.LABEL_WINDOW
    assert NextBasket.ARRAYS[0] in later.arrays and NextBasket.ARRAYS[0] not in light.arrays
