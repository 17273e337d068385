"""Read a data folder into :class:`~recsvc_training.input.dataset.TrainingData`: validate, quarantine, resolve ids.

A data folder holds one file per table (``<table>.csv``, ``<table>.csv.gz`` or ``<table>.parquet``; see
:mod:`recsvc_training.input.columns`): ``events`` and ``items`` are required, ``customers``, ``identities`` and
``stock`` optional. Every value is read as a string, so ids keep their leading zeros; ids are trimmed by
:func:`recsvc.ids.clean_id`'s rule, the server's too (:func:`~recsvc_training.input.tables.clean_id_series`),
channel names by :func:`recsvc.ids.clean_channel`'s. The other tables' cleaning is
:mod:`recsvc_training.input.tables`'.

Nothing valid is dropped and nothing invalid is silently guessed: a bad row goes to
``<quarantine_dir>/<table>.quarantine.csv`` with its original values, a ``reason`` and its ``source_row``
(1-based data row number in the input file, header not counted), and is counted per reason in the
:class:`~recsvc_training.input.dataset.IngestReport`. For every table ``rows_kept + quarantined == rows_read``.

Events, in this order (a row gets the first reason that applies):

* ``missing_id``: empty ``customer_id`` or ``item_id``;
* ``unknown_event``: ``event`` (trimmed, case-insensitive) not in ``view|cart|purchase|return``;
* ``bad_timestamp``: ``timestamp`` not ISO 8601 (with or without zone; naive = UTC; plain dates allowed) and
  not a numeric date such as ``11/1/2000`` (read month first), or outside 1677..2262;
* ``future_timestamp``: later than the run's start plus ``training.max_future_hours`` (24);
* ``ancient_timestamp``: before ``training.earliest_event_date`` (1990-01-01); see
  :mod:`recsvc_training.input.timestamps` for why both;
* ``bad_quantity``: ``quantity`` not a finite non-zero number (empty = 1), or negative on a view/cart;
* ``duplicate``: same values in every column as an earlier valid row, compared after normalisation (trimmed
  ids, lower-case event/channel, default channel filled, parsed timestamp/quantity/price), so the same event
  exported twice with different spelling still counts once; the first is kept.

A purchase with a negative quantity becomes a return of ``abs(quantity)`` (counted in
``negative_quantities_as_returns``); a negative return is made positive. An unparseable price is NaN, not a
reason to quarantine. Items: an empty ``item_id`` is ``missing_id``, a repeated one ``duplicate`` (first
kept); items seen only in events are added to the catalog. Customers and stock quarantine empty ids (and
stock an unparseable ``quantity_on_hand`` as ``bad_quantity``, a repeated store x item as ``duplicate``).
Identity links follow :mod:`recsvc_training.input.identity` (reasons ``missing_id`` and ``identity_conflict``).
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from recsvc.config import ConfigError, TrainingSettings
from recsvc_training.input.columns import (
    ALIAS_ID,
    BASKET_ID,
    CHANNEL,
    CHANNELS,
    CUSTOMER_COLUMNS,
    CUSTOMER_ID,
    CUSTOMERS,
    DAY,
    EVENT,
    EVENT_COLUMNS,
    EVENT_TYPES,
    EVENTS,
    FEEDBACK_EVENT_TYPES,
    IDENTITIES,
    IDENTITY_COLUMNS,
    ITEM_ID,
    ITEMS,
    ORDER_ID,
    PRICE,
    PURCHASE,
    QUANTITY,
    QUANTITY_ON_HAND,
    REASON_ANCIENT_TIMESTAMP,
    REASON_BAD_QUANTITY,
    REASON_BAD_TIMESTAMP,
    REASON_DUPLICATE,
    REASON_FUTURE_TIMESTAMP,
    REASON_MISSING_ID,
    REASON_UNKNOWN_EVENT,
    REQUIRED_EVENT_COLUMNS,
    REQUIRED_ITEM_COLUMNS,
    RETURN,
    STOCK,
    STOCK_COLUMNS,
    STORE_ID,
    TABLE_SUFFIXES,
    TIMESTAMP,
)
from recsvc_training.input.dataset import IngestReport, TrainingData
from recsvc_training.input.identity import REASON_COLUMN, SOURCE_ROW_COLUMN, resolve_column, resolve_identities
from recsvc_training.input.tables import (
    add_items_from_events,
    catalog_channels,
    clean_customers,
    clean_id_series,
    clean_items,
    clean_stock,
    merge_customers,
    parse_numbers,
    quarantine_frame,
    text_column,
)
from recsvc_training.input.timestamps import PlausibleTimes, parse_timestamps

logger = logging.getLogger(__name__)

REQUIRED_TABLES = (EVENTS, ITEMS)
OPTIONAL_TABLES = (CUSTOMERS, IDENTITIES, STOCK)
#: Column order of ``TrainingData.events``.
EVENT_OUTPUT_COLUMNS = (CUSTOMER_ID, ITEM_ID, EVENT, CHANNEL, STORE_ID, ORDER_ID, BASKET_ID, QUANTITY, PRICE,
                        TIMESTAMP, DAY)
QUARANTINE_SUFFIX = ".quarantine.csv"

class InputError(ValueError):
    """The data folder cannot be used as given; the message names the file, what it has and what it needs."""


def find_table_files(data_dir: Path) -> dict[str, Path]:
    """The file of each table present in ``data_dir`` (table name -> path), in contract order.

    Raises
    ------
    InputError
        If ``data_dir`` is not a folder, a required table (``events``, ``items``) has no file, or a table has
        more than one file (e.g. both ``events.csv`` and ``events.parquet``), which would be ambiguous.
    """
    data_dir = Path(data_dir)
    if not data_dir.is_dir():
        raise InputError(f"data folder {data_dir} does not exist or is not a folder")
    found: dict[str, Path] = {}
    for table in REQUIRED_TABLES + OPTIONAL_TABLES:
        candidates = [data_dir / f"{table}{suffix}" for suffix in TABLE_SUFFIXES]
        present = [p for p in candidates if p.is_file()]
        if len(present) > 1:
            raise InputError(f"data folder {data_dir} has more than one file for table {table!r}: "
                             f"{', '.join(p.name for p in present)}; keep exactly one")
        if present:
            found[table] = present[0]
        elif table in REQUIRED_TABLES:
            raise InputError(f"data folder {data_dir} has no {table} table: expected one of "
                             f"{', '.join(p.name for p in candidates)}")
    return found


@dataclass
class IngestRun:
    """The start of one ingest and its bookkeeping, shared by the single-node and the Spark trainer.

    :meth:`start` does what every ingest does before reading a row (refuse an empty default channel, fix the
    plausible event times, find the tables, open the report); the methods then keep the rules both trainers
    must apply alike: how a table's counts enter the report, when a table with nothing valid stops the run,
    and how the quarantine folder is written (also when the run stops). A trainer stores each table's
    quarantined rows in :attr:`quarantine` as soon as it has them, so a later failure still writes them.
    """

    settings: TrainingSettings
    #: the plausible event times of this run
    window: PlausibleTimes
    #: table -> its file (or, on Spark, the events folder), in contract order
    files: dict[str, Path]
    quarantine_dir: Path
    report: IngestReport
    #: table -> its quarantined raw rows (``reason`` and ``source_row`` added), filled by the trainer
    quarantine: dict[str, pd.DataFrame] = field(default_factory=dict)

    @classmethod
    def start(cls, data_dir: Path, settings: TrainingSettings, quarantine_dir: Path, *,
              now: pd.Timestamp | None = None,
              find_tables: Callable[[Path], dict[str, Path]] = find_table_files) -> IngestRun:
        """Check the settings, fix the window of a run starting at ``now`` and find the tables of ``data_dir``.

        ``find_tables`` maps the folder to its tables (default :func:`find_table_files`; the Spark trainer
        passes its own, which also accepts an events folder). The report's ``input_files`` are the files found
        (a folder is not listed).

        Raises
        ------
        ConfigError
            ``settings.default_channel`` is empty, or the plausible-time settings are unusable (checked before
            the folder is looked at).
        InputError
            From ``find_tables``: a missing folder or required table, or ambiguous table files.
        """
        if not settings.default_channel.strip():
            raise ConfigError("training.default_channel must not be empty: events without a channel get it")
        window = PlausibleTimes.for_run(settings, now)
        files = find_tables(Path(data_dir))
        report = IngestReport(input_files=[p for p in files.values() if p.is_file()],
                              earliest_plausible=window.earliest.isoformat(),
                              newest_plausible=window.newest.isoformat())
        return cls(settings=settings, window=window, files=files, quarantine_dir=Path(quarantine_dir),
                   report=report)

    def read_table(self, table: str, required: tuple[str, ...]) -> pd.DataFrame:
        """Every column of ``table``'s file as strings ("" if missing), header names trimmed.

        Raises
        ------
        InputError
            The file cannot be read, is empty, or lacks a column of ``required``.
        """
        return _read_table(self.files[table], table, required)

    def tally(self, table: str, read: int, kept: int, *, required: bool) -> None:
        """Enter ``table``'s counts (and its quarantine in :attr:`quarantine`, per reason) into the report.

        Raises
        ------
        InputError
            ``table`` had rows but none valid, or is ``required`` and had none.
        """
        _count(self.report, table, read, kept, self.quarantine[table])
        _require_valid(self.files[table], table, read, kept, self.quarantine_dir, required=required)

    def write_quarantine(self) -> list[Path]:
        """Write each table's quarantine file and remove a stale one; returns the files written."""
        return _write_quarantine(self.quarantine_dir, self.quarantine)

    @contextmanager
    def quarantine_written_on_failure(self) -> Iterator[None]:
        """On an :class:`InputError` inside the block, write what was quarantined so far, then re-raise: a table
        with nothing valid is explained there."""
        try:
            yield
        except InputError:
            self.write_quarantine()
            raise

    def log_counts(self) -> None:
        """One line per table read: rows read, kept and quarantined per reason."""
        report = self.report
        for table in report.rows_read:
            logger.info("%s: read %d rows, kept %d, quarantined %s", table, report.rows_read[table],
                        report.rows_kept[table], report.quarantined.get(table) or "none")


def load_training_data(data_dir: Path, settings: TrainingSettings, quarantine_dir: Path, *,
                       now: pd.Timestamp | None = None) -> TrainingData:
    """Read, validate and clean every table of ``data_dir`` and resolve every event to its customer.

    Parameters
    ----------
    data_dir
        Folder holding the tables of the input contract (:mod:`recsvc_training.input.columns`).
    settings
        Uses ``default_channel`` (for events without a channel), ``max_future_hours`` and
        ``earliest_event_date`` (the plausible event times).
    quarantine_dir
        Where ``<table>.quarantine.csv`` files go; created only when a row is quarantined. A quarantine file
        left there by an earlier run for a table that has nothing to quarantine now is removed, so the folder
        always describes this run.
    now
        The run's start (default: the current UTC time); events later than it plus ``max_future_hours`` are
        ``future_timestamp``.

    Returns
    -------
    TrainingData
        Cleaned tables exactly as its docstring describes, plus the filled :class:`IngestReport`.

    Raises
    ------
    InputError
        Missing folder or required table, ambiguous table files, an unreadable file, a missing required
        column, or a table with rows but none valid (``events`` and ``items`` must also not be empty).
    ConfigError
        ``settings.default_channel`` is empty, or the plausible-time settings are unusable.
    """
    run = IngestRun.start(data_dir, settings, quarantine_dir, now=now)
    with run.quarantine_written_on_failure():
        data = _load(run)
    run.log_counts()
    if data.report.items_added_from_events:
        logger.info("items: added %d item(s) seen only in events to the catalog",
                    data.report.items_added_from_events)
    if data.report.negative_quantities_as_returns:
        logger.info("events: %d purchase(s) with a negative quantity read as returns",
                    data.report.negative_quantities_as_returns)
    return data


def _load(run: IngestRun) -> TrainingData:
    """The body of :func:`load_training_data`; fills ``run.quarantine`` (table -> rows) as it goes."""
    files, report, quarantine = run.files, run.report, run.quarantine
    raw_events = run.read_table(EVENTS, REQUIRED_EVENT_COLUMNS)
    events, quarantine[EVENTS], report.negative_quantities_as_returns = _clean_events(
        raw_events, run.settings.default_channel, run.window)
    # valid feedback rows (impression, click, message_sent) are kept out of every model: counted, then dropped
    feedback = events[EVENT].isin(FEEDBACK_EVENT_TYPES).to_numpy()
    report.feedback_events = int(feedback.sum())
    if report.feedback_events:
        logger.info("%d feedback events (impression, click, message_sent) are not used for training",
                    report.feedback_events)
        events = events[~feedback].reset_index(drop=True)
    raw_items = run.read_table(ITEMS, REQUIRED_ITEM_COLUMNS)
    items, quarantine[ITEMS] = clean_items(raw_items)
    run.tally(EVENTS, len(raw_events), len(events) + report.feedback_events, required=True)
    run.tally(ITEMS, len(raw_items), len(items), required=True)

    customers = pd.DataFrame({CUSTOMER_ID: pd.Series([], dtype=str)})
    if CUSTOMERS in files:
        raw_customers = run.read_table(CUSTOMERS, CUSTOMER_COLUMNS)
        customers, quarantine[CUSTOMERS] = clean_customers(raw_customers)
        run.tally(CUSTOMERS, len(raw_customers), len(customers), required=False)

    alias_to_customer: dict[str, str] = {}
    if IDENTITIES in files:
        raw_links = run.read_table(IDENTITIES, IDENTITY_COLUMNS)
        links = raw_links.copy()
        for column in IDENTITY_COLUMNS:
            links[column] = clean_id_series(raw_links[column])
        resolution = resolve_identities(links, customers[CUSTOMER_ID].tolist())
        alias_to_customer = resolution.alias_to_customer
        rejected = resolution.quarantined()
        quarantine[IDENTITIES] = quarantine_frame(raw_links, rejected[SOURCE_ROW_COLUMN].to_numpy() - 1,
                                                   rejected[REASON_COLUMN].to_numpy())
        report.identity_conflicts = resolution.n_conflicts
        run.tally(IDENTITIES, resolution.links_read, resolution.links_kept, required=False)
    aliases = pd.DataFrame({ALIAS_ID: pd.Series(list(alias_to_customer.keys()), dtype=str),
                            CUSTOMER_ID: pd.Series(list(alias_to_customer.values()), dtype=str)})
    aliases = aliases.sort_values(ALIAS_ID, kind="stable", ignore_index=True)

    events[CUSTOMER_ID] = resolve_column(events[CUSTOMER_ID], alias_to_customer)
    events = _finish_events(events)
    if len(customers):
        customers = merge_customers(customers, alias_to_customer)

    items, report.items_added_from_events = add_items_from_events(items, events)

    stock = pd.DataFrame({STORE_ID: pd.Series([], dtype=str), ITEM_ID: pd.Series([], dtype=str),
                          QUANTITY_ON_HAND: pd.Series([], dtype=np.float64)})
    if STOCK in files:
        raw_stock = run.read_table(STOCK, STOCK_COLUMNS)
        stock, quarantine[STOCK] = clean_stock(raw_stock)
        run.tally(STOCK, len(raw_stock), len(stock), required=False)

    report.quarantine_files = run.write_quarantine()
    channels = sorted(set(events[CHANNEL].unique().tolist()) | catalog_channels(items[CHANNELS]))
    return TrainingData(events=events, items=items, customers=customers, aliases=aliases, stock=stock,
                        channels=channels, report=report)


# --- reading ------------------------------------------------------------------------------------------------

def _read_table(path: Path, table: str, required: tuple[str, ...]) -> pd.DataFrame:
    """Every column of ``path`` as strings ("" if missing), header names trimmed; checks required columns."""
    try:
        if path.name.endswith(".parquet"):
            frame = _all_str(pd.read_parquet(path))
        else:
            # utf-8-sig: exports from Excel and some databases start with a byte-order mark, which would
            # otherwise stick to the first column name.
            # index_col=False: rows with more fields than the header must not silently become an index
            # (which shifts every value one column); the warning pandas gives instead is made an error.
            with warnings.catch_warnings():
                warnings.simplefilter("error", pd.errors.ParserWarning)
                frame = pd.read_csv(path, dtype=str, keep_default_na=False, na_values=[], encoding="utf-8-sig",
                                    index_col=False)
            frame = frame.fillna("")  # short rows still come back as NaN
    except pd.errors.EmptyDataError as exc:
        raise InputError(f"{path}: file is empty (no header row); the {table} table needs columns "
                         f"{list(required)}") from exc
    except (pd.errors.ParserError, pd.errors.ParserWarning, UnicodeDecodeError, OSError, ValueError) as exc:
        raise InputError(f"{path}: cannot read the {table} table: {exc}") from exc
    frame.columns = [str(c).strip() for c in frame.columns]
    missing = [c for c in required if c not in frame.columns]
    if missing:
        raise InputError(f"{path}: missing required column(s) {missing}; the file has columns "
                         f"{list(frame.columns)}; the {table} table needs {list(required)}")
    return frame.reset_index(drop=True)


def _all_str(frame: pd.DataFrame) -> pd.DataFrame:
    """A parquet frame with every column as strings, nulls as "", like a CSV read with ``dtype=str``.

    Typed parquet columns are written out with ``str()``: integers as digits, datetimes as
    "2024-01-01 10:00:00+00:00" (which the timestamp parser reads). An integer id column cannot carry leading
    zeros, so exporters should write ids as strings.
    """
    out = {}
    for column in frame.columns:
        values = frame[column]
        if pd.api.types.is_string_dtype(values.dtype) and not pd.api.types.is_object_dtype(values.dtype):
            out[column] = values.fillna("")
            continue
        missing = values.isna().to_numpy()
        out[column] = values.astype(object).where(~missing, "").astype(str)
    return pd.DataFrame(out, index=frame.index)


# --- events -------------------------------------------------------------------------------------------------

def _clean_events(raw: pd.DataFrame, default_channel: str, window: PlausibleTimes
                  ) -> tuple[pd.DataFrame, pd.DataFrame, int]:
    """Validate and normalise events; returns (valid events, quarantined raw rows, purchases made returns).

    The valid frame has the contract columns except ``day`` and ``basket_id`` (added after identity
    resolution), in input order, with a RangeIndex.
    """
    n = len(raw)
    customer = text_column(raw, CUSTOMER_ID)
    item = text_column(raw, ITEM_ID)
    event = text_column(raw, EVENT).str.lower()
    channel = text_column(raw, CHANNEL).str.lower()  # recsvc.ids.clean_channel's rule, vectorised
    channel = channel.where(channel != "", default_channel.strip().lower())
    quantity_text = text_column(raw, QUANTITY)
    quantity = parse_numbers(quantity_text.where(quantity_text != "", "1"))
    price = parse_numbers(text_column(raw, PRICE))
    timestamp = parse_timestamps(text_column(raw, TIMESTAMP))

    is_return_type = event.isin([PURCHASE, RETURN]).to_numpy()
    q = quantity.to_numpy()
    checks = (
        (REASON_MISSING_ID, ((customer == "") | (item == "")).to_numpy()),
        (REASON_UNKNOWN_EVENT, ~event.isin((*EVENT_TYPES, *FEEDBACK_EVENT_TYPES)).to_numpy()),
        (REASON_BAD_TIMESTAMP, timestamp.isna().to_numpy()),
        (REASON_FUTURE_TIMESTAMP, window.future(timestamp)),
        (REASON_ANCIENT_TIMESTAMP, window.ancient(timestamp)),
        # Only purchases and returns have a meaning for a negative quantity (a return); a negative view or
        # cart has none we could keep without guessing.
        (REASON_BAD_QUANTITY, np.isnan(q) | (q == 0) | ((q < 0) & ~is_return_type)),
    )
    reasons = np.full(n, "", dtype=object)  # "" = valid so far
    for reason, bad in checks:
        reasons[bad & (reasons == "")] = reason

    negative = q < 0
    as_return = negative & (event == PURCHASE).to_numpy()
    event = event.where(~as_return, RETURN)
    quantity = quantity.abs()
    cleaned = pd.DataFrame({
        CUSTOMER_ID: customer, ITEM_ID: item, EVENT: event, CHANNEL: channel, STORE_ID: text_column(raw, STORE_ID),
        ORDER_ID: text_column(raw, ORDER_ID), QUANTITY: quantity, PRICE: price, TIMESTAMP: timestamp,
    })
    # Duplicates are judged among rows that passed every other check, on normalised values plus any extra
    # (non-contract) columns as given, so the first valid copy is the one kept.
    valid = reasons == ""
    extra = [c for c in raw.columns if c not in EVENT_COLUMNS]
    compare = pd.concat([cleaned, raw[extra]], axis=1) if extra else cleaned
    duplicate = np.zeros(n, dtype=bool)
    duplicate[valid] = compare[valid].duplicated(keep="first").to_numpy()
    reasons[duplicate] = REASON_DUPLICATE
    valid &= ~duplicate

    bad_rows = np.flatnonzero(~valid)
    quarantined = quarantine_frame(raw, bad_rows, reasons[bad_rows])
    n_as_returns = int((as_return & valid).sum())
    return cleaned[valid].reset_index(drop=True), quarantined, n_as_returns


def _finish_events(events: pd.DataFrame) -> pd.DataFrame:
    """Add ``day`` and ``basket_id`` to resolved events, sort by timestamp (stable), fix column order."""
    naive = events[TIMESTAMP].dt.tz_convert("UTC").dt.tz_localize(None).to_numpy(dtype="datetime64[ns]")
    # Casting to days floors toward -inf, so 1969-12-31T23:00 is day -1, not 0.
    day = naive.astype("datetime64[D]").astype(np.int64).astype(np.int32)
    events[DAY] = day
    order = events[ORDER_ID]
    per_day = events[CUSTOMER_ID] + "@" + pd.Series(day, index=events.index).astype(str)
    events[BASKET_ID] = order.where(order != "", per_day)
    events = events.sort_values(TIMESTAMP, kind="stable", ignore_index=True)
    return events[list(EVENT_OUTPUT_COLUMNS)]


# --- report and quarantine files ------------------------------------------------------------------------------

def _count(report: IngestReport, table: str, read: int, kept: int, quarantined: pd.DataFrame) -> None:
    report.rows_read[table] = read
    report.rows_kept[table] = kept
    counts = quarantined[REASON_COLUMN].value_counts() if len(quarantined) else pd.Series(dtype=np.int64)
    report.quarantined[table] = {str(reason): int(count) for reason, count in sorted(counts.items())}
    assert kept + len(quarantined) == read, f"{table}: kept {kept} + quarantined {len(quarantined)} != {read}"


def _require_valid(path: Path, table: str, read: int, kept: int, quarantine_dir: Path, *,
                   required: bool) -> None:
    """Refuse a table with rows but none valid (a wrong export, not data to train on), or an empty required
    table."""
    if kept:
        return
    if read:
        raise InputError(f"{path}: none of the {read} {table} rows is valid; every row was quarantined, see "
                         f"{quarantine_dir / (table + QUARANTINE_SUFFIX)} for the reasons")
    if required:
        raise InputError(f"{path}: the {table} table has no rows")


def _write_quarantine(quarantine_dir: Path, quarantine: dict[str, pd.DataFrame]) -> list[Path]:
    """Write each non-empty quarantine frame; remove a stale file of a table with nothing quarantined."""
    written: list[Path] = []
    for table in REQUIRED_TABLES + OPTIONAL_TABLES:
        path = quarantine_dir / f"{table}{QUARANTINE_SUFFIX}"
        frame = quarantine.get(table)
        if frame is not None and len(frame):
            quarantine_dir.mkdir(parents=True, exist_ok=True)
            frame.to_csv(path, index=False)
            written.append(path)
            logger.warning("%s: quarantined %d row(s) to %s", table, len(frame), path)
        elif path.is_file():
            path.unlink()
            logger.info("removed %s left by an earlier run (nothing quarantined in %s now)", path, table)
    return written
