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

from typing import Final

from recsvc_training.input.importers.common import Importer, ImportSummary
from recsvc_training.input.importers.movielens import import_movielens
from recsvc_training.input.importers.online_retail import import_online_retail
from recsvc_training.input.importers.tafeng import import_tafeng

__all__ = [
    "DEFAULT_SOURCES",
    "IMPORTERS",
    "ImportSummary",
    "Importer",
    "import_movielens",
    "import_online_retail",
    "import_tafeng",
]

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
