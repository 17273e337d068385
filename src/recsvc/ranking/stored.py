"""The serving fast path: answer from the nightly ranking when nothing about the customer changed.

The trainer stores, per channel, the learned ranker's top ``L`` items for every ranked customer
(:class:`~recsvc.artifacts.parts.stored_lists.StoredLists`, built by :mod:`recsvc.ranking.batch` with the
engine's own code). A request whose customer has no live events and no context ids would be ranked live
to exactly that list (the pool, its features and the ranker depend on nothing else), so the engine takes the
stored list and applies the request's own filters here: exclusions, categories, the channel, the channel
policy's hidden items and the store's stock. When the filters leave fewer items than asked, the engine
ranks live (which may then fill from popularity, as it always did).

Reasons are built for the returned items only, from the stored source code and anchor and the customer's
history: the same numbers the live candidate lists carry (:mod:`recsvc.ranking.repurchase`,
:mod:`recsvc.ranking.copurchase`, :mod:`recsvc.ranking.als`, :mod:`recsvc.ranking.popularity`), so a stored
answer and a live one are equal item for item, score for score, reason for reason on the day the lists were
ranked. On later days (a model kept in service while the nightly run is late) the stored order is the one of
its ranking day; reasons still count days from today.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from recsvc.artifacts.parts.stored_lists import SOURCES, StoredLists
from recsvc.ranking.als import AlsSource
from recsvc.ranking.filters import ItemFilter
from recsvc.ranking.model import LoadedModel
from recsvc.ranking.next_basket import NextBasketSource
from recsvc.ranking.reasons import Reason, ReasonKind, explain
from recsvc.ranking.repurchase import repurchase_interval
from recsvc.ranking.sources import RankingContext

_HISTORY, _COPURCHASE, _ALS, _POPULARITY, _NEXT_BASKET = (
    SOURCES.index(name) for name in ("repurchase", "copurchase", "als", "popularity", "tifu_knn"))


@dataclass(frozen=True)
class StoredAnswer:
    """The first ``n`` stored items that pass a request's filters, with scores and reasons."""

    items: np.ndarray
    scores: np.ndarray
    reasons: list[Reason]


class StoredRanking:
    """A model's stored lists, read for requests; thread-safe (read-only arrays, no per-request state)."""

    def __init__(self, model: LoadedModel, lists: StoredLists) -> None:
        self._model = model
        self._lists = lists
        self._als = AlsSource(model)
        self._next_basket = NextBasketSource(model)

    @classmethod
    def from_model(cls, model: LoadedModel) -> StoredRanking | None:
        """The model's stored ranking, None for a set without one (an older set: every request ranks live)."""
        lists = model.parts.get(StoredLists)
        return cls(model, lists) if lists is not None and lists.customers.size else None

    @property
    def length(self) -> int:
        return self._lists.length

    def answer(self, ctx: RankingContext, item_filter: ItemFilter, n: int) -> StoredAnswer | None:
        """The stored list of ``ctx``'s customer on ``ctx``'s channel, filtered, cut to ``n``; None when the
        customer or the channel has no list, or fewer than ``n`` stored items pass (rank live then)."""
        if ctx.channel_row < 0 or n > self._lists.length:
            return None
        slot = self._lists.slot(ctx.customer_row)
        if slot < 0:
            return None
        items = self._lists.items[ctx.channel_row, slot]
        valid = int(np.count_nonzero(items >= 0))  # padding sits at the end
        items = items[:valid].astype(np.int64)
        chosen = np.flatnonzero(item_filter.allows(items))[:n]
        if chosen.size < n:
            return None
        source = self._lists.source[ctx.channel_row, slot, chosen]
        anchor = self._lists.anchor[ctx.channel_row, slot, chosen]
        rows = items[chosen]
        return StoredAnswer(rows, self._lists.scores[ctx.channel_row, slot, chosen],
                            self._reasons(ctx, rows, source, anchor))

    def _reasons(self, ctx: RankingContext, items: np.ndarray, source: np.ndarray, anchor: np.ndarray
                 ) -> list[Reason]:
        """Each item's reason, as its source's candidate list would have built it (see the module docstring)."""
        m, hist = self._model, ctx.history
        n = items.size
        kinds = np.full(n, int(ReasonKind.POPULAR_ON_CHANNEL if ctx.channel_row >= 0 else ReasonKind.POPULAR),
                        dtype=np.int64)
        reason_items = np.full((n, 2), -1, dtype=np.int64)
        days_since = np.full(n, -1, dtype=np.int64)
        interval = np.full(n, np.nan, dtype=np.float32)  # float32, as a candidate list keeps it
        source_day = np.full(n, -1, dtype=np.int64)
        source_channel = np.full(n, -1, dtype=np.int64)
        source_store = np.full(n, -1, dtype=np.int64)

        def last_purchase(where: np.ndarray, of_items: np.ndarray) -> np.ndarray:
            """Fill where and when each of ``of_items`` was last bought; their positions in the history."""
            at = hist.positions_of(of_items)
            bought = at >= 0
            safe = np.maximum(at, 0)
            if len(hist):
                source_day[where] = np.where(bought, hist.last_day[safe], -1)
                source_channel[where] = np.where(bought, hist.last_channel[safe], -1)
                source_store[where] = np.where(bought, hist.last_store[safe], -1)
            return at

        history = np.flatnonzero(source == _HISTORY)
        if history.size:
            kinds[history] = ReasonKind.BOUGHT_BEFORE
            rows = items[history]
            reason_items[history, 0] = rows
            at = np.maximum(last_purchase(history, rows), 0)
            count = np.maximum(hist.count[at].astype(np.float64), 0.0)
            days_since[history] = np.maximum(ctx.today - hist.last_day[at].astype(np.int64), 0)
            found = repurchase_interval(m, rows, count, hist.first_day[at], hist.last_day[at])
            interval[history] = np.where(np.isfinite(found) & (found > 0), found, np.nan)
        together = np.flatnonzero(source == _COPURCHASE)
        if together.size:
            kinds[together] = ReasonKind.BOUGHT_TOGETHER
            reason_items[together, 0] = anchor[together]
            last_purchase(together, anchor[together].astype(np.int64))
        similar = np.flatnonzero(source == _ALS)
        if similar.size:
            kinds[similar] = ReasonKind.CUSTOMERS_LIKE_YOU
            reason_items[similar] = self._als.reason_items(items[similar], ctx)
        next_basket = np.flatnonzero(source == _NEXT_BASKET)
        if next_basket.size:  # as NextBasketSource.candidates explains its items
            rows = items[next_basket]
            at = last_purchase(next_basket, rows)
            bought = at >= 0
            kinds[next_basket] = np.where(bought, ReasonKind.BOUGHT_BEFORE, ReasonKind.CUSTOMERS_LIKE_YOU)
            if len(hist):
                last_day = hist.last_day[np.maximum(at, 0)].astype(np.int64)
                days_since[next_basket] = np.where(bought, ctx.today - last_day, -1)
            reason_items[next_basket] = self._next_basket.reason_items(rows, ctx)
        columns = zip(kinds.tolist(), reason_items.tolist(), days_since.tolist(), interval.tolist(),
                      source_day.tolist(), source_channel.tolist(), source_store.tolist(), strict=True)
        return [explain(m, ReasonKind(kind), rows, days_since=days, interval_days=gap, source_day=day,
                        source_channel=channel, source_store=store, request_channel=ctx.channel_row,
                        request_store=ctx.store_row)
                for kind, rows, days, gap, day, channel, store in columns]
