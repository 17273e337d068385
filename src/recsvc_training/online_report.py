"""The online report (``recsvc report online --since DATE``): did the suggestions work on the shop floor?

Reads the configured event store (answers from the served-recommendation log, feedback events, identity links),
credits events to answers by :mod:`recsvc.feedback.attribution` (the rule the servers' Prometheus counters use)
and writes ``online.md`` (tables per channel, store, policy, model version and experiment arm; the arm
comparison with 95 % intervals, "not yet significant" and the impressions that would settle it), ``online.json``
(the same numbers) and PNG charts (daily trend of CTR and conversion per arm, rates per arm with intervals),
drawn with matplotlib's Agg backend.

Customers are resolved as the server resolves them: live links first, then the aliases of the model being
served (when the artifact root has one), so a purchase through a loyalty card counts for the answer shown to
the app account it belongs to.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

from recsvc.days import MS_PER_DAY, day_of_iso, iso_of_day, ms_of_day
from recsvc.events.store import EventStore, LiveLink
from recsvc.events.validation import EventRecord
from recsvc.feedback.attribution import BY_WINDOW, Resolver, attribute
from recsvc.feedback.metrics import DIMENSIONS, Comparison, OnlineCounts, OnlineMetrics, compare, online_metrics

logger = logging.getLogger(__name__)

MARKDOWN_NAME: Final = "online.md"
JSON_NAME: Final = "online.json"
CHART_TREND: Final = "online_trend.png"
CHART_ARMS: Final = "online_arms.png"
#: The rates the arms are compared on, by the counter each divides by impressions.
RATES: Final = {"ctr": "clicks", "add_to_cart_rate": "carts", "conversion_rate": "purchases"}
#: The arm others are compared against when one has this name (else the first arm by name).
CONTROL: Final = "control"
_LINK_HOPS: Final = 16


@dataclass(frozen=True)
class OnlineReport:
    """What the report found: the period, metrics per dimension and per arm, comparisons, written files."""

    since_day: int
    until_ms: int
    by_dimension: Mapping[str, OnlineMetrics]
    comparisons: tuple[Comparison, ...]
    not_attributed: Mapping[str, int]
    files: Mapping[str, Path]

    def arm(self, name: str) -> OnlineCounts:
        """The counts of one experiment arm ("" = outside any experiment)."""
        return self.by_dimension["arm"].groups.get((name,), OnlineCounts())


def link_resolver(links: Sequence[LiveLink], model_resolve: Callable[[str], str] | None = None) -> Resolver:
    """Any id -> the customer id answers are logged under: live links (followed), then the model's aliases."""
    table = {link.alias_id: link.customer_id for link in links}

    def resolve(customer_id: str) -> str:
        if model_resolve is not None:
            found = model_resolve(customer_id)
            if found:
                return found
        current = customer_id
        for _ in range(_LINK_HOPS):
            nxt = table.get(current)
            if nxt is None or nxt == current:
                break
            current = nxt
        if model_resolve is not None and current != customer_id:
            return model_resolve(current) or current
        return current

    return resolve


def _read_store(store: EventStore, since_ms: int) -> tuple[list[EventRecord], list[LiveLink]]:
    """Every event at or after ``since_ms`` and every link, by following the feed from its start."""
    events: list[EventRecord] = []
    links: list[LiveLink] = []
    cursor = ""
    while True:
        batch = store.read_feed(cursor, limit=50_000)
        events += [e for e in batch.events if e.timestamp_ms >= since_ms]
        links += batch.links
        if not batch.events and not batch.links:
            return events, links
        cursor = batch.cursor


def build_online_report(store: EventStore, since: str, out_dir: str | Path, *, window_days: float = 7.0,
                        model_resolve: Callable[[str], str] | None = None, charts: bool = True,
                        now_ms: int | None = None) -> OnlineReport:
    """Attribute the store's feedback since ``since`` (YYYY-MM-DD, UTC) and write the report into ``out_dir``.

    ``model_resolve`` maps an alias to the model's customer id ("" when the model does not know it); without
    it only live links resolve aliases.

    Raises
    ------
    ValueError
        ``since`` is not a date.
    recsvc.events.store.StoreUnavailable
        The store cannot be read.
    """
    since_day = day_of_iso(since)
    since_ms = ms_of_day(since_day)
    now_ms = int(datetime.now(UTC).timestamp() * 1000) if now_ms is None else now_ms
    window_ms = int(window_days * MS_PER_DAY)
    served = list(store.served(since_ms - window_ms))  # earlier answers can still earn a purchase by window
    events, links = _read_store(store, since_ms)
    resolve = link_resolver(links, model_resolve)
    result = attribute(served, events, resolve, window_days, lookup=store.served_by_id)
    by_dimension = {name: online_metrics(served, result.attributed, (name,), since_ms) for name in DIMENSIONS}
    arms = by_dimension["arm"].groups
    names = sorted(key[0] for key in arms if key[0])
    comparisons: list[Comparison] = []
    if len(names) > 1:
        control = CONTROL if CONTROL in names else names[0]
        for other in names:
            if other == control:
                continue
            for rate, counter in RATES.items():
                comparisons.append(compare(rate, control, arms[(control,)].rate(counter), other,
                                           arms[(other,)].rate(counter)))
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    report = OnlineReport(since_day, now_ms, by_dimension, tuple(comparisons), result.not_attributed, {})
    files: dict[str, Path] = {}
    if charts:
        files.update(_write_charts(report, out))
    files["json"] = out / JSON_NAME
    files["json"].write_text(json.dumps(_as_dict(report), indent=2, sort_keys=True))
    files["markdown"] = out / MARKDOWN_NAME
    files["markdown"].write_text(_markdown(report, window_days, files))
    logger.info("online report since %s: %s", since, files["markdown"])
    return OnlineReport(since_day, now_ms, by_dimension, tuple(comparisons), result.not_attributed, files)


# ------------------------------------------------------------------------------------------------ writing

def _pct(value: float, digits: int = 2) -> str:
    return "–" if not math.isfinite(value) else f"{100 * value:.{digits}f} %"


def _rate_cell(counts: OnlineCounts, counter: str) -> str:
    rate = counts.rate(counter)
    if not rate.trials:
        return "–"
    low, high = rate.interval()
    return f"{_pct(rate.value)} ({_pct(low)}–{_pct(high)})"


def _counts_dict(c: OnlineCounts) -> dict[str, Any]:
    out: dict[str, Any] = {"answers": c.answers, "impressions": c.impressions, "clicks": c.clicks, "carts": c.carts,
                           "purchases": c.purchases, "purchases_by_window": c.purchases_by_window,
                           "revenue": round(c.revenue, 6)}
    for rate, counter in RATES.items():
        r = c.rate(counter)
        low, high = r.interval()
        out[rate] = None if not r.trials else {"value": r.value, "low": low, "high": high}
    return out


def _as_dict(report: OnlineReport) -> dict[str, Any]:
    return {
        "since": iso_of_day(report.since_day),
        "by": {name: {"|".join(k): _counts_dict(c) for k, c in m.groups.items()}
               for name, m in report.by_dimension.items()},
        "daily_by_arm": {f"{iso_of_day(day)}|{'|'.join(k)}": _counts_dict(c)
                         for (day, k), c in sorted(report.by_dimension["arm"].daily.items())},
        "comparisons": [{"metric": c.metric, "control": c.a, "arm": c.b, "difference": c.difference,
                         "low": c.low, "high": c.high, "significant": c.significant,
                         "more_impressions": c.more_impressions, "verdict": c.verdict()} for c in report.comparisons],
        "not_attributed": dict(report.not_attributed),
    }


_TITLES: Final = {"channel": "Channel", "store_id": "Store", "policy": "Policy", "model_version": "Model version",
                  "arm": "Experiment arm"}


def _markdown(report: OnlineReport, window_days: float, files: Mapping[str, Path]) -> str:
    lines = [f"# Online report since {iso_of_day(report.since_day)}", "",
             f"Until {datetime.fromtimestamp(report.until_ms / 1000, tz=UTC):%Y-%m-%d %H:%M} UTC. Rates are per "
             "impression with 95 % Wilson intervals; purchases include those credited by the attribution window "
             f"({window_days:g} days, no recommendation_id) — the *by window* column.", ""]
    for name, metrics in report.by_dimension.items():
        lines += [f"## By {_TITLES[name].lower()}", "",
                  f"| {_TITLES[name]} | answers | impressions | CTR | add-to-cart rate | conversion rate | purchases "
                  "| by window | attributed revenue |",
                  "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
        for key, c in sorted(metrics.groups.items()):
            label = key[0] or "(none)"
            lines.append(f"| {label} | {c.answers:,} | {c.impressions:,} | {_rate_cell(c, 'clicks')} | "
                         f"{_rate_cell(c, 'carts')} | {_rate_cell(c, 'purchases')} | {c.purchases:,} | "
                         f"{c.purchases_by_window:,} | {c.revenue:,.2f} |")
        lines.append("")
    lines += ["## Arm comparison", ""]
    if report.comparisons:
        lines += ["| metric | control | arm | control rate | arm rate | difference (95 % interval) | verdict |",
                  "|---|---|---|---:|---:|---:|---|"]
        for v in report.comparisons:
            lines.append(f"| {v.metric} | {v.a} | {v.b} | {_pct(v.rate_a.value)} | {_pct(v.rate_b.value)} | "
                         f"{_pct(v.difference)} ({_pct(v.low)} to {_pct(v.high)}) | {v.verdict()} |")
    else:
        lines.append("No experiment with two or more arms in this period.")
    lines.append("")
    if report.not_attributed:
        lines += ["## Not attributed", "",
                  "Feedback events with a recommendation_id that were not credited: " + ", ".join(
                      f"{reason} {n:,}" for reason, n in sorted(report.not_attributed.items())) +
                  " (unmatched: an id the log does not hold; foreign: an answer to another customer; not_suggested:"
                  " an item the answer did not suggest).", ""]
    for kind, title in (("chart_trend", "Daily trend per arm"), ("chart_arms", "Rates per arm")):
        if kind in files:
            lines += [f"## {title}", "", f"![{title}]({files[kind].name})", ""]
    return "\n".join(lines)


def _write_charts(report: OnlineReport, out: Path) -> dict[str, Path]:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    written: dict[str, Path] = {}
    arm_metrics = report.by_dimension["arm"]
    arms = sorted(k for k in arm_metrics.groups)
    days = sorted({day for day, _ in arm_metrics.daily})
    if days:
        fig = Figure(figsize=(10.0, 4.5))
        for j, (rate, counter) in enumerate((("CTR", "clicks"), ("conversion rate", "purchases"))):
            ax = fig.add_subplot(1, 2, j + 1)
            for key in arms:
                values = [arm_metrics.daily.get((day, key), OnlineCounts()).rate(counter).value for day in days]
                ax.plot([iso_of_day(d)[5:] for d in days], [100 * v for v in values], marker="o",
                        label=key[0] or "(none)")
            ax.set_title(f"{rate} per day (%)")
            ax.grid(alpha=0.3)
            ax.tick_params(axis="x", labelrotation=45, labelsize="small")
            ax.legend(fontsize="small")
        FigureCanvasAgg(fig)
        fig.tight_layout()
        written["chart_trend"] = out / CHART_TREND
        fig.savefig(written["chart_trend"], dpi=100)
    if arms:
        fig = Figure(figsize=(10.0, 4.0))
        for j, (rate, counter) in enumerate(RATES.items()):
            ax = fig.add_subplot(1, 3, j + 1)
            for i, key in enumerate(arms):
                r = arm_metrics.groups[key].rate(counter)
                if not r.trials:
                    continue
                low, high = r.interval()
                ax.bar(i, 100 * r.value, color=f"C{i % 10}")
                ax.errorbar(i, 100 * r.value, yerr=[[100 * (r.value - low)], [100 * (high - r.value)]], color="k",
                            capsize=4)
            ax.set_xticks(range(len(arms)))
            ax.set_xticklabels([k[0] or "(none)" for k in arms], fontsize="small")
            ax.set_title(f"{rate} (%)")
            ax.grid(axis="y", alpha=0.3)
        FigureCanvasAgg(fig)
        fig.tight_layout()
        written["chart_arms"] = out / CHART_ARMS
        fig.savefig(written["chart_arms"], dpi=100)
    return written


__all__ = ["BY_WINDOW", "OnlineReport", "build_online_report", "link_resolver"]
