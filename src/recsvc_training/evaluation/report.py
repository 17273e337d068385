"""Write an :class:`~recsvc_training.evaluation.runner.EvaluationReport` for machines and for people.

``evaluation.json`` is the report's ``to_dict()``; ``evaluation.md`` has the same numbers as tables (models x
metrics, per channel, new customers, repeat/new hits, cart completion, default model vs best baseline) and
links PNG charts drawn with matplotlib's Agg backend (no display, no global pyplot state).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from recsvc_training.evaluation.runner import METRICS, EvaluationReport, ModelMetrics

logger = logging.getLogger(__name__)

JSON_NAME = "evaluation.json"
MARKDOWN_NAME = "evaluation.md"
CHART_OVERALL = "evaluation_models.png"
CHART_CHANNELS = "evaluation_channels.png"
CHART_CART = "evaluation_cart.png"


def write_report(report: EvaluationReport, out_dir: str | Path, charts: bool = True) -> dict[str, Path]:
    """Write the JSON, the Markdown and (unless ``charts`` is False) the PNG charts into ``out_dir``.

    Returns the written paths by kind (``json``, ``markdown``, ``chart_models``, ``chart_channels``,
    ``chart_cart``); chart kinds are absent when there is nothing to draw.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths: dict[str, Path] = {"json": out / JSON_NAME, "markdown": out / MARKDOWN_NAME}
    paths["json"].write_text(report.to_json() + "\n", encoding="utf-8")
    if charts:
        paths.update(_write_charts(report, out))
    paths["markdown"].write_text(render_markdown(report, {k: p.name for k, p in paths.items()
                                                          if k.startswith("chart_")}), encoding="utf-8")
    logger.info("evaluation report written to %s", out)
    return paths


def format_table(report: EvaluationReport, k: int | None = None) -> str:
    """Plain-text table of models x metrics at ``k`` (default: the report's), for the end of training."""
    k = k or report.k
    metrics = [f"{m}@{k}" for m in METRICS]
    names = list(report.overall)
    name_width = max([len("model"), *(len(n) + 2 for n in names)])
    lines = [f"{'model':<{name_width}}" + "".join(f"{m:>14}" for m in metrics)]
    for name in names:
        mark = " *" if name == report.default_model else ""
        lines.append(f"{name + mark:<{name_width}}"
                     + "".join(f"{_fmt(report.overall[name].get(m)):>14}" for m in metrics))
    lines.append(f"{report.n_test_customers} returning test customers, {report.n_items} items, "
                 f"test window {report.cutoff_date} + {report.test_days} days")
    for name, values in report.cart_completion.items():
        lines.append(f"cart completion {name}: hit_rate@10={_fmt(values.get('hit_rate@10'))} "
                     f"mrr@10={_fmt(values.get('mrr@10'))}")
    return "\n".join(lines)


def render_markdown(report: EvaluationReport, chart_files: dict[str, str] | None = None) -> str:
    """The Markdown report; ``chart_files`` maps chart kind to a file name relative to the Markdown file."""
    charts = chart_files or {}
    k = report.k
    at_k = [f"{m}@{k}" for m in METRICS]
    lines = [
        "# Offline evaluation",
        "",
        f"Time split: train before **{report.cutoff_date}** (day {report.cutoff_day}), test on the next "
        f"**{report.test_days} days**. {report.n_train_events:,} train events, {report.n_test_events:,} test "
        f"events; {report.n_test_customers:,} returning test customers, {report.n_new_customers:,} new "
        f"customers; full ranking over {report.n_items:,} items (coverage over a catalog of "
        f"{report.catalog_size:,}).",
        "",
    ]
    if report.default_model:
        lines += [f"Model under test: **{report.default_model}**; "
                  f"baselines: {', '.join(report.baselines)}.", ""]
    for kk in report.ks:
        lines += [f"## Returning customers @{kk}", "",
                  *_table(report.overall, [f"{m}@{kk}" for m in METRICS], report.default_model), ""]
    if "chart_models" in charts:
        lines += [f"![models side by side per metric]({charts['chart_models']})", ""]
    ratios = report.ratios_to_best_baseline(tuple(f"{m}@{k}" for m in METRICS))
    if ratios:
        lines += [f"## {report.default_model} vs the best baseline @{k}", "",
                  f"| metric | {report.default_model} | best baseline | baseline value | ratio |",
                  "|---|---:|---|---:|---:|"]
        lines += [f"| {m} | {_fmt(r['value'])} | {r['baseline']} | {_fmt(r['baseline_value'])} | "
                  f"{_fmt(r['ratio'], 2)}x |" for m, r in ratios.items()]
        lines.append("")
    lines += [f"## Repeat vs new items in the hits @{k}", "",
              "Repeat = the customer bought the item before the cut-off.", "",
              "| model | repeat hits | new hits | repeat share of hits | repeat recall | new recall |",
              "|---|---:|---:|---:|---:|---:|"]
    for name, rn in report.repeat_new.items():
        lines.append(f"| {name} | {int(rn['repeat_hits'])} | {int(rn['new_hits'])} | "
                     f"{_fmt(rn['repeat_hit_share'])} | {_fmt(rn['repeat_recall'])} | "
                     f"{_fmt(rn['new_recall'])} |")
    lines.append("")
    if report.per_channel:
        lines += [f"## Per channel @{k}", "", "By each customer's main channel in the test window.", ""]
        for ch in report.channels:
            lines += [f"### {ch} ({report.channel_customers.get(ch, 0):,} customers)", "",
                      *_table(report.per_channel[ch], at_k, report.default_model), ""]
        if "chart_channels" in charts:
            lines += [f"![per channel]({charts['chart_channels']})", ""]
    similar = report.choices.get("similar_items") or {}
    if similar.get("methods"):
        lines += [f"## SimilarItems ({similar.get('pairs', 0):,} next-basket pairs; served: {similar.get('served')})",
                  "", *_table(similar["methods"], ["hit_rate@10", "category_match@10", "answered"], None), ""]
    if report.new_customers:
        lines += [f"## New customers @{k} ({report.n_new_customers:,})", "",
                  "Customers with no event before the cut-off; only models that serve them.", "",
                  *_table(report.new_customers, [f"{m}@{k}" for m in METRICS], report.default_model), ""]
    if report.cart_completion:
        lines += [f"## Cart completion ({report.n_cart_baskets:,} test baskets, one item hidden)", "",
                  *_table(report.cart_completion, ["hit_rate@10", "mrr@10"], None), ""]
        if "chart_cart" in charts:
            lines += [f"![cart completion]({charts['chart_cart']})", ""]
    if report.seconds:
        lines += ["## Time", "", "| model | fit (s) | recommend (s) |", "|---|---:|---:|"]
        lines += [f"| {name} | {_fmt(s.get('fit'), 2)} | {_fmt(s.get('recommend'), 2)} |"
                  for name, s in report.seconds.items()]
        lines += ["", f"Evaluation run: {report.total_seconds:.1f} s.", ""]
    return "\n".join(lines)


def _table(rows: dict[str, ModelMetrics], metrics: Sequence[str], default_model: str | None) -> list[str]:
    out = ["| model | " + " | ".join(metrics) + " |", "|---|" + "---:|" * len(metrics)]
    for name, values in rows.items():
        label = f"**{name}**" if name == default_model else name
        out.append(f"| {label} | " + " | ".join(_fmt(values.get(m)) for m in metrics) + " |")
    return out


def _fmt(value: Any, digits: int = 4) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "–"
    return f"{float(value):.{digits}f}"


def _write_charts(report: EvaluationReport, out: Path) -> dict[str, Path]:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    def grouped_bars(ax: Any, groups: list[str], series: dict[str, list[float]], title: str) -> None:
        n = max(len(series), 1)
        width = 0.8 / n
        for j, (label, values) in enumerate(series.items()):
            xs = [i + (j - (n - 1) / 2) * width for i in range(len(groups))]
            ax.bar(xs, [0.0 if not math.isfinite(v) else v for v in values], width, label=label)
        ax.set_xticks(range(len(groups)))
        ax.set_xticklabels(groups, rotation=0)
        ax.set_title(title)
        ax.grid(axis="y", alpha=0.3)

    def save(fig: Figure, name: str, bottom: float = 0.0) -> Path:
        FigureCanvasAgg(fig)
        fig.tight_layout(rect=(0.0, bottom, 1.0, 1.0))
        path = out / name
        fig.savefig(path, dpi=110)
        return path

    written: dict[str, Path] = {}
    k = report.k
    metrics = [f"{m}@{k}" for m in METRICS]
    models = list(report.overall)
    if models:
        # One panel per metric, each on its own scale: hit rate and coverage would flatten NDCG on a shared axis.
        fig = Figure(figsize=(max(10.0, 0.5 * len(models) * 3), 6.5))
        for j, metric in enumerate(metrics):
            ax = fig.add_subplot(2, (len(metrics) + 1) // 2, j + 1)
            values = [report.overall[m].get(metric, math.nan) for m in models]
            ax.bar(range(len(models)), [v if math.isfinite(v) else 0.0 for v in values],
                   color=[f"C{i % 10}" for i in range(len(models))])
            ax.set_xticks(range(len(models)))
            ax.set_xticklabels(models, rotation=35, ha="right", fontsize="small")
            ax.set_title(metric)
            ax.grid(axis="y", alpha=0.3)
        fig.suptitle(f"Returning customers, test window from {report.cutoff_date} ({report.test_days} days)")
        written["chart_models"] = save(fig, CHART_OVERALL)
    if report.per_channel:
        shown = [f"{m}@{k}" for m in ("ndcg", "recall", "hit_rate")]
        fig = Figure(figsize=(max(9.0, 1.0 * len(report.channels) * len(shown)), 5.0))
        for j, metric in enumerate(shown):
            ax = fig.add_subplot(1, len(shown), j + 1)
            series = {m: [report.per_channel[ch].get(m, {}).get(metric, math.nan) for ch in report.channels]
                      for m in models}
            grouped_bars(ax, list(report.channels), series, metric)
        handles, labels = fig.axes[0].get_legend_handles_labels()
        # Below the panels, so it never hides a bar.
        fig.legend(handles, labels, loc="lower center", ncol=min(len(models), 5), fontsize="small")
        written["chart_channels"] = save(fig, CHART_CHANNELS, bottom=0.08)
    if report.cart_completion:
        fig = Figure(figsize=(7.0, 4.0))
        ax = fig.add_subplot(1, 1, 1)
        names = list(report.cart_completion)
        grouped_bars(ax, ["hit_rate@10", "mrr@10"],
                     {n: [report.cart_completion[n].get(m, math.nan) for m in ("hit_rate@10", "mrr@10")]
                      for n in names}, f"Cart completion ({report.n_cart_baskets} baskets)")
        ax.legend(fontsize="small", loc="upper left")
        written["chart_cart"] = save(fig, CHART_CART)
    return written
