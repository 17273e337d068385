"""The approximate nearest-neighbour index for large catalogs: build, tune, measure, serialise.

:func:`build_ann_index` turns the ALS factors into the optional ``ann_index`` array (a faiss IVF index over
the L2-augmented item factors, serialised to uint8 — see :mod:`recsvc.ranking.ann` for the why) plus the
metadata the manifest carries in ``extra["ann"]``. It only builds for catalogs of at least
``TrainingSettings.ann_min_items`` items; below that, exact scoring is fast enough and nothing is stored.

The search knob ``nprobe`` is tuned here, not guessed: the smallest value of a doubling ladder whose
recall@10 against exact scoring reaches ``ann_target_recall`` on one sample of real customer vectors, then
recall is measured again on a second, disjoint sample and that number is recorded. Both use the server's own
:class:`~recsvc.ranking.ann.AnnIndex.search` (same candidate depth, same exact re-scoring), so the recorded
recall is what a served top-10 gets. An index that cannot reach the target is not shipped (the server then
scores exactly) and the manifest says why.
"""

from __future__ import annotations

import logging
import math
import time
from typing import Any

import numpy as np

from recsvc.artifacts.parts.ann import ANN_ARRAY, KIND_EXACT, KIND_FAISS_IVF, SPACE_COSINE, SPACE_INNER_PRODUCT
from recsvc.artifacts.parts.ann_cosine import COSINE_ARRAY
from recsvc.config import TrainingSettings
from recsvc.ranking.ann import AnnIndex, augment_items, import_faiss

logger = logging.getLogger(__name__)

#: k of the recorded recall@k.
RECALL_K = 10
#: k-means training points per inverted list (faiss wants >= 39; more barely helps, costs build time).
TRAIN_POINTS_PER_LIST = 50
_ENCODINGS = ("SQ8", "SQfp16", "Flat")
#: Tuning queries of the quick check (the recall with every list visited) run before the nprobe ladder ...
QUICK_CHECK_QUERIES = 100
#: ... which is skipped when that ceiling is below the target by more than this (sampling noise on 100
#: queries is about a hundredth).
QUICK_CHECK_MARGIN = 0.03


def default_nlist(n_items: int) -> int:
    """Inverted lists for ``n_items``: ~4 sqrt(n), at least 16, at most n / 39 (faiss' training minimum)."""
    return int(max(1, min(max(16, round(4 * math.sqrt(n_items))), n_items // 39)))


def exact_top_k(user_vectors: np.ndarray, item_factors: np.ndarray, k: int, chunk: int = 64) -> np.ndarray:
    """Exact top-``k`` item rows (as sets, unordered) per user vector, ``[n_users, k]`` int64.

    Scores ``chunk`` users at a time so the score block stays small (``chunk x n_items`` float32).
    """
    k = min(k, item_factors.shape[0])
    out = np.empty((user_vectors.shape[0], k), dtype=np.int64)
    for start in range(0, user_vectors.shape[0], chunk):
        scores = user_vectors[start:start + chunk] @ item_factors.T
        out[start:start + chunk] = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    return out


def measure_recall(index: AnnIndex, user_vectors: np.ndarray, truth: np.ndarray, k: int = RECALL_K,
                   exclude: np.ndarray | None = None) -> tuple[float, float]:
    """Mean recall@k of ``index.search`` against ``truth`` and the mean search time in milliseconds.

    ``exclude`` (one row per query, or None) is left out of the answer, as SimilarItems leaves out the item
    asked about; ``truth`` must already leave it out.
    """
    hits = 0
    started = time.perf_counter()
    for i, (vector, expected) in enumerate(zip(user_vectors, truth, strict=True)):
        if exclude is None:
            rows, _ = index.search(vector, k)
        else:
            rows, _ = index.search(vector, k + 1)
            rows = rows[rows != exclude[i]][:k]
        hits += np.intersect1d(rows, expected, assume_unique=True).size
    seconds = time.perf_counter() - started
    n = max(1, user_vectors.shape[0])
    return hits / (n * truth.shape[1]), 1000.0 * seconds / n


def _sample_users(user_factors: np.ndarray, n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Two disjoint samples (tuning, measuring) of customers with non-zero factors, ``n`` each at most."""
    active = np.flatnonzero(np.any(user_factors != 0, axis=1))
    rng = np.random.default_rng(seed)
    chosen = rng.permutation(active)[: 2 * n]
    half = (chosen.size + 1) // 2
    tune, measure = chosen[:half], chosen[half:]
    if measure.size == 0:  # a handful of customers: measure on the tuning sample rather than on nothing
        measure = tune
    return (np.ascontiguousarray(user_factors[tune], dtype=np.float32),
            np.ascontiguousarray(user_factors[measure], dtype=np.float32))


def _train_ivf(vectors: np.ndarray, settings: TrainingSettings) -> tuple[Any, str, int, int]:
    """An IVF index over ``vectors`` (L2), trained on a seeded sample; returns it, its factory string, nlist
    and the number of training points."""
    faiss = import_faiss()
    n_items, width = vectors.shape
    nlist = int(settings.ann_nlist) or default_nlist(n_items)
    nlist = max(1, min(nlist, n_items))
    factory = f"IVF{nlist},{settings.ann_encoding}"
    index = faiss.index_factory(width, factory, faiss.METRIC_L2)
    rng = np.random.default_rng(settings.als_random_state)
    n_train = min(n_items, TRAIN_POINTS_PER_LIST * nlist)
    index.train(vectors[np.sort(rng.choice(n_items, size=n_train, replace=False))])
    index.add(vectors)
    return index, factory, nlist, n_train


def _tune(index: Any, vectors: np.ndarray, space: str, nlist: int, samples: tuple[np.ndarray, ...],
          target: float) -> tuple[dict[str, float], tuple[int, float, float] | None]:
    """Smallest nprobe of the ladder whose recall on the tuning sample and then on the measuring sample
    reaches ``target``: (recall per nprobe on the tuning sample, (nprobe, recall, ms per search) or None).

    ``samples`` = tuning queries, their truth, measuring queries, their truth, and optionally the rows to
    exclude from each tuning and measuring answer.
    """
    tune_q, tune_truth, measure_q, measure_truth, *excluded = samples
    tune_ex, measure_ex = (excluded[0], excluded[1]) if excluded else (None, None)
    ladder = [p for p in (1, 2, 4, 8, 16, 32, 64, 128, 256, 512) if p < nlist] + [nlist]
    tuning: dict[str, float] = {}
    chosen: tuple[int, float, float] | None = None
    # The quick check: every list visited is the best any nprobe can do. When that ceiling, on a few of the
    # tuning queries, is clearly under the target, no rung of the ladder can reach it: stop before climbing
    # it (on a grocery chain's log the cosine index climbed every rung to 0.70-0.80 and was never shipped).
    quick = min(QUICK_CHECK_QUERIES, tune_q.shape[0])
    if quick < tune_q.shape[0]:
        ceiling, _ = measure_recall(AnnIndex(index, vectors, nlist, {"space": space}), tune_q[:quick],
                                    tune_truth[:quick], exclude=None if tune_ex is None else tune_ex[:quick])
        if ceiling < target - QUICK_CHECK_MARGIN:
            logger.info("ANN (%s): recall@10 with every list visited is %.3f on %d queries, under the target "
                        "%.2f: not tuned", space, ceiling, quick, target)
            return {str(nlist): round(ceiling, 4)}, None
    for nprobe in ladder:
        ann = AnnIndex(index, vectors, nprobe, {"space": space})
        tuned, _ = measure_recall(ann, tune_q, tune_truth, exclude=tune_ex)
        tuning[str(nprobe)] = round(tuned, 4)
        if tuned < target:
            continue
        recall, search_ms = measure_recall(ann, measure_q, measure_truth, exclude=measure_ex)
        chosen = (nprobe, recall, search_ms)
        if recall >= target:
            break
    return tuning, chosen


def _finish(index: Any, array_name: str, meta: dict[str, Any], tuning: dict[str, float],
            chosen: tuple[int, float, float] | None, target: float, started: float
            ) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Serialise the tuned index, or ship none when the target was not reached; fill ``meta``."""
    faiss = import_faiss()
    meta.update(tuning=tuning, build_seconds=round(time.perf_counter() - started, 2), target_recall=target)
    if chosen is None or chosen[1] < target:
        best = chosen[1] if chosen else max(tuning.values(), default=0.0)
        logger.warning("%s not shipped: recall@10 %.3f stays below the target %.2f; the server will score "
                       "exactly", array_name, best, target)
        meta.update(kind="exact", reason="recall target not reached", recall_at_10=round(best, 4))
        return {}, meta
    nprobe, recall, search_ms = chosen
    serialized = np.asarray(faiss.serialize_index(index), dtype=np.uint8)
    meta.update(nprobe=nprobe, recall_at_10=round(recall, 4), search_ms=round(search_ms, 4),
                bytes=int(serialized.size))
    logger.info("%s: %s, nprobe %d, recall@10 %.4f on %d queries, %.3f ms per search, %.1f MB, %.1fs",
                array_name, meta["factory"], nprobe, recall, meta["recall_users"], search_ms,
                serialized.size / 1e6, meta["build_seconds"])
    return {array_name: serialized}, meta


def _exact_reason(n_items: int, settings: TrainingSettings) -> dict[str, Any] | None:
    """Metadata saying why no index is built (a catalog below ``ann_min_items``), else None; an unknown
    ``ann_encoding`` raises ValueError before any work is done."""
    if n_items < settings.ann_min_items:
        return {"kind": KIND_EXACT, "reason": f"{n_items} items < ann_min_items {settings.ann_min_items}"}
    if settings.ann_encoding not in _ENCODINGS:
        raise ValueError(f"ann_encoding must be one of {', '.join(_ENCODINGS)}, got {settings.ann_encoding!r}")
    return None


def build_ann_index(user_factors: np.ndarray, item_factors: np.ndarray, settings: TrainingSettings
                    ) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Build, tune and measure the inner-product ANN index when the catalog is large enough.

    Parameters
    ----------
    user_factors, item_factors
        ALS factors, float32 ``[n_customers, f]`` and ``[n_items, f]``; a customer's score for an item is
        their inner product.
    settings
        ``ann_min_items`` (build threshold), ``ann_nlist`` (0 = :func:`default_nlist`), ``ann_encoding``
        (``SQ8``, ``SQfp16`` or ``Flat``), ``ann_target_recall``, ``ann_recall_users`` and
        ``als_random_state`` (samples).

    Returns
    -------
    arrays : dict
        ``{"ann_index": uint8 [nbytes]}``, or empty when no index is shipped.
    meta : dict
        For ``ArtifactSet.extra["ann"]``: ``kind`` (``"faiss-ivf"``, or ``"exact"`` when none is shipped,
        with ``reason``), ``space``, ``recall_at_10`` (measured on ``recall_users`` customers not used for
        tuning), ``nprobe``, ``nlist``, ``encoding``, ``tuning`` (nprobe -> recall on the tuning sample),
        ``build_seconds``, ``search_ms`` (mean, one thread) and the library version.

    Raises
    ------
    recsvc.ranking.ann.AnnUnavailable
        The catalog needs an index and faiss is not installed (the trainer's ``train`` extra has it).
    ValueError
        ``ann_encoding`` is not one of the supported encodings.
    """
    n_items, dims = item_factors.shape
    skip = _exact_reason(n_items, settings)
    if skip is not None:
        return {}, skip
    faiss = import_faiss()
    started = time.perf_counter()
    item_factors = np.ascontiguousarray(item_factors, dtype=np.float32)
    vectors, max_norm = augment_items(item_factors)
    index, factory, nlist, n_train = _train_ivf(vectors, settings)
    del vectors
    index_seconds = time.perf_counter() - started
    logger.info("ANN index %s over %d items built in %.1fs", factory, n_items, index_seconds)

    tune_users, measure_users = _sample_users(user_factors, int(settings.ann_recall_users),
                                              settings.als_random_state)
    if tune_users.shape[0] == 0:
        return {}, {"kind": KIND_EXACT, "reason": "no customer has ALS factors to measure recall with"}
    tuning, chosen = _tune(index, item_factors, SPACE_INNER_PRODUCT, nlist,
                           (tune_users, exact_top_k(tune_users, item_factors, RECALL_K),
                            measure_users, exact_top_k(measure_users, item_factors, RECALL_K)),
                           settings.ann_target_recall)
    meta: dict[str, Any] = {
        "kind": KIND_FAISS_IVF, "space": SPACE_INNER_PRODUCT, "library": f"faiss-cpu {faiss.__version__}",
        "factory": factory, "mips": "l2-augmented", "max_norm": max_norm, "dims": dims + 1, "n_items": n_items,
        "nlist": nlist, "encoding": settings.ann_encoding, "train_points": n_train, "recall_k": RECALL_K,
        "recall_users": int(measure_users.shape[0]), "tuning_users": int(tune_users.shape[0]),
        "index_seconds": round(index_seconds, 2),
    }
    return _finish(index, ANN_ARRAY, meta, tuning, chosen, settings.ann_target_recall, started)


def unit_rows(item_factors: np.ndarray) -> np.ndarray:
    """Item factors scaled to unit length (rows of zeros stay zero), float32 ``[n, f]``."""
    factors = np.asarray(item_factors, dtype=np.float32)
    norms = np.linalg.norm(factors, axis=1)
    return np.ascontiguousarray(factors / np.where(norms > 0, norms, 1.0)[:, None], dtype=np.float32)


def build_cosine_index(item_factors: np.ndarray, settings: TrainingSettings
                       ) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Build, tune and measure the cosine index (SimilarItems, bundle fill) when the catalog is large enough.

    Like :func:`build_ann_index`, over unit-length item factors (L2 order = cosine order, no augmentation);
    recall@10 is measured for "items similar to item i" queries on sampled items with factors, leaving item
    ``i`` itself out of both answers. Returns ``({"ann_cosine_index": uint8}, meta)`` for
    ``extra["ann_cosine"]``, or ``({}, meta)`` with ``kind "exact"``.
    """
    n_items, dims = item_factors.shape
    skip = _exact_reason(n_items, settings)
    if skip is not None:
        return {}, skip
    faiss = import_faiss()
    started = time.perf_counter()
    unit = unit_rows(item_factors)
    index, factory, nlist, n_train = _train_ivf(unit, settings)
    index_seconds = time.perf_counter() - started
    active = np.flatnonzero(np.any(unit != 0, axis=1))
    if active.size == 0:
        return {}, {"kind": KIND_EXACT, "reason": "no item has ALS factors to measure recall with"}
    rng = np.random.default_rng(settings.als_random_state + 1)
    chosen_rows = rng.permutation(active)[: 2 * int(settings.ann_recall_users)]
    half = (chosen_rows.size + 1) // 2
    tune_rows, measure_rows = chosen_rows[:half], chosen_rows[half:]
    if measure_rows.size == 0:
        measure_rows = tune_rows

    def truth_without_self(rows: np.ndarray) -> np.ndarray:
        top = exact_top_k(unit[rows], unit, RECALL_K + 1)
        return np.stack([np.concatenate([t[t != r], t])[:RECALL_K] for t, r in zip(top, rows, strict=True)])

    tuning, chosen = _tune(index, np.ascontiguousarray(unit, dtype=np.float32), SPACE_COSINE, nlist,
                           (unit[tune_rows], truth_without_self(tune_rows), unit[measure_rows],
                            truth_without_self(measure_rows), tune_rows, measure_rows),
                           settings.ann_target_recall)
    meta: dict[str, Any] = {
        "kind": KIND_FAISS_IVF, "space": SPACE_COSINE, "library": f"faiss-cpu {faiss.__version__}",
        "factory": factory, "dims": dims, "n_items": n_items, "nlist": nlist, "encoding": settings.ann_encoding,
        "train_points": n_train, "recall_k": RECALL_K, "recall_users": int(measure_rows.size),
        "tuning_users": int(tune_rows.size), "index_seconds": round(index_seconds, 2),
    }
    return _finish(index, COSINE_ARRAY, meta, tuning, chosen, settings.ann_target_recall, started)
