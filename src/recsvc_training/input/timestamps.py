"""Event timestamps: how a text becomes a UTC time, and which times are plausible for a retailer's log.

A timestamp that parses can still be wrong: a till whose clock was never set (1900-01-01), a year typed as 2062
for 2026. One such row, kept, moves the test window to 2062 and every recency decay with it, and the quality
gate then refuses the night's model. So ingest sets aside times outside a plausible window: later than the
run's start plus ``training.max_future_hours`` (``future_timestamp``; measured from the run time rather than
from the data, so a log that really ends today is never cut) or before ``training.earliest_event_date``
(``ancient_timestamp``).
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass

import numpy as np
import pandas as pd

from recsvc.config import ConfigError, TrainingSettings

logger = logging.getLogger(__name__)

# Timestamps a datetime64[ns] can hold; anything outside is a bad timestamp, not an overflow.
_MIN_TIMESTAMP = pd.Timestamp("1677-09-22", tz="UTC")
_MAX_TIMESTAMP = pd.Timestamp("2262-04-11", tz="UTC")
# Non-ISO dates the fallback parser may read (e.g. "11/1/2000", "01.02.2024 10:00"). Anything else that is
# not ISO 8601 is rejected rather than handed to dateutil, which reads "5" or "May" as a date this month.
_NUMERIC_DATE = re.compile(r"^\d{1,4}[/.\-]\d{1,2}[/.\-]\d{1,4}([ T]\d{1,2}:\d{2}(:\d{2}(\.\d+)?)?)?$")


def parse_timestamps(text: pd.Series) -> pd.Series:
    """ISO 8601 strings (naive = UTC) to datetime64[ns, UTC]; NaT for anything unparseable or out of range.

    Fast path: one vectorised ISO 8601 parse. Strings that fail and look like numeric dates ("11/1/2000") are
    parsed once per distinct value with pandas' mixed-format parser (month first), which keeps a folder of
    non-ISO day-resolution dates fast too.
    """
    parsed = pd.to_datetime(text, format="ISO8601", utc=True, errors="coerce")
    retry = (parsed.isna() & (text != "")).to_numpy()
    if retry.any():
        failed = text[retry]
        distinct = pd.Series(pd.unique(failed), dtype=str)
        distinct = distinct[distinct.str.match(_NUMERIC_DATE)].reset_index(drop=True)
        if len(distinct):
            values = pd.to_datetime(distinct, format="mixed", utc=True, errors="coerce").astype(parsed.dtype)
            position = pd.Index(distinct).get_indexer(failed)
            fallback = values.array.take(position, allow_fill=True)  # -1 (not date-like) -> NaT
            parsed.iloc[np.flatnonzero(retry)] = fallback
            logger.warning("events: %d timestamp(s) are not ISO 8601; read %d of them as month-first dates",
                           int(retry.sum()), int(pd.notna(fallback).sum()))
    parsed = parsed.where((parsed >= _MIN_TIMESTAMP) & (parsed < _MAX_TIMESTAMP))
    return parsed.astype("datetime64[ns, UTC]")


@dataclass(frozen=True)
class PlausibleTimes:
    """The window of plausible event times: ``earliest <= t <= newest`` (both UTC)."""

    earliest: pd.Timestamp
    newest: pd.Timestamp

    @classmethod
    def for_run(cls, settings: TrainingSettings, now: pd.Timestamp | None = None) -> PlausibleTimes:
        """The window of a run starting at ``now`` (default: the current UTC time).

        Raises
        ------
        ConfigError
            ``training.earliest_event_date`` is not a YYYY-MM-DD date, ``training.max_future_hours`` is negative
            or not finite, or the window is empty.
        """
        text = str(settings.earliest_event_date).strip()
        try:
            if not re.fullmatch(r"\d{4}-\d{2}-\d{2}", text):
                raise ValueError(text)
            earliest = pd.Timestamp(text, tz="UTC")
        except ValueError as exc:
            raise ConfigError(f"training.earliest_event_date: expected a date as YYYY-MM-DD, got "
                              f"{settings.earliest_event_date!r}") from exc
        hours = float(settings.max_future_hours)
        if not np.isfinite(hours) or hours < 0:
            raise ConfigError(f"training.max_future_hours: expected a number of hours >= 0, got "
                              f"{settings.max_future_hours!r}")
        start = pd.Timestamp.now(tz="UTC") if now is None else pd.Timestamp(now)
        start = start.tz_localize("UTC") if start.tzinfo is None else start.tz_convert("UTC")
        newest = start + pd.Timedelta(hours=hours)
        if newest < earliest:
            raise ConfigError(f"training.earliest_event_date {text} is after the newest plausible time "
                              f"{newest.isoformat()} (run time + training.max_future_hours)")
        return cls(earliest=earliest, newest=newest)

    def future(self, timestamps: pd.Series) -> np.ndarray:
        """Which (parsed) timestamps lie after :attr:`newest`; NaT is neither future nor ancient."""
        return (timestamps > self.newest).to_numpy(dtype=bool, na_value=False)

    def ancient(self, timestamps: pd.Series) -> np.ndarray:
        """Which (parsed) timestamps lie before :attr:`earliest`."""
        return (timestamps < self.earliest).to_numpy(dtype=bool, na_value=False)
