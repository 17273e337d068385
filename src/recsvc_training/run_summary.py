"""What one training run did, as ``recsvc train`` prints it: read, set aside, built, evaluated, timed."""

from __future__ import annotations

import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from recsvc_training.input import columns as C
from recsvc_training.input.dataset import IngestReport


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far, in MiB (0 where the platform cannot say)."""
    try:
        import resource
    except ImportError:  # not on Unix
        return 0.0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024  # bytes on macOS, KiB on Linux


@dataclass(frozen=True)
class TrainResult:
    """What one training run did; :meth:`summary` is what ``recsvc train`` prints.

    ``timings`` maps step name to seconds (``ingest``, the build steps, ``evaluation`` and ``ranker`` when they
    ran, ``before_publish`` when a check ran, ``publish`` and ``total``); ``peak_rss_mb`` is the process's peak
    resident memory in MiB.
    """

    version: str
    #: Where the version, its root and the quarantine files are: folders, or URLs on object storage.
    path: str
    artifact_root: str
    quarantine_dir: str
    timings: Mapping[str, float]
    peak_rss_mb: float
    report: IngestReport
    row_counts: Mapping[str, int]
    evaluation: Mapping[str, Any] = field(default_factory=dict)

    def summary(self) -> str:
        """The human run summary: what was read, what was set aside and why, what was built, how long."""
        rep, counts = self.report, self.row_counts
        lines = [f"Published artifact set {self.version} (now CURRENT under {self.artifact_root})",
                 f"  location     {self.path}"]
        tables = sorted(set(rep.rows_read) | set(rep.rows_kept))
        if tables:
            lines.append("  input        " + "; ".join(
                f"{t} {rep.rows_kept.get(t, 0):,} kept of {rep.rows_read.get(t, 0):,}" for t in tables))
        total_q = rep.total_quarantined()
        if total_q:
            reasons = ", ".join(f"{table}/{reason} {n:,}" for table, per in sorted(rep.quarantined.items())
                                for reason, n in sorted(per.items()) if n)
            lines.append(f"  quarantined  {total_q:,} rows ({reasons}) -> {self.quarantine_dir}")
        else:
            lines.append("  quarantined  none")
        implausible = rep.quarantined.get(C.EVENTS, {})
        future, ancient = (implausible.get(C.REASON_FUTURE_TIMESTAMP, 0),
                           implausible.get(C.REASON_ANCIENT_TIMESTAMP, 0))
        if future or ancient:
            lines.append(f"  timestamps   {future:,} events dated after {rep.newest_plausible} (future_timestamp), "
                         f"{ancient:,} before {rep.earliest_plausible} (ancient_timestamp): set aside, see "
                         "training.max_future_hours and training.earliest_event_date")
        fixes = [(rep.identity_conflicts, "identity conflicts resolved"),
                 (rep.items_added_from_events, "items added from events"),
                 (rep.negative_quantities_as_returns, "negative quantities read as returns")]
        if any(n for n, _ in fixes):
            lines.append("  repaired     " + ", ".join(f"{n:,} {what}" for n, what in fixes if n))
        events = ", ".join(f"{counts.get(f'events_{t}', 0):,} {t}" for t in C.EVENT_TYPES)
        lines += [
            f"  events       {counts.get('events', 0):,} ({events})",
            f"  customers    {counts.get('customers', 0):,} ({counts.get('customers_with_interactions', 0):,}"
            f" with interactions, {counts.get('customers_with_history', 0):,} with purchases), "
            f"{counts.get('aliases', 0):,} aliases",
            f"  catalog      {counts.get('items', 0):,} items, {counts.get('stores', 0):,} stores, "
            f"{counts.get('channels', 0)} channels",
            f"  models       {counts.get('baskets', 0):,} baskets, {counts.get('history_pairs', 0):,} "
            f"history pairs, {counts.get('copurchase_pairs', 0):,} co-purchase pairs",
        ]
        if self.evaluation:
            lines.append("  evaluation   " + _evaluation_line(self.evaluation))
        lines.append("  timings      " + ", ".join(f"{k} {v:.1f}s" for k, v in self.timings.items()))
        lines.append(f"  peak memory  {self.peak_rss_mb:,.0f} MiB")
        return "\n".join(lines)


def _evaluation_line(evaluation: Mapping[str, Any]) -> str:
    """The headline of the manifest's evaluation block: default vs best baseline, cart completion, gate."""
    parts = []
    split = evaluation.get("split", {})
    if split:
        parts.append(f"test window {split.get('cutoff_date')} + {split.get('test_days')} days, "
                     f"{split.get('test_customers')} customers")
    for metric, ratio in evaluation.get("ratios", {}).items():
        value = evaluation.get("default", {}).get(metric)
        if value is not None and ratio.get("ratio") is not None:
            parts.append(f"{metric} {value:.4f} = {ratio['ratio']:.2f}x {ratio['baseline']} "
                         f"({ratio['baseline_value']:.4f})")
    cart = evaluation.get("cart_completion", {}).get("recsvc", {})
    if cart.get("hit_rate@10") is not None:
        parts.append(f"cart completion hit_rate@10 {cart['hit_rate@10']:.4f}")
    gate = evaluation.get("gate", {})
    if gate:
        parts.append("gate " + ("passed" if gate.get("passed") else "FAILED (forced)" if gate.get("forced")
                                else "failed"))
    return "; ".join(parts) if parts else ", ".join(f"{k} {_fmt(v)}" for k, v in evaluation.items())


def _fmt(value: Any) -> str:
    return f"{value:.4f}" if isinstance(value, float) else str(value)
