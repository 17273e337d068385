"""Ta Feng grocery (Taiwan, 2000-11 .. 2001-02) -> the input contract."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Final

import numpy as np
import pandas as pd

from recsvc_training.input import columns as col
from recsvc_training.input.importers.common import (
    SKIP_BAD_QUANTITY,
    SKIP_BAD_TIMESTAMP,
    SKIP_MISSING_ID,
    ImportSummary,
    first_reason,
    format_unique,
    items_frame,
    median_price,
    most_frequent,
    require_columns,
    write,
)

logger = logging.getLogger(__name__)

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
    require_columns(raw, TAFENG_COLUMNS, src)
    raw = raw.apply(lambda s: s.str.strip())
    rows_read = len(raw)

    stamps = format_unique(raw["TRANSACTION_DT"], "%m/%d/%Y")
    amount = pd.to_numeric(raw["AMOUNT"], errors="coerce")
    total = pd.to_numeric(raw["SALES_PRICE"], errors="coerce")
    reasons = first_reason(
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
    categories = most_frequent(kept, "PRODUCT_ID", "PRODUCT_SUBCLASS")
    items = items_frame(
        item_ids=categories.index,
        titles=categories.index.to_series(),
        categories=categories,
        prices=median_price(events),
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
    return write("tafeng", src, out_dir, rows_read, reasons, events, items, customers, facts)


# --------------------------------------------------------------------------------------------------------------
# UCI Online Retail
