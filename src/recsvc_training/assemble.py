"""Assemble one artifact set from cleaned training data: every builder in order, timed, into one set.

:func:`build_artifacts` is the pure part of a training run (cleaned :class:`TrainingData` in, validated
:class:`ArtifactSet` out); :mod:`recsvc_training.pipeline` runs it inside the whole job. Each builder is a
function in its own module; this module only orders them, times them and fills the manifest metadata.
"""

from __future__ import annotations

import dataclasses
import enum
import logging
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from recsvc.artifacts import ArtifactSet, fingerprint_files
from recsvc.artifacts.parts.als import AlsFactors
from recsvc.artifacts.parts.ann import ANN_EXTRA, KIND_EXACT
from recsvc.artifacts.parts.ann_cosine import COSINE_EXTRA
from recsvc.artifacts.parts.catalog import ITEM_PRICES
from recsvc.artifacts.parts.coldstart import COLDSTART_EXTRA
from recsvc.artifacts.parts.copurchase import COPURCHASE_ITEMS
from recsvc.artifacts.parts.customer_summary import SEGMENTS_EXTRA
from recsvc.artifacts.parts.foldin import FoldInParams
from recsvc.artifacts.parts.history import HALF_LIFE_EXTRA, HIST_INDPTR, HIST_ITEMS
from recsvc.artifacts.parts.popularity import POP_GLOBAL
from recsvc.artifacts.parts.stock import TrainingStock
from recsvc.artifacts.schema import parts_to_arrays
from recsvc.artifacts.stock_table import StockTable
from recsvc.config import TrainingSettings
from recsvc_training.input import columns as C
from recsvc_training.input.catalog import build_catalog
from recsvc_training.input.dataset import IngestReport, TrainingData
from recsvc_training.input.id_maps import build_id_maps, event_rows
from recsvc_training.models.als import fit_als
from recsvc_training.models.ann import build_ann_index, build_cosine_index
from recsvc_training.models.coldstart import build_coldstart
from recsvc_training.models.copurchase import build_copurchase, count_baskets
from recsvc_training.models.interactions import QUANTITY_CAP, build_confidence
from recsvc_training.models.next_basket import TunedNextBasket, build_next_basket
from recsvc_training.models.popularity import build_popularity
from recsvc_training.models.repurchase import build_repurchase
from recsvc_training.models.rfm import RFM_SEGMENTS, build_customer_summary

logger = logging.getLogger(__name__)

class ModelRole(enum.Enum):
    """What a set is built for, which decides the parts worth building (everything else is the same maths).

    ``PUBLISHED``: the set that ships; every part. ``EVALUATION``: the set the evaluation scores as served
    (customers, cold start, ANN for ALS scoring), without the cosine index: SimilarItems is not scored from
    it and bundle fill then ranks exactly, which the index only approximates. ``LABEL_WINDOW``: a set only the
    ranker's training reads (its candidate pool and features, :func:`recsvc.ranking.learned.pool_sources`):
    no LightFM (the pool has no cold-start source), no cosine index, and ALS scored exactly instead of
    through an ANN index (the index only approximates the exact top-k it would be tuned against).
    ``SIMILAR_ITEMS``: a set only the SimilarItems choice reads (ALS, history, co-purchase): a label-window
    set without the TIFU-KNN lists, which no SimilarItems method reads and which cost a large log more than the
    rest of the set together.
    """

    PUBLISHED = "published"
    EVALUATION = "evaluation"
    LABEL_WINDOW = "label_window"
    SIMILAR_ITEMS = "similar_items"


#: Build steps in run order (the keys of the per-step timings, after ``ingest``).
BUILD_STEPS: tuple[str, ...] = ("id_maps", "catalog", "interactions", "als", "ann", "popularity", "repurchase",
                                "copurchase", "next_basket", "customers", "coldstart")


class _StepClock:
    """Times named steps, logs each and advances one progress bar (shown only on a terminal)."""

    def __init__(self, steps: tuple[str, ...], show_progress: bool) -> None:
        self.timings: dict[str, float] = {}
        self._bar = tqdm(total=len(steps), desc="training", unit="step", disable=not show_progress,
                         leave=False)

    @contextmanager
    def step(self, name: str) -> Iterator[None]:
        self._bar.set_description(name)
        started = time.perf_counter()
        yield
        seconds = time.perf_counter() - started
        self.timings[name] = round(seconds, 3)
        logger.info("step %s done in %.2fs", name, seconds)
        self._bar.update(1)

    def close(self) -> None:
        self._bar.close()


def _show_progress(settings: TrainingSettings) -> bool:
    return bool(settings.progress) and sys.stderr.isatty()


def settings_params(settings: TrainingSettings) -> dict[str, Any]:
    """The settings as a JSON-ready dict for the manifest's ``params`` (mappings become plain dicts)."""
    params: dict[str, Any] = {}
    for f in dataclasses.fields(settings):
        value = getattr(settings, f.name)
        params[f.name] = dict(value) if isinstance(value, Mapping) else value
    return params


def foldin_params(settings: TrainingSettings) -> FoldInParams:
    """The training knobs the server's request-time fold-in must repeat (``recsvc.ranking.foldin``)."""
    weights = settings.event_weights
    return FoldInParams(regularization=float(settings.als_regularization), alpha=float(settings.als_alpha),
                        purchase_weight=float(weights.get("purchase", 0.0)),
                        context_weight=float(weights.get("cart", weights.get("view", 1.0))),
                        half_life_days=float(settings.recency_half_life_days))


def training_stock(data: TrainingData) -> TrainingStock | None:
    """The data folder's stock as the set's training-time stock part (None when the folder has none)."""
    if not len(data.stock):
        return None
    table, _ = StockTable.from_rows(data.stock[C.STORE_ID], data.stock[C.ITEM_ID], data.stock[C.QUANTITY_ON_HAND])
    return TrainingStock(table, as_of=datetime.now(UTC).isoformat(timespec="microseconds"))


def build_artifacts(data: TrainingData, settings: TrainingSettings,
                    next_basket: TunedNextBasket | None = None, *,
                    role: ModelRole = ModelRole.PUBLISHED) -> ArtifactSet:
    """Build every model array from cleaned training data (the parts ``role`` needs).

    Parameters
    ----------
    data
        Output of ingest: events resolved to customers, with ``day`` and ``basket_id`` (see
        :class:`~recsvc_training.input.dataset.TrainingData`).
    settings
        Every knob the builders use; all of them are recorded in ``params``.
    next_basket
        TIFU-KNN's hyperparameters, chosen once per run
        (:func:`recsvc_training.models.next_basket.tune_next_basket`); None: the paper's setting.
    role
        What the set is for (:class:`ModelRole`); a set built for the evaluation or for a ranker's label
        window leaves out the parts nobody reads there, and its manifest metadata says so.

    Returns
    -------
    ArtifactSet
        Validated, unpublished (empty ``version``). ``data_end_day`` is the last event day, the reference
        of every recency decay; ``extra["build_seconds"]`` holds the per-step timings.

    Raises
    ------
    ValueError
        When there are no events to learn from.
    """
    if data.events.empty:
        raise ValueError("no events to train on: the events table is empty after cleaning")
    show_progress = _show_progress(settings)
    clock = _StepClock(BUILD_STEPS, show_progress)
    end_day = int(data.events[C.DAY].max())
    arrays: dict[str, np.ndarray] = {}
    try:
        with clock.step("id_maps"):
            maps = build_id_maps(data)
            events = event_rows(data, maps)
            arrays.update(item_ids=maps.item_ids, customer_ids=maps.customer_ids, store_ids=maps.store_ids,
                          alias_ids=maps.alias_ids, alias_customer=maps.alias_customer)
        with clock.step("catalog"):
            arrays.update(build_catalog(data.items, maps))
        with clock.step("interactions"):
            confidence = build_confidence(events, maps, settings, end_day)
        with clock.step("als"):
            als = AlsFactors(*fit_als(confidence, settings, show_progress=show_progress))
            arrays.update(als.to_arrays())
        with clock.step("ann"):  # large catalogs only (ann_min_items); ann_meta says what was decided
            ann_arrays: dict[str, np.ndarray] = {}
            if role in (ModelRole.LABEL_WINDOW, ModelRole.SIMILAR_ITEMS):
                ann_meta = _not_built(f"ALS is scored exactly in a {role.value} set")
            else:
                ann_arrays, ann_meta = build_ann_index(als.user_factors, als.item_factors, settings)
            arrays.update(ann_arrays)
            if role is ModelRole.PUBLISHED:
                cosine_arrays, cosine_meta = build_cosine_index(als.item_factors, settings)
                arrays.update(cosine_arrays)
            else:
                cosine_meta = _not_built(f"not shipped from a {role.value} set")
        with clock.step("popularity"):
            arrays.update(build_popularity(events, maps, settings, end_day))
        with clock.step("repurchase"):
            arrays.update(build_repurchase(events, maps, end_day, settings.recency_half_life_days))
        with clock.step("copurchase"):
            arrays.update(build_copurchase(events, maps, settings))
        with clock.step("next_basket"):  # TIFU-KNN lists: a candidate source, a ranker feature, a baseline
            next_basket_extra: dict[str, Any] = {}
            if role is not ModelRole.SIMILAR_ITEMS:
                next_basket_part = build_next_basket(events, maps, arrays[POP_GLOBAL], next_basket,
                                                     max(settings.ranker_pool_per_source, 10))
                arrays.update(next_basket_part.to_arrays())
                next_basket_extra = next_basket_part.to_extra()
        with clock.step("customers"):  # RFM, net spend and channels, for the customer profile
            arrays.update(build_customer_summary(data, events, maps, arrays[ITEM_PRICES], end_day))
        with clock.step("coldstart"):  # LightFM on attributes, for customers with little or no history
            coldstart_arrays, coldstart_meta = (
                build_coldstart(data, events, maps, arrays, settings)
                if role not in (ModelRole.LABEL_WINDOW, ModelRole.SIMILAR_ITEMS)
                else ({}, {"skipped": f"a {role.value} set: nothing it is read for uses cold start"}))
            arrays.update(coldstart_arrays)
    finally:
        clock.close()

    report = data.report
    row_counts = {
        "events": len(events),
        **{f"events_{name}": int(events.mask(name).sum()) for name in C.EVENT_TYPES},
        "customers": maps.n_customers,
        "customers_with_interactions": int((np.diff(confidence.indptr) > 0).sum()),
        "customers_with_history": int((np.diff(arrays[HIST_INDPTR]) > 0).sum()),
        "items": maps.n_items,
        "aliases": int(maps.alias_ids.size),
        "stores": maps.n_stores,
        "channels": maps.n_channels,
        "baskets": count_baskets(events),
        "history_pairs": int(arrays[HIST_ITEMS].size),
        "copurchase_pairs": int(arrays[COPURCHASE_ITEMS].size),
        "quarantined": report.total_quarantined(),
        "identity_conflicts": report.identity_conflicts,
        "items_added_from_events": report.items_added_from_events,
        "negative_quantities_as_returns": report.negative_quantities_as_returns,
    }
    # parts built whole here (the builders above return their arrays)
    extra_parts = [p for p in (foldin_params(settings), training_stock(data)) if p is not None]
    part_arrays, part_extra = parts_to_arrays(extra_parts)
    arrays.update(part_arrays)
    artifacts = ArtifactSet(
        arrays=arrays,
        channels=list(maps.channels),
        data_end_day=end_day,
        input_fingerprint=_fingerprint(report),
        row_counts={k: int(v) for k, v in row_counts.items()},
        params=settings_params(settings),
        extra={"build_seconds": dict(clock.timings), "built_for": role.value, "quantity_cap": QUANTITY_CAP,
               ANN_EXTRA: ann_meta,
               COSINE_EXTRA: cosine_meta, SEGMENTS_EXTRA: list(RFM_SEGMENTS), COLDSTART_EXTRA: coldstart_meta,
               HALF_LIFE_EXTRA: settings.recency_half_life_days, **part_extra, **next_basket_extra},
    )
    artifacts.validate()
    logger.info("built artifact set: %s", ", ".join(f"{k} {v}" for k, v in artifacts.row_counts.items()))
    return artifacts


def _not_built(reason: str) -> dict[str, Any]:
    """The index metadata of a set that builds no index on purpose (the server then scores exactly)."""
    return {"kind": KIND_EXACT, "reason": reason}


def _fingerprint(report: IngestReport) -> str:
    files = [Path(p) for p in report.input_files]
    if not files or not all(p.is_file() for p in files):
        return ""
    return fingerprint_files(files)
