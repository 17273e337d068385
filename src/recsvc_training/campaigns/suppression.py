"""Who must not get the message, each reason counted: suppression is applied after the audience rules.

Reasons, applied in this order; a customer removed by one is counted under that one only, so the counts add
up to everyone removed:

``existing_buyer``
    A first-purchase offer (``first_purchase_offer = true``) never reaches a customer with a purchase — in
    the model's history or live since its cut-off.
``opted_out``
    The opt-out file lists the customer (by customer id or any alias), for every channel or this one.
``messaged_recently``
    A message went to the customer within ``messaged_within_days`` (a frequency cap over every channel):
    ``message_sent`` events in the event store and/or the rows of a sent-log file.
``bought_since_due``
    A rebuy reminder's due item (or a launch's item / category) was bought after the purchase the due date
    counts from: a live purchase after the model's cut-off ends the wait.
``bought_recently``
    A launch whose target the customer bought within ``bought_within_days``.
``no_contact``
    The customer has no contact alias for the channel (see :mod:`.content`).

Files: the opt-out list is a CSV with a ``customer_id`` or ``alias_id`` column (or a plain list, one id a
line) and an optional ``channel`` column (empty = every channel); the sent log is a CSV with ``customer_id``
and ``timestamp`` (ISO 8601, or a date) columns. Ids resolve through the model's identity links; an id the
model does not know is counted as unmatched, not an error.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from recsvc.ids import clean_channel, clean_id

logger = logging.getLogger(__name__)

REASONS = ("existing_buyer", "opted_out", "messaged_recently", "bought_since_due", "bought_recently", "no_contact")


@dataclass
class Suppression:
    """The audience after suppression and how many each reason removed (in :data:`REASONS` order)."""

    kept: np.ndarray
    removed: dict[str, int] = field(default_factory=dict)
    unmatched: dict[str, int] = field(default_factory=dict)

    def apply(self, reason: str, hit: np.ndarray) -> None:
        """Remove the customers of ``hit`` still kept, counting them under ``reason``."""
        gone = self.kept & hit
        self.removed[reason] = self.removed.get(reason, 0) + int(gone.sum())
        self.kept &= ~hit


def _read_ids_table(path: Path) -> pd.DataFrame:
    text = path.read_text(encoding="utf-8-sig")
    first = text.splitlines()[0].strip().lower() if text.strip() else ""
    if "," in first or first in ("customer_id", "alias_id"):
        return pd.read_csv(path, dtype=str, keep_default_na=False, encoding="utf-8-sig")
    return pd.DataFrame({"customer_id": [line.strip() for line in text.splitlines() if line.strip()]})


def _id_column(frame: pd.DataFrame, path: Path) -> pd.Series:
    for column in ("customer_id", "alias_id"):
        if column in frame.columns:
            return frame[column]
    raise ValueError(f"{path}: expected a customer_id or alias_id column, found {', '.join(frame.columns)}")


def resolved_rows(ids: pd.Series, resolve: Callable[[str], int]) -> np.ndarray:
    """Customer row of each id (-1 unknown), resolving aliases."""
    return np.array([resolve(clean_id(str(v))) for v in ids], dtype=np.int64)


def opt_out_mask(path: Path, channel: str, n: int, resolve: Callable[[str], int]) -> tuple[np.ndarray, int]:
    """Customers the opt-out file removes from a campaign on ``channel``, and how many ids it did not match."""
    frame = _read_ids_table(path)
    if "channel" in frame.columns:
        channels = frame["channel"].map(lambda c: clean_channel(str(c)))
        frame = frame[(channels == "") | (channels == channel)]
    rows = resolved_rows(_id_column(frame, path), resolve)
    mask = np.zeros(n, dtype=bool)
    mask[rows[rows >= 0]] = True
    return mask, int((rows < 0).sum())


def sent_log_days(path: Path, n: int, resolve: Callable[[str], int]) -> tuple[np.ndarray, int]:
    """Per customer row, the day of the last message in the sent log (-1 never), and the unmatched ids."""
    frame = pd.read_csv(path, dtype=str, keep_default_na=False, encoding="utf-8-sig")
    if "timestamp" not in frame.columns:
        raise ValueError(f"{path}: a sent log needs customer_id and timestamp columns, found "
                         f"{', '.join(frame.columns)}")
    rows = resolved_rows(_id_column(frame, path), resolve)
    stamps = pd.to_datetime(frame["timestamp"], utc=True, errors="coerce", format="mixed")
    good = (rows >= 0) & stamps.notna().to_numpy()
    days = ((stamps[good] - pd.Timestamp(0, tz="UTC")) // pd.Timedelta(days=1)).to_numpy()
    last = np.full(n, -1, dtype=np.int64)
    np.maximum.at(last, rows[good], days.astype(np.int64))
    return last, int((rows < 0).sum())


def last_messaged(n: int, message_customer: np.ndarray, message_day: np.ndarray,
                  extra: Mapping[str, np.ndarray] = {}) -> np.ndarray:
    """Per customer row the day of the last message sent (-1 never), over events and any sent logs."""
    last = np.full(n, -1, dtype=np.int64)
    np.maximum.at(last, message_customer.astype(np.int64), message_day.astype(np.int64))
    for days in extra.values():
        np.maximum(last, days, out=last)
    return last
