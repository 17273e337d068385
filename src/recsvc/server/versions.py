"""One published version, from disk to a ready engine: load, verify, build, warm up; and rolling back to one.

:mod:`recsvc.server.lifecycle` decides *when* a process moves to another version (poll, SIGHUP, Admin API);
this module is *how* one version becomes an engine that may serve, and what ``recsvc rollback`` uses to
check a target before repointing ``CURRENT``. Every path goes through the root's
:class:`~recsvc.artifacts.ArtifactStore` (local disk, or object storage whose versions are downloaded to a
local cache and verified first), so nothing here knows the store's layout. Transport-free (no grpc).
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from recsvc.artifacts import ArtifactError, ArtifactSet, ArtifactStore, load_artifact_set
from recsvc.artifacts.store import StoreRoot, open_store, store_for
from recsvc.config import ServerSettings
from recsvc.ranking import BundleQuery, LoadedModel, RecommendationEngine, RecommendQuery
from recsvc.server.stock import ModelStock, StockWatcher

logger = logging.getLogger(__name__)

#: A customer id the warm-up uses for the anonymous path; it must not exist in any catalog.
WARM_UP_UNKNOWN_CUSTOMER = "recsvc-warm-up-unknown-customer"

EngineFactory = Callable[[ArtifactSet], RecommendationEngine]


def build_engine(artifacts: ArtifactSet, settings: ServerSettings) -> RecommendationEngine:
    """The engine the server runs for one loaded artifact set (the one place that builds it).

    Its stock is the model's (:class:`~recsvc.server.stock.ModelStock`): the training-time stock the set
    carries, or a newer snapshot pushed for the same catalog, never a snapshot of another catalog.
    """
    model = LoadedModel(artifacts)
    watcher = StockWatcher.for_root(store_for(settings), settings.verify_checksums, settings.stock_poll_seconds)
    stock = ModelStock(watcher, model)
    return RecommendationEngine(model, settings, stock=stock)


def warm_up(engine: RecommendationEngine) -> None:
    """Run the queries a new model must answer before it may serve: a known customer, an unknown one, a
    bundle and similar items, on the model's first channel.

    They catch what checksums cannot — arrays that are well-formed but break ranking — and page the model's
    arrays in, so the first real request after the swap is not the slow one.

    Raises
    ------
    ArtifactError
        A query raised or answered for another version; the message names the query.
    """
    model = engine.model
    channel = model.channels[0] if model.channels else "web"
    checks: list[tuple[str, Callable[[], str]]] = []
    if model.n_customers:
        known = model.customer_id(0)

        def known_customer() -> str:
            result = engine.recommend(RecommendQuery(customer_id=known, channel=channel))
            if not result.known_customer:
                raise ArtifactError(f"customer {known!r} of the catalog was not recognised")
            return result.model_version

        checks.append(("recommend for a known customer", known_customer))

    def unknown_customer() -> str:
        result = engine.recommend(RecommendQuery(customer_id=WARM_UP_UNKNOWN_CUSTOMER, channel=channel))
        if result.known_customer:
            raise ArtifactError("an unknown customer was resolved to a known one")
        return result.model_version

    checks.append(("recommend for an unknown customer", unknown_customer))
    if model.n_items:
        item = model.item_id(0)
        checks.append(("bundle", lambda: engine.bundle(BundleQuery(basket_item_ids=[item], channel=channel))
                       .model_version))

        def similar() -> str:
            engine.similar_items(item)
            return model.version

        checks.append(("similar items", similar))
    for name, run in checks:
        try:
            version = run()
        except Exception as exc:
            raise ArtifactError(f"warm-up query '{name}' failed on version {model.version}: {exc}") from exc
        if version != model.version:
            raise ArtifactError(f"warm-up query '{name}' answered for version {version}, not {model.version}")


def load_version(root: StoreRoot | ArtifactStore, version: str, settings: ServerSettings,
                 engine_factory: EngineFactory | None = None, verify: bool | None = None) -> RecommendationEngine:
    """Load, verify and warm up one published version; the returned engine is ready to swap in.

    On object storage the version is first downloaded to the local cache, each file checked against the
    manifest's sha256 as it arrives (:meth:`ArtifactStore.open_version`). ``verify`` defaults to
    ``settings.verify_checksums``; arrays are memory-mapped when
    ``settings.mmap_artifacts`` (load is then dominated by the engine's own precomputation, not by I/O).

    Raises
    ------
    ArtifactError
        Missing manifest, checksum mismatch, bad dtype/shape/ids, or a failed warm-up; names the file/query.
    """
    store = open_store(root)
    where = store.where(version)
    try:
        folder = store.open_version(version)
        artifacts = load_artifact_set(folder, verify=settings.verify_checksums if verify is None else verify,
                                      mmap=settings.mmap_artifacts)
    except ArtifactError:
        raise
    except Exception as exc:  # a manifest missing a key, an unreadable file ...: still "this set is bad"
        raise ArtifactError(f"{where}: cannot be loaded ({type(exc).__name__}: {exc})") from exc
    if artifacts.version != version:
        # served versions are compared with CURRENT by name: a set calling itself something else would be
        # "new" at every poll and reloaded forever
        raise ArtifactError(f"{where}: manifest names version {artifacts.version!r}, not {version!r}")
    factory = engine_factory or (lambda a: build_engine(a, settings))
    try:
        engine = factory(artifacts)
    except ArtifactError:
        raise
    except Exception as exc:  # an engine that cannot be built from a set that passed validation
        raise ArtifactError(f"{where}: the engine cannot be built from this set: {exc}") from exc
    warm_up(engine)
    return engine


def previous_version(root: StoreRoot | ArtifactStore, before: str | None = None) -> str:
    """The published version just older than ``before`` (default: the one ``CURRENT`` names).

    Raises
    ------
    ArtifactError
        Nothing published, or ``before`` is the oldest version kept.
    """
    store = open_store(root)
    versions = store.versions()
    before = before or store.current()
    older = [v for v in versions if before is None or v < before]  # names sort by publish time
    if not older:
        raise ArtifactError(f"{store.location}: no published version older than {before or 'CURRENT'} to roll back to "
                            f"(kept: {', '.join(versions) or 'none'})")
    return older[-1]


def rollback_current(root: StoreRoot | ArtifactStore, to: str | None = None,
                     verify: bool = True) -> tuple[str | None, str]:
    """Point ``CURRENT`` at ``to`` (default: the version before the current one) after checking it loads.

    Returns ``(old, new)``. The target is loaded and verified first (without building an engine), so a
    rollback never points servers at a set they would refuse. Running servers pick the change up at their
    next poll, on SIGHUP or on an Admin ``ReloadModel``. On object storage the target is downloaded to the
    local cache to be checked (pass a store from :func:`recsvc.artifacts.store.store_for` to choose the cache).

    Raises
    ------
    ArtifactError
        No such version, nothing older to roll back to, or the target fails verification.
    """
    store = open_store(root)
    old = store.current()
    target = to or previous_version(store, old)
    if not store.has_version(target):
        raise ArtifactError(f"{store.location}: no published version {target!r} "
                            f"(kept: {', '.join(store.versions())})")
    load_artifact_set(store.open_version(target), verify=verify, mmap=True)
    store.set_current(target)
    logger.info("rolled back %s: CURRENT %s -> %s", store.location, old, target)
    return old, target


def manifest_signature(root: StoreRoot | ArtifactStore, version: str) -> str | None:
    """A token that changes when ``version``'s manifest is rewritten (None: it has none)."""
    try:
        return open_store(root).manifest_signature(version)
    except (ArtifactError, OSError):
        return None
