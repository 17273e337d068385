"""The campaign's files: one row per customer as Parquet and CSV, a summary (JSON and Markdown) and a chart.

Columns (both files): ``customer_id``, ``contact_alias``, ``channel``, ``segment``, ``why`` (the audience
rules the customer matched, in words), ``score`` (a launch's affinity; else the first item's score),
``due_item_id`` and ``due_in_days`` (rebuy: the item and days until it is due, negative when overdue; empty
otherwise), then ``items``, ``titles``, ``reasons``, ``reason_kinds``, ``scores`` — the message's items in
order — and ``suggestion_items``, ``suggestion_reasons``, ``suggestion_scores`` — the channel's
``Recommend`` list when the spec asks for suggestions. In Parquet the item columns are lists; in CSV they
are joined with ``|`` (reasons with `` | ``).

The chart (``audience.png``) shows the final audience by RFM segment and by the channel of the last purchase.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

LIST_COLUMNS = ("items", "titles", "reasons", "reason_kinds", "scores", "suggestion_items", "suggestion_reasons",
                "suggestion_scores")
_FLOAT_LISTS = ("scores", "suggestion_scores")
_REASON_LISTS = ("reasons", "suggestion_reasons")


_COLUMNS = ("customer_id", "contact_alias", "channel", "segment", "why", "score", "due_item_id", "due_in_days",
            *LIST_COLUMNS)


def _schema() -> pa.Schema:
    fields = []
    for name in _COLUMNS:
        if name in _FLOAT_LISTS:
            kind = pa.list_(pa.float64())
        elif name in LIST_COLUMNS:
            kind = pa.list_(pa.string())
        elif name == "score":
            kind = pa.float64()
        elif name == "due_in_days":
            kind = pa.int32()
        else:
            kind = pa.string()
        fields.append(pa.field(name, kind))
    return pa.schema(fields)


SCHEMA = _schema()


class RowWriter:
    """Writes a campaign's rows to ``<name>.parquet`` and ``<name>.csv`` as they come, ``batch`` rows at a time,
    so a run over millions of customers holds one batch in memory, not the whole output.

    :attr:`written` counts rows; :attr:`sent` keeps (customer id, first item id) per row for ``--record-sent``.
    """

    def __init__(self, out_dir: Path, name: str, batch: int = 50_000) -> None:
        out_dir.mkdir(parents=True, exist_ok=True)
        self.paths = {"parquet": out_dir / f"{name}.parquet", "csv": out_dir / f"{name}.csv"}
        self._batch = batch
        self._columns: dict[str, list[Any]] = {n: [] for n in _COLUMNS}
        self._parquet: pq.ParquetWriter | None = pq.ParquetWriter(self.paths["parquet"], SCHEMA)
        self._csv_header = True
        self.written = 0
        self.sent: list[tuple[str, str]] = []

    def add(self, **values: Any) -> None:
        for name, column in self._columns.items():
            column.append(values.get(name, [] if name in LIST_COLUMNS else None))
        self.written += 1
        if len(self._columns["customer_id"]) >= self._batch:
            self._flush()

    def _flush(self) -> None:
        assert self._parquet is not None, "closed"
        table = pa.table({n: pa.array(v, type=SCHEMA.field(n).type) for n, v in self._columns.items()},
                         schema=SCHEMA)
        self._parquet.write_table(table)
        frame = table.to_pandas()
        for column in LIST_COLUMNS:
            sep = " | " if column in _REASON_LISTS else "|"
            frame[column] = [sep.join(_text(v) for v in values) for values in frame[column]]
        frame.to_csv(self.paths["csv"], index=False, header=self._csv_header, mode="w" if self._csv_header else "a")
        self._csv_header = False
        self._columns = {n: [] for n in _COLUMNS}

    def close(self) -> None:
        """Write the last batch (an empty output still gets its header and schema) and close the files."""
        if self._parquet is None:
            return
        if self._columns["customer_id"] or self._csv_header:
            self._flush()
        self._parquet.close()
        self._parquet = None


def _text(value: Any) -> str:
    return f"{value:.6g}" if isinstance(value, float) else str(value)


def write_summary(summary: Mapping[str, Any], out_dir: Path, name: str) -> dict[str, Path]:
    """``<name>.summary.json``, ``<name>.summary.md`` and the chart ``<name>.audience.png``."""
    paths = {"summary_json": out_dir / f"{name}.summary.json", "summary_md": out_dir / f"{name}.summary.md",
             "chart": out_dir / f"{name}.audience.png"}
    paths["summary_json"].write_text(json.dumps(summary, indent=2, sort_keys=False, default=str) + "\n")
    paths["summary_md"].write_text(summary_markdown(summary))
    audience_chart(summary.get("by_segment", {}), summary.get("by_channel", {}), paths["chart"],
                   f"{name}: {summary.get('sent', 0):,} customers")
    return paths


def summary_markdown(summary: Mapping[str, Any]) -> str:
    """The summary as a short Markdown report: audience per rule, suppressed per reason, the split."""
    lines = [f"# Campaign {summary['campaign']} ({summary['kind']}, channel {summary['channel']})", "",
             f"Model {summary['model_version']}, as of {summary['today']}; {summary['customers']:,} customers "
             f"considered, {summary['audience']:,} in the audience, {summary['sent']:,} to send.", "",
             "| audience rule | line | customers |", "|---|---:|---:|"]
    for rule in summary.get("rules", []):
        lines.append(f"| {rule['label']} | {rule['line']} | {rule['customers']:,} |")
    lines += ["", "| suppressed because | customers |", "|---|---:|"]
    for reason, n in summary.get("suppressed", {}).items():
        lines.append(f"| {reason} | {n:,} |")
    for title, key in (("segment", "by_segment"), ("last purchase channel", "by_channel")):
        lines += ["", f"| {title} | customers |", "|---|---:|"]
        lines += [f"| {k} | {v:,} |" for k, v in summary.get(key, {}).items()]
    return "\n".join(lines) + "\n"


def audience_chart(by_segment: Mapping[str, int], by_channel: Mapping[str, int], path: Path, title: str) -> None:
    """Two bar charts side by side: the audience by segment and by channel of the last purchase."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for ax, data, label in ((axes[0], by_segment, "RFM segment"), (axes[1], by_channel, "last purchase channel")):
        keys: Sequence[str] = list(data) or ["(none)"]
        ax.bar(range(len(keys)), [data.get(k, 0) for k in keys], color="#4477aa")
        ax.set_xticks(range(len(keys)), keys, rotation=30, ha="right")
        ax.set_title(f"by {label}")
        ax.set_ylabel("customers")
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
