"""Experiment arms from configuration, the stable assignment of customers to them, and each arm's engine.

Assignment hashes the experiment's name and the *resolved* customer id (the model's id, or the id live links
resolve an unknown alias to) with BLAKE2b, never Python's ``hash`` (salted per process): a customer gets the
same arm on every channel, worker, replica and restart, through any of their aliases. The hash picks a point
in [0, 1); arms own consecutive slices of it by share, in the order of their names (a config file's order
does not survive the environment variables the worker parent passes on, sorted). Shares summing below 1 leave
the rest outside the experiment (arm ``""``); an anonymous request is outside too.

An arm is served by a *variant* of the serving engine (:meth:`recsvc.ranking.RecommendationEngine.variant`):
its own policy on every channel, or the rank blend without the learned ranker; a holdout arm gets popular
items only; an arm with a ``model_version`` by that published version, loaded beside the serving one (the
new model against the old), with its own live events. Variants are built on the first request of an arm
after a model swap and kept until the next.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

from recsvc.config import ChannelPolicy, ConfigError, ExperimentsSettings, ServerSettings
from recsvc.ranking import LoadedModel, RecommendationEngine, RecommendQuery, RecommendResult

if TYPE_CHECKING:
    from recsvc.events.overlay import CustomerActivity

logger = logging.getLogger(__name__)

#: A customer's live events on a model (:meth:`recsvc.events.overlay.EventOverlay.activity`).
Activity = Callable[[LoadedModel, str], "CustomerActivity | None"]

#: ``ranker`` values of an arm: as configured, rank fusion without the learned ranker, the learned ranker.
RANKER_DEFAULT: Final = ""
RANKER_BLEND: Final = "blend"
RANKER_LEARNED: Final = "learned"
RANKERS: Final = (RANKER_DEFAULT, RANKER_BLEND, RANKER_LEARNED)
_SCALE: Final = float(2**64)


@dataclass(frozen=True)
class Arm:
    """One arm, validated: its slice of the hash range ``[low, high)`` and how it serves."""

    name: str
    low: float
    high: float
    ranker: str = RANKER_DEFAULT
    policy: ChannelPolicy | None = None
    holdout: bool = False
    model_version: str = ""


def bucket(experiment: str, customer_id: str) -> float:
    """The customer's point in [0, 1) for ``experiment``: the same in every process, on every machine."""
    digest = hashlib.blake2b(f"{experiment}\x00{customer_id}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / _SCALE


class Experiment:
    """The configured arms (none: every request is outside, arm ``""``).

    Raises
    ------
    ConfigError
        A share outside 0..1 or shares summing above 1, an unknown ``ranker``, a holdout arm that also sets a
        ranker or policy.
    """

    def __init__(self, settings: ExperimentsSettings) -> None:
        self.name = settings.name
        arms: list[Arm] = []
        low = 0.0
        for name in sorted(settings.arms):
            spec = settings.arms[name]
            where = f"experiments.arms.{name}"
            if not 0.0 <= spec.share <= 1.0:
                raise ConfigError(f"{where}.share: expected 0..1, got {spec.share}")
            if spec.ranker not in RANKERS:
                raise ConfigError(f"{where}.ranker: expected one of {', '.join(map(repr, RANKERS))}, "
                                  f"got {spec.ranker!r}")
            custom = bool(spec.weights) or not spec.repurchase or spec.exclude_bought_within_days != 0
            if spec.holdout and (custom or spec.ranker or spec.model_version):
                raise ConfigError(f"{where}: a holdout arm serves popular items only; drop its ranker, policy and "
                                  "model_version")
            if spec.exclude_bought_within_days < 0:
                raise ConfigError(f"{where}.exclude_bought_within_days: must be >= 0")
            policy = (ChannelPolicy(name=name, weights=dict(spec.weights), repurchase=spec.repurchase,
                                    exclude_bought_within_days=spec.exclude_bought_within_days) if custom else None)
            arms.append(Arm(name, low, low + spec.share, spec.ranker, policy, spec.holdout, spec.model_version.strip()))
            low += spec.share
        if low > 1.0 + 1e-9:
            raise ConfigError(f"experiments.arms: shares sum to {low:g}, more than 1")
        self.arms: tuple[Arm, ...] = tuple(arms)
        self._by_name: Mapping[str, Arm] = {a.name: a for a in arms}

    @property
    def running(self) -> bool:
        return bool(self.arms)

    def assign(self, customer_id: str) -> Arm | None:
        """The arm of a resolved customer id (None: outside the experiment, or ``customer_id`` empty)."""
        if not self.arms or not customer_id:
            return None
        point = bucket(self.name, customer_id)
        for arm in self.arms:
            if arm.low <= point < arm.high:
                return arm
        return None

    def arm(self, name: str) -> Arm | None:
        return self._by_name.get(name)


class ArmEngines:
    """The variant engine of each arm for the serving engine; rebuilt when the serving engine changes.

    An arm pinned to another model version gets that version's engine from ``loader`` (load, verify, warm
    up: the server's own path), loaded on the arm's first request and kept across swaps of the serving
    model. A version that cannot be loaded is logged once and its arm served by the serving model (the
    served log and the report name the model version that answered, so the comparison stays honest).
    """

    def __init__(self, settings: ServerSettings, loader: Callable[[str], RecommendationEngine] | None = None
                 ) -> None:
        self._settings = settings
        self._loader = loader
        self._lock = threading.Lock()
        self._base: RecommendationEngine | None = None
        self._engines: dict[str, RecommendationEngine] = {}
        self._pinned: dict[str, RecommendationEngine | None] = {}  # version -> engine, None: failed to load

    def pinned(self, base: RecommendationEngine, version: str) -> RecommendationEngine:
        """The engine of model ``version`` (``base`` when it is the serving version, or cannot be loaded)."""
        if not version or version == base.model_version:
            return base
        if version not in self._pinned:
            with self._lock:
                if version not in self._pinned:
                    self._pinned = {**self._pinned, version: self._load(version, base.model_version)}
        found = self._pinned[version]
        return found if found is not None else base

    def _load(self, version: str, serving: str) -> RecommendationEngine | None:
        """The engine of ``version``, or None (logged) when this server cannot load it."""
        if self._loader is None:
            logger.error("experiment arm pins model %s, but this server cannot load versions; the serving "
                         "model answers its requests", version)
            return None
        try:
            loaded = self._loader(version)
        except Exception as exc:  # any failure: this arm falls back, serving goes on
            logger.error("experiment arm model %s cannot be loaded (%s); the serving model answers its requests",
                         version, exc)
            return None
        logger.info("experiment arm model %s loaded beside %s", version, serving)
        return loaded

    def engine(self, base: RecommendationEngine, arm: Arm | None) -> RecommendationEngine:
        """The engine serving ``arm`` on ``base``'s model (``base`` itself for no arm or a plain arm), or on
        the arm's pinned model version."""
        if arm is None or arm.holdout:
            return base
        source = self.pinned(base, arm.model_version)
        if arm.policy is None and arm.ranker == RANKER_DEFAULT:
            return source
        engines = self._engines
        if self._base is base and arm.name in engines:
            return engines[arm.name]
        with self._lock:
            if self._base is not base:  # a new model: drop the old variants (in-flight requests keep theirs)
                self._base, self._engines = base, {}
            found = self._engines.get(arm.name)
            if found is None:
                settings = self._settings
                if arm.policy is not None:
                    settings = dataclasses.replace(settings,
                                                   policies={c: arm.policy for c in source.model.channels})
                found = source.variant(settings, learned=arm.ranker != RANKER_BLEND)
                self._engines = {**self._engines, arm.name: found}
            return found


def recommend_in_arm(engines: ArmEngines, base: RecommendationEngine, arm: Arm | None,
                     query: RecommendQuery, activity: Activity | None = None) -> RecommendResult:
    """``query`` answered as ``arm`` serves it. A holdout arm gets the channel's (or store's) popular items as
    an anonymous customer would, with the request's exclusions and filters kept; the result still names the
    resolved customer."""
    if arm is not None and arm.holdout:
        anonymous = dataclasses.replace(query, customer_id="", context_item_ids=(), live=None)
        result = engines.engine(base, None).recommend(anonymous)
        model = base.model
        row = query.live.customer_row if query.live is not None else model.resolve_customer(query.customer_id)
        return dataclasses.replace(result, resolved_customer_id=model.customer_id(row) if row >= 0 else "",
                                   known_customer=row >= 0)
    engine = engines.engine(base, arm)
    if engine.model is not base.model and query.live is not None:  # a pinned version: its own live rows
        live = activity(engine.model, query.customer_id) if activity is not None else None
        query = dataclasses.replace(query, live=live)
    return engine.recommend(query)
