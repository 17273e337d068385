"""Synthetic artifact sets of realistic size and shape (100k and 1M items, 1M customers) for load tests.

The answers are meaningless but the shapes, dtypes and costs are those of a real set: 64 ALS factors with
topic structure (items around topic centres, varied norms; customers mixing two topics — like trained
factors, unlike pure noise, so an ANN index behaves as it would on real data), short purchase histories, a
co-purchase list per item, per-channel and per-store popularity. Sets of ``ann_min_items`` items or more
carry the trainer's ANN index (:func:`recsvc_training.models.ann.build_ann_index`), exactly as ``recsvc train``
would build it, so the server loads what it would load in production.

Memory: a 1M x 1M set holds two 256 MB factor matrices plus ~0.5 GB of ids, histories and co-purchase
lists; building one needs ~3 GB. Sets are cached under the work folder keyed by their spec, so a second
benchmark run reuses them.

Ids are deterministic (``I0000042``, ``C0000042``, alias ``A0000042`` of customer 42, store ``S001``), so the
load generator can build valid requests from the spec alone, without reading the set.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict, dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import numpy as np

from recsvc.artifacts import ArtifactSet, publish_artifacts, read_manifest
from recsvc.config import TrainingSettings

logger = logging.getLogger(__name__)

CHANNELS = ["app", "store", "web"]
DATA_END_DAY = (date(2026, 5, 7) - date(1970, 1, 1)).days
_SPEC_KEY = "benchmark_spec"


@dataclass(frozen=True)
class SyntheticSpec:
    """What a synthetic set looks like; ``seed`` changes every array (a "retrained" model for swaps)."""

    n_items: int
    n_customers: int = 1_000_000
    factors: int = 64
    history_mean: float = 4.0
    copurchase_per_item: int = 10
    n_stores: int = 50
    store_top_k: int = 200
    topics: int = 512
    seed: int = 0
    ann_min_items: int = TrainingSettings.ann_min_items
    #: Also build the cosine index (SimilarItems, bundle fill), as the trainer does.
    cosine_index: bool = True
    #: Carry a learned ranker of the trainer's shape, so Recommend for a known customer takes the default
    #: path of a trained model (candidate pool, features, trees); without it the engine blends by rank.
    learned_ranker: bool = True
    #: The ranker's two-stage scoring (:mod:`recsvc.ranking.cascade`) as the trainer records it: first trees
    #: (0: none) and rows kept per pool; the trainer's choice on Ta Feng (README, Serving: the cascade).
    ranker_cascade_trees: int = 10
    ranker_cascade_keep: int = 50

    @property
    def id_width(self) -> int:
        return len(str(max(self.n_items, self.n_customers)))

    def item_id(self, row: int) -> str:
        return f"I{row:0{self.id_width}d}"

    def customer_id(self, row: int) -> str:
        return f"C{row:0{self.id_width}d}"

    def alias_id(self, row: int) -> str:
        return f"A{row:0{self.id_width}d}"

    def store_id(self, row: int) -> str:
        return f"S{row:03d}"

    @property
    def n_aliases(self) -> int:
        return self.n_customers // 10  # every tenth customer has a loyalty card


def _ids(prefix: str, n: int, width: int, step: int = 1) -> np.ndarray:
    """``prefix`` + zero-padded row numbers as a fixed-width unicode array, sorted (numbers are padded)."""
    digits = np.char.zfill(np.arange(0, n * step, step).astype(f"U{width}"), width)
    return np.char.add(prefix, digits)


def clustered_factors(spec: SyntheticSpec, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Customer and item factors with topic structure (float32, built without float64 temporaries)."""
    f = spec.factors
    centres = rng.standard_normal((spec.topics, f), dtype=np.float32)
    items = rng.standard_normal((spec.n_items, f), dtype=np.float32)
    items *= 0.5
    items += centres[rng.integers(0, spec.topics, spec.n_items)] * 0.6
    items *= (rng.lognormal(0.0, 0.4, spec.n_items).astype(np.float32) * 0.1)[:, None]
    users = rng.standard_normal((spec.n_customers, f), dtype=np.float32)
    users *= 0.4
    picks = rng.integers(0, spec.topics, (spec.n_customers, 2))
    users += centres[picks[:, 0]] * 0.5
    users += centres[picks[:, 1]] * 0.25
    return users, items


def build_synthetic_set(spec: SyntheticSpec) -> ArtifactSet:
    """A validated, unpublished artifact set for ``spec`` (with the ANN index when the catalog is large)."""
    started = time.perf_counter()
    rng = np.random.default_rng(spec.seed)
    n_items, n_customers, n_ch = spec.n_items, spec.n_customers, len(CHANNELS)
    width = spec.id_width
    users, items = clustered_factors(spec, rng)

    popularity = rng.zipf(1.3, n_items).astype(np.float64)
    p = popularity / popularity.sum()
    hist_len = rng.poisson(spec.history_mean, n_customers).clip(1, 50)
    owner = np.repeat(np.arange(n_customers, dtype=np.int64), hist_len)
    hist_items = rng.choice(n_items, size=owner.size, p=p).astype(np.int32)
    # One entry per (customer, item), as the trainer writes histories (candidate lists rely on it).
    order = np.lexsort((hist_items, owner))
    owner, hist_items = owner[order], hist_items[order]
    keep = np.ones(owner.size, dtype=bool)
    keep[1:] = (owner[1:] != owner[:-1]) | (hist_items[1:] != hist_items[:-1])
    owner, hist_items = owner[keep], hist_items[keep]
    indptr = np.concatenate([[0], np.cumsum(np.bincount(owner, minlength=n_customers))]).astype(np.int64)
    del owner, order, keep
    nnz = int(indptr[-1])
    last = DATA_END_DAY - rng.integers(0, 365, nnz)
    count = rng.integers(1, 6, nnz).astype(np.float32)
    first = last - (count.astype(np.int64) - 1) * rng.integers(5, 60, nnz)

    co_len = rng.integers(0, 2 * spec.copurchase_per_item + 1, n_items)
    co_indptr = np.concatenate([[0], np.cumsum(co_len)]).astype(np.int64)
    co_nnz = int(co_indptr[-1])
    owner = np.repeat(np.arange(n_items, dtype=np.int64), co_len)
    co_scores = rng.random(co_nnz, dtype=np.float32)
    co_scores = co_scores[np.lexsort((-co_scores, owner))]  # best first within each row
    del owner
    item_channels = rng.random((n_items, n_ch)) < 0.9
    item_channels[:, 0] |= ~item_channels.any(axis=1)
    pop_global = (popularity * rng.random(n_items)).astype(np.float32)
    pop_channel = (pop_global[None, :] * rng.random((n_ch, n_items), dtype=np.float32)
                   * item_channels.T).astype(np.float32)
    top = np.argsort(-pop_global)[: max(spec.store_top_k * 5, 1000)]
    store_items = np.stack([rng.choice(top, spec.store_top_k, replace=False)
                            for _ in range(spec.n_stores)]).astype(np.int32)
    store_scores = -np.sort(-rng.random((spec.n_stores, spec.store_top_k)), axis=1).astype(np.float32)
    categories = np.array([f"cat{c:03d}" for c in range(200)])[rng.integers(0, 200, n_items)]
    n_aliases = spec.n_aliases

    arrays: dict[str, np.ndarray] = {
        "item_ids": _ids("I", n_items, width), "item_titles": _ids("Item ", n_items, width),
        "item_categories": categories, "item_prices": rng.uniform(1, 50, n_items).astype(np.float32),
        "item_channels": item_channels, "customer_ids": _ids("C", n_customers, width),
        "alias_ids": _ids("A", n_aliases, width, step=10),
        "alias_customer": np.arange(0, n_aliases * 10, 10, dtype=np.int32),
        "als_user_factors": users, "als_item_factors": items,
        "hist_indptr": indptr, "hist_items": hist_items, "hist_count": count,
        "hist_first_day": first.astype(np.int32), "hist_last_day": last.astype(np.int32),
        "hist_last_channel": rng.integers(0, n_ch, nnz).astype(np.int16),
        "hist_last_store": rng.integers(-1, spec.n_stores, nnz).astype(np.int32),
        "item_repurchase_days": np.where(rng.random(n_items) < 0.3, rng.uniform(3, 60, n_items),
                                         np.nan).astype(np.float32),
        "item_repurchase_rate": rng.random(n_items, dtype=np.float32),
        "store_ids": np.array([spec.store_id(s) for s in range(spec.n_stores)]),
        "pop_global": pop_global, "pop_channel": pop_channel,
        # its own generator, so the arrays drawn before and after it are those of sets built without it
        "item_trend": np.random.default_rng(spec.seed + 10_007).normal(0.0, 0.5, n_items).astype(np.float32),
        "pop_store_items": store_items, "pop_store_scores": store_scores,
        "copurchase_indptr": co_indptr,
        "copurchase_items": rng.choice(n_items, size=co_nnz, p=p).astype(np.int32),
        "copurchase_scores": co_scores,
        "copurchase_support": rng.integers(2, 100, co_nnz).astype(np.int32),
    }
    extra: dict[str, Any] = {_SPEC_KEY: asdict(spec)}
    if n_items >= spec.ann_min_items:
        from recsvc_training.models.ann import build_ann_index  # the trainer's own step, as `recsvc train` runs it

        settings = TrainingSettings(ann_min_items=spec.ann_min_items)
        ann_arrays, extra["ann"] = build_ann_index(users, items, settings)
        arrays.update(ann_arrays)
        if spec.cosine_index:
            from recsvc_training.models.ann import build_cosine_index

            cosine_arrays, extra["ann_cosine"] = build_cosine_index(items, settings)
            arrays.update(cosine_arrays)
    if spec.learned_ranker:
        ranker_arrays, extra["ranker"] = synthetic_ranker(spec.seed)
        if spec.ranker_cascade_trees > 0:
            extra["ranker"]["cascade"] = {"trees": spec.ranker_cascade_trees, "keep": spec.ranker_cascade_keep}
        arrays.update(ranker_arrays)
    artifacts = ArtifactSet(arrays=arrays, channels=list(CHANNELS), data_end_day=DATA_END_DAY,
                            row_counts={"items": n_items, "customers": n_customers, "history_pairs": nnz,
                                        "copurchase_pairs": co_nnz},
                            params={"synthetic": True, "als_factors": spec.factors},
                            created_at=datetime(2026, 5, 8, 3, 0, tzinfo=UTC).isoformat(), extra=extra)
    artifacts.validate()
    logger.info("built synthetic set %s in %.1fs", spec, time.perf_counter() - started)
    return artifacts


def synthetic_ranker(seed: int) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """A learned ranker with the trainer's settings (trees, leaves, the server's feature names), fitted by the
    trainer's own :func:`~recsvc_training.ranker.fit.fit_ranker` on random features whose label depends on a few
    of them: its answers mean nothing, but its trees are as many and as deep as a real one's, so a request
    costs what it costs with a trained model. Returns the arrays and the manifest's ``extra["ranker"]``."""
    from recsvc.ranking.features import FEATURE_NAMES
    from recsvc_training.ranker.fit import fit_ranker, tree_ensemble_from_lightgbm

    settings = TrainingSettings()
    rng = np.random.default_rng(seed + 7)
    groups = [3 * settings.ranker_pool_per_source] * 100
    X = rng.standard_normal((sum(groups), len(FEATURE_NAMES)))
    X[rng.random(X.shape) < 0.2] = np.nan  # features are missing for some candidates, as in real pools
    signal = np.nan_to_num(X[:, :6]) @ rng.standard_normal(6)
    y = (signal + rng.standard_normal(signal.size) > 2.0).astype(np.int32)
    booster = fit_ranker(X, y, groups, list(FEATURE_NAMES), params={"num_iterations": settings.ranker_trees})
    ensemble = tree_ensemble_from_lightgbm(booster)
    return ensemble.to_arrays(), {"pool_per_source": settings.ranker_pool_per_source, "trees": ensemble.n_trees,
                                  "max_depth": ensemble.max_depth, "features": list(FEATURE_NAMES),
                                  "synthetic": True}


def ensure_published(root: Path, spec: SyntheticSpec, version: str) -> tuple[str, dict[str, Any]]:
    """Make ``CURRENT`` under ``root`` a set of ``spec`` named ``version``, building it only when the cache
    does not hold it; returns the version and the ANN metadata (``ann`` and ``ann_cosine`` of the manifest's
    ``extra``, empty without an index)."""
    root = Path(root)
    folder = root / "versions" / version
    if folder.is_dir() and published_spec_of(folder) == asdict(spec) and _ranker_is_current(folder, spec):
        from recsvc.artifacts import set_current

        set_current(root, version)
        logger.info("reusing cached synthetic set %s", folder)
    else:
        if folder.exists():
            import shutil

            shutil.rmtree(folder)
        artifacts = build_synthetic_set(spec)
        artifacts.version = version
        publish_artifacts(artifacts, root, keep=10)
    extra = read_manifest(folder).get("extra", {})
    return version, {"ann": extra.get("ann", {}), "ann_cosine": extra.get("ann_cosine", {})}


def _ranker_is_current(folder: Path, spec: SyntheticSpec) -> bool:
    """Whether the cached set's ranker computes this version's features (a server refuses any other)."""
    if not spec.learned_ranker:
        return True
    from recsvc.ranking.features import FEATURE_NAMES

    ranker = read_manifest(folder).get("extra", {}).get("ranker", {})
    return bool(ranker.get("features") == list(FEATURE_NAMES))


def published_spec_of(folder: Path) -> dict[str, Any] | None:
    """The spec recorded in one version folder's manifest, as a dict (None if absent or unreadable); a set
    built by an older spec (fewer fields) never equals a current one, so it is rebuilt."""
    try:
        raw = json.loads((Path(folder) / "manifest.json").read_text()).get("extra", {}).get(_SPEC_KEY)
    except (OSError, ValueError):
        return None
    return raw if isinstance(raw, dict) else None


def set_size_bytes(folder: Path) -> int:
    """Bytes of one version folder on disk (its arrays and manifest)."""
    return sum(p.stat().st_size for p in Path(folder).iterdir() if p.is_file())
