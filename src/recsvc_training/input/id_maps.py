"""Id maps: every external id (item, customer, store, alias, channel) gets a row in a sorted array.

The artifact contract (:mod:`recsvc.artifacts`) stores ids **sorted**, so the server finds an id's row with
``np.searchsorted``. The trainer uses the same arrays to turn event columns into row numbers, here, once:
the model builders then work on integer rows only. Nothing maps ids through a Python dict per row; a column
is factorised first (one hash pass in pandas), then only its distinct values are looked up by binary search.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, fields

import numpy as np
import pandas as pd

from recsvc.artifacts import string_array
from recsvc_training.input import columns as C
from recsvc_training.input.dataset import TrainingData

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class IdMaps:
    """Sorted id arrays shared by every model builder (the row order of every artifact array).

    Attributes
    ----------
    item_ids, customer_ids, store_ids, alias_ids
        Sorted, unique fixed-width unicode arrays (``store_ids`` never holds the empty "no store" id).
    alias_customer
        int32 ``[n_aliases]``: row in ``customer_ids`` of each alias.
    channels
        Channel names in index order (the order of every channel axis, ``manifest.channels``).
    """

    item_ids: np.ndarray
    customer_ids: np.ndarray
    store_ids: np.ndarray
    alias_ids: np.ndarray
    alias_customer: np.ndarray
    channels: tuple[str, ...]

    @property
    def n_items(self) -> int:
        return int(self.item_ids.shape[0])

    @property
    def n_customers(self) -> int:
        return int(self.customer_ids.shape[0])

    @property
    def n_stores(self) -> int:
        return int(self.store_ids.shape[0])

    @property
    def n_channels(self) -> int:
        return len(self.channels)

    def channel_rows(self, values: pd.Series | np.ndarray) -> np.ndarray:
        """Index in ``channels`` of each value (int64, -1 when unknown or missing)."""
        names = string_array(self.channels)
        order = np.argsort(names)  # channels keep manifest order; search a sorted copy, then map back
        found = lookup_rows(names[order], values)
        return np.where(found >= 0, order[np.maximum(found, 0)], -1).astype(np.int64)


@dataclass(frozen=True)
class EventRows:
    """Event columns turned into rows of the id maps; every array has one entry per event.

    ``customer``, ``item`` (int32) are always valid rows; ``store`` (int32) is -1 for events without a
    store; ``channel`` (int16) indexes ``IdMaps.channels``; ``day`` (int32) is days since 1970-01-01;
    ``time`` (int64) orders events within a day (nanoseconds since the epoch, or the day when the table has
    no timestamp); ``quantity`` (float64) is > 0; ``event`` (int8) indexes ``columns.EVENT_TYPES``
    (-1 for a type this trainer does not know, which every builder ignores).
    """

    customer: np.ndarray
    item: np.ndarray
    store: np.ndarray
    channel: np.ndarray
    day: np.ndarray
    time: np.ndarray
    quantity: np.ndarray
    event: np.ndarray
    basket: np.ndarray

    def __len__(self) -> int:
        return int(self.customer.shape[0])

    def mask(self, *event_types: str) -> np.ndarray:
        """Boolean mask of the events whose type is one of ``event_types`` (names from ``columns``)."""
        return np.isin(self.event, [C.EVENT_TYPES.index(name) for name in event_types])

    def subset(self, keep: np.ndarray) -> EventRows:
        """The events where ``keep`` (a boolean mask or an index array) selects them."""
        return EventRows(**{f.name: getattr(self, f.name)[keep] for f in fields(self)})


def sorted_unique_ids(*columns: pd.Series | np.ndarray) -> np.ndarray:
    """Sorted unique non-empty string ids of all ``columns`` together, as a fixed-width unicode array.

    Missing values (NaN/None) and the empty string are dropped: they mean "no id".
    """
    parts = [pd.Series(col, dtype=object) for col in columns if len(col)]
    if not parts:
        return string_array([])
    values = pd.unique(pd.concat(parts, ignore_index=True).dropna().astype(str))
    values = values[values != ""]
    if values.size == 0:
        return string_array([])
    return np.unique(np.asarray(values, dtype=np.str_))


def lookup_rows(ids: np.ndarray, values: pd.Series | np.ndarray) -> np.ndarray:
    """Rows of ``values`` in the sorted id array ``ids`` (int64, ``-1`` where an id is unknown or missing).

    ``values`` is factorised first, so only its distinct ids are binary-searched; the cost is one hash pass
    plus ``n_distinct * log(n_ids)`` string comparisons, whatever the column length. Query strings are
    compared at their full width (never truncated to the width of ``ids``).
    """
    codes, uniques = pd.factorize(pd.Series(values, dtype=object), use_na_sentinel=True)
    codes = np.asarray(codes)
    if ids.size == 0 or len(uniques) == 0:
        return np.full(codes.shape, -1, dtype=np.int64)
    query = np.asarray(pd.Index(uniques).astype(str), dtype=np.str_)
    pos = np.minimum(np.searchsorted(ids, query), ids.size - 1)
    unique_rows = np.where(ids[pos] == query, pos, -1).astype(np.int64)
    # code -1 (a missing value) picks the sentinel appended at the end
    return np.append(unique_rows, -1)[codes]


def build_id_maps(data: TrainingData) -> IdMaps:
    """Build the sorted id arrays for one training run.

    Items come from the catalog (``data.items``) plus, defensively, any item seen in events but missing
    from it (ingest should already have added those; a warning says how many were not). Customers come from
    events, the customer table and alias targets, so every alias resolves to a row. Stores come from events
    and stock. Channels keep the order of ``data.channels``; a channel seen in events but not listed is
    appended (with a warning) rather than dropped.
    """
    events = data.events
    item_ids = sorted_unique_ids(data.items[C.ITEM_ID], events[C.ITEM_ID])
    n_catalog = len(sorted_unique_ids(data.items[C.ITEM_ID]))
    if item_ids.size != n_catalog:
        logger.warning("%d item ids appear in events but not in the catalog; added with empty attributes",
                       item_ids.size - n_catalog)

    alias_frame = data.aliases
    customer_ids = sorted_unique_ids(
        events[C.CUSTOMER_ID],
        data.customers.get(C.CUSTOMER_ID, []),
        alias_frame.get(C.CUSTOMER_ID, []),
    )

    store_ids = sorted_unique_ids(
        events.get(C.STORE_ID, []),
        data.stock.get(C.STORE_ID, []),
    )

    alias_ids, alias_customer = _alias_arrays(alias_frame, customer_ids)
    channels = _channel_order(data)
    logger.info("id maps: %d items, %d customers, %d aliases, %d stores, channels %s",
                item_ids.size, customer_ids.size, alias_ids.size, store_ids.size, list(channels))
    return IdMaps(item_ids=item_ids, customer_ids=customer_ids, store_ids=store_ids, alias_ids=alias_ids,
                  alias_customer=alias_customer, channels=channels)


def _alias_arrays(aliases: pd.DataFrame, customer_ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    if aliases.empty or C.ALIAS_ID not in aliases:
        return string_array([]), np.zeros(0, dtype=np.int32)
    frame = aliases[[C.ALIAS_ID, C.CUSTOMER_ID]].dropna().astype(str)
    frame = frame[(frame[C.ALIAS_ID] != "") & (frame[C.CUSTOMER_ID] != "")]
    duplicated = frame[C.ALIAS_ID].duplicated(keep="first")
    if duplicated.any():
        # ingest resolves conflicts; if one slips through, the first row wins, as documented for ingest
        logger.warning("%d duplicate alias ids; keeping the first mapping of each", int(duplicated.sum()))
        frame = frame[~duplicated]
    frame = frame.sort_values(C.ALIAS_ID, kind="stable")
    alias_ids = np.asarray(frame[C.ALIAS_ID].to_numpy(), dtype=np.str_)
    if alias_ids.size == 0:
        return string_array([]), np.zeros(0, dtype=np.int32)
    rows = lookup_rows(customer_ids, frame[C.CUSTOMER_ID])
    # customer_ids includes every alias target by construction, so no row is -1 here
    return alias_ids, rows.astype(np.int32)


def _channel_order(data: TrainingData) -> tuple[str, ...]:
    channels = [str(c) for c in data.channels if str(c)]
    if C.CHANNEL in data.events and len(data.events):
        seen = pd.unique(data.events[C.CHANNEL].dropna().astype(str))
        extra = sorted(set(seen) - set(channels) - {""})
        if extra:
            logger.warning("channels %s appear in events but not in data.channels; appended", extra)
            channels.extend(extra)
    if len(set(channels)) != len(channels):
        channels = list(dict.fromkeys(channels))
    return tuple(channels)


def event_rows(data: TrainingData, maps: IdMaps) -> EventRows:
    """Map the event table onto rows of ``maps`` (see :class:`EventRows`).

    Raises
    ------
    ValueError
        If an event names a customer or item that ``maps`` does not hold (maps built from other data).
    """
    events = data.events
    customer = lookup_rows(maps.customer_ids, events[C.CUSTOMER_ID])
    item = lookup_rows(maps.item_ids, events[C.ITEM_ID])
    if (customer < 0).any() or (item < 0).any():
        raise ValueError("events hold customer or item ids missing from the id maps; build the maps from "
                         "the same TrainingData")
    if C.STORE_ID in events:
        store = lookup_rows(maps.store_ids, events[C.STORE_ID])
    else:
        store = np.full(len(events), -1, dtype=np.int64)
    channel = maps.channel_rows(events[C.CHANNEL])  # required: ingest fills the default channel
    if (channel < 0).any():
        raise ValueError("events hold empty or unknown channels; ingest must fill the default channel")
    quantity = (events[C.QUANTITY].to_numpy(dtype=np.float64) if C.QUANTITY in events
                else np.ones(len(events), dtype=np.float64))
    day = events[C.DAY].to_numpy(dtype=np.int32)
    if C.TIMESTAMP in events:
        time = pd.to_datetime(events[C.TIMESTAMP], utc=True).to_numpy(dtype="datetime64[ns]").view(np.int64)
    else:
        time = day.astype(np.int64)
    event = pd.Categorical(events[C.EVENT], categories=list(C.EVENT_TYPES)).codes.astype(np.int8)
    unknown = int((event < 0).sum())
    if unknown:
        logger.warning("%d events have a type outside %s; ignored by every model", unknown, C.EVENT_TYPES)
    if C.BASKET_ID in events:
        basket = np.asarray(pd.factorize(events[C.BASKET_ID], use_na_sentinel=True)[0], dtype=np.int64)
        basket[(events[C.BASKET_ID] == "").to_numpy()] = -1
    else:
        basket = np.full(len(events), -1, dtype=np.int64)
    return EventRows(
        customer=customer.astype(np.int32),
        item=item.astype(np.int32),
        store=store.astype(np.int32),
        channel=channel.astype(np.int16),
        day=day,
        time=time,
        quantity=quantity,
        event=event,
        basket=basket,
    )
