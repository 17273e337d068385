"""Approximate top-k by ALS score (inner product) for large catalogs, from the faiss index the trainer stored.

Scoring a customer against the whole catalog costs one pass over ``n_items x f`` factors plus a partial sort
of ``n_items`` scores: ~0.5 ms at 100k items, ~10-15 ms at 1M, which is too slow for a 20 ms p99 under
load. For catalogs of at least ``TrainingSettings.ann_min_items`` the trainer therefore stores an inverted
file index (faiss ``IndexIVF``) over the item factors and records its measured recall@10 against exact
scoring in the manifest; smaller catalogs keep exact scoring (no index in the set, :func:`load_ann` returns
``None``).

Why faiss and an IVF index:

* the artifact contract is numpy arrays loaded with ``allow_pickle=False``; ``faiss.serialize_index`` gives
  the index as a ``uint8`` array, stored in the artifact set and checksummed like every other array
  (hnswlib can only save to its own files);
* ALS scores are inner products, not distances. Items are mapped to ``[x, sqrt(M^2 - |x|^2)]`` with ``M``
  the largest item norm and the query to ``[q, 0]``; then ``|q' - x'|^2 = |q|^2 + M^2 - 2 q.x``, so the
  nearest items by L2 are exactly the items with the largest inner product (the standard MIPS to
  nearest-neighbour reduction), and any L2 index applies;
* an IVF index on the augmented vectors kept recall@10 >= 0.95 at a fraction of a millisecond per query on
  clustered factors, while HNSW graphs on the same augmented vectors reached far lower recall (the extra
  coordinate makes the data very skewed; see ``benchmarks/README.md``). With ``SQ8`` encoding the index holds
  one byte per dimension (~65 MB for 1M x 64 factors).

The stored format (array, metadata keys, kinds and spaces) is the artifact part's
(:mod:`recsvc.artifacts.parts.ann`); this module turns a validated part into a searchable index.

Every search re-scores its candidates exactly against the model's own factors and returns them best first,
so the scores a caller sees are true ALS scores; only which items make the list is approximate. The
candidate depth is twice the requested ``k`` (at least ``k + 10``), which is also how the trainer measured
the recall it recorded.

The same machinery serves a second, optional index by cosine over unit-length item factors
(:mod:`recsvc.artifacts.parts.ann_cosine`): SimilarItems and the "similar to the basket" fill of
RecommendBundle otherwise scan the whole catalog per request (~25 ms at 1M items).

faiss is an optional dependency of the server (the ``ann`` extra). Without it a set that carries an index
is still served, by exact scoring, with one warning at load.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping
from typing import Any

import numpy as np

from recsvc.artifacts import ArtifactError
from recsvc.artifacts.parts.ann import KIND_FAISS_IVF, SPACE_COSINE, SPACE_INNER_PRODUCT, AnnIndexPart

logger = logging.getLogger(__name__)

_faiss_threads_lock = threading.Lock()
_faiss_threads_set = False


class AnnUnavailable(Exception):
    """The index cannot be used here (faiss is not installed); the caller falls back to exact scoring."""


class AnnIndexError(ArtifactError):
    """The stored index does not match the model it came with (wrong size, width or kind): the set is
    inconsistent and is refused like any other corrupt set."""


def import_faiss() -> Any:
    """The faiss module, or :class:`AnnUnavailable` naming the extra to install."""
    try:
        import faiss
    except ImportError as exc:
        raise AnnUnavailable("faiss is not installed (pip install 'recsvc[ann]' or faiss-cpu)") from exc
    return faiss


def augment_items(item_factors: np.ndarray) -> tuple[np.ndarray, float]:
    """Item factors ``[n, f]`` as ``[n, f + 1]`` float32 vectors whose L2 order is the inner-product order.

    Returns the augmented vectors and ``M``, the largest item norm (see the module docstring). Items with
    zero factors get ``[0, M]``: as far from every query as the weakest item can be, score 0.
    """
    factors = np.asarray(item_factors, dtype=np.float32)
    norms_sq = np.einsum("ij,ij->i", factors, factors, dtype=np.float64)
    max_norm = float(np.sqrt(norms_sq.max())) if norms_sq.size else 0.0
    extra = np.sqrt(np.maximum(max_norm * max_norm - norms_sq, 0.0)).astype(np.float32)
    return np.hstack([factors, extra[:, None]]), max_norm


def candidate_depth(k: int) -> int:
    """How many candidates a search re-scores exactly for a top-``k`` request."""
    return max(2 * int(k), int(k) + 10)


class AnnIndex:
    """A top-k index over one model's item factors, by inner product or by cosine; thread-safe to search.

    Parameters
    ----------
    index
        A faiss IVF index (``ntotal == n_items``) over :func:`augment_items` vectors (inner product) or over
        unit-length item factors (cosine).
    item_vectors
        The vectors candidates are re-scored against, row-major ``[n_items, f]`` float32: the model's item
        factors (inner product) or its unit-length item factors (cosine). Row-major because a search gathers
        the rows of the few hundred candidates it re-scores: one run of cache lines per row, where columns of
        a transposed copy cost a cache miss per factor (~30 us per query on 100k items).
    item_norms
        When given, the rows of ``item_vectors`` are divided by these before scoring (a norm of 0 leaves its
        row as it is): the cosine index re-scores against the raw factors and their norms instead of a third
        copy of the factors.
    nprobe
        Inverted lists visited per query (the recall/latency knob the trainer tuned).
    meta
        The manifest's ``extra["ann"]`` / ``extra["ann_cosine"]`` (kind, space, recall, params).
    """

    def __init__(self, index: Any, item_vectors: np.ndarray, nprobe: int, meta: Mapping[str, Any],
                 item_norms: np.ndarray | None = None) -> None:
        faiss = import_faiss()
        n_items, dims = item_vectors.shape
        self.space: str = str(meta.get("space", SPACE_INNER_PRODUCT))
        if self.space not in (SPACE_INNER_PRODUCT, SPACE_COSINE):
            raise AnnIndexError(f"unknown ANN index space {self.space!r}")
        self._augmented = self.space == SPACE_INNER_PRODUCT
        width = dims + 1 if self._augmented else dims
        if int(index.ntotal) != n_items:
            raise AnnIndexError(f"the {self.space} index holds {index.ntotal} items, the model {n_items}")
        if int(index.d) != width:
            raise AnnIndexError(f"the {self.space} index has width {index.d}, expected {width}")
        try:
            ivf = faiss.extract_index_ivf(index)
        except RuntimeError as exc:  # a readable index of another family
            raise AnnIndexError(f"the {self.space} index is not an IVF index: {exc}") from exc
        # nprobe is set once here, before any search: the index is only read afterwards, which faiss allows
        # from many threads at once.
        ivf.nprobe = max(1, min(int(nprobe), int(ivf.nlist)))
        if item_norms is not None and item_norms.shape != (n_items,):
            raise AnnIndexError(f"{item_norms.shape[0]} item norms for {n_items} items")
        self._index = index
        self._item_vectors = item_vectors
        self._item_norms = item_norms
        self._dims = dims
        self.nprobe: int = int(ivf.nprobe)
        self.nlist: int = int(ivf.nlist)
        self.meta: Mapping[str, Any] = dict(meta)
        self.recall_at_10: float = float(self.meta.get("recall_at_10", float("nan")))

    @classmethod
    def from_array(cls, serialized: np.ndarray, meta: Mapping[str, Any], item_vectors: np.ndarray,
                   item_norms: np.ndarray | None = None) -> AnnIndex:
        """Deserialise an index array (``ann_index`` or ``ann_cosine_index``, uint8) of an artifact set.

        Raises :class:`AnnUnavailable` without faiss and :class:`AnnIndexError` when the array or its
        metadata do not fit the model.
        """
        faiss = import_faiss()
        _single_threaded_faiss(faiss)
        if meta.get("kind") != KIND_FAISS_IVF:
            raise AnnIndexError(f"unknown ANN index kind {meta.get('kind')!r} (this server reads {KIND_FAISS_IVF})")
        data = np.asarray(serialized)
        if data.dtype != np.uint8 or data.ndim != 1:
            raise AnnIndexError(f"an ANN index must be a 1-d uint8 array, got {data.dtype}{data.shape}")
        try:
            index = faiss.deserialize_index(np.ascontiguousarray(data))
        except RuntimeError as exc:  # faiss raises RuntimeError on a malformed stream
            raise AnnIndexError(f"the ANN index is not a readable faiss index: {exc}") from exc
        return cls(index, item_vectors, int(meta.get("nprobe", 1)), meta, item_norms)

    @property
    def n_items(self) -> int:
        return int(self._index.ntotal)

    def search(self, vector: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """The (approximately) ``k`` highest-scoring item rows for ``vector``, best first.

        Returns ``(rows, scores)``: int64 rows and their exact float32 scores ``vector . item`` against the
        index's vectors (ALS scores, or cosine times ``|vector|`` for a cosine index), ties by lower row (as
        exact :func:`~recsvc.ranking.sources.top_k`). Fewer than ``k`` rows only when the visited lists hold
        fewer items (tiny catalogs).
        """
        k = min(int(k), self.n_items)
        if k <= 0:
            return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float32)
        vector = np.asarray(vector, dtype=np.float32)
        if self._augmented:
            query = np.zeros((1, self._dims + 1), dtype=np.float32)
            query[0, :-1] = vector
        else:
            norm = float(np.linalg.norm(vector))
            query = (vector / (norm if norm > 0 else 1.0)).reshape(1, -1)
        _, found = self._index.search(query, min(candidate_depth(k), self.n_items))
        rows = found[0]
        rows = rows[rows >= 0].astype(np.int64)
        candidates = self._item_vectors[rows]
        if self._item_norms is not None:
            norms = self._item_norms[rows]
            candidates = candidates / np.where(norms > 0, norms, np.float32(1.0))[:, None]
        scores = candidates @ np.asarray(vector, dtype=np.float32)
        order = np.lexsort((rows, -scores))[:k]
        return rows[order], scores[order].astype(np.float32)


def _single_threaded_faiss(faiss: Any) -> None:
    """One OpenMP thread for faiss in this process: requests run on many threads (and processes) already,
    and a per-query OpenMP team would only spin on the same two cores."""
    global _faiss_threads_set
    with _faiss_threads_lock:
        if not _faiss_threads_set:
            faiss.omp_set_num_threads(1)
            _faiss_threads_set = True


def load_ann(part: AnnIndexPart | None, item_vectors: np.ndarray,
             item_norms: np.ndarray | None = None) -> AnnIndex | None:
    """The searchable index of a set's ANN part (inner product, or the cosine part with the factors and their
    norms), or ``None`` for exact scoring (no part, or faiss missing — warned).

    Raises
    ------
    AnnIndexError
        An index is stored but does not fit the model (the set is inconsistent; refuse it).
    """
    if part is None:
        return None
    try:
        index = AnnIndex.from_array(part.serialized, {"space": part.space, **part.meta}, item_vectors, item_norms)
    except AnnUnavailable as exc:
        logger.warning("the artifact set carries an ANN index but %s; scoring the full catalog exactly "
                       "(slower on large catalogs)", exc)
        return None
    logger.info("ANN index loaded: %s by %s, %d lists, nprobe %d, recall@10 %.3f at training", KIND_FAISS_IVF,
                index.space, index.nlist, index.nprobe, index.recall_at_10)
    return index
