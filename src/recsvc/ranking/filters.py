"""Which items an answer may show, and what fills an answer the filters leave short.

Every answer is filtered once, after ranking: sellable on the request's channel (on an unknown channel, only
items sold on every channel: an online caller on a channel the model never saw must not get store-only
items), in stock in the request's store when stock data exists, in an allowed category, not excluded, not
already in the cart. Sources never filter; the filter never ranks.

Stock reaches the engine through :class:`StockLookup`, so the engine neither knows where stock lives nor
builds the thing that watches it (the server passes a :class:`recsvc.server.stock.ModelStock`; tests pass their
own).
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from recsvc.ranking.model import LoadedModel
from recsvc.ranking.popularity import PopularitySource
from recsvc.ranking.reasons import Reason
from recsvc.ranking.results import FALLBACK_IGNORING_STOCK, FALLBACK_POPULAR
from recsvc.ranking.sources import Candidates, RankingContext, isin

logger = logging.getLogger(__name__)

_NO_ROWS = np.zeros(0, dtype=np.int64)


class StockLookup(Protocol):
    """Stock of the model's items per store, as the engine asks for it.

    ``in_stock(store_id)`` is a bool per item row of the engine's model (True: on hand in that store), or
    None when there is no stock data for the store (it is then not filtered: no data is not "sold out").
    Called once per request that names a store, from many threads at once.
    """

    def in_stock(self, store_id: str) -> np.ndarray | None: ...


@dataclass(frozen=True)
class ItemFilter:
    """Which items may be shown on one request.

    ``channel_row`` is the request's channel (``-1``: none given, or unknown); ``sold_everywhere`` is set
    (bool per item row) when the channel was given but is unknown, and then only those items pass;
    ``in_stock`` is the store's stock (None: no stock data); ``category_allowed`` is per category code (None:
    no category filter); ``blocked`` item rows never pass.
    """

    model: LoadedModel
    channel_row: int = -1
    category_allowed: np.ndarray | None = None
    blocked: np.ndarray = field(default_factory=lambda: _NO_ROWS)
    in_stock: np.ndarray | None = None
    sold_everywhere: np.ndarray | None = None

    def allows(self, items: np.ndarray) -> np.ndarray:
        """Bool per entry of ``items`` (item rows): may it be shown."""
        if self.sold_everywhere is not None:
            mask = self.sold_everywhere[items]
        else:
            mask = self.model.channel_mask(self.channel_row, items)
        if self.in_stock is not None:
            mask &= self.in_stock[items]
        if self.category_allowed is not None:
            mask &= self.category_allowed[self.model.category_codes[items]]
        if self.blocked.size:
            mask &= ~isin(items, self.blocked)
        return mask

    def ignoring_stock(self) -> ItemFilter:
        """The same filter without the stock check."""
        return dataclasses.replace(self, in_stock=None)


def category_filter(model: LoadedModel, include: Sequence[str], exclude: Sequence[str]
                    ) -> tuple[np.ndarray | None, tuple[str, ...]]:
    """Per category code, whether it passes the filters (``None`` = no filter), and the names no item has.

    An unknown name matches no item: in ``include`` it allows nothing, in ``exclude`` it removes nothing;
    either way it is reported back, so a typo does not silently empty (or fail to narrow) the answer.
    """
    if not include and not exclude:
        return None, ()
    names = model.category_names
    allowed = np.zeros(names.size, dtype=bool) if include else np.ones(names.size, dtype=bool)
    unknown: dict[str, None] = {}
    for values, keep in ((include, True), (exclude, False)):
        if not values:
            continue
        wanted = np.asarray(list(values), dtype=np.str_)  # own width: casting would cut "bakeryX" to "bakery"
        if names.size == 0:
            found = np.zeros(wanted.size, dtype=bool)
        else:
            pos = np.minimum(np.searchsorted(names, wanted), names.size - 1)
            found = names[pos] == wanted
            allowed[pos[found]] = keep
        unknown.update(dict.fromkeys(str(v) for v in wanted[~found].tolist()))
    return allowed, tuple(unknown)


def unknown_ids(ids: Sequence[str], rows: np.ndarray) -> list[str]:
    """Ids whose row is -1, first occurrence order, no duplicates (loops over <= request-limit ids)."""
    return list(dict.fromkeys(i for i, r in zip(ids, rows, strict=True) if r < 0))


def ordered_unique(rows: np.ndarray) -> np.ndarray:
    """Known rows (>= 0), duplicates removed, first occurrence order kept."""
    rows = rows[rows >= 0]
    _, first = np.unique(rows, return_index=True)
    return rows[np.sort(first)].astype(np.int64)


@dataclass(frozen=True)
class Fill:
    """Popular items appended to an answer, in order (one or two tiers), and which fallback that was.

    ``stock_emptied`` is True when the store's stock left nothing at all to show, so the second tier (the
    channel's popular items, stock not checked) filled the answer.
    """

    tiers: tuple[Candidates, ...]
    fallback: str = ""
    stock_emptied: bool = False

    @property
    def items(self) -> np.ndarray:
        return np.concatenate([t.items for t in self.tiers]) if self.tiers else _NO_ROWS

    def __len__(self) -> int:
        return sum(len(t) for t in self.tiers)

    def reasons(self, model: LoadedModel, ctx: RankingContext) -> list[Reason]:
        return [r for t in self.tiers for r in t.reasons_at(np.arange(len(t)), model, ctx)]


def popular_allowed(popularity: PopularitySource, ctx: RankingContext, item_filter: ItemFilter,
                    taken: np.ndarray, need: int) -> Candidates:
    """Up to ``need`` popular items the filter allows and not in ``taken``, reading ever deeper prefixes
    of the popularity order (a few array passes even when filters reject most of the catalog)."""
    if need <= 0:
        return Candidates.empty(popularity.name)
    n_items = popularity.model.n_items
    k = min(n_items, need + taken.size + item_filter.blocked.size + 16)
    while True:
        popular = popularity.candidates(ctx, k)
        mask = item_filter.allows(popular.items)
        if taken.size:
            mask &= ~isin(popular.items, taken)
        keep = np.flatnonzero(mask)
        if keep.size >= need or k >= n_items:
            return popular.take(keep[:need])
        k = min(n_items, k * 4)


def fill_popular(popularity: PopularitySource, ctx: RankingContext, item_filter: ItemFilter,
                 taken: np.ndarray, need: int) -> Fill:
    """What fills an answer that has ``taken`` and needs ``need`` more: popular items the filter allows (in
    stock in this store); only when the store's stock leaves the answer empty, the channel's popular items
    with stock not checked. Every other filter (channel, categories, exclusions) always holds.

    Decision: an answer with at least one item in stock stays in stock, shorter than asked (a clerk must not
    offer what the shelf lacks); an answer the stock emptied, which happens when the stock snapshot does not
    match the model (another catalog, a rollback), gets the channel's popular items, marked
    ``popular_ignoring_stock``, rather than nothing.
    """
    if need <= 0:
        return Fill(())
    first = popular_allowed(popularity, ctx, item_filter, taken, need)
    fallback = FALLBACK_POPULAR if len(first) else ""
    if len(first) >= need or item_filter.in_stock is None or taken.size or len(first):
        return Fill((first,), fallback)
    # the channel's popular items: the store's own top list is what its stock was checked against
    channel_ctx = dataclasses.replace(ctx, store_row=-1)
    rest = popular_allowed(popularity, channel_ctx, item_filter.ignoring_stock(), taken, need)
    if not len(rest):  # the stock filter was not what emptied the answer
        return Fill((first,), fallback)
    return Fill((rest,), FALLBACK_IGNORING_STOCK, stock_emptied=True)


class StockEmptiedLog:
    """Log lines for answers the stock filter emptied, at most one per store per ``interval`` seconds, each
    with the count since the previous line (a stock snapshot that does not match the model would otherwise
    write one line per request).
    """

    def __init__(self, model_version: str, interval: float = 60.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._version = model_version
        self._interval = interval
        self._clock = clock
        self._lock = threading.Lock()
        self._pending: dict[str, int] = {}  # store -> answers emptied since the last line
        self._last: dict[str, float] = {}

    def record(self, store_id: str) -> None:
        """Count one emptied answer in ``store_id``; log when the store's last line is ``interval`` old."""
        now = self._clock()
        with self._lock:
            count = self._pending.get(store_id, 0) + 1
            last = self._last.get(store_id)
            if last is not None and now - last < self._interval:
                self._pending[store_id] = count
                return
            self._pending[store_id], self._last[store_id] = 0, now
        logger.warning("store %s: the stock filter emptied %d answer(s) of model %s; served the channel's popular "
                       "items, stock not checked (does the stock snapshot match the model's catalog?)",
                       store_id, count, self._version)
