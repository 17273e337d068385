"""Public data sets -> the trainer's input contract (:mod:`recsvc_training.input.columns`).

Each importer reads one public data set (see ``../shared/data/README.md`` for provenance and licences) and
writes ``events.csv.gz``, ``items.csv`` and ``customers.csv`` into a folder the trainer reads like any
retailer's export. They convert, they do not clean: rows the trainer would quarantine anyway are passed on,
and only rows that cannot be expressed in the contract, or that are not customer behaviour at all (postage
lines, stock adjustments), are skipped and counted per reason in the :class:`ImportSummary`.

Decisions every importer shares:

* ids stay strings exactly as in the source (Ta Feng customer ids have leading zeros);
* timestamps are written as ISO 8601 UTC (``2000-11-01T00:00:00Z``); sources without a time zone are read as
  UTC, sources with day resolution get midnight;
* a negative quantity is written as a ``return`` with a positive quantity;
* ``price`` is a unit price; empty where the source has none.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final, Protocol

import numpy as np
import pandas as pd

from recsvc_training.input import columns as col

logger = logging.getLogger(__name__)

__all__ = [
    "DEFAULT_SOURCES",
    "IMPORTERS",
    "ImportSummary",
    "Importer",
    "import_movielens",
    "import_online_retail",
    "import_tafeng",
]

# Skip reasons (keys of ImportSummary.skipped).
SKIP_MISSING_ID: Final = "missing_id"
SKIP_BAD_TIMESTAMP: Final = "bad_timestamp"
SKIP_BAD_QUANTITY: Final = "bad_quantity"
SKIP_NON_PRODUCT: Final = "non_product"
SKIP_STOCK_ADJUSTMENT: Final = "stock_adjustment"

_ISO_UTC: Final = "%Y-%m-%dT%H:%M:%SZ"
_GZIP: Final = {"method": "gzip", "compresslevel": 6, "mtime": 0}


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

TAFENG_COLUMNS: Final = (
    "TRANSACTION_DT", "CUSTOMER_ID", "AGE_GROUP", "PIN_CODE", "PRODUCT_SUBCLASS", "PRODUCT_ID", "AMOUNT", "ASSET",
    "SALES_PRICE",
)


def import_tafeng(src: Path, out_dir: Path, limit_rows: int | None = None) -> ImportSummary:
    """Import the Ta Feng grocery log (``tafeng.csv.gz``; Taiwan, Nov 2000 - Feb 2001).

    Parameters
    ----------
    src
        The CSV (plain or gzip). UTF-8 with a byte-order mark, read as ``utf-8-sig`` so the first column is
        ``TRANSACTION_DT`` and not ``\\ufeffTRANSACTION_DT``.
    out_dir
        Folder to write the tables into (created if missing).
    limit_rows
        Read only the first rows (for tests and quick looks); ``None`` reads all 817,741.

    Returns
    -------
    ImportSummary
        ``facts`` counts ``returns`` and ``items_with_several_categories`` (a product listed under more than one
        subclass gets its most frequent one).

    Notes
    -----
    Every row becomes an in-store event (``channel`` "store", ``store_id`` "" since the data has no store).
    ``order_id`` stays empty: the data has no receipt, and the trainer makes customer x day baskets, which is
    how the data set is meant to be read. ``AMOUNT`` is the quantity and ``SALES_PRICE`` the line total, so
    ``price = SALES_PRICE / AMOUNT``. ``PRODUCT_SUBCLASS`` becomes the item category; items have no names, so
    the title is the product id. ``AGE_GROUP`` and ``PIN_CODE`` (residential area, not a store) become the
    customer attributes ``age_group`` and ``area``.
    """
    raw = pd.read_csv(src, dtype=str, encoding="utf-8-sig", keep_default_na=False, nrows=limit_rows)
    _require_columns(raw, TAFENG_COLUMNS, src)
    raw = raw.apply(lambda s: s.str.strip())
    rows_read = len(raw)

    stamps = _format_unique(raw["TRANSACTION_DT"], "%m/%d/%Y")
    amount = pd.to_numeric(raw["AMOUNT"], errors="coerce")
    total = pd.to_numeric(raw["SALES_PRICE"], errors="coerce")
    reasons = _first_reason(
        [
            (SKIP_MISSING_ID, (raw["CUSTOMER_ID"] == "") | (raw["PRODUCT_ID"] == "")),
            (SKIP_BAD_TIMESTAMP, stamps == ""),
            (SKIP_BAD_QUANTITY, amount.isna() | (amount == 0)),
        ]
    )
    keep = reasons == ""
    quantity = amount.abs()
    events = pd.DataFrame(
        {
            col.TIMESTAMP: stamps,
            col.CUSTOMER_ID: raw["CUSTOMER_ID"],
            col.ITEM_ID: raw["PRODUCT_ID"],
            col.EVENT: np.where(amount < 0, col.RETURN, col.PURCHASE),
            col.CHANNEL: "store",
            col.STORE_ID: "",
            col.ORDER_ID: "",
            col.QUANTITY: quantity,
            col.PRICE: (total.abs() / quantity).round(4),
        }
    )[keep.to_numpy()]

    kept = raw[keep.to_numpy()]
    categories = _most_frequent(kept, "PRODUCT_ID", "PRODUCT_SUBCLASS")
    items = _items_frame(
        item_ids=categories.index,
        titles=categories.index.to_series(),
        categories=categories,
        prices=_median_price(events),
    )
    # One row per customer: the first non-empty value (the source never gives one customer two).
    attributes = kept[["AGE_GROUP", "PIN_CODE"]].replace("", np.nan).set_axis(["age_group", "area"], axis=1)
    customers = (
        attributes.groupby(kept["CUSTOMER_ID"].rename(col.CUSTOMER_ID), sort=True)
        .first()
        .fillna("")
        .reset_index()
    )
    several = int((kept.groupby("PRODUCT_ID")["PRODUCT_SUBCLASS"].nunique() > 1).sum())
    facts = {
        "returns": int((events[col.EVENT] == col.RETURN).sum()),
        "items_with_several_categories": several,
    }
    return _write("tafeng", src, out_dir, rows_read, reasons, events, items, customers, facts)


# --------------------------------------------------------------------------------------------------------------
# UCI Online Retail

ONLINE_RETAIL_COLUMNS: Final = (
    "InvoiceNo", "StockCode", "Description", "Quantity", "InvoiceDate", "UnitPrice", "CustomerID", "Country",
)
#: StockCodes that are charges, fees, samples or adjustments, not products (compared upper-cased).
NON_PRODUCT_CODES: Final = frozenset(
    {"POST", "D", "M", "DOT", "BANK CHARGES", "C2", "PADS", "AMAZONFEE", "CRUK", "S", "B"}
)
_GIFT_VOUCHER: Final = re.compile(r"^gift_", re.IGNORECASE)
GUEST_PREFIX: Final = "guest-"


def import_online_retail(src: Path, out_dir: Path, limit_rows: int | None = None) -> ImportSummary:
    """Import UCI Online Retail I (``online_retail.csv.gz``; a UK online gift shop, Dec 2010 - Dec 2011).

    Parameters
    ----------
    src
        The CSV (plain or gzip) with ``InvoiceNo, StockCode, Description, Quantity, InvoiceDate, UnitPrice,
        CustomerID, Country``.
    out_dir
        Folder to write the tables into (created if missing).
    limit_rows
        Read only the first rows; ``None`` reads all 541,909.

    Returns
    -------
    ImportSummary
        ``skipped`` counts ``non_product`` rows (see below) and ``stock_adjustment`` rows; ``facts`` counts
        ``returns``, ``guest_rows``, ``guest_invoices`` and ``largest_guest_invoice_lines``.

    Notes
    -----
    * Every row is a ``web`` event; ``InvoiceNo`` is the ``order_id``. Invoices starting with ``C`` are
      cancellations: written as ``return`` with a positive quantity (their order id is the cancellation
      invoice; the data does not say which order they cancel).
    * Guest checkouts (no ``CustomerID``, a quarter of the rows) get the customer id ``guest-<InvoiceNo>``: a
      guest order is one basket, useful for co-purchase, and would otherwise be quarantined by the trainer for
      a missing id. Each guest is a customer with a single order, so filter the ``guest-`` prefix out where
      personal history matters (evaluation protocols that require training history already do). In the
      full file the 135k guest rows are only ~1,400 invoices of 93 lines on average (up to 1,100): bulk or
      marketplace orders rather than single shoppers, so cap basket sizes when counting co-purchases.
    * Non-product StockCodes (postage, carriage, discounts, manual lines, bank and Amazon fees, samples,
      charity commission, bad-debt adjustments, gift vouchers ``gift_*``) are left out of events and
      catalog. StockCodes are upper-cased: the source spells some products both ways (``85123A``/``85123a``).
    * Rows without a customer and with a unit price of 0 that are not cancellations are warehouse stock
      adjustments ("damaged", "check", "found", ...), not sales: skipped as ``stock_adjustment``.
    * ``InvoiceDate`` has no time zone (UK local time); it is written as if it were UTC.
    * Exact duplicate rows in the source (about 5,000) are passed on: the trainer's quarantine counts them.
    * Title = the most frequent description of the code; no category exists, so it is empty. ``Country``
      becomes the customer attribute ``country`` (the most frequent one when a customer has several).
    """
    raw = pd.read_csv(src, dtype=str, keep_default_na=False, nrows=limit_rows)
    _require_columns(raw, ONLINE_RETAIL_COLUMNS, src)
    raw = raw.apply(lambda s: s.str.strip())
    rows_read = len(raw)

    code = raw["StockCode"].str.upper()
    invoice = raw["InvoiceNo"]
    cancelled = invoice.str.upper().str.startswith("C")
    # Some exports carry CustomerID as a float ("17850.0"); the id is the integer.
    customer = raw["CustomerID"].str.replace(r"\.0+$", "", regex=True)
    guest = customer == ""
    quantity = pd.to_numeric(raw["Quantity"], errors="coerce")
    price = pd.to_numeric(raw["UnitPrice"], errors="coerce")
    stamps = _format_unique(raw["InvoiceDate"], "ISO8601")
    non_product = code.isin(NON_PRODUCT_CODES) | code.str.match(_GIFT_VOUCHER)
    reasons = _first_reason(
        [
            (SKIP_NON_PRODUCT, non_product),
            (SKIP_STOCK_ADJUSTMENT, guest & ~cancelled & (price == 0)),
            (SKIP_MISSING_ID, (code == "") | (invoice == "")),
            (SKIP_BAD_TIMESTAMP, stamps == ""),
            (SKIP_BAD_QUANTITY, quantity.isna() | (quantity == 0)),
        ]
    )
    keep = (reasons == "").to_numpy()
    events = pd.DataFrame(
        {
            col.TIMESTAMP: stamps,
            col.CUSTOMER_ID: customer.where(~guest, GUEST_PREFIX + invoice),
            col.ITEM_ID: code,
            col.EVENT: np.where(cancelled | (quantity < 0), col.RETURN, col.PURCHASE),
            col.CHANNEL: "web",
            col.STORE_ID: "",
            col.ORDER_ID: invoice,
            col.QUANTITY: quantity.abs(),
            col.PRICE: price,
        }
    )[keep]

    kept = raw[keep].assign(code=code[keep])
    described = kept[kept["Description"] != ""]
    titles = _most_frequent(described, "code", "Description")
    item_ids = pd.Index(sorted(set(kept["code"])), name="code")
    items = _items_frame(
        item_ids=item_ids,
        titles=titles.reindex(item_ids, fill_value=""),
        categories=pd.Series("", index=item_ids),
        prices=_median_price(events),
    )
    countries = _most_frequent(
        pd.DataFrame({"customer": events[col.CUSTOMER_ID], "country": kept["Country"]}), "customer", "country"
    )
    customers = pd.DataFrame({col.CUSTOMER_ID: countries.index, "country": countries.to_numpy()})
    guest_lines = invoice[keep & guest.to_numpy()].value_counts()
    facts = {
        "returns": int((events[col.EVENT] == col.RETURN).sum()),
        "guest_rows": int(guest_lines.sum()),
        "guest_invoices": len(guest_lines),
        # Guest invoices are few and huge (bulk and marketplace orders, not single shoppers): worth a
        # basket-size cap in co-purchase counting.
        "largest_guest_invoice_lines": int(guest_lines.max()) if len(guest_lines) else 0,
    }
    return _write("online_retail", src, out_dir, rows_read, reasons, events, items, customers, facts)


# --------------------------------------------------------------------------------------------------------------
# MovieLens 100k

MOVIELENS_GENRES: Final = (
    "unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime", "Documentary", "Drama",
    "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery", "Romance", "Sci-Fi", "Thriller", "War", "Western",
)
#: Age buckets of the later MovieLens releases (1M), so results compare across them.
_ML_AGE_BINS: Final = (0, 18, 25, 35, 45, 50, 56, 200)
_ML_AGE_LABELS: Final = ("<18", "18-24", "25-34", "35-44", "45-49", "50-55", "56+")


def import_movielens(
    src_dir: Path, out_dir: Path, limit_rows: int | None = None, like_threshold: int = 4
) -> ImportSummary:
    """Import MovieLens 100k (``ml-100k/``) as web views and "purchases", for comparison with published numbers.

    Parameters
    ----------
    src_dir
        The ``ml-100k`` folder: ``u.data`` or ``u.data.gz`` (tab-separated user, item, rating, unix time),
        ``u.item`` (Latin-1, ``|``-separated) and ``u.user``.
    out_dir
        Folder to write the tables into (created if missing).
    limit_rows
        Read only the first ratings; the catalog and customers are always complete.
    like_threshold
        Ratings at or above it become ``purchase`` events (the usual implicit-feedback reading), the others
        ``view`` events, so a low rating still says "seen" but never counts as a positive.

    Returns
    -------
    ImportSummary
        ``facts`` counts ``purchases`` and ``views``.

    Notes
    -----
    Channel ``web``, no orders, quantity 1, no price. Items: title from ``u.item``, the first listed genre as
    category and every genre in the attribute ``genres`` (``|``-separated), the release year in ``year``.
    Customers: ``age_group`` (the 1M buckets), ``gender`` and ``occupation`` from ``u.user``. GroupLens
    licence: research use only, not for commercial use.
    """
    data = src_dir / "u.data"
    if not data.exists():
        data = src_dir / "u.data.gz"
    raw = pd.read_csv(
        data, sep="\t", header=None, names=["user", "item", "rating", "ts"], dtype=str, keep_default_na=False,
        nrows=limit_rows,
    )
    rows_read = len(raw)
    rating = pd.to_numeric(raw["rating"], errors="coerce")
    seconds = pd.to_numeric(raw["ts"], errors="coerce")
    stamps = _format_unique(seconds, "unix")
    reasons = _first_reason(
        [
            (SKIP_MISSING_ID, (raw["user"] == "") | (raw["item"] == "")),
            (SKIP_BAD_TIMESTAMP, stamps == ""),
            (SKIP_BAD_QUANTITY, rating.isna()),
        ]
    )
    keep = (reasons == "").to_numpy()
    events = pd.DataFrame(
        {
            col.TIMESTAMP: stamps,
            col.CUSTOMER_ID: raw["user"],
            col.ITEM_ID: raw["item"],
            col.EVENT: np.where(rating >= like_threshold, col.PURCHASE, col.VIEW),
            col.CHANNEL: "web",
            col.STORE_ID: "",
            col.ORDER_ID: "",
            col.QUANTITY: 1,
            col.PRICE: np.nan,
        }
    )[keep]

    movies = pd.read_csv(
        src_dir / "u.item", sep="|", header=None, encoding="latin-1", dtype=str, keep_default_na=False,
        names=["item", "title", "release", "video_release", "url", *MOVIELENS_GENRES],
    )
    flags = movies[list(MOVIELENS_GENRES)].to_numpy() == "1"
    genres = ["|".join(g for g, on in zip(MOVIELENS_GENRES, row, strict=True) if on) for row in flags]
    items = _items_frame(
        item_ids=pd.Index(movies["item"]),
        titles=pd.Series(movies["title"].to_numpy(), index=movies["item"]),
        categories=pd.Series([g.split("|")[0] for g in genres], index=movies["item"]),
        prices=pd.Series(dtype=float),
    ).assign(genres=genres, year=movies["release"].str[-4:].to_numpy())

    users = pd.read_csv(
        src_dir / "u.user", sep="|", header=None, dtype=str, keep_default_na=False,
        names=["user", "age", "gender", "occupation", "zip"],
    )
    ages = pd.cut(pd.to_numeric(users["age"], errors="coerce"), _ML_AGE_BINS, right=False, labels=_ML_AGE_LABELS)
    customers = pd.DataFrame(
        {
            col.CUSTOMER_ID: users["user"],
            "age_group": ages.astype(str).replace("nan", ""),
            "gender": users["gender"],
            "occupation": users["occupation"],
        }
    )
    facts = {
        "purchases": int((events[col.EVENT] == col.PURCHASE).sum()),
        "views": int((events[col.EVENT] == col.VIEW).sum()),
    }
    return _write("movielens100k", src_dir, out_dir, rows_read, reasons, events, items, customers, facts)


# --------------------------------------------------------------------------------------------------------------
# Registry for the CLI

IMPORTERS: Final[dict[str, Importer]] = {
    "tafeng": import_tafeng,
    "online_retail": import_online_retail,
    "movielens100k": import_movielens,
}
#: Where each data set lives inside ``../shared/data`` (a file, or a folder for MovieLens).
DEFAULT_SOURCES: Final[dict[str, str]] = {
    "tafeng": "tafeng.csv.gz",
    "online_retail": "online_retail.csv.gz",
    "movielens100k": "ml-100k",
}


# --------------------------------------------------------------------------------------------------------------
# Shared helpers


def _require_columns(raw: pd.DataFrame, expected: tuple[str, ...], src: Path) -> None:
    missing = [c for c in expected if c not in raw.columns]
    if missing:
        raise ValueError(f"{src}: missing column(s) {missing}; found {list(raw.columns)}")


def _format_unique(values: pd.Series, fmt: str) -> pd.Series:
    """Parse and re-format timestamps as ISO 8601 UTC strings, "" where unparseable.

    Logs repeat the same few thousand time stamps; parsing the distinct values only keeps an 800k-row import
    fast. ``fmt`` is a ``strptime`` format, ``"ISO8601"``, or ``"unix"`` for numeric seconds.
    """
    codes, uniques = pd.factorize(values, use_na_sentinel=True)
    if fmt == "unix":
        parsed = pd.to_datetime(pd.Series(uniques, dtype="float64"), unit="s", utc=True, errors="coerce")
    else:
        parsed = pd.to_datetime(pd.Series(uniques, dtype=object), format=fmt, utc=True, errors="coerce")
    text = np.append(parsed.dt.strftime(_ISO_UTC).fillna("").to_numpy(dtype=object), "")
    return pd.Series(text[codes], index=values.index, dtype=object)  # code -1 (missing) -> ""


def _first_reason(conditions: list[tuple[str, pd.Series]]) -> pd.Series:
    """One skip reason per row ("" = keep): the first condition that holds, in the order given."""
    index = conditions[0][1].index
    reasons = np.full(len(index), "", dtype=object)
    for reason, mask in reversed(conditions):
        reasons[mask.fillna(False).to_numpy(dtype=bool)] = reason
    return pd.Series(reasons, index=index)


def _most_frequent(frame: pd.DataFrame, key: str, value: str) -> pd.Series:
    """Per ``key``, the most frequent ``value`` (ties: the smallest), as a Series indexed by key."""
    counts = frame.groupby([key, value], sort=False).size().rename("n").reset_index()
    counts = counts.sort_values([key, "n", value], ascending=[True, False, True], kind="stable")
    first = counts.drop_duplicates(key)
    return pd.Series(first[value].to_numpy(), index=pd.Index(first[key].to_numpy(), name=key), name=value)


def _median_price(events: pd.DataFrame) -> pd.Series:
    """Median paid unit price per item over purchases with a positive price (returns and freebies excluded)."""
    paid = events[(events[col.EVENT] == col.PURCHASE) & (events[col.PRICE] > 0)]
    return paid.groupby(col.ITEM_ID)[col.PRICE].median().round(4)


def _items_frame(item_ids: pd.Index, titles: pd.Series, categories: pd.Series, prices: pd.Series) -> pd.DataFrame:
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


def _write(
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
    events.to_csv(events_path, index=False, compression=_GZIP)
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
