"""What ingestion hands to model building: cleaned, identity-resolved tables plus the ingest report."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from recsvc_training.input import columns as C


@dataclass
class IngestReport:
    """Counts a run summary prints: rows read and kept per table, quarantined rows per reason."""

    rows_read: dict[str, int] = field(default_factory=dict)
    rows_kept: dict[str, int] = field(default_factory=dict)
    #: table -> reason -> rows quarantined
    quarantined: dict[str, dict[str, int]] = field(default_factory=dict)
    quarantine_files: list[Path] = field(default_factory=list)
    #: alias ids linked to more than one customer (reported, then resolved by the documented rule)
    identity_conflicts: int = 0
    #: items seen in events but absent from the catalog (added with empty title/category)
    items_added_from_events: int = 0
    #: purchase rows with a negative quantity, turned into returns
    negative_quantities_as_returns: int = 0
    #: valid feedback rows (impression, click, message_sent), counted among the kept rows and used by no model
    feedback_events: int = 0
    input_files: list[Path] = field(default_factory=list)
    #: The plausible event times of the run (ISO 8601, UTC): earlier rows are ``ancient_timestamp``, later
    #: ``future_timestamp`` (``""`` when the data did not come through ingest).
    earliest_plausible: str = ""
    newest_plausible: str = ""

    def total_quarantined(self) -> int:
        return sum(sum(reasons.values()) for reasons in self.quarantined.values())


@dataclass(frozen=True)
class TrainingData:
    """Cleaned inputs, every event resolved to its customer.

    ``events`` columns (``recsvc_training.input.columns``): customer_id (resolved, str), item_id (str), event
    (view|cart|purchase|return; a negative-quantity purchase arrives here as a return), channel (str, never
    empty), store_id (str, "" when none), order_id (str, "" when none), basket_id (order_id, else
    "customer_id@day"), quantity (float64, always > 0), price (float64, NaN when unknown), timestamp
    (datetime64[ns, UTC]) and day (int32 days since 1970-01-01), sorted by timestamp.

    ``items`` holds every catalog item plus items seen only in events: item_id, title, category, price
    (float64), channels (str, "a|b", "" = every channel) and any attribute columns, unique by item_id.
    ``aliases`` maps alias_id -> customer_id (resolved), one row per alias, customers themselves excluded.
    ``customers`` (resolved customer_id + attributes) and ``stock`` (store_id, item_id, quantity_on_hand)
    may be empty frames with those columns.
    """

    events: pd.DataFrame
    items: pd.DataFrame
    customers: pd.DataFrame
    aliases: pd.DataFrame
    stock: pd.DataFrame
    channels: list[str]
    report: IngestReport

    def before(self, day: int) -> TrainingData:
        """The same data as if the log had ended the day before ``day`` (days since 1970-01-01).

        What the evaluation trains its models on (everything before a cut-off), and what ``recsvc evaluate
        --as-of`` back-tests on. The catalog, customers and stock are kept as they are (they carry no
        dates); only later events are left out.
        """
        return dataclasses.replace(self, events=self.events[self.events[C.DAY].to_numpy() < day])
