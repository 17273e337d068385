"""The training run: ingest a data folder, build every model, publish one artifact set.

:func:`train` is the whole job the ``recsvc train`` command runs; the pure part, cleaned
:class:`TrainingData` in and a validated :class:`ArtifactSet` out, is
:func:`recsvc_training.assemble.build_artifacts`.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from recsvc.artifacts import ArtifactSet, new_version_name, publish_artifacts
from recsvc.artifacts.stock import publish_stock
from recsvc.artifacts.stock_table import StockTable
from recsvc.config import TrainingSettings
from recsvc_training.assemble import build_artifacts
from recsvc_training.input import columns as C
from recsvc_training.input.dataset import IngestReport, TrainingData

logger = logging.getLogger(__name__)

#: Signature of the ingest entry point (``recsvc_training.input.ingest.load_training_data``).
Loader = Callable[[Path, TrainingSettings, Path], TrainingData]
#: A check run on the built set before publishing; see :func:`train`.
BeforePublish = Callable[[TrainingData, ArtifactSet], None]


def _peak_rss_mb() -> float:
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

    ``timings`` maps step name to seconds (``ingest``, the build steps, ``before_publish`` when a hook ran,
    ``publish`` and ``total``); ``peak_rss_mb`` is the process's peak resident memory in MiB.
    """

    version: str
    path: Path
    artifact_root: Path
    quarantine_dir: Path
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


def _default_loader(data_dir: Path, settings: TrainingSettings, quarantine_dir: Path) -> TrainingData:
    from recsvc_training.input.ingest import load_training_data

    return load_training_data(data_dir, settings, quarantine_dir)


def train(data_dir: Path, artifact_root: Path, settings: TrainingSettings, *,
          before_publish: BeforePublish | None = None, loader: Loader | None = None, force: bool = False,
          echo: Callable[[str], None] | None = None) -> TrainResult:
    """Ingest ``data_dir``, build every model and publish the set under ``artifact_root``.

    Parameters
    ----------
    data_dir
        Folder of input tables (:mod:`recsvc_training.input.columns`).
    artifact_root
        Root holding ``CURRENT`` and ``versions/``; quarantined rows of this run go to
        ``<artifact_root>/quarantine/<version>/``.
    settings
        Training settings; ``keep_versions`` bounds the versions kept after publishing.
    before_publish
        Replaces the default evaluation / quality-gate hook
        (:func:`recsvc_training.evaluation.quality.make_quality_hook`, which evaluates on a time split, learns the
        blend and refuses a set worse than buy-it-again or than the current version): called with the
        cleaned data and the built, validated set just
        before publishing. It may fill ``artifacts.evaluation`` (it lands in the manifest and the summary)
        and set ``artifacts.forced``; it stops the run by raising, and then nothing is published and
        ``CURRENT`` keeps pointing at the previous version.
    loader
        Replaces ingest (tests); defaults to ``recsvc_training.input.ingest.load_training_data``.
    force
        Publish even when the quality gate refuses; the manifest records ``forced``.
    echo
        Receives the evaluation table for printing (the command line passes ``print``).

    Raises
    ------
    recsvc_training.input.ingest.InputError
        The data folder is unusable (from ingest).
    recsvc.artifacts.ArtifactError
        Publishing failed; the previous version stays current.
    """
    data_dir, artifact_root = Path(data_dir), Path(artifact_root)
    run_started = time.perf_counter()
    version = new_version_name()
    quarantine_dir = artifact_root / "quarantine" / version
    timings: dict[str, float] = {}

    started = time.perf_counter()
    data = (loader or _default_loader)(data_dir, settings, quarantine_dir)
    timings["ingest"] = round(time.perf_counter() - started, 3)
    logger.info("ingest done in %.2fs: %d events, %d items", timings["ingest"], len(data.events),
                len(data.items))

    artifacts = build_artifacts(data, settings)
    timings.update(artifacts.extra.get("build_seconds", {}))

    # ---- Evaluation and quality gate plug in here, before anything becomes visible to a server. ----
    # ``before_publish`` (e.g. an offline evaluation on a time split plus a gate comparing it with the
    # current version's ``manifest.evaluation``) sees the data and the finished set; it records metrics in
    # ``artifacts.evaluation`` and raises to refuse the set. Publishing below is atomic, so a refused or
    # crashed run leaves the served version untouched.
    if before_publish is None and (settings.evaluate or settings.learn_ranker):
        from recsvc_training.evaluation.quality import make_quality_hook

        before_publish = make_quality_hook(artifact_root, settings, force=force, echo=echo)
    if before_publish is not None:
        started = time.perf_counter()
        before_publish(data, artifacts)
        timings["before_publish"] = round(time.perf_counter() - started, 3)
        artifacts.validate()  # the hook must not leave a broken set behind

    started = time.perf_counter()
    artifacts.version = version
    path = publish_artifacts(artifacts, artifact_root, keep=settings.keep_versions)
    if len(data.stock):  # the data folder's stock, until `recsvc stock` publishes a newer file
        stock, _ = StockTable.from_rows(data.stock[C.STORE_ID], data.stock[C.ITEM_ID],
                                        data.stock[C.QUANTITY_ON_HAND])
        publish_stock(artifact_root, stock, source=f"training run {version} ({data_dir})",
                      keep=settings.keep_versions)
    timings["publish"] = round(time.perf_counter() - started, 3)
    timings["total"] = round(time.perf_counter() - run_started, 3)

    result = TrainResult(
        version=version, path=path, artifact_root=artifact_root, quarantine_dir=quarantine_dir,
        timings=timings, peak_rss_mb=round(_peak_rss_mb(), 1), report=data.report,
        row_counts=dict(artifacts.row_counts), evaluation=dict(artifacts.evaluation),
    )
    logger.info("training run %s finished in %.1fs", version, timings["total"])
    return result
