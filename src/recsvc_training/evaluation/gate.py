"""The quality gate: a plain decision over a run's evaluation, before anything is published.

It trains nothing and evaluates nothing: it reads the evaluation block of the new set
(:func:`recsvc_training.evaluation.holdout.evaluation_summary`) and that of the version it would replace.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from recsvc.artifacts import ArtifactError
from recsvc.artifacts.store import ArtifactStore, StoreRoot, open_store
from recsvc.config import TrainingSettings

logger = logging.getLogger(__name__)

GATE_METRIC = "ndcg@10"
GATE_BASELINE = "buy_it_again"


class QualityGateError(RuntimeError):
    """The new set is worse than the gate allows; nothing was published. The message says why."""


@dataclass(frozen=True)
class GateDecision:
    """Whether a set may be published: ``failures`` says why not; ``forced`` when published despite them."""

    failures: tuple[str, ...]
    forced: bool

    @property
    def passed(self) -> bool:
        return not self.failures

    def as_dict(self) -> dict[str, Any]:
        """The manifest's ``evaluation["gate"]`` block."""
        return {"passed": self.passed, "failures": list(self.failures), "forced": self.forced}

    def enforce(self) -> None:
        """Raise :class:`QualityGateError` when the set is refused and not forced; warn when forced."""
        if self.passed:
            return
        if not self.forced:
            raise QualityGateError("quality gate refused the new model (nothing published; the current version "
                                   "keeps serving): " + "; ".join(self.failures) + ". Use --force to publish anyway.")
        logger.warning("quality gate failed but --force was given: %s", "; ".join(self.failures))


def gate_failures(summary: Mapping[str, Any], previous: Mapping[str, Any] | None,
                  settings: TrainingSettings) -> list[str]:
    """Why the gate refuses this set (empty: it passes).

    Refuses when the default ranking's NDCG@10 is below ``gate_min_ratio_to_best_baseline`` x the best
    baseline of the set's own split (every baseline the evaluation computed), below
    ``gate_min_ratio_to_buy_it_again`` x buy-it-again there, or more than ``gate_max_drop`` (relative) below
    the NDCG@10 recorded by the version it replaces.
    """
    failures = []
    value = summary.get("default", {}).get(GATE_METRIC)
    if value is None:
        return [f"the evaluation produced no {GATE_METRIC} for the default ranking"]
    baseline = summary.get("baselines", {}).get(GATE_BASELINE, {}).get(GATE_METRIC)
    if baseline is not None and value < settings.gate_min_ratio_to_buy_it_again * baseline:
        failures.append(f"{GATE_METRIC} {value:.4f} is below {settings.gate_min_ratio_to_buy_it_again:g} x the "
                        f"'{GATE_BASELINE}' baseline ({baseline:.4f}) on this run's own split")
    scored = {name: values.get(GATE_METRIC) for name, values in summary.get("baselines", {}).items()}
    scored = {name: v for name, v in scored.items() if isinstance(v, int | float)}
    if scored:
        best = max(scored, key=lambda name: scored[name])
        ratio = settings.gate_min_ratio_to_best_baseline
        already = best == GATE_BASELINE and failures  # the same baseline refused above: one message is enough
        if value < ratio * scored[best] and not already:
            failures.append(f"{GATE_METRIC} {value:.4f} is below {ratio:g} x the best baseline '{best}' "
                            f"({scored[best]:.4f}) on this run's own split")
    before = ((previous or {}).get("default") or {}).get(GATE_METRIC)
    if before is not None and value < before * (1.0 - settings.gate_max_drop):
        failures.append(f"{GATE_METRIC} {value:.4f} is more than {settings.gate_max_drop:.0%} below the "
                        f"current version's {before:.4f}")
    return failures


def decide(summary: Mapping[str, Any], previous: Mapping[str, Any] | None, settings: TrainingSettings,
           force: bool = False) -> GateDecision:
    """The gate's decision on ``summary`` against ``previous`` (see :func:`gate_failures`)."""
    failures = tuple(gate_failures(summary, previous, settings))
    return GateDecision(failures=failures, forced=bool(force and failures))


def previous_evaluation(artifact_root: StoreRoot | ArtifactStore) -> dict[str, Any] | None:
    """The ``evaluation`` block of the version now current under ``artifact_root`` (None if none/unreadable);
    reads only its manifest (on object storage nothing else is downloaded)."""
    store = open_store(artifact_root)
    version = store.current()
    if version is None:
        return None
    try:
        evaluation: dict[str, Any] = store.manifest(version).get("evaluation", {})
    except ArtifactError as exc:
        logger.warning("cannot read the current version's evaluation (%s); gating on this run alone", exc)
        return None
    return evaluation or None
