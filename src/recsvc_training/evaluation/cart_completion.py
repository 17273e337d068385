"""Bundle quality: hide one item of a real test basket and ask each completer for it.

Test baskets are the purchase events of the test window grouped by ``basket_id`` with at least two distinct
items (known to the index). At most ``max_baskets`` are drawn with a fixed seed, one item per basket is
hidden (seeded), the rest is the query; a completer scores HitRate@k and MRR@k on the hidden item. The two
reference completers are fitted on the train split's baskets only.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import scipy.sparse as sp

from recsvc_training.evaluation.metrics import hit_rate_at_k, mrr_at_k, truth_from_lists
from recsvc_training.evaluation.protocols import Completer
from recsvc_training.evaluation.split import EvalIndex, TimeSplit
from recsvc_training.evaluation.topk import fill_unique, top_k_dense
from recsvc_training.input import columns as C

logger = logging.getLogger(__name__)

DEFAULT_MAX_BASKETS = 5000
DEFAULT_SEED = 20240601


@dataclass(frozen=True, eq=False)
class CartQueries:
    """Hide-one queries: ``context[i]`` (sorted item rows left in basket i) should yield ``hidden[i]``."""

    basket_ids: np.ndarray
    context: list[np.ndarray]
    hidden: np.ndarray
    #: Baskets in the test window with >= 2 distinct items, before the cap.
    n_eligible: int
    #: Items in the split's index (the width of the item-row space).
    n_items: int

    def __len__(self) -> int:
        return len(self.hidden)


@dataclass(frozen=True)
class CompletionResult:
    """HitRate@k and MRR@k of one completer on one set of queries (NaN when there are no queries)."""

    k: int
    hit_rate: float
    mrr: float
    n_baskets: int
    seconds: float

    def to_dict(self) -> dict[str, float]:
        return {f"hit_rate@{self.k}": self.hit_rate, f"mrr@{self.k}": self.mrr, "n_baskets": self.n_baskets,
                "seconds": self.seconds}


def _baskets(events: pd.DataFrame, index: EvalIndex) -> pd.DataFrame:
    """Distinct (basket, item row) pairs of purchase events, sorted; unknown items dropped."""
    bought = events[events[C.EVENT] == C.PURCHASE]
    frame = pd.DataFrame({"b": bought[C.BASKET_ID].astype(str).to_numpy(),
                          "i": index.item_rows(bought[C.ITEM_ID].to_numpy())})
    return frame[frame["i"] >= 0].drop_duplicates().sort_values(["b", "i"], kind="stable")


def build_cart_queries(split: TimeSplit, max_baskets: int = DEFAULT_MAX_BASKETS,
                       seed: int = DEFAULT_SEED) -> CartQueries:
    """Draw hide-one queries from the test window of ``split`` (same seed, same queries)."""
    pairs = _baskets(split.test, split.index)
    sizes = pairs.groupby("b", sort=True).size()
    eligible = sizes[sizes >= 2]
    rng = np.random.default_rng(seed)
    chosen = eligible.index.to_numpy()
    if len(chosen) > max_baskets:
        chosen = np.sort(rng.choice(chosen, size=max_baskets, replace=False))
    kept = pairs[pairs["b"].isin(chosen)]
    basket_ids, starts, counts = np.unique(kept["b"].to_numpy(), return_index=True, return_counts=True)
    items = kept["i"].to_numpy(dtype=np.int64)
    hide = starts + np.floor(rng.random(len(starts)) * counts).astype(np.int64)
    is_hidden = np.zeros(len(items), dtype=bool)
    is_hidden[hide] = True
    context_items = items[~is_hidden]
    context = np.split(context_items, np.cumsum(counts - 1)[:-1]) if len(counts) else []
    logger.info("cart completion: %d of %d eligible test baskets", len(basket_ids), len(eligible))
    return CartQueries(basket_ids=basket_ids, context=list(context), hidden=items[hide],
                       n_eligible=len(eligible), n_items=split.index.n_items)


def evaluate_completer(queries: CartQueries, completer: Completer, k: int = 10) -> CompletionResult:
    """HitRate@k and MRR@k of ``completer`` on ``queries``; raises ``ValueError`` on a malformed answer."""
    start = time.perf_counter()
    recs = np.asarray(completer.complete(queries.context, k)) if len(queries) else np.zeros((0, k), np.int64)
    seconds = time.perf_counter() - start
    name = getattr(completer, "name", type(completer).__name__)
    if recs.ndim != 2 or recs.shape[0] != len(queries) or not np.issubdtype(recs.dtype, np.integer):
        raise ValueError(f"completer {name!r} returned {recs.dtype} {recs.shape}, "
                         f"expected integer [{len(queries)}, {k}]")
    if recs.size and (recs.min() < -1 or recs.max() >= queries.n_items):
        raise ValueError(f"completer {name!r} returned item rows outside [-1, {queries.n_items})")
    n = len(queries)
    truth = sp.csr_matrix((np.ones(n, dtype=np.float32), queries.hidden, np.arange(n + 1)),
                          shape=(n, queries.n_items))
    return CompletionResult(k=k, hit_rate=hit_rate_at_k(recs, truth, k), mrr=mrr_at_k(recs, truth, k),
                            n_baskets=len(queries), seconds=seconds)


def _context_matrix(basket_item_rows: Sequence[np.ndarray], n_items: int) -> sp.csr_matrix:
    return truth_from_lists(list(basket_item_rows), n_items)


class PopularityCompleter:
    """The most frequently bought items (train baskets containing them), minus what is in the basket."""

    name = "popularity"

    def __init__(self) -> None:
        self.ranking = np.zeros(0, dtype=np.int64)
        self.n_items = 0

    def fit(self, train_events: pd.DataFrame, index: EvalIndex) -> PopularityCompleter:
        pairs = _baskets(train_events, index)
        counts = np.bincount(pairs["i"].to_numpy(dtype=np.int64), minlength=index.n_items)
        self.ranking = np.lexsort((np.arange(index.n_items), -counts)).astype(np.int64)
        self.n_items = index.n_items
        return self

    def complete(self, basket_item_rows: Sequence[np.ndarray], k: int) -> np.ndarray:
        n = len(basket_item_rows)
        longest = max((len(b) for b in basket_item_rows), default=0)
        candidates = np.tile(self.ranking[: k + longest], (n, 1))
        context = _context_matrix(basket_item_rows, self.n_items)
        return fill_unique(candidates, k, self.n_items, exclude=context)


class CoOccurrenceCompleter:
    """Plain co-occurrence confidence: score(b) = sum over basket items a of n_ab / n_a, filled by popularity.

    ``n_ab`` = train baskets holding both, ``n_a`` = train baskets holding ``a``; no shrinkage, any pair seen
    once counts. The reference the trainer's co-purchase model (Wilson bound, support) has to beat.
    """

    name = "cooccurrence"

    def __init__(self, batch_size: int = 512) -> None:
        self.batch_size = batch_size
        self.confidence = sp.csr_matrix((0, 0), dtype=np.float32)
        self.popularity = PopularityCompleter()

    def fit(self, train_events: pd.DataFrame, index: EvalIndex) -> CoOccurrenceCompleter:
        self.popularity.fit(train_events, index)
        pairs = _baskets(train_events, index)
        basket_rows = pd.factorize(pairs["b"])[0]
        baskets = sp.csr_matrix((np.ones(len(pairs), dtype=np.float32), (basket_rows, pairs["i"].to_numpy())),
                                shape=(int(basket_rows.max(initial=-1)) + 1, index.n_items))
        co = (baskets.T @ baskets).tocsr()
        n_a = co.diagonal()
        co.setdiag(0)
        co.eliminate_zeros()
        inv = np.divide(1.0, n_a, out=np.zeros_like(n_a), where=n_a > 0)
        self.confidence = sp.csr_matrix(sp.diags(inv.astype(np.float32)) @ co)  # row a: n_ab / n_a
        logger.info("co-occurrence completer: %d item pairs from %d train baskets", self.confidence.nnz,
                    baskets.shape[0])
        return self

    def complete(self, basket_item_rows: Sequence[np.ndarray], k: int) -> np.ndarray:
        n_items = self.confidence.shape[0]
        context = _context_matrix(basket_item_rows, n_items)
        longest = max((len(b) for b in basket_item_rows), default=0)
        fallback = self.popularity.ranking[: k + longest]
        out = np.full((len(basket_item_rows), k), -1, dtype=np.int64)
        # Dense scores per batch: bounded memory, and argpartition beats sorting millions of sparse entries.
        for start in range(0, len(basket_item_rows), self.batch_size):
            ctx = context[start : start + self.batch_size]
            scores = np.asarray((ctx @ self.confidence).todense(), dtype=np.float32)
            scores[ctx.nonzero()] = 0.0  # never suggest what is already in the basket
            own = top_k_dense(scores, k)
            candidates = np.hstack([own, np.tile(fallback, (len(own), 1))])
            out[start : start + len(own)] = fill_unique(candidates, k, n_items, exclude=ctx)
        return out


def fit_completers(split: TimeSplit) -> dict[str, PopularityCompleter | CoOccurrenceCompleter]:
    """The two reference completers, fitted on ``split.train``'s baskets, keyed by name."""
    return {"popularity": PopularityCompleter().fit(split.train, split.index),
            "cooccurrence": CoOccurrenceCompleter().fit(split.train, split.index)}
