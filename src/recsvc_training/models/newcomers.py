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
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp

from recsvc.artifacts import ArtifactSet
from recsvc.artifacts.parts.catalog import ITEM_IDS
from recsvc.artifacts.parts.coldstart import (
    COLDSTART_EXTRA,
    COLDSTART_GROUP,
    COLDSTART_GROUP_ITEMS,
    COLDSTART_NEWCOMER_ITEMS,
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
from recsvc.ranking.coldstart import COLD_LIST_DEPTH, COLD_LISTS, COLD_RANK_OFFSET
from recsvc.ranking.model import LoadedModel
from recsvc_training.evaluation.cold_baselines import MIN_GROUP_BUYERS, _column_choices, _group_codes
from recsvc_training.evaluation.metrics import ranking_metrics
from recsvc_training.evaluation.topk import top_k_sparse
from recsvc_training.input import columns as C
from recsvc_training.input.dataset import TrainingData

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
#: Cold-start blends tried, as weights of (LightFM, attribute group, newcomer popular list).
COLD_WEIGHT_GRID: tuple[tuple[float, float, float], ...] = (
    (0, 1, 0), (1, 0, 0), (1, 1, 0), (2, 1, 0), (1, 2, 0), (4, 4, 1), (2, 2, 1), (1, 1, 1), (2, 1, 1),
    (1, 2, 1), (1, 1, 2), (0, 0, 1))


def _pair_last_day(p: pd.DataFrame) -> pd.DataFrame:
    return p.groupby(["c", "i"], sort=False)["day"].max().reset_index()


def _buyers(p: pd.DataFrame, n_items: int, ref_day: int) -> np.ndarray:
    return np.bincount(p.drop_duplicates(["c", "i"])["i"].to_numpy(), minlength=n_items).astype(np.float64)


def _decayed_buyers(half_life: float) -> Callable[[pd.DataFrame, int, int], np.ndarray]:
    def scores(p: pd.DataFrame, n_items: int, ref_day: int) -> np.ndarray:
        last = _pair_last_day(p)
        weight = np.power(0.5, (ref_day - last["day"].to_numpy(dtype=np.float64)) / half_life)
        return np.bincount(last["i"].to_numpy(), weights=weight, minlength=n_items)
    return scores


def _recent_buyers(days: int) -> Callable[[pd.DataFrame, int, int], np.ndarray]:
    def scores(p: pd.DataFrame, n_items: int, ref_day: int) -> np.ndarray:
        return _buyers(p[p["day"].to_numpy() >= ref_day - days], n_items, ref_day)
    return scores


def _first_baskets(p: pd.DataFrame, n_items: int, ref_day: int) -> np.ndarray:
    """Distinct customers who bought the item on the day of their first purchase (what newcomers buy)."""
    first = p[p["day"].to_numpy() == p.groupby("c")["day"].transform("min").to_numpy()]
    return _buyers(first, n_items, ref_day)


#: Popularity definitions for a customer without history: item scores from purchase rows (``c``, ``i``,
#: ``day``) before ``ref_day``. Ties are broken by all-time buyers, then by item row.
DEFINITIONS: Mapping[str, Callable[[pd.DataFrame, int, int], np.ndarray]] = {
    BUYERS: _buyers,
    "buyers_half_life_14d": _decayed_buyers(14.0),
    "buyers_half_life_56d": _decayed_buyers(56.0),
    "buyers_last_7d": _recent_buyers(7),
    "buyers_last_14d": _recent_buyers(14),
    "buyers_last_28d": _recent_buyers(28),
    "first_baskets": _first_baskets,
}


def ordered_values(scores: np.ndarray, buyers: np.ndarray) -> np.ndarray:
    """float32 values whose descending order is ``scores``, ties by ``buyers``, then by lower row:
    ``n_items - position`` (exact in float32 up to 16M items)."""
    n = scores.size
    order = np.lexsort((np.arange(n), -buyers, -scores))
    values = np.empty(n, dtype=np.float32)
    values[order] = (n - np.arange(n)).astype(np.float32)
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


def newcomer_values(definition: str, p: pd.DataFrame, n_items: int, ref_day: int,
                    served: np.ndarray | None = None) -> np.ndarray:
    """The newcomer list of one definition as ordered float32 values; ``served`` is the set's own list
    (``pop_channel`` row), the values of :data:`RECENCY_WEIGHTED`."""
    buyers = _buyers(p, n_items, ref_day)
    if definition == RECENCY_WEIGHTED:
        if served is None:
            raise ValueError(f"{RECENCY_WEIGHTED} needs the set's own popularity")
        return ordered_values(np.asarray(served, dtype=np.float64), buyers)
    return ordered_values(DEFINITIONS[definition](p, n_items, ref_day), buyers)


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

    def newcomer_meta(self) -> dict[str, Any]:
        return {"definitions": dict(self.channel_definitions), "global_definition": self.global_definition,
                "validation": self.validation.get("newcomer", {})}

    def cold_meta(self) -> dict[str, Any] | None:
        if self.cold_weights is None:
            return None
        return {"weights": dict(zip(COLD_LISTS, self.cold_weights, strict=True)),
                "attribute_columns": list(self.attribute_columns), "newcomer_definition": self.cold_definition,
                "validation": self.validation.get("cold", {})}


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


@dataclass
class _WindowLists:
    """One validation window's new customers and every candidate list for them (rows of its model)."""

    start_day: int
    window: ValidationWindow
    lists: dict[str, tuple[np.ndarray, np.ndarray]]  # definition -> (channel orders, global order)
    cold: ValidationWindow | None = None
    lightfm: np.ndarray | None = None
    groups: dict[str, np.ndarray] = field(default_factory=dict)  # "a+b" -> [cold customers, depth]


def _window_lists(val_model: LoadedModel, data: TrainingData, start_day: int, max_customers: int
                  ) -> _WindowLists | None:
    item_ids, channels = val_model.items.ids, list(val_model.channels)
    n_items = item_ids.size
    window = validation_window(data.events, start_day, item_ids, channels)
    if not len(window):
        return None
    if len(window) > max_customers:
        window = window.subset(np.sort(np.random.default_rng(0).choice(len(window), max_customers, replace=False)))
    p = purchase_rows(data.before(start_day).events, item_ids, val_model.customers.ids, channels)
    lists: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for name in (BUYERS, RECENCY_WEIGHTED, *[d for d in DEFINITIONS if d != BUYERS]):
        per_channel = np.stack([newcomer_values(name, p[p["ch"].to_numpy() == c], n_items, start_day,
                                                val_model.pop_channel[c]) for c in range(len(channels))])
        overall = newcomer_values(name, p, n_items, start_day, val_model.pop_global)
        lists[name] = (_top(per_channel, COLD_LIST_DEPTH), _top(overall, COLD_LIST_DEPTH))
    found = _WindowLists(start_day, window, lists)
    part = val_model.parts.get(ColdStart)
    attributes = [c for c in data.customers.columns if c != C.CUSTOMER_ID]
    rows = val_model.customers.lookup(window.customer_ids)
    if part is None or not attributes:
        return found
    cold = (rows >= 0) & part.served[np.maximum(rows, 0)]
    if not cold.any():
        return found
    found.cold, cold_rows = window.subset(cold), rows[cold]
    for columns in _column_choices(attributes):
        group, items = group_lists(data.customers, columns, val_model.customers.ids, p, n_items)
        found.groups["+".join(columns)] = items[group[cold_rows]].astype(np.int64)
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


def choose_newcomer_answers(windows: Sequence[tuple[LoadedModel, TrainingData, int]],
                            max_customers: int = 20_000) -> NewcomerAnswers | None:
    """Choose the newcomer popularity per channel and the cold-start blend on one or more validation windows.

    Each window is ``(model built before start_day, data up to the window's end, start_day)``, newest first.
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
    candidates: dict[str, tuple[tuple[float, float, float], str]] = {}
    for w in cold:
        assert w.cold is not None and w.lightfm is not None
        group_top, scored = w.groups[attribute_key], {}
        for weights in COLD_WEIGHT_GRID:
            # a blend with a popular list tries each definition for it; the others do not read one
            for name in (w.lists if weights[2] > 0 else [global_definition]):
                newcomer = _tiled_full(w.lists[name][0], w.cold.channel_rows, w.lists[name][1])
                recs = fuse_cold_batch((w.lightfm, group_top, newcomer), weights, CHOICE_K)
                key = _weights_key(weights) + (f",newcomer_definition={name}" if weights[2] > 0 else "")
                scored[key] = _score(recs, w.cold.truth)
                candidates[key] = (weights, name)
        per_window_blends.append(scored)
    best_key = _select(per_window_blends, _weights_key(COLD_WEIGHT_GRID[0]))  # vs attribute popularity alone
    best_weights, cold_definition = candidates[best_key]
    logger.info("cold start chosen on %s cold new customers: %s (attributes %s)",
                [len(w.cold) for w in cold if w.cold is not None], best_key, attribute_key)
    validation["cold"] = {"customers": [len(w.cold) for w in cold if w.cold is not None],
                          "attribute_columns": attribute_scores, "chosen": best_key, "windows": per_window_blends}
    return NewcomerAnswers(definitions, global_definition, best_weights, tuple(attribute_key.split("+")),
                           validation, cold_definition)


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


def newcomer_answers_for(day: int, data: TrainingData, model_before: Callable[[int], LoadedModel],
                         window_days: int, first_day: int, windows: int = VALIDATION_WINDOWS
                         ) -> NewcomerAnswers | None:
    """The choice for a set built from the events before ``day``: judged on up to ``windows`` windows of
    ``window_days`` before it (newest first), each with the models ``model_before(its start)``. A window needs
    at least ``window_days`` of log before it; None when not even the newest has."""
    chosen = []
    for n in range(1, windows + 1):
        start = day - n * window_days
        if window_days <= 0 or start - first_day < window_days:
            break
        chosen.append((model_before(start), data.before(start + window_days), start))
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
    n_items = item_ids.size
    end_day = int(artifacts.data_end_day) + 1
    p = purchase_rows(data.events, item_ids, customer_ids, channels)
    per_channel = [newcomer_values(answers.channel_definitions.get(ch, answers.global_definition),
                                   p[p["ch"].to_numpy() == c], n_items, end_day, arrays[POP_CHANNEL][c])
                   for c, ch in enumerate(channels)]
    arrays[POP_NEWCOMER_CHANNEL] = (np.stack(per_channel) if per_channel
                                    else np.zeros((0, n_items), dtype=np.float32))
    arrays[POP_NEWCOMER_GLOBAL] = newcomer_values(answers.global_definition, p, n_items, end_day, arrays[POP_GLOBAL])
    artifacts.extra[NEWCOMER_EXTRA] = answers.newcomer_meta()
    cold = answers.cold_meta()
    if cold is not None and LFM_USER_EMBEDDINGS in arrays:
        group, items = group_lists(data.customers, answers.attribute_columns, customer_ids, p, n_items)
        arrays[COLDSTART_GROUP], arrays[COLDSTART_GROUP_ITEMS] = group, items
        definition = answers.cold_definition
        per_channel = [newcomer_values(definition, p[p["ch"].to_numpy() == c], n_items, end_day, arrays[POP_CHANNEL][c])
                       for c in range(len(channels))]
        overall = newcomer_values(definition, p, n_items, end_day, arrays[POP_GLOBAL])
        arrays[COLDSTART_NEWCOMER_ITEMS] = _top(np.stack([*per_channel, overall]), COLD_LIST_DEPTH).astype(np.int32)
        artifacts.extra[COLDSTART_EXTRA] = {**dict(artifacts.extra.get(COLDSTART_EXTRA) or {}), "choice": cold}
