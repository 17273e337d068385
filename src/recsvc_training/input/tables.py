"""The rules every input table shares (ids, text, numbers, quarantined rows) and the cleaning of the catalog,
customer and stock tables; :mod:`recsvc_training.input.ingest` reads the files and cleans the events.

Every function here takes raw string columns as read (``dtype=str``) and returns cleaned frames plus the rows
it set aside, each with its ``reason`` and 1-based ``source_row``.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from recsvc_training.input.columns import (
    CATEGORY,
    CHANNEL_SEPARATOR,
    CHANNELS,
    CUSTOMER_ID,
    ITEM_COLUMNS,
    ITEM_ID,
    PRICE,
    QUANTITY_ON_HAND,
    REASON_BAD_QUANTITY,
    REASON_DUPLICATE,
    REASON_MISSING_ID,
    STORE_ID,
    TITLE,
)
from recsvc_training.input.identity import REASON_COLUMN, SOURCE_ROW_COLUMN, resolve_column


def clean_id_series(values: pd.Series) -> pd.Series:
    """:func:`recsvc.ids.clean_id` of every value, vectorised.

    ``clean_id`` is ``str.strip()`` (the rule the server applies to every request); pandas' ``str.strip()``
    without arguments removes the same characters (Python's and pyarrow's whitespace agree, tabs and
    non-breaking spaces included; ``tests/test_ingest.py`` pins it against ``clean_id``), at vector speed.
    """
    return values.astype(str).str.strip()


def text_column(frame: pd.DataFrame, column: str) -> pd.Series:
    """A string column trimmed by the id rule (clean_id_series), or all "" when it is absent."""
    if column in frame.columns:
        return clean_id_series(frame[column])
    return pd.Series([""] * len(frame), index=frame.index, dtype=str)


def parse_numbers(text: pd.Series) -> pd.Series:
    """Parse numbers; anything unparseable or non-finite becomes NaN."""
    values = pd.to_numeric(text, errors="coerce").astype(np.float64)
    return values.where(np.isfinite(values.to_numpy()), np.nan)


# --- items --------------------------------------------------------------------------------------------------

def clean_items(raw: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Valid catalog rows (contract columns first, then attributes as given) and the quarantined raw rows."""
    item = text_column(raw, ITEM_ID)
    missing = (item == "").to_numpy()
    duplicate = ~missing & item.duplicated(keep="first").to_numpy()
    reasons = np.where(missing, REASON_MISSING_ID, np.where(duplicate, REASON_DUPLICATE, ""))
    bad_rows = np.flatnonzero(missing | duplicate)
    quarantined = quarantine_frame(raw, bad_rows, reasons[bad_rows])

    attributes = [c for c in raw.columns if c not in ITEM_COLUMNS]
    items = pd.DataFrame({
        ITEM_ID: item, TITLE: text_column(raw, TITLE), CATEGORY: text_column(raw, CATEGORY),
        PRICE: parse_numbers(text_column(raw, PRICE)),
        CHANNELS: _normalise_channel_lists(text_column(raw, CHANNELS)),
    })
    for column in attributes:
        items[column] = raw[column]
    keep = ~(missing | duplicate)
    return items[keep].reset_index(drop=True), quarantined


def _normalise_channel_lists(text: pd.Series) -> pd.Series:
    """Channel lists such as "App| web|web" -> "app|web": lower case, trimmed, sorted unique; "" stays ""."""
    normalised = {}
    for value in pd.unique(text):  # a catalog has few distinct channel lists
        names = {part.strip().lower() for part in str(value).split(CHANNEL_SEPARATOR)} - {""}
        normalised[value] = CHANNEL_SEPARATOR.join(sorted(names))
    return text.map(normalised).astype(str)


def catalog_channels(channels: pd.Series) -> set[str]:
    names: set[str] = set()
    for value in pd.unique(channels):
        names.update(part for part in str(value).split(CHANNEL_SEPARATOR) if part)
    return names


def add_items_from_events(items: pd.DataFrame, events: pd.DataFrame) -> tuple[pd.DataFrame, int]:
    """Append items that occur in events but not in the catalog (never drop their events); return the count.

    Added items get title/category/channels/attributes "" and as price the median price seen in their events
    (NaN when none).
    """
    unknown = ~events[ITEM_ID].isin(items[ITEM_ID])
    if not unknown.any():
        return items, 0
    seen = events.loc[unknown, [ITEM_ID, PRICE]]
    median_price = seen.groupby(ITEM_ID, sort=False)[PRICE].median()
    added = pd.DataFrame({column: pd.Series([""] * len(median_price), dtype=str) for column in items.columns})
    added[ITEM_ID] = median_price.index.astype(str).to_numpy()
    added[PRICE] = median_price.to_numpy(dtype=np.float64)
    added = added.sort_values(ITEM_ID, kind="stable")
    combined = pd.concat([items, added], ignore_index=True)
    combined[PRICE] = combined[PRICE].astype(np.float64)
    return combined, len(added)


# --- customers, stock ---------------------------------------------------------------------------------------

def clean_customers(raw: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Customer rows with an id (trimmed; attributes as given) and the quarantined raw rows."""
    customer = text_column(raw, CUSTOMER_ID)
    missing = (customer == "").to_numpy()
    bad_rows = np.flatnonzero(missing)
    quarantined = quarantine_frame(raw, bad_rows, np.full(len(bad_rows), REASON_MISSING_ID, dtype=object))
    customers = raw.copy()
    customers[CUSTOMER_ID] = customer
    return customers[~missing].reset_index(drop=True), quarantined


def merge_customers(customers: pd.DataFrame, alias_to_customer: dict[str, str]) -> pd.DataFrame:
    """Map customer rows to canonical ids and merge the rows of one customer (per attribute, first non-empty
    value wins)."""
    resolved = customers.copy()
    resolved[CUSTOMER_ID] = resolve_column(customers[CUSTOMER_ID], alias_to_customer)
    attributes = [c for c in resolved.columns if c != CUSTOMER_ID]
    if not resolved[CUSTOMER_ID].duplicated().any():
        return resolved
    if not attributes:
        return resolved.drop_duplicates(CUSTOMER_ID, ignore_index=True)
    blank_as_missing = resolved[attributes].where(resolved[attributes] != "")
    blank_as_missing.insert(0, CUSTOMER_ID, resolved[CUSTOMER_ID])
    merged = blank_as_missing.groupby(CUSTOMER_ID, sort=False).first().reset_index()
    for column in attributes:
        merged[column] = merged[column].fillna("").astype(str)
    return merged


def clean_stock(raw: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Stock rows (store_id, item_id, quantity_on_hand float64) and the quarantined raw rows.

    A zero or negative quantity on hand is kept (out of stock, or an inventory correction); only a value that
    is not a number is quarantined.
    """
    store = text_column(raw, STORE_ID)
    item = text_column(raw, ITEM_ID)
    on_hand = parse_numbers(text_column(raw, QUANTITY_ON_HAND))
    reasons = np.full(len(raw), "", dtype=object)  # "" = valid so far
    reasons[((store == "") | (item == "")).to_numpy()] = REASON_MISSING_ID
    reasons[on_hand.isna().to_numpy() & (reasons == "")] = REASON_BAD_QUANTITY
    stock = pd.DataFrame({STORE_ID: store, ITEM_ID: item, QUANTITY_ON_HAND: on_hand})
    valid = reasons == ""
    duplicate = np.zeros(len(raw), dtype=bool)
    duplicate[valid] = stock[valid].duplicated([STORE_ID, ITEM_ID], keep="first").to_numpy()
    reasons[duplicate] = REASON_DUPLICATE
    valid &= ~duplicate
    bad_rows = np.flatnonzero(~valid)
    return stock[valid].reset_index(drop=True), quarantine_frame(raw, bad_rows, reasons[bad_rows])


# --- quarantined rows ------------------------------------------------------------------------------------------

def quarantine_frame(raw: pd.DataFrame, rows: np.ndarray, reasons: np.ndarray) -> pd.DataFrame:
    """Raw rows at 0-based positions ``rows`` with ``reason`` and 1-based ``source_row``, in input order."""
    order = np.argsort(rows, kind="stable")
    rows = np.asarray(rows, dtype=np.int64)[order]
    out = raw.iloc[rows].reset_index(drop=True)
    out[REASON_COLUMN] = pd.Series(np.asarray(reasons, dtype=object)[order], dtype=str)
    out[SOURCE_ROW_COLUMN] = rows + 1
    return out
