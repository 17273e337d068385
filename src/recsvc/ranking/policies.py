"""Per-channel ranking policies, from configuration (``[server.policies.<channel>]``), applied per request.

A :class:`~recsvc.config.ChannelPolicy` says, for known customers on one channel, how much each candidate
source weighs in the rank blend, whether items bought before may come back ("buy it again") and whether items
bought in the last N days are hidden. :class:`ChannelPolicies` turns the configured mapping into ready blend
weights once, when the engine is built (an unknown source name fails there, not per request), keyed by the
model's channel row, and hands the engine the policy of a request's channel row.

Example (README, "Per-channel policies")::

    [server.policies.store]
    name = "in_store"
    weights = { copurchase = 1.4, repurchase = 0.6, als = 0.4 }

    [server.policies.web]
    name = "discovery"
    weights = { repurchase = 0.2, als = 1.0, popularity = 0.3 }
    exclude_bought_within_days = 30
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from recsvc.config import ChannelPolicy, ConfigError
from recsvc.ids import clean_channel
from recsvc.ranking.blend import BlendWeights
from recsvc.ranking.sources import CandidateSource, RankingContext

logger = logging.getLogger(__name__)

#: Policy reported for known customers the trainer marked cold (served with the LightFM cold-start source).
POLICY_COLDSTART = "coldstart"
#: Weight keys of earlier releases, still read (with a warning) so an existing configuration keeps working.
FORMER_SOURCE_NAMES: Mapping[str, str] = {"collaborative": "als"}


@dataclass(frozen=True)
class PolicyWeights(BlendWeights):
    """:class:`BlendWeights` plus the weight of the cold-start source (used only for cold customers)."""

    coldstart: float = 1.0


def policy_weights(base: BlendWeights, overrides: Mapping[str, float], where: str = "") -> PolicyWeights:
    """``base`` with the sources named in ``overrides`` reweighted.

    Raises
    ------
    ConfigError
        An override names no known source, or a weight is negative or not finite.
    """
    renamed = {}
    for key, value in overrides.items():
        if key in FORMER_SOURCE_NAMES:
            logger.warning("%sweights: %r is now called %r; rename it in the configuration", where, key,
                           FORMER_SOURCE_NAMES[key])
            key = FORMER_SOURCE_NAMES[key]
        renamed[key] = value
    overrides = renamed
    known = {f.name for f in dataclasses.fields(PolicyWeights)} - {"rank_offset"}
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise ConfigError(f"{where}weights: unknown source(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
    values = {f.name: getattr(base, f.name) for f in dataclasses.fields(base)}
    try:
        return PolicyWeights(**{**values, **{k: float(v) for k, v in overrides.items()}})
    except ValueError as exc:
        raise ConfigError(f"{where}{exc}") from exc


@dataclass(frozen=True)
class AppliedPolicy:
    """The policy of one channel, ready to apply: name, blend weights and which bought items to hide."""

    name: str
    weights: PolicyWeights
    repurchase: bool = True
    exclude_bought_within_days: int = 0
    #: Serve with the LightFM cold-start source added (and never with the learned ranker).
    coldstart: bool = False

    def hidden_items(self, ctx: RankingContext) -> np.ndarray:
        """Item rows this policy hides for the customer: everything bought before when ``repurchase`` is off,
        else what was last bought within ``exclude_bought_within_days`` of ``ctx.today``."""
        hist = ctx.history
        if not self.repurchase:
            return hist.items.astype(np.int64)
        if self.exclude_bought_within_days > 0:
            recent = ctx.today - hist.last_day.astype(np.int64) < self.exclude_bought_within_days
            return hist.items[recent].astype(np.int64)
        return np.zeros(0, dtype=np.int64)

    def sources(self, sources: Sequence[CandidateSource]) -> tuple[CandidateSource, ...]:
        """``sources`` without the repurchase source when the policy does not allow buying again."""
        return tuple(s for s in sources if self.repurchase or s.name != "repurchase")


class ChannelPolicies:
    """The configured policies by channel row, with weights resolved against the engine's default weights.

    Configured channel names are compared as :func:`recsvc.ids.clean_channel` spells them (``WEB`` is
    ``web``). A channel row without a configured policy gets ``None`` (the default path); cold customers get
    :meth:`coldstart`, the channel's policy renamed ``coldstart`` (same weights and exclusions). A policy for a
    channel the model has no data for applies to no request (logged when the engine is built): requests on
    such a channel are served as an unknown channel.
    """

    def __init__(self, policies: Mapping[str, ChannelPolicy], base: BlendWeights,
                 channels: Sequence[str]) -> None:
        self._default = policy_weights(base, {})
        rows = {name: row for row, name in enumerate(channels)}
        self._by_row: dict[int, AppliedPolicy] = {}
        for channel, policy in policies.items():
            if policy.exclude_bought_within_days < 0:
                raise ConfigError(f"server.policies.{channel}.exclude_bought_within_days: must be >= 0")
            applied = AppliedPolicy(
                name=policy.name or channel,
                weights=policy_weights(base, policy.weights, f"server.policies.{channel}."),
                repurchase=policy.repurchase, exclude_bought_within_days=policy.exclude_bought_within_days)
            row = rows.get(clean_channel(channel), -1)
            if row < 0:
                logger.warning("server.policies.%s: the model has no channel %r (it has %s); the policy "
                               "applies to no request", channel, clean_channel(channel), ", ".join(channels))
                continue
            self._by_row[row] = applied
        if self._by_row:
            logger.info("channel policies: %s", ", ".join(f"{channels[row]} -> {p.name}"
                                                         for row, p in sorted(self._by_row.items())))

    def get(self, channel_row: int) -> AppliedPolicy | None:
        """The policy configured for the channel at ``channel_row`` (``-1``: unknown channel), or None."""
        return self._by_row.get(channel_row)

    def coldstart(self, channel_row: int) -> AppliedPolicy:
        """The policy for a cold customer on a channel: the channel's rules under the name ``coldstart``."""
        policy = self._by_row.get(channel_row)
        if policy is None:
            return AppliedPolicy(POLICY_COLDSTART, self._default, coldstart=True)
        return dataclasses.replace(policy, name=POLICY_COLDSTART, coldstart=True)
