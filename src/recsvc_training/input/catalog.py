"""Catalog arrays: what the server shows (title, category, price) and where each item may be sold."""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd

from recsvc.artifacts import string_array
from recsvc.artifacts.parts.catalog import ITEM_CATEGORIES, ITEM_CHANNELS, ITEM_PRICES, ITEM_TITLES
from recsvc_training.input import columns as C
from recsvc_training.input.id_maps import IdMaps, lookup_rows

logger = logging.getLogger(__name__)


def build_catalog(items: pd.DataFrame, maps: IdMaps) -> dict[str, np.ndarray]:
    """Catalog arrays in ``maps.item_ids`` order, named as in :mod:`recsvc.artifacts`.

    Returns
    -------
    dict with ``item_titles`` and ``item_categories`` (unicode ``[n_items]``, "" when unknown),
    ``item_prices`` (float32 ``[n_items]``, NaN when unknown) and ``item_channels`` (bool
    ``[n_items, n_channels]``, axis in ``maps.channels`` order). An item whose ``channels`` string is
    empty or missing is sellable on every channel; channel names outside ``maps.channels`` are ignored
    (with a warning), and an item naming only such channels is sellable nowhere. Items in ``maps`` but not
    in ``items`` (seen only in events) get empty text, NaN price and every channel.
    """
    n_items, n_channels = maps.n_items, maps.n_channels
    frame = items.drop_duplicates(subset=C.ITEM_ID, keep="first")
    rows = lookup_rows(maps.item_ids, frame[C.ITEM_ID])
    found = rows >= 0
    frame, rows = frame[found], rows[found]

    def text(column: str) -> np.ndarray:
        out = np.full(n_items, "", dtype=object)
        if column in frame:
            out[rows] = frame[column].fillna("").astype(str).to_numpy()
        return string_array(out)

    prices = np.full(n_items, np.nan, dtype=np.float32)
    if C.PRICE in frame:
        prices[rows] = pd.to_numeric(frame[C.PRICE], errors="coerce").to_numpy(dtype=np.float64)

    item_channels = np.ones((n_items, n_channels), dtype=bool)
    if C.CHANNELS in frame and n_channels:
        # positional index, so an exploded token's index is the position of its item in ``rows``
        listed = pd.Series(frame[C.CHANNELS].fillna("").astype(str).str.strip().to_numpy(), dtype=object)
        restricted = (listed != "").to_numpy()
        item_channels[rows[restricted]] = False
        exploded = listed[restricted].str.split(C.CHANNEL_SEPARATOR, regex=False).explode().str.strip()
        token_rows = rows[exploded.index.to_numpy()]
        tokens = exploded.to_numpy(dtype=object)
        nonempty = tokens != ""
        tokens, token_rows = tokens[nonempty], token_rows[nonempty]
        channel = maps.channel_rows(tokens)
        known = channel >= 0
        if (~known).any():
            logger.warning("%d item channel entries name channels outside %s; ignored: %s",
                           int((~known).sum()), list(maps.channels), sorted(set(tokens[~known]))[:10])
        item_channels[token_rows[known], channel[known]] = True

    return {ITEM_TITLES: text(C.TITLE), ITEM_CATEGORIES: text(C.CATEGORY), ITEM_PRICES: prices,
            ITEM_CHANNELS: item_channels}

