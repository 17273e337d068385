"""Cold start: a hybrid LightFM (WARP) model for customers with little or no history and items without any.

Customers are described by their attributes only (the ``customers`` table's columns besides the id, e.g. age
group and area, plus one feature every customer has), never by an identity feature: a customer's vector is
the sum of their attribute embeddings, so a customer the trainer knows only by attributes gets the same kind
of vector as one with a long history, and the model is trained for exactly that case. Items are described by
an identity feature plus their attributes (category and every extra catalog column such as brand or price
band), so an item nobody bought yet still scores through its category, brand and price band.

Feature rows are normalised to sum 1 (LightFM's own ``Dataset`` default), which keeps an item's identity and
attribute embeddings on one scale. Interactions are the purchase history (net of returns), binary.

The server receives arrays only (no pickle): ``lfm_user_embeddings`` / ``lfm_user_biases`` (each customer's
attribute sum, precomputed here for every customer of the id maps), ``lfm_item_embeddings`` /
``lfm_item_biases``, and ``coldstart_customer``, the trainer's choice of who the cold-start source serves:
customers with at least one attribute and at most ``coldstart_max_purchases`` purchase baskets. A customer's
score for an item is ``user_embedding @ item_embedding + item_bias`` (the user bias does not change a ranking).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import scipy.sparse as sp

from recsvc.artifacts.parts.coldstart import (
    COLDSTART_CUSTOMER,
    LFM_ITEM_BIASES,
    LFM_ITEM_EMBEDDINGS,
    LFM_USER_BIASES,
    LFM_USER_EMBEDDINGS,
)
from recsvc.artifacts.parts.history import HIST_INDPTR, HIST_ITEMS
from recsvc.config import TrainingSettings
from recsvc_training.input import columns as C
from recsvc_training.input.dataset import TrainingData
from recsvc_training.input.id_maps import EventRows, IdMaps
from recsvc_training.models.rfm import purchase_baskets

logger = logging.getLogger(__name__)

#: The feature every customer has: their vector when no attribute is known, and the shared part otherwise.
ALL_CUSTOMERS_FEATURE = "all"
#: Catalog columns that are not item attributes (the title is unique text, price and channels are numbers
#: and sale places; a ``price_band`` column, when present, is an attribute).
_NOT_ITEM_ATTRIBUTES = (C.ITEM_ID, C.TITLE, C.PRICE, C.CHANNELS)
_RANDOM_STATE = 42


@dataclass(frozen=True)
class FeatureMatrix:
    """A row-normalised CSR ``[n_rows, n_features]`` and the name of each feature (``column=value``, or the
    row id for identity features). ``has_attributes`` marks rows with at least one attribute value."""

    matrix: sp.csr_matrix
    names: tuple[str, ...]
    has_attributes: np.ndarray


@dataclass(frozen=True)
class LightFMEmbeddings:
    """Representations of every customer and item row: score = ``user @ item.T + item_biases``."""

    user_embeddings: np.ndarray
    user_biases: np.ndarray
    item_embeddings: np.ndarray
    item_biases: np.ndarray
    seconds: float

    def scores(self, user_rows: np.ndarray) -> np.ndarray:
        """float32 ``[len(user_rows), n_items]``: the ranking score of every item for each user row."""
        scores: np.ndarray = self.user_embeddings[user_rows] @ self.item_embeddings.T + self.item_biases[None, :]
        return scores


def attribute_features(frame: pd.DataFrame, id_column: str, ids: np.ndarray, columns: Sequence[str], *,
                       identity: bool, shared_feature: str | None = None) -> FeatureMatrix:
    """Feature matrix for the rows ``ids`` (any order) from the attribute ``columns`` of ``frame``.

    Parameters
    ----------
    frame
        One row per id (extra rows, for ids not in ``ids``, are ignored; a repeated id keeps its first row).
    id_column
        Column of ``frame`` holding the id.
    ids
        The row order of the result.
    columns
        Attribute columns; an empty or missing value adds no feature.
    identity
        Give every row its own feature first (items: lets a bought item move away from its attributes).
    shared_feature
        Name of a feature every row gets (customers: the common part of every customer's vector).
    """
    n = len(ids)
    rows_of = pd.Index(np.asarray(ids, dtype=object).astype(str))
    frame = frame.drop_duplicates(subset=id_column, keep="first")
    frame_rows = rows_of.get_indexer(frame[id_column].astype(str).to_numpy())
    names: list[str] = [str(i) for i in ids] if identity else []
    parts_r: list[np.ndarray] = [np.arange(n)] if identity else []
    parts_c: list[np.ndarray] = [np.arange(n)] if identity else []
    has_attributes = np.zeros(n, dtype=bool)
    for column in columns:
        if column not in frame:
            continue
        values = frame[column].fillna("").astype(str).str.strip().to_numpy(dtype=object)
        ok = (values != "") & (frame_rows >= 0)
        codes, uniques = pd.factorize(pd.Series(values[ok], dtype=object))
        parts_r.append(frame_rows[ok])
        parts_c.append(len(names) + np.asarray(codes, dtype=np.int64))
        names += [f"{column}={value}" for value in uniques]
        has_attributes[frame_rows[ok]] = True
    if shared_feature is not None:
        parts_r.append(np.arange(n))
        parts_c.append(np.full(n, len(names)))
        names.append(shared_feature)
    rows = np.concatenate(parts_r) if parts_r else np.zeros(0, dtype=np.int64)
    cols = np.concatenate(parts_c) if parts_c else np.zeros(0, dtype=np.int64)
    matrix = sp.csr_matrix((np.ones(rows.size, dtype=np.float32), (rows, cols)), shape=(n, len(names)))
    matrix.sum_duplicates()
    totals = np.asarray(matrix.sum(axis=1)).ravel()
    matrix = sp.diags(1.0 / np.where(totals > 0, totals, 1.0)).astype(np.float32) @ matrix
    return FeatureMatrix(sp.csr_matrix(matrix, dtype=np.float32), tuple(names), has_attributes)


def customer_attribute_columns(customers: pd.DataFrame) -> list[str]:
    """Every column of the customers table besides the id."""
    return [c for c in customers.columns if c != C.CUSTOMER_ID]


def item_attribute_columns(items: pd.DataFrame) -> list[str]:
    """Category plus every catalog column that is not id, title, price or channels (brand, price band ...)."""
    return [c for c in items.columns if c not in _NOT_ITEM_ATTRIBUTES]


def fit_lightfm(interactions: sp.csr_matrix, user_features: FeatureMatrix, item_features: FeatureMatrix,
                settings: TrainingSettings) -> LightFMEmbeddings:
    """Fit LightFM WARP on binary ``interactions`` ``[n_users, n_items]`` and return every row's representation.

    Uses ``lfm_components``, ``lfm_epochs``, ``lfm_learning_rate`` and ``lfm_threads``. With several threads
    LightFM updates in parallel without locks (Hogwild), so two runs differ slightly even with one seed.
    """
    from lightfm import LightFM  # heavy import, only where a model is fitted

    data = sp.coo_matrix(interactions, dtype=np.float32, copy=True)  # a copy: the caller's matrix stays as is
    data.sum_duplicates()
    data.data[:] = 1.0
    model = LightFM(no_components=int(settings.lfm_components), loss="warp",
                    learning_rate=float(settings.lfm_learning_rate), random_state=_RANDOM_STATE)
    started = time.perf_counter()
    model.fit(data, user_features=user_features.matrix, item_features=item_features.matrix,
              epochs=int(settings.lfm_epochs), num_threads=max(1, int(settings.lfm_threads)))
    seconds = time.perf_counter() - started
    user_biases, user_embeddings = model.get_user_representations(user_features.matrix)
    item_biases, item_embeddings = model.get_item_representations(item_features.matrix)
    out = LightFMEmbeddings(user_embeddings=np.ascontiguousarray(user_embeddings, dtype=np.float32),
                            user_biases=np.asarray(user_biases, dtype=np.float32),
                            item_embeddings=np.ascontiguousarray(item_embeddings, dtype=np.float32),
                            item_biases=np.asarray(item_biases, dtype=np.float32), seconds=seconds)
    for name in ("user_embeddings", "item_embeddings", "item_biases"):
        if not np.all(np.isfinite(getattr(out, name))):
            raise FloatingPointError(f"LightFM produced NaN or infinite {name}; lower lfm_learning_rate")
    logger.info("LightFM: %d x %d, %d interactions, %d user / %d item features, %d epochs in %.1fs",
                data.shape[0], data.shape[1], data.nnz, len(user_features.names), len(item_features.names),
                settings.lfm_epochs, seconds)
    return out


def build_coldstart(data: TrainingData, events: EventRows, maps: IdMaps, arrays: Mapping[str, np.ndarray],
                    settings: TrainingSettings) -> tuple[dict[str, np.ndarray], dict[str, object]]:
    """The cold-start arrays (named as in :mod:`recsvc.artifacts`) and their manifest metadata.

    ``arrays`` must hold the purchase history (``hist_indptr``, ``hist_items``): the interactions LightFM
    learns from. Returns empty arrays (and the engine never uses the cold-start source) when
    ``coldstart_max_purchases`` is negative, the customers table has no attribute column, or no customer
    would be served (then the metadata says ``skipped`` and why).
    """
    columns = customer_attribute_columns(data.customers)
    if settings.coldstart_max_purchases < 0 or not columns:
        logger.info("cold-start model skipped: %s", "turned off" if settings.coldstart_max_purchases < 0
                    else "the customers table has no attribute columns")
        return {}, {}
    users = attribute_features(data.customers, C.CUSTOMER_ID, maps.customer_ids, columns, identity=False,
                               shared_feature=ALL_CUSTOMERS_FEATURE)
    serves = users.has_attributes & (purchase_baskets(events, maps.n_customers) <= settings.coldstart_max_purchases)
    if not serves.any():
        # A model that serves nobody is not fitted: on a log where every customer with attributes has more
        # than coldstart_max_purchases baskets (a grocery chain's households) the fit was the run's costliest
        # step. Without the arrays the engine serves nobody cold, which is what the mask would have said.
        logger.info("cold-start model skipped: no customer with attributes has <= %d purchase baskets",
                    settings.coldstart_max_purchases)
        return {}, {"customer_attributes": columns, "customers_served": 0,
                    "skipped": f"no customer with attributes has <= {settings.coldstart_max_purchases} "
                               "purchase baskets"}
    item_columns = item_attribute_columns(data.items)
    items = attribute_features(data.items, C.ITEM_ID, maps.item_ids, item_columns, identity=True)
    indptr, hist_items = arrays[HIST_INDPTR], arrays[HIST_ITEMS]
    history = sp.csr_matrix((np.ones(hist_items.size, dtype=np.float32), hist_items, indptr),
                            shape=(maps.n_customers, maps.n_items))
    embeddings = fit_lightfm(history, users, items, settings)
    arrays = {LFM_USER_EMBEDDINGS: embeddings.user_embeddings, LFM_USER_BIASES: embeddings.user_biases,
              LFM_ITEM_EMBEDDINGS: embeddings.item_embeddings, LFM_ITEM_BIASES: embeddings.item_biases,
              COLDSTART_CUSTOMER: serves}
    meta: dict[str, object] = {
        "customer_attributes": columns, "item_attributes": item_columns,
        "user_features": len(users.names), "item_features": len(items.names),
        "customers_served": int(serves.sum()), "fit_seconds": round(embeddings.seconds, 2)}
    logger.info("cold start: %d customers with attributes and <= %d purchase baskets are served by LightFM",
                int(serves.sum()), settings.coldstart_max_purchases)
    return arrays, meta
