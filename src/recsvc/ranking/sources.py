"""The one interface every candidate source implements, and the vector helpers sources share.

A candidate source (repurchase, ALS, co-purchase, popularity, ...) proposes up to ``k``
items for one request, best first, each with the numbers its reason needs. The engine blends the lists by
rank, so a source's scores only have to order its own list. Adding a source means adding a module with one
:class:`CandidateSource` subclass and a weight in :class:`~recsvc.ranking.blend.BlendWeights`; the engine has
no per-source branches in its ranking code.

Everything here works on item *rows* (int64) and is vectorised: no Python loop over the catalog or over a
candidate list.
"""

from __future__ import annotations

import abc
import functools
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from recsvc.ranking.model import CustomerHistory, LoadedModel
from recsvc.ranking.reasons import Reason, ReasonKind, explain

_NO_ITEMS = np.zeros(0, dtype=np.int64)
_EMPTY_HISTORY = CustomerHistory(*(np.zeros(0, dtype=dt) for dt in
                                   (np.int32, np.float32, np.int32, np.int32, np.int16, np.int32)))
#: Candidate lists up to this long share their filler columns (:func:`_filled`); longer ones (a popularity
#: fill reading deep into a large catalog) get their own, so the cache never holds catalog-sized arrays.
_SHARED_FILL_MAX = 4096


def _filled(n: int, dtype: type, fill: float, width: int = 0) -> np.ndarray:
    """A read-only ``[n]`` (or ``[n, width]``) array of ``fill``, shared between calls for short lists.

    Sources leave most reason columns at their "unknown" value; building them with ``np.full`` for every
    source of every request was ~7 % of a Recommend call. Candidate lists are never written to (``take``
    copies), so one frozen array per shape serves them all.
    """
    if n > _SHARED_FILL_MAX:
        out: np.ndarray = np.full((n, width) if width else n, fill, dtype=dtype)
        out.setflags(write=False)
        return out
    return _shared_fill(n, dtype, fill, width)


@functools.lru_cache(maxsize=512)
def _shared_fill(n: int, dtype: type, fill: float, width: int) -> np.ndarray:
    out: np.ndarray = np.full((n, width) if width else n, fill, dtype=dtype)
    out.setflags(write=False)
    return out


@dataclass(frozen=True)
class RankingContext:
    """What sources know about one request, already resolved to rows.

    ``customer_row``, ``channel_row`` and ``store_row`` are ``-1`` when unknown (anonymous customer, a
    channel or store the model has no data for). ``context_items`` are the known rows of the items the
    customer looks at or has in the cart. ``today`` is the reference day (days since 1970-01-01) that
    "days since last purchase" counts from. ``history`` is the customer's purchase history (empty when
    unknown).
    """

    customer_row: int = -1
    channel_row: int = -1
    store_row: int = -1
    context_items: np.ndarray = field(default_factory=lambda: _NO_ITEMS)
    today: int = 0
    history: CustomerHistory = field(default_factory=lambda: _EMPTY_HISTORY)


#: ``(item rows [m], request) -> reason item rows [m, 2]`` (see :attr:`Candidates.resolve_reason_items`).
ReasonItemsResolver = Callable[[np.ndarray, "RankingContext"], np.ndarray]


@dataclass(frozen=True)
class Candidates:
    """One source's proposals, best first, with the per-item numbers their reasons are built from.

    All arrays have one entry per candidate: ``items`` (int64 item rows, unique, best first — the blend uses
    only this order), ``scores`` (float32, the source's own measure, for logs and tests), ``kinds`` (int8
    :class:`ReasonKind`),
    ``reason_items`` (int64 ``[n, 2]`` item rows behind the reason, ``-1`` padded), ``days_since`` (int32,
    ``-1`` unknown) and ``interval_days`` (float32, NaN unknown) for BOUGHT_BEFORE, and the last purchase of
    the first reason item — ``source_day`` (int32), ``source_channel`` (int16), ``source_store`` (int32), each
    ``-1`` when unknown.
    """

    source: str
    items: np.ndarray
    scores: np.ndarray
    kinds: np.ndarray
    reason_items: np.ndarray
    days_since: np.ndarray
    interval_days: np.ndarray
    source_day: np.ndarray
    source_channel: np.ndarray
    source_store: np.ndarray
    #: Computes ``reason_items`` for some of the items (``[m]`` item rows -> int64 ``[m, 2]``) when the
    #: source defers that work to the few candidates that are shown (``reason_items`` is then all ``-1``).
    resolve_reason_items: ReasonItemsResolver | None = None

    @classmethod
    def build(cls, source: str, items: np.ndarray, scores: np.ndarray, kinds: ReasonKind | np.ndarray,
              reason_items: np.ndarray | None = None, *, days_since: np.ndarray | None = None,
              interval_days: np.ndarray | None = None, source_day: np.ndarray | None = None,
              source_channel: np.ndarray | None = None, source_store: np.ndarray | None = None,
              resolve_reason_items: ReasonItemsResolver | None = None) -> Candidates:
        """Candidates with defaults (``-1`` / NaN) for the optional columns; the caller orders ``items``."""
        items = np.asarray(items, dtype=np.int64)
        n = items.size

        def col(value: np.ndarray | None, dtype: type, fill: float) -> np.ndarray:
            return _filled(n, dtype, fill) if value is None else np.asarray(value, dtype=dtype)

        if reason_items is None:
            reasons = _filled(n, np.int64, -1, 2)
        else:
            given = np.asarray(reason_items, dtype=np.int64)
            given = given[:, None] if given.ndim == 1 else given
            if given.shape[1] >= 2:
                reasons = given[:, :2]
            else:  # one reason item per candidate (the usual case): pad the second column with -1
                reasons = np.full((n, 2), -1, dtype=np.int64)
                reasons[:, :given.shape[1]] = given
        kind_col = (_filled(n, np.int8, int(kinds)) if isinstance(kinds, ReasonKind)
                    else np.asarray(kinds, dtype=np.int8))
        return cls(source=source, items=items, scores=np.asarray(scores, dtype=np.float32), kinds=kind_col,
                   reason_items=reasons, days_since=col(days_since, np.int32, -1),
                   interval_days=col(interval_days, np.float32, np.nan), source_day=col(source_day, np.int32, -1),
                   source_channel=col(source_channel, np.int16, -1), source_store=col(source_store, np.int32, -1),
                   resolve_reason_items=resolve_reason_items)

    @classmethod
    def empty(cls, source: str) -> Candidates:
        return cls.build(source, _NO_ITEMS, np.zeros(0, dtype=np.float32), ReasonKind.UNSPECIFIED)

    def __len__(self) -> int:
        return int(self.items.size)

    def take(self, index: np.ndarray) -> Candidates:
        """The candidates at ``index`` (an int array or a boolean mask), in that order."""
        return Candidates(self.source, self.items[index], self.scores[index], self.kinds[index],
                          self.reason_items[index], self.days_since[index], self.interval_days[index],
                          self.source_day[index], self.source_channel[index], self.source_store[index],
                          self.resolve_reason_items)

    def reasons_at(self, positions: np.ndarray, model: LoadedModel, ctx: RankingContext) -> list[Reason]:
        """The display reasons of the candidates at ``positions`` (call it only for the final suggestions).

        Columns are read once for all positions (``tolist``), not element by element: a response's reasons
        were a sixth of a Recommend call.
        """
        at = np.asarray(positions, dtype=np.int64)
        if at.size == 0:
            return []
        reason_items = (self.resolve_reason_items(self.items[at], ctx) if self.resolve_reason_items is not None
                        else self.reason_items[at])
        columns = zip(self.kinds[at].tolist(), reason_items.tolist(), self.days_since[at].tolist(),
                      self.interval_days[at].tolist(), self.source_day[at].tolist(),
                      self.source_channel[at].tolist(), self.source_store[at].tolist(), strict=True)
        return [explain(model, ReasonKind(kind), rows, days_since=days, interval_days=interval, source_day=day,
                        source_channel=channel, source_store=store, request_channel=ctx.channel_row,
                        request_store=ctx.store_row)
                for kind, rows, days, interval, day, channel, store in columns]


class CandidateSource(abc.ABC):
    """Proposes candidates for one request from one kind of evidence.

    Implementations are built once per loaded model, hold no per-request state and must be safe to call from
    many threads at once. ``name`` keys the source's weight in the blend.
    """

    name: str = ""
    #: Whether the source has anything to say without a known customer (the engine skips it otherwise).
    needs_customer: bool = False
    #: Whether :meth:`candidates` reads the request's channel or store; a source that reads neither says False,
    #: and a batch asks it once for all channels of a customer (:func:`recsvc.ranking.features.candidate_lists`).
    uses_channel: bool = True

    def __init__(self, model: LoadedModel) -> None:
        self.model = model

    @abc.abstractmethod
    def candidates(self, ctx: RankingContext, k: int) -> Candidates:
        """Up to ``k`` candidates, best first; an empty list when the source has nothing for this request.

        Sources do not filter by channel, category or exclusions: the engine does that once, after blending.
        """


# ---------------------------------------------------------------------------------------------- vector helpers

def top_k(scores: np.ndarray, k: int, tiebreak: np.ndarray | None = None) -> np.ndarray:
    """Indices of the ``k`` largest ``scores``, best first; ties by larger ``tiebreak`` (aligned with
    ``scores``) when given, then by lower index.

    Uses ``argpartition``, so the cost is linear in ``len(scores)`` plus ``k log k`` (plus the entries tied
    with the k-th score, which a tie-break has to look at all of).
    """
    n = int(scores.size)
    k = min(int(k), n)
    if k <= 0:
        return _NO_ITEMS
    part = np.argpartition(scores, n - k)[n - k:] if k < n else np.arange(n)
    if tiebreak is None:
        return part[np.lexsort((part, -scores[part]))].astype(np.int64)
    if k < n:  # entries tied with the k-th score may lie outside the partition and win on the tie-break
        part = np.flatnonzero(scores >= scores[part].min())
    return part[np.lexsort((part, -tiebreak[part], -scores[part]))][:k].astype(np.int64)


#: Above this many element pairs :func:`isin` sorts (``np.isin``) instead of comparing every pair.
_BROADCAST_ISIN_LIMIT = 16_384


def isin(values: np.ndarray, of: np.ndarray) -> np.ndarray:
    """``np.isin(values, of)``, by one broadcast comparison when both are small (the usual request: tens of
    candidates against a basket or a short list), where ``np.isin``'s sorting costs 3-4x more."""
    if values.size * of.size <= _BROADCAST_ISIN_LIMIT:
        return (np.asarray(values)[..., None] == np.asarray(of).reshape(-1)).any(axis=-1)
    return np.isin(values, of)


def csr_gather(indptr: np.ndarray, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Positions of all entries of CSR ``rows`` and, for each, the index into ``rows`` it came from."""
    rows = np.asarray(rows, dtype=np.int64)
    starts = indptr[rows].astype(np.int64)
    lengths = indptr[rows + 1].astype(np.int64) - starts
    owner = np.repeat(np.arange(rows.size, dtype=np.int64), lengths)
    offsets = np.cumsum(lengths) - lengths
    positions = starts[owner] + (np.arange(owner.size, dtype=np.int64) - offsets[owner])
    return positions, owner


@dataclass(frozen=True)
class Grouped:
    """Entries grouped by key: ``keys`` unique ascending, ``sums`` per key, and the index (into the
    ungrouped entries) of the largest and second-largest value per key (``second`` is ``-1`` when a key
    has one entry)."""

    keys: np.ndarray
    sums: np.ndarray
    best: np.ndarray
    second: np.ndarray


def group_by_key(keys: np.ndarray, values: np.ndarray) -> Grouped:
    """Sum ``values`` per key and find each key's strongest entries, without a Python loop."""
    keys = np.asarray(keys, dtype=np.int64)
    values = np.asarray(values, dtype=np.float64)
    if keys.size == 0:
        return Grouped(_NO_ITEMS, np.zeros(0), _NO_ITEMS, _NO_ITEMS)
    order = np.lexsort((-values, keys))
    sorted_keys = keys[order]
    # where a new key starts (the first entry always does); np.r_ would cost ~10 us a call, per request
    new_key = np.empty(sorted_keys.size, dtype=bool)
    new_key[0] = True
    np.not_equal(sorted_keys[1:], sorted_keys[:-1], out=new_key[1:])
    starts = np.flatnonzero(new_key)
    sums = np.add.reduceat(values[order], starts)
    has_second = np.ones(starts.size, dtype=bool)  # a key has a second entry unless the next key starts next
    has_second[:-1] = starts[1:] > starts[:-1] + 1
    has_second[-1] = starts[-1] + 1 < sorted_keys.size
    second = np.where(has_second, order[np.minimum(starts + 1, order.size - 1)], -1)
    return Grouped(sorted_keys[starts], sums, order[starts].astype(np.int64), second.astype(np.int64))
