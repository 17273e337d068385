"""The recommendation engine: validate a query, rank the candidate sources, filter, fill, explain.

Public methods (:meth:`RecommendationEngine.recommend`, :meth:`~RecommendationEngine.bundle`,
:meth:`~RecommendationEngine.similar_items`) validate and raise :class:`~recsvc.errors.InvalidRequest` /
:class:`~recsvc.errors.NotFound` with a message naming the field; private ``_`` methods compute and assume a
valid query. The engine holds one :class:`~recsvc.ranking.model.LoadedModel` and no mutable state that
changes an answer (stock comes from the injected :class:`~recsvc.ranking.filters.StockLookup`), so one
instance serves any number of threads; a new model version means a new engine.

Ranking paths (the ``policy`` of a result; :mod:`recsvc.ranking.paths`): ``learned`` (a known customer and a
model with a trained ranker), ``blend`` (a known customer, weighted reciprocal rank fusion of the sources),
``coldstart`` (a customer the trainer marked cold), a configured channel policy's name, and for unknown
customers ``context`` (known cart items) or ``popular``. :meth:`~RecommendationEngine.recommend` and
:meth:`~RecommendationEngine.top_item_rows` (what the offline evaluation scores) share one selection,
:meth:`~RecommendationEngine._select`, so the evaluation measures what the server serves. Bundles are
:mod:`recsvc.ranking.bundles`, filters and the popular fill :mod:`recsvc.ranking.filters`.

Ranking is vectorised over item rows: candidate sources take top-k with ``argpartition``, the blend and every
filter are array operations, and Python loops only touch the final (<= ``max_num_items``) suggestions.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np

from recsvc.config import ServerSettings
from recsvc.errors import InvalidRequest, NotFound
from recsvc.ids import clean_channel, clean_id
from recsvc.ranking.als import AlsSource
from recsvc.ranking.blend import BlendWeights, continue_below
from recsvc.ranking.bundles import DEFAULT_BUNDLE_SIZE, MAX_BUNDLE_SIZE, MIN_BUNDLE_SIZE, BundleMaker
from recsvc.ranking.copurchase import CoPurchaseSource
from recsvc.ranking.filters import (
    Fill,
    ItemFilter,
    StockEmptiedLog,
    StockLookup,
    category_filter,
    fill_popular,
    ordered_unique,
    unknown_ids,
)
from recsvc.ranking.learned import LearnedRanker
from recsvc.ranking.live import LiveRows, live_rows, with_live_reasons
from recsvc.ranking.model import LoadedModel
from recsvc.ranking.paths import Ranked, RankingPaths
from recsvc.ranking.policies import ChannelPolicies
from recsvc.ranking.popularity import PopularitySource
from recsvc.ranking.reasons import similar_reason
from recsvc.ranking.repurchase import RepurchaseSource
from recsvc.ranking.results import (
    POLICY_LEARNED,
    BundleQuery,
    BundleResult,
    RecommendQuery,
    RecommendResult,
    SimilarResult,
    Suggestion,
    suggestions,
)
from recsvc.ranking.similar import similar_rows
from recsvc.ranking.sources import CandidateSource, RankingContext
from recsvc.ranking.stored import StoredAnswer, StoredRanking

logger = logging.getLogger(__name__)

_NO_ROWS = np.zeros(0, dtype=np.int64)

#: Whether a call naming a store is answered from the channel's stored list filtered by the store's stock
#: (True), or ranked live with the store's popular items in the pool (False); README, Serving, has the
#: NDCG@10 of both on Ta Feng and the sample.
STORED_STORE_CALLS = True


@dataclass(frozen=True)
class _Selection:
    """One Recommend answer as rows: ``ranked`` at ``chosen`` (what passed the filter, best first), then
    ``fill``; ``policy`` is the ranking path."""

    ctx: RankingContext
    ranked: Ranked
    chosen: np.ndarray
    fill: Fill
    policy: str

    @property
    def rows(self) -> np.ndarray:
        return np.concatenate([self.ranked.items[self.chosen], self.fill.items]).astype(np.int64)


class RecommendationEngine:
    """Answers Recommend, RecommendBundle and SimilarItems for one loaded model.

    Parameters
    ----------
    model
        The loaded artifact set; the engine never changes it.
    settings
        Request limits (``default_num_items``, ``max_num_items``, ``max_ids_per_request``,
        ``max_context_items``) and per-channel ``policies``; defaults to :class:`~recsvc.config.ServerSettings`.
    weights
        Blend weights per candidate source (see :class:`~recsvc.ranking.blend.BlendWeights`).
    sources
        Candidate sources, in reason tie-break order; defaults to repurchase, co-purchase, ALS and popularity
        built on ``model``.
    clock
        Returns the current time (UTC); used only to age the model: "today" for day counts is the last day of
        the training data plus the whole days elapsed since the model was created, so a model trained on
        old data (a public data set) still measures recency as of its own data.
    stock
        Stock per store of ``model``'s items (the server passes a :class:`recsvc.server.stock.ModelStock`); None:
        no stock filter. A request naming a store with stock data never gets an item out of stock there,
        unless nothing else fills the answer (``fallback`` says so).
    """

    def __init__(self, model: LoadedModel, settings: ServerSettings | None = None,
                 weights: BlendWeights | None = None, sources: Sequence[CandidateSource] | None = None,
                 clock: Callable[[], datetime] | None = None, stock: StockLookup | None = None,
                 learned: bool = True) -> None:
        self._model = model
        self._given_sources = sources
        self._settings = settings or ServerSettings()
        self._weights = weights or BlendWeights()
        self._popularity = PopularitySource(model)
        # A model that carries a learned ranker ranks known customers with it; custom sources (tests,
        # experiments) keep the rank blend they were given. Customers the trainer marked cold get the LightFM
        # source (policy "coldstart"); known customers on a channel with a configured policy get its weights
        # and exclusions.
        self._paths = RankingPaths(
            model, tuple(sources) if sources is not None else (
                RepurchaseSource(model), CoPurchaseSource(model), AlsSource(model), self._popularity),
            self._weights, ChannelPolicies(self._settings.policies, self._weights, model.channels),
            LearnedRanker.from_model(model) if sources is None and learned else None)
        self._bundles = BundleMaker(model, self._popularity)
        #: The nightly ranking (None: an older set without one, or an engine without the learned ranker).
        self._stored = StoredRanking.from_model(model) if self._paths.learned is not None else None
        self._stock = stock
        self._stock_log = StockEmptiedLog(model.version)
        everywhere = np.all(model.item_channels, axis=1)  # True for every item of a model without channels
        everywhere.flags.writeable = False
        #: Items sold on every channel: all an unknown channel may show.
        self._sold_everywhere: np.ndarray = everywhere
        self._clock = clock or (lambda: datetime.now(UTC))
        try:
            created = datetime.fromisoformat(model.created_at) if model.created_at else None
        except ValueError:
            logger.warning("model %s: created_at %r is not ISO 8601; day counts use the data end day",
                           model.version, model.created_at)
            created = None
        if created is not None and created.tzinfo is None:
            created = created.replace(tzinfo=UTC)
        self._created = created

    @property
    def model(self) -> LoadedModel:
        return self._model

    def variant(self, settings: ServerSettings, learned: bool = True) -> RecommendationEngine:
        """An engine on the same model, weights, sources, stock and clock with other ``settings`` (channel
        policies) and, with ``learned`` False, without the model's learned ranker: an experiment arm's engine
        (:mod:`recsvc.feedback.experiments`)."""
        return RecommendationEngine(self._model, settings, self._weights, self._given_sources, self._clock,
                                    self._stock, learned=learned)

    @property
    def model_version(self) -> str:
        return self._model.version

    @property
    def learned_ranker(self) -> LearnedRanker | None:
        """The model's learned ranker (None: the set holds none, or this engine was built without it)."""
        return self._paths.learned

    @property
    def weights(self) -> BlendWeights:
        return self._weights

    # ------------------------------------------------------------------------------------------ public API

    def recommend(self, query: RecommendQuery) -> RecommendResult:
        """Ranked suggestions for one customer on one channel.

        Unknown customers get popular items (``known_customer`` False, policy ``"popular"``, or
        ``"context"`` when known context items let co-purchase help); unknown stores, categories and item
        ids are not errors (unknown ids and categories are reported back). A channel the model has no data
        for gets global popularity and only items sold on every channel (``unknown_channel``). Context items
        feed co-purchase and, like excluded ids, never appear in the result; items not sellable on the
        channel never appear either. Fewer candidates than asked are filled from popularity (``fallback``).
        ``query.live`` (what the customer did since the model's cut-off) adds context, hides what was just
        bought and names live purchases in reasons (:mod:`recsvc.ranking.live`).

        Raises
        ------
        InvalidRequest
            Empty ``channel``; ``num_items`` outside 0..max_num_items; more than ``max_ids_per_request``
            exclude ids or categories, more than ``max_context_items`` context ids; an empty string among
            the ids.
        """
        return self._recommend(query, self._checked(query))

    def bundle(self, query: BundleQuery) -> BundleResult:
        """Items that complete a basket, and one bundle built around the basket's strongest anchor.

        Completions are co-purchase neighbours of the basket (score: P(item | the basket item it goes with
        best), ties broken by the sum over basket items; the reason names the basket items behind it), then
        items similar to the basket (ALS), then popular items; scores never increase down the list;
        never basket items, and only items sold on ``channel`` when it is set (on an unknown channel, items
        sold on every channel). Unknown basket ids are reported; with no known basket item the completions
        are popular items and there is no bundle.

        Raises
        ------
        InvalidRequest
            Empty basket or more than ``max_context_items`` ids, an empty id, ``num_items`` outside
            0..max_num_items, ``bundle_size`` outside 2..4 (0 means 3).
        """
        if not query.basket_item_ids:
            raise InvalidRequest(f"basket_item_ids: required; send 1 to {self._settings.max_context_items} "
                                 "item ids from the basket or cart")
        self._check_ids(query.basket_item_ids, "basket_item_ids", self._settings.max_context_items)
        n = self._num_items(query.num_items, "num_items")
        size = query.bundle_size or DEFAULT_BUNDLE_SIZE
        if not MIN_BUNDLE_SIZE <= size <= MAX_BUNDLE_SIZE:
            raise InvalidRequest(f"bundle_size: must be between {MIN_BUNDLE_SIZE} and {MAX_BUNDLE_SIZE} items "
                                 f"including the anchor (0 means {DEFAULT_BUNDLE_SIZE}), got {query.bundle_size}")
        return self._bundle(query, n, size)

    def similar_items(self, item_id: str, n: int = 0, channel: str = "") -> SimilarResult:
        """Items most similar to ``item_id``, best first, by the method the trainer chose on a validation
        window (:mod:`recsvc.ranking.similar`: ALS cosine, co-purchase, item-kNN or their blend), each with
        the reason of the list it came from; a list the filter leaves short continues with ALS cosine.

        Only positively similar items are returned, so the list may be shorter than ``n`` (empty for an
        item without factors or neighbours). ``channel``, when set, keeps only items sold on it (on an unknown channel,
        items sold on every channel). Ids and channel names are cleaned as in :mod:`recsvc.ids`.

        Raises
        ------
        InvalidRequest
            Empty ``item_id`` or ``n`` outside 0..max_num_items (0 means the default).
        NotFound
            ``item_id`` is not in the model's catalog.
        """
        item_id, channel = clean_id(item_id), clean_channel(channel)
        if not item_id:
            raise InvalidRequest("item_id: required; name the item to find similar items for")
        count = self._num_items(n, "num_items")
        row = self._model.items.row(item_id)
        if row < 0:
            raise NotFound(f"item_id: unknown item {item_id!r}; the model {self._model.version} does not know it")
        item_filter, notices = self._channel_filter(channel)
        return SimilarResult(tuple(self._similar_items(row, count, item_filter)), self._model.version,
                             unknown_channel=item_filter.sold_everywhere is not None, notices=notices)

    def ranking_day(self) -> int:
        """The reference day (days since 1970-01-01) this engine ranks as of: see ``clock``."""
        return self._today()

    def top_item_rows(self, customer_row: int, channel_row: int, n: int) -> np.ndarray:
        """Item rows Recommend ranks first for a customer row on a channel row (no request exclusions, no
        store, no reasons; the customer's policy applies): the offline evaluation scores exactly this, so it
        measures what the server serves. ``channel_row`` ``-1`` is an unknown channel."""
        sold_everywhere = self._sold_everywhere if channel_row < 0 else None
        return self._select(customer_row, channel_row, -1, _NO_ROWS, _NO_ROWS, None, None, sold_everywhere,
                            n).rows

    # -------------------------------------------------------------------------------------------- validation

    def _checked(self, query: RecommendQuery) -> int:
        """Validate a Recommend query (see :meth:`recommend`); the number of items to answer."""
        if not query.channel:
            raise InvalidRequest("channel: required; name the channel the customer is on, e.g. 'web', 'app' "
                                 "or 'store'")
        n = self._num_items(query.num_items, "num_items")
        limit = self._settings.max_ids_per_request
        self._check_ids(query.exclude_item_ids, "exclude_item_ids", limit)
        self._check_ids(query.context_item_ids, "context_item_ids", self._settings.max_context_items)
        self._check_ids(query.include_categories, "include_categories", limit)
        self._check_ids(query.exclude_categories, "exclude_categories", limit)
        return n

    def _num_items(self, value: int, field_name: str) -> int:
        limit = self._settings.max_num_items
        if value == 0:
            return min(self._settings.default_num_items, limit)
        if not 1 <= value <= limit:
            raise InvalidRequest(f"{field_name}: must be between 1 and {limit} (0 means "
                                 f"{self._settings.default_num_items}), got {value}")
        return int(value)

    @staticmethod
    def _check_ids(ids: Sequence[str], field_name: str, limit: int) -> None:
        if len(ids) > limit:
            raise InvalidRequest(f"{field_name}: at most {limit} entries allowed, got {len(ids)}")
        for i, value in enumerate(ids):
            if not value:
                raise InvalidRequest(f"{field_name}: entry {i} is an empty string; send only non-empty ids")

    # ------------------------------------------------------------------------------------------- computation

    def _today(self) -> int:
        """Reference day for "days since": the data's last day, aged by the model's time in service."""
        if self._created is None:
            return self._model.data_end_day
        age_days = (self._clock() - self._created).days
        return self._model.data_end_day + max(0, age_days)

    def _context(self, customer_row: int, channel_row: int, store_row: int,
                 context_items: np.ndarray) -> RankingContext:
        return RankingContext(customer_row=customer_row, channel_row=channel_row, store_row=store_row,
                              context_items=context_items, today=self._today(),
                              history=self._model.history(customer_row))

    def _channel_filter(self, channel: str) -> tuple[ItemFilter, tuple[str, ...]]:
        """The channel part of a filter for an optional ``channel`` (cleaned), and the notice when unknown."""
        m = self._model
        row = m.channel_row(channel) if channel else -1
        if row >= 0 or not channel:
            return ItemFilter(m, row), ()
        notice = (f"channel {channel!r}: model {m.version} has no data for it (known: "
                  f"{', '.join(m.channels) or 'none'}); only items sold on every channel are suggested")
        return ItemFilter(m, -1, sold_everywhere=self._sold_everywhere), (notice,)

    def _in_stock(self, store_id: str) -> np.ndarray | None:
        return self._stock.in_stock(store_id) if self._stock is not None and store_id else None

    def _fill_notices(self, fill: Fill, store_id: str, stock_checked: bool, shown: int, n: int
                      ) -> tuple[str, ...]:
        """Notices (and the stock log line) for what the fill did; ``shown`` items of ``n`` asked."""
        if fill.stock_emptied:
            self._stock_log.record(store_id)
            return (f"store {store_id}: no suggested item is in stock there; these are the channel's popular "
                    "items, stock not checked",)
        if shown < n:
            limits = "channel, categories, exclusions and the store's stock" if stock_checked \
                else "channel, categories and exclusions"
            return (f"{shown} of {n} items: the {limits} of this request allow no more",)
        return ()

    def _select(self, customer_row: int, channel_row: int, store_row: int, context_rows: np.ndarray,
                exclude_rows: np.ndarray, category_allowed: np.ndarray | None, in_stock: np.ndarray | None,
                sold_everywhere: np.ndarray | None, n: int, live: LiveRows | None = None,
                ranked: Ranked | None = None) -> _Selection:
        """The Recommend answer as rows (the one ranking path of :meth:`recommend` and
        :meth:`top_item_rows`): rank, filter, then fill from popularity when the filters leave it short.
        ``live`` rows join the context for ranking only; its hidden purchases are blocked. ``ranked`` is the
        ranking :meth:`recommend_batch` computed for this query in its batch (None: rank here)."""
        ranking_rows = context_rows if live is None else ordered_unique(np.concatenate([context_rows, live.context]))
        ctx = self._context(customer_row, channel_row, store_row, ranking_rows)
        applied = self._paths.policy(customer_row, channel_row)
        hidden = applied.hidden_items(ctx) if applied is not None else _NO_ROWS
        blocked = np.unique(np.concatenate([context_rows, exclude_rows, hidden,
                                            live.hidden if live is not None else _NO_ROWS]))
        item_filter = ItemFilter(self._model, channel_row, category_allowed, blocked, in_stock, sold_everywhere)
        if ranked is None:
            ranked = self._paths.rank(ctx, n, blocked.size, applied)
        chosen = np.flatnonzero(item_filter.allows(ranked.items))[:n]
        fill = fill_popular(self._popularity, ctx, item_filter, ranked.items[chosen], n - chosen.size)
        return _Selection(ctx, ranked, chosen, fill, ranked.policy)

    def _recommend(self, query: RecommendQuery, n: int, ranked: Ranked | None = None) -> RecommendResult:
        m = self._model
        live = query.live
        customer_row = live.customer_row if live is not None else m.resolve_customer(query.customer_id)
        context_all = m.items.lookup(query.context_item_ids)
        exclude_all = m.items.lookup(query.exclude_item_ids)
        unknown = unknown_ids([*query.context_item_ids, *query.exclude_item_ids],
                              np.concatenate([context_all, exclude_all]))
        category_allowed, unknown_categories = category_filter(m, query.include_categories,
                                                               query.exclude_categories)
        channel_filter, notices = self._channel_filter(query.channel)
        in_stock = self._in_stock(query.store_id)
        store_row = m.stores.row(query.store_id) if query.store_id else -1
        exclude_rows = exclude_all[exclude_all >= 0].astype(np.int64)
        if unknown_categories:
            notices += (f"categories {', '.join(map(repr, unknown_categories))}: no item of model {m.version} "
                        "has them",)

        def result(out: list[Suggestion], policy: str, fill: Fill | None) -> RecommendResult:
            return RecommendResult(
                items=tuple(out), model_version=m.version,
                resolved_customer_id=m.customer_id(customer_row) if customer_row >= 0 else "",
                known_customer=customer_row >= 0, policy=policy, unknown_item_ids=tuple(unknown),
                unknown_categories=unknown_categories, unknown_channel=channel_filter.sold_everywhere is not None,
                fallback=fill.fallback if fill is not None else "",
                notices=notices if fill is None else
                notices + self._fill_notices(fill, query.store_id, in_stock is not None, len(out), n))

        # Nothing changed since the nightly ranking (no live events, no context): its stored list, filtered
        # here, is what live ranking would answer (recsvc.ranking.stored); live ranking when it runs short.
        if (self._stored is not None and customer_row >= 0 and not query.context_item_ids
                and (live is None or not live.events) and (store_row < 0 or STORED_STORE_CALLS)):
            stored = self._stored_answer(customer_row, channel_filter.channel_row, store_row, exclude_rows,
                                         category_allowed, in_stock, n)
            if stored is not None:
                answer, policy = stored
                return result(suggestions(m, answer.items, answer.scores, answer.reasons), policy, None)

        rows = (live_rows(m, live, m.history(customer_row), self._today(), self._settings.max_context_items)
                if live is not None else None)
        chosen = self._select(customer_row, channel_filter.channel_row, store_row, ordered_unique(context_all),
                              exclude_rows, category_allowed, in_stock, channel_filter.sold_everywhere, n, rows,
                              ranked)
        ranked, fill, ctx = chosen.ranked, chosen.fill, chosen.ctx
        reasons = ranked.reasons(chosen.chosen, m, ctx)
        if rows is not None:
            reasons = with_live_reasons(m, reasons, rows.purchases, int(self._clock().timestamp() * 1000))
        out = suggestions(m, ranked.items[chosen.chosen], ranked.scores[chosen.chosen], reasons)
        if len(fill):
            rrf = self._weights.popularity / (self._weights.rank_offset + 1.0 + np.arange(len(fill)))
            scores = continue_below(out[-1].score if out else None, rrf)
            out += suggestions(m, fill.items, scores, fill.reasons(m, ctx))
        return result(out, chosen.policy, fill)

    def _stored_answer(self, customer_row: int, channel_row: int, store_row: int, exclude_rows: np.ndarray,
                       category_allowed: np.ndarray | None, in_stock: np.ndarray | None, n: int
                       ) -> tuple[StoredAnswer, str] | None:
        """The stored list of a known customer with the request's filters applied, and the policy live
        ranking would report; None when the customer is not on the learned path or the list runs short."""
        assert self._stored is not None
        applied = self._paths.policy(customer_row, channel_row)
        if applied is not None and applied.coldstart:
            return None
        ctx = self._context(customer_row, channel_row, store_row, _NO_ROWS)
        hidden = applied.hidden_items(ctx) if applied is not None else _NO_ROWS
        blocked = np.unique(np.concatenate([exclude_rows, hidden])) if hidden.size else np.unique(exclude_rows)
        item_filter = ItemFilter(self._model, channel_row, category_allowed, blocked, in_stock, None)
        answer = self._stored.answer(ctx, item_filter, n)
        if answer is None:
            return None
        return answer, (applied.name if applied is not None else "") or POLICY_LEARNED

    def ranked_pools(self, customer_rows: Sequence[int], channel_row: int) -> list[Ranked | None]:
        """For each known customer row, the learned ranker's order of their pool on a known channel, the
        items not sellable there left out, before any request filter (no store, no context, no live events):
        what the stored lists hold (:mod:`recsvc.ranking.batch`), the trees evaluated once for all of them.
        None for a customer not ranked by the learned ranker (no ranker, custom sources, cold start, a
        channel where model selection chose a baseline) or one a channel policy hides items from (the caller
        ranks those through :meth:`recommend`)."""
        return self.ranked_pools_on(customer_rows, [channel_row] * len(customer_rows))

    def ranked_pools_on(self, customer_rows: Sequence[int], channel_rows: Sequence[int]) -> list[Ranked | None]:
        """:meth:`ranked_pools` for (customer row, channel row) pairs, all ranked in one batch: the pairs of one
        customer on several channels share the candidate lists that do not depend on the channel."""
        learned = self._paths.learned
        out: list[Ranked | None] = [None] * len(customer_rows)
        if learned is None:
            return out
        at: list[int] = []
        names: list[str] = []
        for i, (row, channel_row) in enumerate(zip(customer_rows, channel_rows, strict=True)):
            if row < 0 or channel_row < 0:
                continue
            applied = self._paths.policy(row, channel_row)
            if applied is not None and (applied.coldstart or not applied.repurchase
                                        or applied.exclude_bought_within_days > 0):
                continue
            name = self._paths.learned_path(row, channel_row, applied)
            if name is None:
                continue  # model selection chose a baseline on this channel: served live, by that baseline
            at.append(i)
            names.append(name)
        ranked = learned.rank_many([self._context(int(customer_rows[i]), int(channel_rows[i]), -1, _NO_ROWS)
                                    for i in at])
        for i, name, result in zip(at, names, ranked, strict=True):
            pool = result.pool
            items = pool.items[result.order]
            keep = np.flatnonzero(self._model.channel_mask(int(channel_rows[i]), items))
            out[i] = Ranked(items[keep], result.scores[keep], pool.lists, pool.reason_list[result.order][keep],
                            pool.reason_position[result.order][keep], name)
        return out

    def recommend_batch(self, queries: Sequence[RecommendQuery]) -> list[RecommendResult]:
        """:meth:`recommend` for each query, in order, the same answers (each query is validated the same way
        and raises what :meth:`recommend` raises): the queries live ranking would rank on the learned path
        have their pools built and scored together (one tree evaluation for the batch), the rest (stored
        answers, other paths) are answered one by one. For campaigns and other batch callers; a live
        request is a batch of one (:meth:`recommend`)."""
        m = self._model
        prepared = [(query, self._checked(query)) for query in queries]
        contexts: list[RankingContext] = []
        names: list[str] = []
        at: list[int] = []
        learned = self._paths.learned
        for i, (query, _n) in enumerate(prepared):
            # only the plain case (no context, no live events, no store): what campaigns and the nightly ask
            if learned is None or query.context_item_ids or query.live is not None or query.store_id:
                continue
            row = m.resolve_customer(query.customer_id)
            channel_row = self._channel_filter(query.channel)[0].channel_row
            if row < 0 or (self._stored is not None and channel_row >= 0):
                continue  # unknown: popular; a stored list answers it (or live ranking, rarely, one by one)
            applied = self._paths.policy(row, channel_row)
            name = self._paths.learned_path(row, channel_row, applied)
            if name is None:
                continue
            at.append(i)
            names.append(name)
            contexts.append(self._context(row, channel_row, -1, _NO_ROWS))
        ranked: list[Ranked | None] = [None] * len(prepared)
        for i, name, result in zip(at, names, learned.rank_many(contexts) if learned is not None and contexts
                                   else [], strict=True):
            pool = result.pool
            ranked[i] = Ranked(pool.items[result.order], result.scores, pool.lists, pool.reason_list[result.order],
                               pool.reason_position[result.order], name)
        return [self._recommend(query, n, ranked[i]) for i, (query, n) in enumerate(prepared)]

    def _bundle(self, query: BundleQuery, n: int, size: int) -> BundleResult:
        m = self._model
        rows_all = m.items.lookup(query.basket_item_ids)
        unknown = tuple(unknown_ids(query.basket_item_ids, rows_all))
        basket = ordered_unique(rows_all)
        channel_filter, notices = self._channel_filter(query.channel)
        store_row = m.stores.row(query.store_id) if query.store_id else -1
        ctx = self._context(-1, channel_filter.channel_row, store_row, basket)
        in_stock = self._in_stock(query.store_id)
        hidden = _NO_ROWS if query.live is None else live_rows(
            m, query.live, m.history(query.live.customer_row), self._today(), 0).hidden
        item_filter = ItemFilter(m, channel_filter.channel_row, None, np.unique(np.concatenate([basket, hidden])),
                                 in_stock, channel_filter.sold_everywhere)
        done = self._bundles.complete(basket, ctx, item_filter, n, size)
        notices += self._fill_notices(done.fill, query.store_id, in_stock is not None, len(done.items), n)
        return BundleResult(items=done.items, bundle=done.bundle, model_version=m.version, unknown_item_ids=unknown,
                            unknown_channel=channel_filter.sold_everywhere is not None, fallback=done.fill.fallback,
                            notices=notices)

    def _similar_items(self, row: int, n: int, channel_filter: ItemFilter) -> list[Suggestion]:
        m = self._model
        item_filter = ItemFilter(m, channel_filter.channel_row, blocked=np.array([row], dtype=np.int64),
                                 sold_everywhere=channel_filter.sold_everywhere)
        best, scores, methods = similar_rows(m, row, n, item_filter.allows)  # the trainer's chosen method
        reasons = {method: similar_reason(m, method, row) for method in set(methods)}
        return suggestions(m, best, scores, [reasons[method] for method in methods])
