"""The training run: ingest a data folder, build every model, publish one artifact set.

:func:`build_artifacts` is the pure part (cleaned :class:`TrainingData` in, validated :class:`ArtifactSet`
out), :func:`train` the whole job the ``recsvc train`` command runs. Each builder is a function in its own
module; this module only orders them, times them and fills the manifest metadata.
"""

from __future__ import annotations

import dataclasses
import logging
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from recsvc.artifacts import ArtifactSet, fingerprint_files, new_version_name, publish_artifacts
from recsvc.config import TrainingSettings
from recsvc.ranking.foldin import EXTRA_KEY as FOLDIN_EXTRA_KEY
from recsvc.ranking.foldin import FoldInParams
from recsvc.stock import StockTable, publish_stock
from recsvc_training.input import columns as C
from recsvc_training.input.catalog import build_catalog
from recsvc_training.input.dataset import IngestReport, TrainingData
from recsvc_training.input.id_maps import build_id_maps, event_rows
from recsvc_training.models.als import fit_als
from recsvc_training.models.ann import build_ann_index, build_cosine_index
from recsvc_training.models.coldstart import build_coldstart
from recsvc_training.models.copurchase import build_copurchase, count_baskets
from recsvc_training.models.interactions import QUANTITY_CAP, build_confidence
from recsvc_training.models.popularity import build_popularity
from recsvc_training.models.repurchase import build_repurchase
from recsvc_training.models.rfm import RFM_SEGMENTS, build_customer_summary

logger = logging.getLogger(__name__)

#: Build steps in run order (the keys of the per-step timings, after ``ingest``).
BUILD_STEPS: tuple[str, ...] = ("id_maps", "catalog", "interactions", "als", "ann", "popularity", "repurchase",
                                "copurchase", "customers", "coldstart")

#: Signature of the ingest entry point (``recsvc_training.input.ingest.load_training_data``).
Loader = Callable[[Path, TrainingSettings, Path], TrainingData]
#: A check run on the built set before publishing; see :func:`train`.
BeforePublish = Callable[[TrainingData, ArtifactSet], None]


class _StepClock:
    """Times named steps, logs each and advances one progress bar (shown only on a terminal)."""

    def __init__(self, steps: tuple[str, ...], show_progress: bool) -> None:
        self.timings: dict[str, float] = {}
        self._bar = tqdm(total=len(steps), desc="training", unit="step", disable=not show_progress,
                         leave=False)

    @contextmanager
    def step(self, name: str) -> Iterator[None]:
        self._bar.set_description(name)
        started = time.perf_counter()
        yield
        seconds = time.perf_counter() - started
        self.timings[name] = round(seconds, 3)
        logger.info("step %s done in %.2fs", name, seconds)
        self._bar.update(1)

    def close(self) -> None:
        self._bar.close()


def _show_progress(settings: TrainingSettings) -> bool:
    return bool(settings.progress) and sys.stderr.isatty()


def settings_params(settings: TrainingSettings) -> dict[str, Any]:
    """The settings as a JSON-ready dict for the manifest's ``params`` (mappings become plain dicts)."""
    params: dict[str, Any] = {}
    for f in dataclasses.fields(settings):
        value = getattr(settings, f.name)
        params[f.name] = dict(value) if isinstance(value, Mapping) else value
    return params


def build_artifacts(data: TrainingData, settings: TrainingSettings) -> ArtifactSet:
    """Build every model array from cleaned training data.

    Parameters
    ----------
    data
        Output of ingest: events resolved to customers, with ``day`` and ``basket_id`` (see
        :class:`~recsvc_training.input.dataset.TrainingData`).
    settings
        Every knob the builders use; all of them are recorded in ``params``.

    Returns
    -------
    ArtifactSet
        Validated, unpublished (empty ``version``). ``data_end_day`` is the last event day, the reference
        of every recency decay; ``extra["build_seconds"]`` holds the per-step timings.

    Raises
    ------
    ValueError
        When there are no events to learn from.
    """
    if data.events.empty:
        raise ValueError("no events to train on: the events table is empty after cleaning")
    show_progress = _show_progress(settings)
    clock = _StepClock(BUILD_STEPS, show_progress)
    end_day = int(data.events[C.DAY].max())
    arrays: dict[str, np.ndarray] = {}
    try:
        with clock.step("id_maps"):
            maps = build_id_maps(data)
            events = event_rows(data, maps)
            arrays.update(item_ids=maps.item_ids, customer_ids=maps.customer_ids, store_ids=maps.store_ids,
                          alias_ids=maps.alias_ids, alias_customer=maps.alias_customer)
        with clock.step("catalog"):
            arrays.update(build_catalog(data.items, maps))
        with clock.step("interactions"):
            confidence = build_confidence(events, maps, settings, end_day)
        with clock.step("als"):
            arrays["als_user_factors"], arrays["als_item_factors"] = fit_als(confidence, settings,
                                                                            show_progress=show_progress)
        with clock.step("ann"):  # large catalogs only (ann_min_items); ann_meta says what was decided
            ann_arrays, ann_meta = build_ann_index(arrays["als_user_factors"], arrays["als_item_factors"],
                                                   settings)
            arrays.update(ann_arrays)
            cosine_arrays, cosine_meta = build_cosine_index(arrays["als_item_factors"], settings)
            arrays.update(cosine_arrays)
        with clock.step("popularity"):
            arrays.update(build_popularity(events, maps, settings, end_day))
        with clock.step("repurchase"):
            arrays.update(build_repurchase(events, maps, end_day, settings.recency_half_life_days))
        with clock.step("copurchase"):
            arrays.update(build_copurchase(events, maps, settings))
        with clock.step("customers"):  # RFM, net spend and channels, for the customer profile
            arrays.update(build_customer_summary(data, events, maps, arrays["item_prices"], end_day))
        with clock.step("coldstart"):  # LightFM on attributes, for customers with little or no history
            coldstart_arrays, coldstart_meta = build_coldstart(data, events, maps, arrays, settings)
            arrays.update(coldstart_arrays)
    finally:
        clock.close()

    report = data.report
    row_counts = {
        "events": len(events),
        **{f"events_{name}": int(events.mask(name).sum()) for name in C.EVENT_TYPES},
        "customers": maps.n_customers,
        "customers_with_interactions": int((np.diff(confidence.indptr) > 0).sum()),
        "customers_with_history": int((np.diff(arrays["hist_indptr"]) > 0).sum()),
        "items": maps.n_items,
        "aliases": int(maps.alias_ids.size),
        "stores": maps.n_stores,
        "channels": maps.n_channels,
        "baskets": count_baskets(events),
        "history_pairs": int(arrays["hist_items"].size),
        "copurchase_pairs": int(arrays["copurchase_items"].size),
        "quarantined": report.total_quarantined(),
        "identity_conflicts": report.identity_conflicts,
        "items_added_from_events": report.items_added_from_events,
        "negative_quantities_as_returns": report.negative_quantities_as_returns,
    }
    artifacts = ArtifactSet(
        arrays=arrays,
        channels=list(maps.channels),
        data_end_day=end_day,
        input_fingerprint=_fingerprint(report),
        row_counts={k: int(v) for k, v in row_counts.items()},
        params=settings_params(settings),
        extra={"build_seconds": dict(clock.timings), "quantity_cap": QUANTITY_CAP, "ann": ann_meta,
               "ann_cosine": cosine_meta,
               "rfm_segments": list(RFM_SEGMENTS), "coldstart": coldstart_meta,
               FOLDIN_EXTRA_KEY: FoldInParams.from_settings(settings).as_dict(),
               "hist_decayed_half_life_days": settings.recency_half_life_days},
    )
    artifacts.validate()
    logger.info("built artifact set: %s", ", ".join(f"{k} {v}" for k, v in artifacts.row_counts.items()))
    return artifacts


def _fingerprint(report: IngestReport) -> str:
    files = [Path(p) for p in report.input_files]
    if not files or not all(p.is_file() for p in files):
        return ""
    return fingerprint_files(files)


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
