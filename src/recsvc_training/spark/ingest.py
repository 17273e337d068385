"""Ingest on Spark: the events table read and validated as Spark jobs, with the single-node trainer's rules.

The rules are :mod:`recsvc_training.input.ingest`'s, row for row: the same reasons in the same order
(``missing_id``, ``unknown_event``, ``bad_timestamp``, ``future_timestamp``, ``ancient_timestamp``,
``bad_quantity``, ``duplicate``), the same normalisation (ids trimmed by :func:`recsvc.ids.clean_id`'s rule,
event and channel lower-cased, the default channel filled, a negative purchase made a return), the same
``<quarantine_dir>/<table>.quarantine.csv`` files (raw values, ``reason``, 1-based ``source_row``) and the same
counts in the :class:`~recsvc_training.input.dataset.IngestReport`. ``tests/test_spark.py`` checks the counts
against the single-node ingest on one file.

How each rule runs:

* trimming, lower-casing, the reason order and the duplicate check are Spark SQL (a duplicate is a row whose
  normalised values, plus any extra column as given, equal an earlier valid row's: ``row_number() > 1`` over a
  window partitioned by all of them, ordered by ``source_row``);
* timestamps and numbers are parsed by the single-node parsers themselves
  (:func:`~recsvc_training.input.timestamps.parse_timestamps`, :func:`~recsvc_training.input.tables.parse_numbers`)
  inside pandas UDFs on the executors, so an odd spelling (``11/1/2000``, ``1e1``) gets the same reading;
* the catalog-sized tables (items, customers, identities, stock) are read and cleaned on the driver with the
  single-node functions: they grow with the catalog and the membership, not with the log, and identity
  resolution is a graph problem that :mod:`recsvc_training.input.identity` already solves. The alias map is
  then joined onto the events in Spark (broadcast when small).

Quarantined event rows are collected to the driver to be written as one CSV file, as the single-node trainer
writes it; they are the rejects of an export, normally a tiny share of it (a broken export that quarantines
most of a very large log will need driver memory for them).

``events`` may be ``events.csv``, ``events.csv.gz``, ``events.parquet`` (a file) or an ``events.parquet`` or
``events`` folder of Parquet or CSV part files (a Spark or Hive export). A folder's ``source_row`` numbers
rows in Spark's reading order (files by name, then rows).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from recsvc.config import TrainingSettings
from recsvc_training.input import columns as C
from recsvc_training.input.dataset import IngestReport
from recsvc_training.input.identity import REASON_COLUMN, SOURCE_ROW_COLUMN, resolve_identities
from recsvc_training.input.ingest import OPTIONAL_TABLES, QUARANTINE_SUFFIX, IngestRun, InputError
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
)
from recsvc_training.input.timestamps import PlausibleTimes, parse_timestamps

if TYPE_CHECKING:
    from pyspark.sql import Column, DataFrame, SparkSession

logger = logging.getLogger(__name__)

#: Characters Python's ``str.strip()`` removes (what :func:`recsvc.ids.clean_id` trims); Spark's ``trim``
#: removes only the space, so the rule is spelt out as a regular expression.
_WHITESPACE = "".join(chr(c) for c in range(0x110000) if chr(c).isspace())
_WS_CLASS = "[" + "".join(f"\\u{ord(c):04x}" for c in _WHITESPACE) + "]"
_TRIM_PATTERN = f"^{_WS_CLASS}+|{_WS_CLASS}+$"
#: Column names of the cleaned events (``ts``: nanoseconds since the epoch, UTC).
TS = "ts"
SOURCE_ROW = SOURCE_ROW_COLUMN
NS_PER_DAY = 86_400_000_000_000


@dataclass(frozen=True)
class SparkTrainingData:
    """What Spark ingest hands to the builders: the events as a (cached) Spark DataFrame, the rest as pandas.

    ``events`` columns: customer_id (resolved), item_id, event, channel, store_id ("" when none), order_id,
    basket_id (order_id, else "customer_id@day"), quantity (double, > 0), price (double, null when unknown),
    ts (long, ns since the epoch UTC), day (int, days since 1970-01-01) and source_row (long, 1-based). The
    other fields are those of :class:`~recsvc_training.input.dataset.TrainingData`.
    """

    events: DataFrame
    items: pd.DataFrame
    customers: pd.DataFrame
    aliases: pd.DataFrame
    stock: pd.DataFrame
    channels: list[str]
    report: IngestReport


def find_spark_tables(data_dir: Path) -> dict[str, Path]:
    """The file (or, for events, folder) of each table in ``data_dir``; as
    :func:`recsvc_training.input.ingest.find_table_files`, plus ``events`` as a folder of part files."""
    data_dir = Path(data_dir)
    if not data_dir.is_dir():
        raise InputError(f"data folder {data_dir} does not exist or is not a folder")
    found: dict[str, Path] = {}
    for table in (C.EVENTS, C.ITEMS, *OPTIONAL_TABLES):
        candidates = [data_dir / f"{table}{suffix}" for suffix in C.TABLE_SUFFIXES]
        present = [p for p in candidates if p.is_file()]
        if table == C.EVENTS:
            present += [p for p in (data_dir / f"{table}.parquet", data_dir / table) if p.is_dir()]
        if len(present) > 1:
            raise InputError(f"data folder {data_dir} has more than one file for table {table!r}: "
                             f"{', '.join(p.name for p in present)}; keep exactly one")
        if present:
            found[table] = present[0]
        elif table in (C.EVENTS, C.ITEMS):
            raise InputError(f"data folder {data_dir} has no {table} table: expected one of "
                             f"{', '.join(p.name for p in candidates)}")
    return found


def trimmed(column: Column) -> Column:
    """``clean_id``'s trim of a string column, in Spark SQL (null becomes "")."""
    from pyspark.sql import functions as F

    return F.regexp_replace(F.coalesce(column, F.lit("")), _TRIM_PATTERN, "")


def _read_events(spark: SparkSession, path: Path) -> tuple[DataFrame, DataFrame]:
    """Every column of the events as strings (null -> ""), names trimmed, plus the 1-based ``source_row``; and
    the cached frame it reads from (for the caller to release)."""
    from pyspark import StorageLevel
    from pyspark.sql import functions as F

    is_parquet = path.name.endswith(".parquet") or (path.is_dir() and any(path.glob("*.parquet")))
    try:
        if is_parquet:
            frame = spark.read.parquet(str(path))
        else:
            frame = (spark.read.option("header", True).option("inferSchema", False).option("encoding", "UTF-8")
                     .option("mode", "PERMISSIVE").csv(str(path)))
    except Exception as exc:  # AnalysisException and friends: the message names the path
        raise InputError(f"{path}: cannot read the events table: {exc}") from exc
    names = [str(c).lstrip("\ufeff").strip() for c in frame.columns]  # a byte-order mark sticks to the first
    frame = frame.select(*[F.coalesce(F.col(f"`{old}`").cast("string"), F.lit("")).alias(new)
                           for old, new in zip(frame.columns, names, strict=True)])
    missing = [c for c in C.REQUIRED_EVENT_COLUMNS if c not in names]
    if missing:
        raise InputError(f"{path}: missing required column(s) {missing}; the file has columns {names}; the "
                         f"events table needs {list(C.REQUIRED_EVENT_COLUMNS)}")
    # Row numbers in file order without a pass through Python: monotonically_increasing_id is the partition
    # id in the upper bits and the position within the partition below; a partition's offset is the row count
    # of the partitions before it (a file source's partitions are its files and splits, in order).
    numbered = frame.select("*", F.spark_partition_id().alias("_pid"),
                            F.monotonically_increasing_id().alias("_mid")).persist(StorageLevel.MEMORY_AND_DISK)
    sizes = sorted((int(r[0]), int(r[1])) for r in numbered.groupBy("_pid").count().collect())
    offsets, total = [], 0
    for pid, size in sizes:
        offsets.append((pid, total))
        total += size
    offset_of = F.create_map(*[F.lit(v) for pair in offsets for v in pair]) if offsets else F.create_map()
    local = F.col("_mid") - F.shiftleft(F.col("_pid").cast("long"), 33)
    source_row = (F.coalesce(offset_of[F.col("_pid")], F.lit(0)).cast("long") + local + 1).alias(SOURCE_ROW)
    return numbered.select(*[F.col(f"`{c}`") for c in names], source_row), numbered


def _parsers() -> tuple[Any, Any]:
    """The pandas UDFs that run the single-node parsers on the executors."""
    from pyspark.sql.functions import pandas_udf

    @pandas_udf("long")
    def timestamp_ns(text: pd.Series) -> pd.Series:
        parsed = parse_timestamps(text.astype(str))
        naive = parsed.dt.tz_convert("UTC").dt.tz_localize(None)
        out = pd.Series(naive.to_numpy(dtype="datetime64[ns]").view(np.int64), dtype="Int64")
        out[naive.isna().to_numpy()] = pd.NA
        return out

    @pandas_udf("double")
    def number(text: pd.Series) -> pd.Series:
        return parse_numbers(text.astype(str)).astype(np.float64)

    return timestamp_ns, number


def _clean_events(raw: DataFrame, default_channel: str, window: PlausibleTimes) -> DataFrame:
    """Normalised columns plus ``reason`` ("" = valid) and ``as_return`` for every raw row (raw columns kept)."""
    from pyspark.sql import functions as F
    from pyspark.sql.window import Window

    timestamp_ns, number = _parsers()
    columns = set(raw.columns)

    def text(name: str) -> Column:
        return trimmed(F.col(name)) if name in columns else F.lit("")

    channel = F.lower(text(C.CHANNEL))
    quantity_text = text(C.QUANTITY)
    frame = raw.select(
        "*",
        text(C.CUSTOMER_ID).alias("_customer"), text(C.ITEM_ID).alias("_item"),
        F.lower(text(C.EVENT)).alias("_event"),
        F.when(channel == "", F.lit(default_channel.strip().lower())).otherwise(channel).alias("_channel"),
        text(C.STORE_ID).alias("_store"), text(C.ORDER_ID).alias("_order"),
        number(F.when(quantity_text == "", F.lit("1")).otherwise(quantity_text)).alias("_q"),
        number(text(C.PRICE)).alias("_price"),
        timestamp_ns(text(C.TIMESTAMP)).alias("_ts"),
    )
    q = F.col("_q")
    newest_ns = int(window.newest.value)
    earliest_ns = int(window.earliest.value)
    reason = (
        F.when((F.col("_customer") == "") | (F.col("_item") == ""), F.lit(C.REASON_MISSING_ID))
        .when(~F.col("_event").isin(*C.EVENT_TYPES), F.lit(C.REASON_UNKNOWN_EVENT))
        .when(F.col("_ts").isNull(), F.lit(C.REASON_BAD_TIMESTAMP))
        .when(F.col("_ts") > F.lit(newest_ns), F.lit(C.REASON_FUTURE_TIMESTAMP))
        .when(F.col("_ts") < F.lit(earliest_ns), F.lit(C.REASON_ANCIENT_TIMESTAMP))
        .when(q.isNull() | F.isnan(q) | (q == 0) | ((q < 0) & ~F.col("_event").isin(C.PURCHASE, C.RETURN)),
              F.lit(C.REASON_BAD_QUANTITY))
        .otherwise(F.lit(""))
    )
    as_return = (q < 0) & (F.col("_event") == C.PURCHASE)
    frame = frame.select(
        "*", reason.alias(REASON_COLUMN), F.coalesce(as_return, F.lit(False)).alias("_as_return"))
    frame = frame.withColumn("_event", F.when(F.col("_as_return"), F.lit(C.RETURN)).otherwise(F.col("_event")))
    frame = frame.withColumn("_q", F.abs(q))

    # Duplicates are judged among rows that passed every other check, on normalised values plus any extra
    # column as given; the first valid copy (lowest source_row) is kept.
    extra = [c for c in raw.columns if c not in C.EVENT_COLUMNS and c != SOURCE_ROW]
    compare = ["_customer", "_item", "_event", "_channel", "_store", "_order", "_q", "_price", "_ts", *extra]
    valid = F.col(REASON_COLUMN) == ""
    window_spec = Window.partitionBy(valid, *[F.col(f"`{c}`") for c in compare]).orderBy(SOURCE_ROW)
    rank = F.row_number().over(window_spec)
    return frame.withColumn(REASON_COLUMN, F.when(valid & (rank > 1), F.lit(C.REASON_DUPLICATE))
                            .otherwise(F.col(REASON_COLUMN)))


def load_spark_training_data(spark: SparkSession, data_dir: Path, settings: TrainingSettings,
                             quarantine_dir: Path, *, now: pd.Timestamp | None = None) -> SparkTrainingData:
    """Read, validate and clean every table of ``data_dir``; the events stay in Spark.

    The contract of :func:`recsvc_training.input.ingest.load_training_data` (parameters, quarantine files,
    report, errors), except that the events come back as a Spark DataFrame (see :class:`SparkTrainingData`).

    Raises
    ------
    InputError
        As the single-node ingest: a missing folder, table or required column, or a table with nothing valid.
    ConfigError
        ``settings.default_channel`` is empty, or the plausible-time settings are unusable.
    """
    from pyspark import StorageLevel
    from pyspark.sql import functions as F

    run = IngestRun.start(data_dir, settings, quarantine_dir, now=now, find_tables=find_spark_tables)
    files, report, quarantine = run.files, run.report, run.quarantine
    with run.quarantine_written_on_failure():
        raw, cached_raw = _read_events(spark, files[C.EVENTS])
        raw_columns = [c for c in raw.columns if c != SOURCE_ROW]
        checked = _clean_events(raw, settings.default_channel, run.window).persist(StorageLevel.MEMORY_AND_DISK)
        counts = {str(r[REASON_COLUMN]): int(r["count"]) for r in checked.groupBy(REASON_COLUMN).count().collect()}
        n_read = sum(counts.values())
        n_kept = counts.get("", 0)
        rejected = (checked.where(F.col(REASON_COLUMN) != "")
                    .select(*[F.col(f"`{c}`") for c in raw_columns], REASON_COLUMN, SOURCE_ROW)
                    .orderBy(SOURCE_ROW).toPandas())
        quarantine[C.EVENTS] = rejected.astype({REASON_COLUMN: str})
        run.tally(C.EVENTS, n_read, n_kept, required=True)
        report.negative_quantities_as_returns = int(
            checked.where((F.col(REASON_COLUMN) == "") & F.col("_as_return")).count())

        raw_items = run.read_table(C.ITEMS, C.REQUIRED_ITEM_COLUMNS)
        items, quarantine[C.ITEMS] = clean_items(raw_items)
        run.tally(C.ITEMS, len(raw_items), len(items), required=True)

        customers = pd.DataFrame({C.CUSTOMER_ID: pd.Series([], dtype=str)})
        if C.CUSTOMERS in files:
            raw_customers = run.read_table(C.CUSTOMERS, C.CUSTOMER_COLUMNS)
            customers, quarantine[C.CUSTOMERS] = clean_customers(raw_customers)
            run.tally(C.CUSTOMERS, len(raw_customers), len(customers), required=False)

        alias_to_customer: dict[str, str] = {}
        if C.IDENTITIES in files:
            raw_links = run.read_table(C.IDENTITIES, C.IDENTITY_COLUMNS)
            links = raw_links.copy()
            for column in C.IDENTITY_COLUMNS:
                links[column] = clean_id_series(raw_links[column])
            resolution = resolve_identities(links, customers[C.CUSTOMER_ID].tolist())
            alias_to_customer = resolution.alias_to_customer
            bad = resolution.quarantined()
            quarantine[C.IDENTITIES] = quarantine_frame(raw_links, bad[SOURCE_ROW_COLUMN].to_numpy() - 1,
                                                         bad[REASON_COLUMN].to_numpy())
            report.identity_conflicts = resolution.n_conflicts
            run.tally(C.IDENTITIES, resolution.links_read, resolution.links_kept, required=False)
        aliases = pd.DataFrame({C.ALIAS_ID: pd.Series(list(alias_to_customer.keys()), dtype=str),
                                C.CUSTOMER_ID: pd.Series(list(alias_to_customer.values()), dtype=str)})
        aliases = aliases.sort_values(C.ALIAS_ID, kind="stable", ignore_index=True)
        if len(customers):
            customers = merge_customers(customers, alias_to_customer)

        events = _finish_events(spark, checked, aliases).persist(StorageLevel.MEMORY_AND_DISK)
        events.count()  # materialise before the raw rows are released
        checked.unpersist()
        cached_raw.unpersist()
        items, report.items_added_from_events = _add_items_from_events(spark, items, events)

        stock = pd.DataFrame({C.STORE_ID: pd.Series([], dtype=str), C.ITEM_ID: pd.Series([], dtype=str),
                              C.QUANTITY_ON_HAND: pd.Series([], dtype=np.float64)})
        if C.STOCK in files:
            raw_stock = run.read_table(C.STOCK, C.STOCK_COLUMNS)
            stock, quarantine[C.STOCK] = clean_stock(raw_stock)
            run.tally(C.STOCK, len(raw_stock), len(stock), required=False)
    report.quarantine_files = run.write_quarantine()
    event_channels = {str(r[0]) for r in events.select(C.CHANNEL).distinct().collect()}
    channels = sorted(event_channels | catalog_channels(items[C.CHANNELS]))
    run.log_counts()
    return SparkTrainingData(events=events, items=items, customers=customers, aliases=aliases, stock=stock,
                             channels=channels, report=report)


def _finish_events(spark: SparkSession, checked: DataFrame, aliases: pd.DataFrame) -> DataFrame:
    """The valid rows with resolved customers, ``day`` and ``basket_id``, in the contract's column names."""
    from pyspark.sql import functions as F

    valid = checked.where(F.col(REASON_COLUMN) == "")
    customer = F.col("_customer")
    if len(aliases):
        alias_frame = spark.createDataFrame(aliases.rename(columns={C.ALIAS_ID: "_alias",
                                                                    C.CUSTOMER_ID: "_canonical"}))
        valid = valid.join(F.broadcast(alias_frame) if len(aliases) < 5_000_000 else alias_frame,
                           valid["_customer"] == alias_frame["_alias"], "left")
        customer = F.coalesce(F.col("_canonical"), F.col("_customer"))
    # Floor division on integers (a double would round a midnight down to the day before): pmod is never
    # negative, so 1969-12-31T23:00 is day -1, as in the single-node trainer.
    day = F.expr(f"CAST((_ts - pmod(_ts, {NS_PER_DAY})) div {NS_PER_DAY} AS INT)")
    frame = valid.select(
        customer.alias(C.CUSTOMER_ID), F.col("_item").alias(C.ITEM_ID), F.col("_event").alias(C.EVENT),
        F.col("_channel").alias(C.CHANNEL), F.col("_store").alias(C.STORE_ID), F.col("_order").alias(C.ORDER_ID),
        F.col("_q").alias(C.QUANTITY),
        F.when(F.isnan("_price"), F.lit(None)).otherwise(F.col("_price")).alias(C.PRICE),
        F.col("_ts").alias(TS), day.alias(C.DAY), F.col(SOURCE_ROW))
    basket = F.when(F.col(C.ORDER_ID) != "", F.col(C.ORDER_ID)).otherwise(
        F.concat(F.col(C.CUSTOMER_ID), F.lit("@"), F.col(C.DAY).cast("string")))
    return frame.withColumn(C.BASKET_ID, basket)


def _add_items_from_events(spark: SparkSession, items: pd.DataFrame, events: DataFrame) -> tuple[pd.DataFrame, int]:
    """:func:`~recsvc_training.input.tables.add_items_from_events`, the median price taken in Spark."""
    from pyspark.sql import functions as F

    catalog = spark.createDataFrame(pd.DataFrame({"_known": items[C.ITEM_ID].astype(str)}))
    unknown = (events.join(F.broadcast(catalog), events[C.ITEM_ID] == catalog["_known"], "left_anti")
               .groupBy(C.ITEM_ID).agg(F.median(C.PRICE).alias(C.PRICE)).toPandas())
    if unknown.empty:
        return items, 0
    # one row per unknown item carrying its median already: the single-node rule then adds exactly these
    seen = pd.DataFrame({C.ITEM_ID: unknown[C.ITEM_ID].astype(str),
                         C.PRICE: pd.to_numeric(unknown[C.PRICE], errors="coerce").astype(np.float64)})
    return add_items_from_events(items, seen)


__all__ = ["QUARANTINE_SUFFIX", "SparkTrainingData", "find_spark_tables", "load_spark_training_data"]
