"""Answers for customers without history, chosen on a validation window: the unknown customer's popular list
and the cold-start blend for customers known only by their attributes.

Issue 14 measured the list an unknown customer got (quantity- and recency-weighted popularity) at 0.028
NDCG@10 on Ta Feng's new customers where plain all-time buyer counts scored 0.048: which popularity suits
a newcomer depends on the log, so the trainer tries a few definitions (:data:`DEFINITIONS`) and keeps, per
channel, the one that served the new customers of a validation window best; likewise it chooses how to
blend LightFM's list, the customer's attribute group's list and that popular list for cold customers
(:data:`COLD_WEIGHT_GRID`, fused as the server fuses them: :func:`recsvc.ranking.coldstart.fuse_cold_lists`).

Windows, with V = ``eval_test_days``, for a set built from the events before day D::

    ... models built before D - V (LightFM, the served popularity) | validation window D - V .. D - 1 | D

New customers of a validation window are those with no event before it and a purchase in it. The choice
(:func:`choose_newcomer_answers`) is judged on :data:`VALIDATION_WINDOWS` windows (the newest and the one
before it, when the log is long enough): a candidate replaces the reference — plain buyer-count popularity
for the unknown list, attribute popularity for the cold blend — only when it beats it by :data:`MIN_GAIN` on
NDCG@10 and on Recall@10 in every window (the issue's own bar: never below the best baseline in any month), and
among those the best mean of the two metrics relative to the reference wins. On Ta Feng one window alone
chose lists of the weeks around the Lunar New Year that served the next month worse than buyer counts. The arrays
for day D (:func:`attach_newcomer_answers`) are then computed from every event before D.

Cost: the choice reads only the id maps, the set's own popularity, the purchase rows and LightFM of the
models before each window (:class:`WindowModels`), so it builds only those (:func:`build_window_models`;
LightFM only for a window with at least :data:`MIN_COLD_CUSTOMERS` cold newcomers to judge it on), once per
run and day, shared by the evaluation's choice and the published set's. It used to read the run's label-window
sets, whose ALS and next-basket builds were most of the run on large logs, and which hold no LightFM, so no
run chose a cold blend. Every definition for every channel is then one ``bincount`` after one sort of the
purchase rows (:class:`PairDays`).
"""

from __future__ import annotations

import logging
import time
import weakref
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import pandas as pd
import scipy.sparse as sp

from recsvc.artifacts import ArtifactSet
from recsvc.artifacts.parts.catalog import ITEM_IDS
from recsvc.artifacts.parts.coldstart import (
    COLDSTART_CUSTOMER,
    COLDSTART_EXTRA,
    COLDSTART_GROUP,
    COLDSTART_GROUP_ITEMS,
    COLDSTART_NEWCOMER_ITEMS,
    LFM_ITEM_BIASES,
    LFM_ITEM_EMBEDDINGS,
    LFM_USER_BIASES,
    LFM_USER_EMBEDDINGS,
    ColdStart,
)
from recsvc.artifacts.parts.customers import CUSTOMER_IDS
from recsvc.artifacts.parts.popularity import (
    NEWCOMER_EXTRA,
    POP_CHANNEL,
    POP_GLOBAL,
    POP_NEWCOMER_CHANNEL,
    POP_NEWCOMER_GLOBAL,
)
from recsvc.config import TrainingSettings
from recsvc.ranking.coldstart import COLD_LIST_DEPTH, COLD_LISTS, COLD_RANK_OFFSET
from recsvc.ranking.model import LoadedModel
from recsvc_training.evaluation.cold_baselines import MIN_GROUP_BUYERS, _column_choices, _group_codes
from recsvc_training.evaluation.metrics import ranking_metrics
from recsvc_training.evaluation.topk import top_k_sparse
from recsvc_training.input import columns as C
from recsvc_training.input.dataset import TrainingData
from recsvc_training.input.id_maps import build_id_maps, event_rows
from recsvc_training.models.coldstart import build_coldstart, customer_attribute_columns
from recsvc_training.models.popularity import build_popularity
from recsvc_training.models.repurchase import build_repurchase

logger = logging.getLogger(__name__)

#: The cut-off the choices are judged at.
CHOICE_K = 10
#: Validation windows a choice must hold in (each ``eval_test_days`` long, newest first).
VALIDATION_WINDOWS = 2
#: How much better than the reference a candidate must be, on each metric in each window, to replace it: a
#: tie in one window is no evidence (on Ta Feng a 14-day half-life tied buyer counts' Recall@10 in one window,
#: won the other, and lost to them on both metrics in the next month).
MIN_GAIN = 1.01
#: The served list before issue 14 (the set's own ``pop_channel``): a candidate like the others.
RECENCY_WEIGHTED = "recency_weighted"
#: The reference every other definition must beat on the validation window.
BUYERS = "buyers"
#: Days of purchases the cold blend's attribute-group lists count (0: all of them, the attribute-popularity
#: baseline's list): what a group bought lately, as well as what it bought ever.
ATTRIBUTE_WINDOWS: tuple[int, ...] = (0, 28, 14)
#: Cold-start blends tried, as weights of (LightFM, attribute group, newcomer popular list).
COLD_WEIGHT_GRID: tuple[tuple[float, float, float], ...] = (
    (0, 1, 0), (1, 0, 0), (1, 1, 0), (2, 1, 0), (1, 2, 0), (4, 4, 1), (2, 2, 1), (1, 1, 1), (2, 1, 1),
    (1, 2, 1), (1, 1, 2), (0, 0, 1))


#: Popularity definitions for a customer without history, as (kind, parameter): item scores from the purchase
#: rows before ``ref_day``, counting each (customer, item) pair once. ``buyers``: every pair; ``half_life``:
#: each pair weighted by ``0.5 ** (days since its last purchase / parameter)``; ``last_days``: pairs with a
#: purchase in the last ``parameter`` days; ``first_day``: pairs bought on the customer's first purchase day
#: (what newcomers buy). Ties are broken by all-time buyers, then by item row.
_SPECS: Mapping[str, tuple[str, float]] = {
    BUYERS: ("buyers", 0.0),
    "buyers_half_life_14d": ("half_life", 14.0),
    "buyers_half_life_56d": ("half_life", 56.0),
    "buyers_last_7d": ("last_days", 7.0),
    "buyers_last_14d": ("last_days", 14.0),
    "buyers_last_28d": ("last_days", 28.0),
    "first_baskets": ("first_day", 0.0),
}


@dataclass(frozen=True, eq=False)
class PairDays:
    """Purchase rows reduced to their distinct (segment, customer, item) pairs, with each pair's first and last
    purchase day and whether that first day is the (segment, customer)'s first purchase day: one sort of the
    rows, after which every definition (:data:`DEFINITIONS`) is one weighted ``bincount``, so the cost is
    linear in the rows (plus the sort) whatever the number of segments, customers or definitions."""

    n_segments: int
    n_items: int
    cell: np.ndarray  # segment * n_items + item, per pair
    first: np.ndarray
    last: np.ndarray
    on_first_day: np.ndarray

    @classmethod
    def of_rows(cls, segment: np.ndarray, customer: np.ndarray, item: np.ndarray, day: np.ndarray,
                n_segments: int, n_items: int) -> PairDays:
        n_customers = int(customer.max()) + 1 if customer.size else 1
        pair = (segment.astype(np.int64) * n_customers + customer) * n_items + item
        order = np.lexsort((day, pair))
        pair_sorted, day_sorted = pair[order], np.asarray(day, dtype=np.int64)[order]
        starts = np.flatnonzero(np.r_[True, pair_sorted[1:] != pair_sorted[:-1]]) if pair.size else order
        ends = np.r_[starts[1:], pair_sorted.size] - 1
        pairs, first = pair_sorted[starts], day_sorted[starts]
        # pairs are sorted by (segment, customer) first, so each group's first day is one reduceat
        group = pairs // n_items
        group_starts = np.flatnonzero(np.r_[True, group[1:] != group[:-1]]) if group.size else starts
        group_first = np.minimum.reduceat(first, group_starts) if group.size else first
        on_first_day = first == np.repeat(group_first, np.diff(np.r_[group_starts, group.size]))
        return cls(n_segments, n_items, (pairs // (n_customers * n_items)) * n_items + pairs % n_items, first,
                   day_sorted[ends], on_first_day)

    def scores(self, definition: str, ref_day: int) -> np.ndarray:
        """float64 ``[n_segments, n_items]``: ``definition``'s item scores within each segment's rows."""
        kind, parameter = _SPECS[definition]
        weight: np.ndarray | None
        if kind == "buyers":
            weight = None
        elif kind == "half_life":
            weight = np.power(0.5, (ref_day - self.last.astype(np.float64)) / parameter)
        elif kind == "last_days":
            weight = (self.last >= ref_day - parameter).astype(np.float64)
        else:
            weight = self.on_first_day.astype(np.float64)
        counts = np.bincount(self.cell, weights=weight, minlength=self.n_segments * self.n_items)
        return counts.astype(np.float64).reshape(self.n_segments, self.n_items)


#: Fused definitions: the weighted reciprocal-rank fusion (as the cold blend fuses, offset
#: ``COLD_RANK_OFFSET``, the first ``COLD_LIST_DEPTH`` of each) of two definitions' lists, the rest of the
#: catalog by buyers. Recent buyers lead on NDCG, what newcomers bought first or all-time buyers on Recall.
FUSED: Mapping[str, tuple[tuple[str, float], tuple[str, float]]] = {
    "fused_last_14d_first_baskets": (("buyers_last_14d", 1.0), ("first_baskets", 1.0)),
    "fused_last_7d_first_baskets": (("buyers_last_7d", 2.0), ("first_baskets", 1.0)),
    "fused_buyers_last_14d": ((BUYERS, 1.0), ("buyers_last_14d", 1.0)),
}


def definition_scores(definition: str, pairs: PairDays, ref_day: int) -> np.ndarray:
    """float64 ``[n_segments, n_items]``: any definition of :data:`DEFINITIONS` within each segment."""
    if definition not in FUSED:
        return pairs.scores(definition, ref_day)
    buyers = pairs.scores(BUYERS, ref_day)
    out = np.zeros((pairs.n_segments, pairs.n_items))
    for name, weight in FUSED[definition]:
        scores = pairs.scores(name, ref_day)
        for row in range(pairs.n_segments):
            head = _order(scores[row], buyers[row], COLD_LIST_DEPTH)
            out[row, head] += weight / (COLD_RANK_OFFSET + np.arange(1, head.size + 1))
    return out


def _definition(definition: str) -> Callable[[pd.DataFrame, int, int], np.ndarray]:
    def scores(p: pd.DataFrame, n_items: int, ref_day: int) -> np.ndarray:
        c = p["c"].to_numpy(np.int64)
        pairs = PairDays.of_rows(np.zeros(c.size, dtype=np.int64), c, p["i"].to_numpy(np.int64),
                                 p["day"].to_numpy(np.int64), 1, n_items)
        return definition_scores(definition, pairs, ref_day)[0]
    return scores


#: Each definition on purchase rows (``c``, ``i``, ``day``) before ``ref_day``: float64 ``[n_items]`` scores.
DEFINITIONS: Mapping[str, Callable[[pd.DataFrame, int, int], np.ndarray]] = {name: _definition(name)
                                                                             for name in (*_SPECS, *FUSED)}


def channel_pairs(p: pd.DataFrame, n_items: int, n_channels: int) -> PairDays:
    """:class:`PairDays` of purchase rows with one segment per channel (row = channel row of ``p["ch"]``) and a
    last one, ``n_channels``, for all of them: every channel's list and the overall one from one sort."""
    c, i, day, ch = (p[name].to_numpy(np.int64) for name in ("c", "i", "day", "ch"))
    mine = ch >= 0
    segment = np.concatenate([ch[mine], np.full(c.size, n_channels, dtype=np.int64)])
    return PairDays.of_rows(segment, np.concatenate([c[mine], c]), np.concatenate([i[mine], i]),
                            np.concatenate([day[mine], day]), n_channels + 1, n_items)


def _order(scores: np.ndarray, buyers: np.ndarray, depth: int | None = None) -> np.ndarray:
    """Item rows by ``scores`` descending, ties by ``buyers`` descending, then by lower row (first ``depth``)."""
    order = np.lexsort((np.arange(scores.size), -buyers, -scores))
    return order if depth is None else order[:depth]


def ordered_values(scores: np.ndarray, buyers: np.ndarray) -> np.ndarray:
    """float32 values whose descending order is ``scores``, ties by ``buyers``, then by lower row:
    ``n_items - position`` (exact in float32 up to 16M items)."""
    n = scores.size
    values = np.empty(n, dtype=np.float32)
    values[_order(scores, buyers)] = (n - np.arange(n)).astype(np.float32)
    return values


def purchase_rows(events: pd.DataFrame, item_ids: np.ndarray, customer_ids: np.ndarray,
                  channels: Sequence[str]) -> pd.DataFrame:
    """Purchase events as rows of a set's sorted id arrays: ``c``, ``i``, ``day``, ``ch`` (channel row);
    events naming ids the set does not hold are dropped."""
    bought = events[events[C.EVENT].to_numpy() == C.PURCHASE]

    def rows(ids: np.ndarray, values: pd.Series) -> np.ndarray:
        query = values.astype(str).to_numpy().astype(np.str_)
        if ids.size == 0:
            return np.full(query.size, -1, dtype=np.int64)
        pos = np.minimum(np.searchsorted(ids, query), ids.size - 1)
        return np.where(ids[pos] == query, pos, -1).astype(np.int64)

    channel_of = {name: row for row, name in enumerate(channels)}
    frame = pd.DataFrame({"c": rows(customer_ids, bought[C.CUSTOMER_ID]), "i": rows(item_ids, bought[C.ITEM_ID]),
                          "day": bought[C.DAY].to_numpy(dtype=np.int64),
                          "ch": bought[C.CHANNEL].astype(str).map(channel_of).fillna(-1).to_numpy(np.int64)})
    return frame[(frame["c"] >= 0) & (frame["i"] >= 0)]


def newcomer_value_rows(definition: str, pairs: PairDays, ref_day: int, served_channel: np.ndarray | None = None,
                        served_global: np.ndarray | None = None) -> np.ndarray:
    """float32 ``[n_channels + 1, n_items]``: the newcomer list of one definition per channel (last row: all
    channels) as ordered values, from :func:`channel_pairs`. :data:`RECENCY_WEIGHTED` reads the set's own
    lists (``served_channel``, ``served_global``)."""
    buyers = pairs.scores(BUYERS, ref_day)
    scores = _served_scores(served_channel, served_global, pairs) if definition == RECENCY_WEIGHTED else (
        definition_scores(definition, pairs, ref_day))
    return np.stack([ordered_values(scores[row], buyers[row]) for row in range(pairs.n_segments)])


def _served_scores(served_channel: np.ndarray | None, served_global: np.ndarray | None, pairs: PairDays
                   ) -> np.ndarray:
    if served_channel is None or served_global is None:
        raise ValueError(f"{RECENCY_WEIGHTED} needs the set's own popularity")
    n_channels, n_items = pairs.n_segments - 1, pairs.n_items
    return np.vstack([np.asarray(served_channel, dtype=np.float64).reshape(n_channels, n_items),
                      np.asarray(served_global, dtype=np.float64)[None, :]])


@dataclass(frozen=True)
class ValidationWindow:
    """The new customers of a validation window: ids, main channel row, purchased item rows (CSR)."""

    customer_ids: np.ndarray
    channel_rows: np.ndarray
    truth: sp.csr_matrix

    def __len__(self) -> int:
        return int(self.customer_ids.size)

    def subset(self, mask: np.ndarray) -> ValidationWindow:
        return ValidationWindow(self.customer_ids[mask], self.channel_rows[mask], self.truth[mask])


def validation_window(events: pd.DataFrame, start_day: int, item_ids: np.ndarray,
                      channels: Sequence[str]) -> ValidationWindow:
    """Customers with no event before ``start_day`` and a purchase on or after it, with what they bought
    (items of ``item_ids``) and their main channel (most purchases, ties by name)."""
    day = events[C.DAY].to_numpy()
    seen = pd.unique(events[C.CUSTOMER_ID].to_numpy()[day < start_day].astype(str))
    window = events[(day >= start_day) & (events[C.EVENT].to_numpy() == C.PURCHASE)]
    window = window[~window[C.CUSTOMER_ID].astype(str).isin(seen)]
    ids = np.unique(window[C.CUSTOMER_ID].astype(str).to_numpy()).astype(np.str_)
    p = purchase_rows(window, item_ids, ids, channels)
    truth = sp.csr_matrix((np.ones(len(p), dtype=np.float32), (p["c"].to_numpy(), p["i"].to_numpy())),
                          shape=(ids.size, item_ids.size))
    truth.data[:] = 1.0
    counts = p.groupby(["c", "ch"]).size().rename("n").reset_index()
    counts = counts.assign(neg=-counts["n"]).sort_values(["c", "neg", "ch"]).drop_duplicates("c")
    channel_rows = np.full(ids.size, -1, dtype=np.int64)
    channel_rows[counts["c"].to_numpy()] = counts["ch"].to_numpy()
    keep = np.asarray(truth.sum(axis=1)).ravel() > 0
    return ValidationWindow(ids[keep], channel_rows[keep], truth[keep])


def _objective(metrics: Mapping[str, float], reference: Mapping[str, float]) -> float:
    """Mean of NDCG@k and Recall@k, each relative to the reference's (absolute when the reference is 0)."""
    parts = []
    for name in (f"ndcg@{CHOICE_K}", f"recall@{CHOICE_K}"):
        ref = reference[name]
        parts.append(metrics[name] / ref if ref > 0 else metrics[name])
    return float(np.mean(parts))


def _score(recs: np.ndarray, truth: sp.csr_matrix) -> dict[str, float]:
    values = ranking_metrics(recs, truth, CHOICE_K)
    return {name: round(float(values[name]), 6) for name in (f"ndcg@{CHOICE_K}", f"recall@{CHOICE_K}")}


def _tiled(orders: np.ndarray, channel_rows: np.ndarray, fallback: np.ndarray) -> np.ndarray:
    rows = np.where(channel_rows[:, None] >= 0, orders[np.maximum(channel_rows, 0)], fallback[None, :])
    return rows[:, :CHOICE_K]


def _top(values: np.ndarray, k: int) -> np.ndarray:
    """Rows of the ``k`` largest values of a 1-d or 2-d array (per row), best first."""
    k = min(k, values.shape[-1])
    part = np.argpartition(-values, k - 1, axis=-1)[..., :k]
    order = np.argsort(-np.take_along_axis(values, part, axis=-1), axis=-1, kind="stable")
    return np.take_along_axis(part, order, axis=-1).astype(np.int64)


@dataclass(frozen=True)
class NewcomerAnswers:
    """What :func:`choose_newcomer_answers` chose: the popularity definition per channel (and for unknown
    channels), and the cold-start blend (None: keep LightFM in the rank blend), with the validation numbers."""

    channel_definitions: dict[str, str]
    global_definition: str
    cold_weights: tuple[float, float, float] | None = None
    attribute_columns: tuple[str, ...] = ()
    validation: dict[str, Any] = field(default_factory=dict)
    #: The popularity definition of the blend's popular list (may differ from the unknown customer's).
    cold_definition: str = BUYERS
    #: Days of purchases the attribute groups' lists count (0: all).
    attribute_days: int = 0

    def newcomer_meta(self) -> dict[str, Any]:
        return {"definitions": dict(self.channel_definitions), "global_definition": self.global_definition,
                "validation": self.validation.get("newcomer", {})}

    def cold_meta(self) -> dict[str, Any] | None:
        if self.cold_weights is None:
            return None
        return {"weights": dict(zip(COLD_LISTS, self.cold_weights, strict=True)),
                "attribute_columns": list(self.attribute_columns), "newcomer_definition": self.cold_definition,
                "attribute_days": self.attribute_days, "validation": self.validation.get("cold", {})}


def group_lists(customers: pd.DataFrame, columns: Sequence[str], customer_ids: np.ndarray, p: pd.DataFrame,
                n_items: int) -> tuple[np.ndarray, np.ndarray]:
    """``(group per customer row, top-:data:`COLD_LIST_DEPTH` item rows per group)``: distinct buyers within
    the group of ``columns``; the last row is everyone's list, the group of customers without one or in a
    group with fewer than ``MIN_GROUP_BUYERS`` buyers."""
    groups = _group_codes(customers, list(columns), customer_ids)
    n_groups = int(groups.max()) + 1 if groups.size and groups.max() >= 0 else 0
    pairs = p.drop_duplicates(["c", "i"])
    owner = groups[pairs["c"].to_numpy()]
    keep = owner >= 0
    counts = sp.csr_matrix((np.ones(int(keep.sum())), (owner[keep], pairs["i"].to_numpy()[keep])),
                           shape=(n_groups, n_items))
    everyone = np.bincount(pairs["i"].to_numpy(), minlength=n_items).astype(np.float64)
    buyer_groups = groups[np.unique(pairs["c"].to_numpy())]
    buyers = np.bincount(buyer_groups[buyer_groups >= 0], minlength=n_groups)
    small = buyers < MIN_GROUP_BUYERS
    # ties within a group by everyone's buyers (scaled below one buyer), then by row; one group at a time,
    # so a large catalog never needs a groups x items dense table
    tiebreak = everyone / (everyone.max() + 1.0) if everyone.size else everyone
    items = np.full((n_groups + 1, min(COLD_LIST_DEPTH, n_items)), -1, dtype=np.int32)
    for g in range(n_groups + 1):
        values = counts[g].toarray().ravel() + tiebreak if g < n_groups else everyone
        top = _top(values, items.shape[1])
        items[g] = np.where(values[top] > 0, top, -1)
    group = np.where((groups < 0) | small[np.maximum(groups, 0)] if n_groups else True, n_groups, groups)
    return np.asarray(group, dtype=np.int32).reshape(-1), items


#: Fewer cold new customers than this in a validation window choose no cold blend from it (and its LightFM
#: model is not fitted): a handful of customers' purchases are noise, not evidence.
MIN_COLD_CUSTOMERS = 10


@dataclass(frozen=True, eq=False)
class WindowModels:
    """What the choice reads from the models built before a validation window: the id maps, the set's own
    popularity (the :data:`RECENCY_WEIGHTED` candidate), the purchase rows and, when cold customers are to
    be judged, the LightFM cold-start part. A small part of a set: :func:`build_window_models` builds only
    these (no ALS, next-basket or co-purchase model, which the choice never reads)."""

    item_ids: np.ndarray
    customer_ids: np.ndarray
    channels: tuple[str, ...]
    pop_channel: np.ndarray
    pop_global: np.ndarray
    purchases: pd.DataFrame  # c, i, day, ch: purchase events as rows of the id maps
    coldstart: ColdStart | None = None

    def customer_rows(self, ids: np.ndarray) -> np.ndarray:
        """Rows of ``ids`` in :attr:`customer_ids` (-1 unknown)."""
        query = np.asarray(ids).astype(np.str_)
        if self.customer_ids.size == 0:
            return np.full(query.size, -1, dtype=np.int64)
        pos = np.minimum(np.searchsorted(self.customer_ids, query), self.customer_ids.size - 1)
        return np.where(self.customer_ids[pos] == query, pos, -1).astype(np.int64)

    @classmethod
    def of_model(cls, model: LoadedModel, data: TrainingData) -> WindowModels:
        """The same from a loaded set built from ``data`` (whose events end before the window)."""
        channels = tuple(model.channels)
        return cls(model.items.ids, model.customers.ids, channels, np.asarray(model.pop_channel),
                   np.asarray(model.pop_global),
                   purchase_rows(data.events, model.items.ids, model.customers.ids, channels),
                   model.parts.get(ColdStart))


def build_window_models(data: TrainingData, settings: TrainingSettings, *, coldstart: bool = True) -> WindowModels:
    """:class:`WindowModels` from ``data`` (the events before a validation window), with the builders a full
    set uses (:mod:`recsvc_training.assemble`), so every array is the one that set would hold; LightFM only
    when ``coldstart`` and the customers table has attributes (``build_coldstart`` decides the rest)."""
    maps = build_id_maps(data)
    events = event_rows(data, maps)
    end_day = int(data.events[C.DAY].max())
    popularity = build_popularity(events, maps, settings, end_day)
    bought = events.mask(C.PURCHASE)
    purchases = pd.DataFrame({name: np.asarray(values[bought], dtype=np.int64) for name, values in (
        ("c", events.customer), ("i", events.item), ("day", events.day), ("ch", events.channel))})
    part = None
    if coldstart and customer_attribute_columns(data.customers):
        history = build_repurchase(events, maps, end_day, settings.recency_half_life_days)
        arrays, _ = build_coldstart(data, events, maps, history, settings)
        if arrays:
            part = ColdStart(arrays[LFM_USER_EMBEDDINGS], arrays[LFM_USER_BIASES], arrays[LFM_ITEM_EMBEDDINGS],
                             arrays[LFM_ITEM_BIASES], arrays[COLDSTART_CUSTOMER])
    return WindowModels(maps.item_ids, maps.customer_ids, tuple(maps.channels), popularity[POP_CHANNEL],
                        popularity[POP_GLOBAL], purchases, part)


@dataclass
class _WindowLists:
    """One validation window's new customers and every candidate list for them (rows of its model)."""

    start_day: int
    window: ValidationWindow
    lists: dict[str, tuple[np.ndarray, np.ndarray]]  # definition -> (channel orders, global order)
    cold: ValidationWindow | None = None
    lightfm: np.ndarray | None = None
    groups: dict[str, np.ndarray] = field(default_factory=dict)  # "a+b" -> [cold customers, depth]
    #: (groups key, days) -> the groups' lists of the last ``days`` of purchases (:data:`ATTRIBUTE_WINDOWS`)
    recent_groups: dict[tuple[str, int], np.ndarray] = field(default_factory=dict)


def _candidate_lists(models: WindowModels, start_day: int) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Every definition's top :data:`COLD_LIST_DEPTH` item rows per channel and over all channels."""
    n_channels = len(models.channels)
    pairs = channel_pairs(models.purchases, models.item_ids.size, n_channels)
    buyers = pairs.scores(BUYERS, start_day)
    lists: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for name in (BUYERS, RECENCY_WEIGHTED, *[d for d in DEFINITIONS if d != BUYERS]):
        scores = buyers if name == BUYERS else _served_scores(models.pop_channel, models.pop_global, pairs) if (
            name == RECENCY_WEIGHTED) else definition_scores(name, pairs, start_day)
        orders = np.stack([_order(scores[row], buyers[row], COLD_LIST_DEPTH) for row in range(n_channels + 1)])
        lists[name] = (orders[:n_channels], orders[n_channels])
    return lists


def _window_lists(models: WindowModels, data: TrainingData, start_day: int, max_customers: int
                  ) -> _WindowLists | None:
    item_ids, channels = models.item_ids, list(models.channels)
    n_items = item_ids.size
    window = validation_window(data.events, start_day, item_ids, channels)
    if not len(window):
        return None
    if len(window) > max_customers:
        window = window.subset(np.sort(np.random.default_rng(0).choice(len(window), max_customers, replace=False)))
    p = models.purchases
    found = _WindowLists(start_day, window, _candidate_lists(models, start_day))
    part = models.coldstart
    attributes = [c for c in data.customers.columns if c != C.CUSTOMER_ID]
    rows = models.customer_rows(window.customer_ids)
    if part is None or not attributes:
        return found
    cold = (rows >= 0) & part.served[np.maximum(rows, 0)]
    if int(cold.sum()) < MIN_COLD_CUSTOMERS:
        return found
    found.cold, cold_rows = window.subset(cold), rows[cold]
    for columns in _column_choices(attributes):
        group, items = group_lists(data.customers, columns, models.customer_ids, p, n_items)
        found.groups["+".join(columns)] = items[group[cold_rows]].astype(np.int64)
        for days in ATTRIBUTE_WINDOWS:
            if days > 0:
                recent = p[p["day"].to_numpy() >= start_day - days]
                group, items = group_lists(data.customers, columns, models.customer_ids, recent, n_items)
                found.recent_groups["+".join(columns), days] = items[group[cold_rows]].astype(np.int64)
    users = np.asarray(part.user_embeddings, dtype=np.float32)[cold_rows]
    item_t = np.asarray(part.item_embeddings, dtype=np.float32).T
    biases = np.asarray(part.item_biases, dtype=np.float32)[None, :]
    found.lightfm = np.vstack([_top(users[i:i + 1024] @ item_t + biases, COLD_LIST_DEPTH)
                               for i in range(0, len(users), 1024)])
    return found


def _select(scores: list[dict[str, dict[str, float]]], reference: str) -> str:
    """The candidate with the best mean objective over the windows among those at least :data:`MIN_GAIN`
    times ``reference`` on NDCG@k and on Recall@k in every window (the reference always qualifies)."""
    names = [n for n in scores[0] if all(n in s for s in scores)]

    def holds(name: str) -> bool:
        return all(s[name][m] >= MIN_GAIN * s[reference][m] for s in scores for m in s[reference])

    def mean_objective(name: str) -> float:
        return float(np.mean([_objective(s[name], s[reference]) for s in scores]))

    qualified = [n for n in names if n == reference or holds(n)]
    return max(qualified, key=lambda n: (mean_objective(n), n == reference))


def choose_newcomer_answers(windows: Sequence[tuple[WindowModels, TrainingData, int]],
                            max_customers: int = 20_000) -> NewcomerAnswers | None:
    """Choose the newcomer popularity per channel and the cold-start blend on one or more validation windows.

    Each window is ``(the models built before start_day, data up to the window's end, start_day)``, newest first.
    A candidate replaces the reference (buyer counts; attribute popularity for the cold blend) only when it
    is at least as good on NDCG@10 and Recall@10 in every window: one month's quirk (a holiday) must not
    choose for the next. None when no window has a new customer.
    """
    found = [w for w in (_window_lists(m, d, s, max_customers) for m, d, s in windows) if w is not None]
    if not found:
        logger.info("newcomer answers: no new customer in the validation windows; nothing to choose")
        return None
    channels = list(windows[0][0].channels)

    # --- the unknown customer's list, per channel (the key "*": all new customers, for unknown channels)
    newcomer_validation: dict[str, Any] = {}
    chosen: dict[str, str] = {}
    for c, channel in enumerate([*channels, ""]):
        key = channel or "*"
        per_window = []
        for w in found:
            mask = w.window.channel_rows == c if channel else np.ones(len(w.window), dtype=bool)
            if mask.any():
                sub = w.window.subset(mask)
                per_window.append({name: _score(_tiled(orders, sub.channel_rows, overall), sub.truth)
                                   for name, (orders, overall) in w.lists.items()})
        if not per_window:
            continue
        chosen[key] = _select(per_window, BUYERS)
        newcomer_validation[key] = {"chosen": chosen[key], "windows": per_window}
    global_definition = chosen.pop("*", BUYERS)
    definitions = {ch: chosen.get(ch, global_definition) for ch in channels}
    logger.info("newcomer popularity chosen on %s new customers from days %s: %s (unknown channel: %s)",
                [len(w.window) for w in found], [w.start_day for w in found], definitions, global_definition)
    validation: dict[str, Any] = {"start_days": [w.start_day for w in found],
                                  "new_customers": [len(w.window) for w in found], "newcomer": newcomer_validation}

    # --- the cold-start blend, for new customers the validation models serve cold
    cold = [w for w in found if w.cold is not None and w.lightfm is not None and w.groups]
    if not cold:
        return NewcomerAnswers(definitions, global_definition, validation=validation)
    attribute_scores = [{key: _score(g[:, :CHOICE_K], w.cold.truth) for key, g in w.groups.items()}
                        for w in cold if w.cold is not None]
    # the groups are chosen as the attribute-popularity baseline chooses them: by NDCG
    attribute_key = max(attribute_scores[0], key=lambda n: float(np.mean(
        [s[n][f"ndcg@{CHOICE_K}"] for s in attribute_scores])))
    per_window_blends: list[dict[str, dict[str, float]]] = []
    candidates: dict[str, tuple[tuple[float, float, float], str, int]] = {}
    for w in cold:
        assert w.cold is not None and w.lightfm is not None
        scored = {}
        for days in ATTRIBUTE_WINDOWS:
            group_top = w.groups[attribute_key] if days == 0 else w.recent_groups[attribute_key, days]
            for name in w.lists:
                newcomer = _tiled_full(w.lists[name][0], w.cold.channel_rows, w.lists[name][1])
                # customers with the same attributes and channel have the same three lists (LightFM's vector
                # is the sum of their attribute vectors): fuse each distinct triple once
                distinct, inverse = np.unique(np.hstack([w.lightfm, group_top, newcomer]), axis=0,
                                              return_inverse=True)
                parts = np.split(distinct, np.cumsum([w.lightfm.shape[1], group_top.shape[1]]), axis=1)
                for weights in COLD_WEIGHT_GRID:
                    # a blend with a popular list tries each definition for it; the others do not read one
                    if (weights[1] == 0 and days) or (weights[2] == 0 and name != global_definition):
                        continue
                    recs = fuse_cold_batch(parts, weights, CHOICE_K)[np.asarray(inverse).reshape(-1)]
                    key = (_weights_key(weights) + (f",newcomer_definition={name}" if weights[2] > 0 else "")
                           + (f",attribute_days={days}" if days else ""))
                    scored[key] = _score(recs, w.cold.truth)
                    candidates[key] = (weights, name, days)
        per_window_blends.append(scored)
    best_key = _select(per_window_blends, _weights_key(COLD_WEIGHT_GRID[0]))  # vs attribute popularity alone
    best_weights, cold_definition, attribute_days = candidates[best_key]
    logger.info("cold start chosen on %s cold new customers: %s (attributes %s)",
                [len(w.cold) for w in cold if w.cold is not None], best_key, attribute_key)
    validation["cold"] = {"customers": [len(w.cold) for w in cold if w.cold is not None],
                          "attribute_columns": attribute_scores, "chosen": best_key, "windows": per_window_blends}
    return NewcomerAnswers(definitions, global_definition, best_weights, tuple(attribute_key.split("+")),
                           validation, cold_definition, attribute_days)


def fuse_cold_batch(lists: Sequence[np.ndarray], weights: Sequence[float], k: int) -> np.ndarray:
    """:func:`recsvc.ranking.coldstart.fuse_cold_lists` for many customers at once: ``lists`` are
    ``[n, depth]`` item rows (-1 pads), one array per list; the top ``k`` fused rows per customer (-1 pads).
    Same scores and tie order as the server's per-request fusion (up to float rounding of near-ties)."""
    n = lists[0].shape[0]
    rows, cols, values = [], [], []
    for items, weight in zip(lists, weights, strict=True):
        head = np.asarray(items, dtype=np.int64)[:, :COLD_LIST_DEPTH]
        if weight <= 0 or head.size == 0:
            continue
        contrib = np.broadcast_to(weight / (COLD_RANK_OFFSET + np.arange(1, head.shape[1] + 1)), head.shape)
        keep = head >= 0
        rows.append(np.broadcast_to(np.arange(n)[:, None], head.shape)[keep])
        cols.append(head[keep])
        values.append(contrib[keep])
    if not rows:
        return np.full((n, k), -1, dtype=np.int64)
    n_items = int(max(c.max() for c in cols if c.size) + 1) if any(c.size for c in cols) else 1
    scores = sp.csr_matrix((np.concatenate(values), (np.concatenate(rows), np.concatenate(cols))),
                           shape=(n, n_items))
    return top_k_sparse(scores, k)


def _tiled_full(orders: np.ndarray, channel_rows: np.ndarray, fallback: np.ndarray) -> np.ndarray:
    return np.where(channel_rows[:, None] >= 0, orders[np.maximum(channel_rows, 0)], fallback[None, :])


def _weights_key(weights: Sequence[float]) -> str:
    return ",".join(f"{name}={w:g}" for name, w in zip(COLD_LISTS, weights, strict=True))


class RunModels(Protocol):
    """What this step reads of the run's model builder (:class:`recsvc_training.ranker.step.ModelsBefore`)."""

    @property
    def settings(self) -> TrainingSettings: ...


#: Each run's window models by first day, shared by the evaluation's choice and the published set's (their
#: windows overlap by one); dropped with the run's model builder.
_WINDOW_MODELS: weakref.WeakKeyDictionary[Any, dict[tuple[int, bool], WindowModels]] = weakref.WeakKeyDictionary()


def _has_cold_newcomers(data: TrainingData, start: int, days: int) -> bool:
    """Whether at least :data:`MIN_COLD_CUSTOMERS` customers of the customers table with an attribute value
    make their first purchase in ``[start, start + days)`` with no event before (who the blend would serve)."""
    attributes = customer_attribute_columns(data.customers)
    if not attributes:
        return False
    table = data.customers.drop_duplicates(C.CUSTOMER_ID)
    values = table[attributes].astype("string").fillna("").apply(lambda col: col.str.strip() != "")
    described = table[C.CUSTOMER_ID].astype(str).to_numpy()[values.any(axis=1).to_numpy()]
    day = data.events[C.DAY].to_numpy()
    ids = data.events[C.CUSTOMER_ID]
    window = (day >= start) & (day < start + days) & (data.events[C.EVENT].to_numpy() == C.PURCHASE)

    def distinct(mask: np.ndarray) -> pd.Index:
        # hashed distinct values first, strings of those only: sorting every event's id as a string (np.unique)
        # was the slow part on a large log
        return pd.Index(pd.unique(ids[mask])).astype(str)

    newcomers = distinct(window).difference(distinct(day < start))
    return int(newcomers.isin(described).sum()) >= MIN_COLD_CUSTOMERS


def window_models_before(models: RunModels, data: TrainingData, day: int, *, coldstart: bool) -> WindowModels:
    """:func:`build_window_models` of ``data.before(day)``, once per run (``models``) and day."""
    cache = _WINDOW_MODELS.setdefault(models, {})
    key = (day, coldstart)
    if key not in cache:
        if not coldstart and (day, True) in cache:
            return cache[(day, True)]
        started = time.perf_counter()
        cache[key] = build_window_models(data.before(day), models.settings, coldstart=coldstart)
        logger.info("newcomer answers: models before day %d (LightFM %s) in %.2fs", day,
                    "fitted" if cache[key].coldstart is not None else "not fitted", time.perf_counter() - started)
    return cache[key]


def newcomer_answers_for(day: int, data: TrainingData, models: RunModels, window_days: int, first_day: int,
                         windows: int = VALIDATION_WINDOWS) -> NewcomerAnswers | None:
    """The choice for a set built from the events before ``day``: judged on up to ``windows`` windows of
    ``window_days`` before it (newest first), each with the models built from the events before its start
    (:func:`window_models_before`: only what the choice reads; LightFM only for a window with cold new
    customers to judge it on). A window needs at least ``window_days`` of log before it; None when not even
    the newest has."""
    chosen = []
    for n in range(1, windows + 1):
        start = day - n * window_days
        if window_days <= 0 or start - first_day < window_days:
            break
        window_data = data.before(start + window_days)
        coldstart = models.settings.coldstart_max_purchases >= 0 and _has_cold_newcomers(window_data, start,
                                                                                          window_days)
        chosen.append((window_models_before(models, data, start, coldstart=coldstart), window_data, start))
    if not chosen:
        logger.info("newcomer answers: the log before day %d is too short for a %d-day validation window",
                    day, window_days)
        return None
    return choose_newcomer_answers(chosen)


def attach_newcomer_answers(artifacts: ArtifactSet, data: TrainingData, answers: NewcomerAnswers) -> None:
    """Add the chosen newcomer lists (and the cold-start group lists) to a set built from ``data``'s events
    (all of them before the set's cut-off), and record the choice in its manifest ``extra``."""
    arrays = artifacts.arrays
    item_ids, customer_ids, channels = arrays[ITEM_IDS], arrays[CUSTOMER_IDS], list(artifacts.channels)
    n_items, n_channels = item_ids.size, len(channels)
    end_day = int(artifacts.data_end_day) + 1
    p = purchase_rows(data.events, item_ids, customer_ids, channels)
    pairs = channel_pairs(p, n_items, n_channels)
    values: dict[str, np.ndarray] = {}  # each definition once, for every channel it serves

    def rows_of(definition: str) -> np.ndarray:
        if definition not in values:
            values[definition] = newcomer_value_rows(definition, pairs, end_day, arrays[POP_CHANNEL],
                                                     arrays[POP_GLOBAL])
        return values[definition]

    per_channel = [rows_of(answers.channel_definitions.get(ch, answers.global_definition))[c]
                   for c, ch in enumerate(channels)]
    arrays[POP_NEWCOMER_CHANNEL] = (np.stack(per_channel) if per_channel
                                    else np.zeros((0, n_items), dtype=np.float32))
    arrays[POP_NEWCOMER_GLOBAL] = rows_of(answers.global_definition)[n_channels]
    artifacts.extra[NEWCOMER_EXTRA] = answers.newcomer_meta()
    cold = answers.cold_meta()
    if cold is not None and LFM_USER_EMBEDDINGS in arrays:
        recent = p if not answers.attribute_days else p[p["day"].to_numpy() >= end_day - answers.attribute_days]
        group, items = group_lists(data.customers, answers.attribute_columns, customer_ids, recent, n_items)
        arrays[COLDSTART_GROUP], arrays[COLDSTART_GROUP_ITEMS] = group, items
        arrays[COLDSTART_NEWCOMER_ITEMS] = _top(rows_of(answers.cold_definition), COLD_LIST_DEPTH).astype(np.int32)
        artifacts.extra[COLDSTART_EXTRA] = {**dict(artifacts.extra.get(COLDSTART_EXTRA) or {}), "choice": cold}
