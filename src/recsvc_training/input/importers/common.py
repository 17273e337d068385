"""What every importer shares: the summary it returns, skip reasons, and the writing of the contract's files."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final, Protocol

import numpy as np
import pandas as pd

from recsvc_training.input import columns as col

logger = logging.getLogger(__name__)

# Skip reasons (keys of ImportSummary.skipped).
SKIP_MISSING_ID: Final = "missing_id"
SKIP_BAD_TIMESTAMP: Final = "bad_timestamp"
SKIP_BAD_QUANTITY: Final = "bad_quantity"
SKIP_NON_PRODUCT: Final = "non_product"
SKIP_STOCK_ADJUSTMENT: Final = "stock_adjustment"

ISO_UTC: Final = "%Y-%m-%dT%H:%M:%SZ"
GZIP: Final = {"method": "gzip", "compresslevel": 6, "mtime": 0}


@dataclass(frozen=True)
class ImportSummary:
    """What an importer read, wrote and skipped.

    ``rows_read`` counts source event rows (after ``limit_rows``); ``rows_written`` the rows of
    ``events.csv.gz``; ``skipped`` maps a reason to the rows left out for it, so
    ``rows_read == rows_written + sum(skipped.values())``. ``facts`` holds source-specific counts worth
    knowing (returns, guest rows, items whose category varies, ...).
    """

    source: str
    src: Path
    events_path: Path
    items_path: Path
    customers_path: Path
    rows_read: int
    rows_written: int
    n_customers: int
    n_items: int
    skipped: Mapping[str, int] = field(default_factory=dict)
    facts: Mapping[str, int] = field(default_factory=dict)

    @property
    def non_product_rows(self) -> int:
        """Rows whose code is a charge, fee or voucher rather than a product (Online Retail only)."""
        return self.skipped.get(SKIP_NON_PRODUCT, 0)

    def __str__(self) -> str:
        skipped = ", ".join(f"{reason} {n:,}" for reason, n in self.skipped.items() if n) or "none"
        facts = ", ".join(f"{name} {n:,}" for name, n in self.facts.items())
        return "\n".join(
            [
                f"{self.source} from {self.src} -> {self.events_path.parent}",
                f"  rows read {self.rows_read:,}, events written {self.rows_written:,}, "
                f"{self.n_customers:,} customers, {self.n_items:,} items",
                f"  skipped: {skipped}",
                *([f"  {facts}"] if facts else []),
            ]
        )


class Importer(Protocol):
    """The shape the CLI calls: source (file or folder), output folder, optional row limit for quick runs."""

    def __call__(self, src: Path, out_dir: Path, /, limit_rows: int | None = None) -> ImportSummary: ...


# --------------------------------------------------------------------------------------------------------------
# Ta Feng

# --------------------------------------------------------------------------------------------------------------
# Shared helpers


def require_columns(raw: pd.DataFrame, expected: tuple[str, ...], src: Path) -> None:
    missing = [c for c in expected if c not in raw.columns]
    if missing:
        raise ValueError(f"{src}: missing column(s) {missing}; found {list(raw.columns)}")


def format_unique(values: pd.Series, fmt: str) -> pd.Series:
    """Parse and re-format timestamps as ISO 8601 UTC strings, "" where unparseable.

    Logs repeat the same few thousand time stamps; parsing the distinct values only keeps an 800k-row import
    fast. ``fmt`` is a ``strptime`` format, ``"ISO8601"``, or ``"unix"`` for numeric seconds.
    """
    codes, uniques = pd.factorize(values, use_na_sentinel=True)
    if fmt == "unix":
        parsed = pd.to_datetime(pd.Series(uniques, dtype="float64"), unit="s", utc=True, errors="coerce")
    else:
        parsed = pd.to_datetime(pd.Series(uniques, dtype=object), format=fmt, utc=True, errors="coerce")
    text = np.append(parsed.dt.strftime(ISO_UTC).fillna("").to_numpy(dtype=object), "")
    return pd.Series(text[codes], index=values.index, dtype=object)  # code -1 (missing) -> ""


def first_reason(conditions: list[tuple[str, pd.Series]]) -> pd.Series:
    """One skip reason per row ("" = keep): the first condition that holds, in the order given."""
    index = conditions[0][1].index
    reasons = np.full(len(index), "", dtype=object)
    for reason, mask in reversed(conditions):
        reasons[mask.fillna(False).to_numpy(dtype=bool)] = reason
    return pd.Series(reasons, index=index)


def most_frequent(frame: pd.DataFrame, key: str, value: str) -> pd.Series:
    """Per ``key``, the most frequent ``value`` (ties: the smallest), as a Series indexed by key."""
    counts = frame.groupby([key, value], sort=False).size().rename("n").reset_index()
    counts = counts.sort_values([key, "n", value], ascending=[True, False, True], kind="stable")
    first = counts.drop_duplicates(key)
    return pd.Series(first[value].to_numpy(), index=pd.Index(first[key].to_numpy(), name=key), name=value)


def median_price(events: pd.DataFrame) -> pd.Series:
    """Median paid unit price per item over purchases with a positive price (returns and freebies excluded)."""
    paid = events[(events[col.EVENT] == col.PURCHASE) & (events[col.PRICE] > 0)]
    return paid.groupby(col.ITEM_ID)[col.PRICE].median().round(4)


def items_frame(item_ids: pd.Index, titles: pd.Series, categories: pd.Series, prices: pd.Series) -> pd.DataFrame:
    """The catalog in contract order; ``channels`` empty (every channel: each source has only one)."""
    return pd.DataFrame(
        {
            col.ITEM_ID: item_ids.to_numpy(),
            col.TITLE: titles.reindex(item_ids).to_numpy(),
            col.CATEGORY: categories.reindex(item_ids).fillna("").to_numpy(),
            col.PRICE: prices.reindex(item_ids).to_numpy(),
            col.CHANNELS: "",
        },
        columns=list(col.ITEM_COLUMNS),
    )


def write(
    source: str,
    src: Path,
    out_dir: Path,
    rows_read: int,
    reasons: pd.Series,
    events: pd.DataFrame,
    items: pd.DataFrame,
    customers: pd.DataFrame,
    facts: Mapping[str, int],
) -> ImportSummary:
    out_dir.mkdir(parents=True, exist_ok=True)
    events_path = out_dir / f"{col.EVENTS}.csv.gz"
    items_path = out_dir / f"{col.ITEMS}.csv"
    customers_path = out_dir / f"{col.CUSTOMERS}.csv"
    # Time order (ISO strings sort like times) makes the file readable; the trainer sorts again anyway.
    events = events[list(col.EVENT_COLUMNS)].sort_values(col.TIMESTAMP, kind="stable")
    quantity = events[col.QUANTITY]
    if quantity.notna().all() and (quantity % 1 == 0).all():  # "2", not "2.0"
        events = events.assign(**{col.QUANTITY: quantity.astype("int64")})
    events.to_csv(events_path, index=False, compression=GZIP)
    items.to_csv(items_path, index=False)
    customers.to_csv(customers_path, index=False)
    counts = reasons[reasons != ""].value_counts()
    summary = ImportSummary(
        source=source,
        src=src,
        events_path=events_path,
        items_path=items_path,
        customers_path=customers_path,
        rows_read=rows_read,
        rows_written=len(events),
        n_customers=len(customers),
        n_items=len(items),
        skipped={str(reason): int(n) for reason, n in sorted(counts.items())},
        facts=dict(facts),
    )
    logger.info(
        "%s: read %d rows, wrote %d events, skipped %s", source, rows_read, len(events), dict(summary.skipped)
    )
    return summary
