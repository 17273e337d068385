"""MovieLens 100k ratings -> the input contract (ratings as purchases of a title)."""

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
    write,
)

logger = logging.getLogger(__name__)

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
    stamps = format_unique(seconds, "unix")
    reasons = first_reason(
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
    items = items_frame(
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
    return write("movielens100k", src_dir, out_dir, rows_read, reasons, events, items, customers, facts)
