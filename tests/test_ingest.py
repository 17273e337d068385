"""Ingestion (recsvc_training.input.ingest) on hand-written data folders whose right answer is known row by row."""

from __future__ import annotations

import csv
import gzip
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from recsvc.config import ConfigError, TrainingSettings
from recsvc_training.input.columns import (
    BASKET_ID,
    CHANNEL,
    CHANNELS,
    CUSTOMER_ID,
    DAY,
    EVENT,
    ITEM_ID,
    PRICE,
    QUANTITY,
    TIMESTAMP,
    TITLE,
)
from recsvc_training.input.dataset import TrainingData
from recsvc_training.input.ingest import InputError, load_training_data

EVENT_HEADER = ["timestamp", "customer_id", "item_id", "event", "channel", "store_id", "order_id", "quantity",
                "price"]
# One row per rule; the comment is the expected outcome. source_row = position in this list + 1.
EVENT_ROWS = [
    ["2024-01-01T10:00:00Z", "007", "0001", "purchase", "Web", "", "o1", "2", "1.50"],  # 1 kept
    ["2024-01-01T11:00:00Z", "", "0001", "purchase", "", "", "", "1", ""],  # 2 missing_id
    ["2024-01-01", "007", "", "bogus", "", "", "", "1", ""],  # 3 missing_id (first)
    ["2024-01-01", "007", "0002", "like", "", "", "", "1", ""],  # 4 unknown_event
    ["yesterday", "007", "0002", "view", "", "", "", "", ""],  # 5 bad_timestamp
    ["", "007", "0002", "view", "", "", "", "", ""],  # 6 bad_timestamp
    ["2024-01-02", "007", "0002", "cart", "", "", "", "abc", ""],  # 7 bad_quantity
    ["2024-01-02", "007", "0002", "cart", "", "", "", "0", ""],  # 8 bad_quantity
    ["2024-01-02", "007", "0002", "cart", "", "", "", "-1", ""],  # 9 bad_quantity
    ["2024-01-01T10:00:00Z", "007", "0001", "purchase", "Web", "", "o1", "2", "1.50"],  # 10 duplicate of 1
    ["2024-01-03 08:00", "008", " 0003 ", " PURCHASE ", "", "s1", "", "-3", "4"],  # 11 kept -> return x3
    ["2024-01-03T09:00:00+02:00", "008", "0003", "return", "APP", "", "", "-1", "x"],  # 12 kept, return x1
    ["2024-01-02", "009", "0004", "view", "store", "", "", "", ""],  # 13 kept, new item
    ["2024-01-02T12:00:00", "009", "0004", "cart", "", "", "", "1", "2.5"],  # 14 kept
]
ITEM_HEADER = ["item_id", "title", "category", "price", "channels", "brand"]
ITEM_ROWS = [
    ["0001", "Milk", "dairy", "1.5", "Web| store|web", "acme"],  # 1 kept
    ["0002", "Bread", "bakery", "n/a", "", ""],  # 2 kept, price NaN
    ["", "Nameless", "", "", "", ""],  # 3 missing_id
    ["0001", "Milk again", "dairy", "9", "", ""],  # 4 duplicate
    ["0003", "Soap", "home", "3", "app", "clean"],  # 5 kept
]


def write_csv(path: Path, header: list[str], rows: list[list[str]]) -> Path:
    opener = gzip.open if path.name.endswith(".gz") else open
    with opener(path, "wt", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def make_folder(root: Path, events: list[list[str]] | None = None, items: list[list[str]] | None = None,
                suffix: str = ".csv", **tables: tuple[list[str], list[list[str]]]) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    all_tables = {"events": (EVENT_HEADER, EVENT_ROWS if events is None else events),
                  "items": (ITEM_HEADER, ITEM_ROWS if items is None else items), **tables}
    for name, (header, rows) in all_tables.items():
        if suffix == ".parquet":
            pd.DataFrame(rows, columns=header, dtype=str).to_parquet(root / f"{name}.parquet")
        else:
            write_csv(root / f"{name}{suffix}", header, rows)
    return root


def load(folder: Path, quarantine: Path | None = None) -> TrainingData:
    return load_training_data(folder, TrainingSettings(default_channel="web"),
                              quarantine or folder.parent / "quarantine")


@pytest.fixture()
def data(tmp_path: Path) -> TrainingData:
    return load(make_folder(tmp_path / "data"))


def test_every_event_reason_is_counted(data: TrainingData) -> None:
    report = data.report
    assert report.rows_read["events"] == 14
    assert report.quarantined["events"] == {"missing_id": 2, "unknown_event": 1, "bad_timestamp": 2,
                                            "bad_quantity": 3, "duplicate": 1}
    assert report.rows_kept["events"] == 5 == len(data.events)


def test_quarantine_file_holds_original_values_reason_and_source_row(data: TrainingData,
                                                                     tmp_path: Path) -> None:
    path = tmp_path / "quarantine" / "events.quarantine.csv"
    assert path in data.report.quarantine_files
    rows = pd.read_csv(path, dtype=str, keep_default_na=False)
    assert list(rows.columns) == [*EVENT_HEADER, "reason", "source_row"]
    assert list(zip(rows["source_row"].astype(int), rows["reason"], strict=True)) == [
        (2, "missing_id"), (3, "missing_id"), (4, "unknown_event"), (5, "bad_timestamp"),
        (6, "bad_timestamp"), (7, "bad_quantity"), (8, "bad_quantity"), (9, "bad_quantity"),
        (10, "duplicate")]
    assert rows.loc[rows["source_row"] == "7", "quantity"].item() == "abc"  # as given, not cleaned
    assert rows.loc[rows["source_row"] == "10", "customer_id"].item() == "007"


def test_nothing_valid_is_dropped(data: TrainingData) -> None:
    report = data.report
    for table, read in report.rows_read.items():
        assert report.rows_kept[table] + sum(report.quarantined[table].values()) == read, table
    assert report.total_quarantined() == 9 + 2


def test_negative_purchase_becomes_a_return_and_negative_return_is_made_positive(data: TrainingData) -> None:
    events = data.events
    returns = events[events[CUSTOMER_ID] == "008"]
    assert returns[EVENT].tolist() == ["return", "return"]
    assert returns[QUANTITY].tolist() == [1.0, 3.0]  # row 12 (07:00 UTC), then row 11 (08:00 UTC)
    assert data.report.negative_quantities_as_returns == 1  # only the purchase counts
    assert (events[QUANTITY] > 0).all()


def test_events_have_exactly_the_contract_columns_and_dtypes(data: TrainingData) -> None:
    events = data.events
    assert list(events.columns) == ["customer_id", "item_id", "event", "channel", "store_id", "order_id",
                                    "basket_id", "quantity", "price", "timestamp", "day"]
    assert str(events[TIMESTAMP].dtype) == "datetime64[ns, UTC]"
    assert events[DAY].dtype == np.int32
    assert events[QUANTITY].dtype == np.float64 and events[PRICE].dtype == np.float64
    for column in ("customer_id", "item_id", "event", "channel", "store_id", "order_id", "basket_id"):
        assert pd.api.types.is_string_dtype(events[column].dtype), column
        assert all(isinstance(v, str) for v in events[column]), column
    assert events[TIMESTAMP].is_monotonic_increasing
    assert isinstance(events.index, pd.RangeIndex)


def test_event_values_are_normalised(data: TrainingData) -> None:
    events = data.events.set_index([CUSTOMER_ID, EVENT, ITEM_ID])
    first = events.loc[("007", "purchase", "0001")]
    assert first[CHANNEL] == "web" and first[BASKET_ID] == "o1" and first[PRICE] == 1.5
    assert first[DAY] == 19723  # 2024-01-01
    # Row 12 (09:00+02:00 = 07:00 UTC) sorts before row 11 (08:00 UTC): events are ordered by UTC time.
    trimmed = data.events[data.events[ITEM_ID] == "0003"]  # " 0003 " in row 11, trimmed
    assert trimmed[CHANNEL].tolist() == ["app", "web"]  # "APP" lower-cased; empty -> default channel
    assert trimmed["store_id"].tolist() == ["", "s1"]
    assert np.isnan(trimmed[PRICE].iloc[0]) and trimmed[PRICE].iloc[1] == 4.0  # "x" is NaN, not quarantined
    no_order = data.events[data.events[CUSTOMER_ID] == "009"]
    assert set(no_order[BASKET_ID]) == {"009@19724"}  # customer x day when there is no order id


def test_naive_timestamps_are_utc_and_zones_are_converted(data: TrainingData) -> None:
    times = data.events.set_index([CUSTOMER_ID, EVENT, QUANTITY])[TIMESTAMP]
    assert times[("008", "return", 1.0)] == pd.Timestamp("2024-01-03T07:00:00Z")
    assert times[("008", "return", 3.0)] == pd.Timestamp("2024-01-03T08:00:00Z")
    assert times[("009", "view", 1.0)] == pd.Timestamp("2024-01-02T00:00:00Z")  # plain date = UTC midnight
    assert times[("009", "cart", 1.0)] == pd.Timestamp("2024-01-02T12:00:00Z")  # naive = UTC


def test_leading_zeros_are_preserved(data: TrainingData) -> None:
    assert {"007", "008", "009"} == set(data.events[CUSTOMER_ID])
    assert {"0001", "0002", "0003", "0004"} == set(data.items[ITEM_ID])


def test_items_are_cleaned_and_quarantined(data: TrainingData, tmp_path: Path) -> None:
    report = data.report
    assert report.rows_read["items"] == 5 and report.rows_kept["items"] == 3
    assert report.quarantined["items"] == {"missing_id": 1, "duplicate": 1}
    rows = pd.read_csv(tmp_path / "quarantine" / "items.quarantine.csv", dtype=str, keep_default_na=False)
    assert rows[["source_row", "reason"]].values.tolist() == [["3", "missing_id"], ["4", "duplicate"]]
    items = data.items.set_index(ITEM_ID)
    assert items.loc["0001", TITLE] == "Milk"  # first of the duplicates kept
    assert items.loc["0001", CHANNELS] == "store|web"
    assert np.isnan(items.loc["0002", PRICE])
    assert items.loc["0003", "brand"] == "clean"  # attribute columns kept
    assert data.items[ITEM_ID].is_unique
    assert data.items[PRICE].dtype == np.float64


def test_items_seen_only_in_events_are_added_never_dropped(data: TrainingData) -> None:
    assert data.report.items_added_from_events == 1
    added = data.items.set_index(ITEM_ID).loc["0004"]
    assert added[TITLE] == "" and added["category"] == "" and added[CHANNELS] == "" and added["brand"] == ""
    assert added[PRICE] == 2.5  # median of its event prices (one known)
    assert set(data.events[ITEM_ID]) <= set(data.items[ITEM_ID])


def test_channels_are_the_union_of_events_and_catalog(data: TrainingData) -> None:
    assert data.channels == ["app", "store", "web"]


def test_report_lists_input_files_and_only_written_quarantine_files(data: TrainingData,
                                                                    tmp_path: Path) -> None:
    folder = tmp_path / "data"
    assert data.report.input_files == [folder / "events.csv", folder / "items.csv"]
    assert sorted(p.name for p in data.report.quarantine_files) == ["events.quarantine.csv",
                                                                     "items.quarantine.csv"]
    assert data.customers.empty and list(data.customers.columns) == [CUSTOMER_ID]
    assert data.aliases.empty and list(data.aliases.columns) == ["alias_id", "customer_id"]
    assert data.stock.empty and list(data.stock.columns) == ["store_id", "item_id", "quantity_on_hand"]


def test_clean_input_writes_no_quarantine_file_and_removes_a_stale_one(tmp_path: Path) -> None:
    quarantine = tmp_path / "quarantine"
    quarantine.mkdir()
    (quarantine / "events.quarantine.csv").write_text("left over from an earlier run\n")
    folder = make_folder(tmp_path / "data", events=[EVENT_ROWS[0]], items=[ITEM_ROWS[0]])
    data = load(folder, quarantine)
    assert data.report.quarantine_files == []
    assert data.report.total_quarantined() == 0
    assert list(quarantine.iterdir()) == []


def test_missing_quarantine_folder_is_created_only_when_needed(tmp_path: Path) -> None:
    folder = make_folder(tmp_path / "data", events=[EVENT_ROWS[0]], items=[ITEM_ROWS[0]])
    load(folder, tmp_path / "q" / "deep")
    assert not (tmp_path / "q").exists()


def test_exact_duplicates_compare_normalised_values(tmp_path: Path) -> None:
    rows = [["2024-01-01T10:00:00Z", "1", "A", "view", "", "", "", "", ""],
            ["2024-01-01 10:00:00+00:00", " 1", "A", "VIEW", "web", "", "", "1", ""],  # same event, respelled
            ["2024-01-01T10:00:01Z", "1", "A", "view", "", "", "", "", ""]]            # a second later: kept
    data = load(make_folder(tmp_path / "data", events=rows))
    assert data.report.quarantined["events"] == {"duplicate": 1}
    assert len(data.events) == 2


# --- identities and customers -------------------------------------------------------------------------------

IDENTITY_HEADER = ["alias_id", "customer_id", "source"]
CUSTOMER_HEADER = ["customer_id", "segment", "city"]


def test_chained_aliases_resolve_events_and_customers_to_one_customer(tmp_path: Path) -> None:
    events = [["2024-01-01", "card-1", "0001", "purchase", "", "", "", "1", ""],
              ["2024-01-02", "app-9", "0001", "view", "", "", "", "", ""],
              ["2024-01-03", "007", "0002", "view", "", "", "", "", ""]]
    identities = (IDENTITY_HEADER, [["card-1", "app-9", "pos"], ["app-9", "007", "app"]])
    customers = (CUSTOMER_HEADER, [["card-1", "gold", ""], ["007", "", "Oslo"], ["007", "silver", "Bergen"],
                                   ["", "ghost", ""]])
    data = load(make_folder(tmp_path / "data", events=events, identities=identities, customers=customers))
    assert set(data.events[CUSTOMER_ID]) == {"007"}
    assert data.events[BASKET_ID].tolist() == ["007@19723", "007@19724", "007@19725"]
    assert data.aliases.to_dict("records") == [{"alias_id": "app-9", "customer_id": "007"},
                                               {"alias_id": "card-1", "customer_id": "007"}]
    # Attributes of the alias rows merged onto 007: per column, the first non-empty value wins.
    assert data.customers.to_dict("records") == [{"customer_id": "007", "segment": "gold", "city": "Oslo"}]
    assert data.report.rows_read["customers"] == 4 and data.report.rows_kept["customers"] == 3
    assert data.report.quarantined["customers"] == {"missing_id": 1}
    assert data.report.identity_conflicts == 0


def test_conflicting_link_is_reported_and_quarantined_not_merged(tmp_path: Path) -> None:
    events = [["2024-01-01", "card-1", "0001", "purchase", "", "", "", "1", ""],
              ["2024-01-01", "C1", "0001", "view", "", "", "", "", ""],
              ["2024-01-01", "C2", "0001", "view", "", "", "", "", ""]]
    identities = (IDENTITY_HEADER, [["card-1", "C1", "pos"], ["card-1", "C2", "crm"], ["", "C2", "crm"]])
    data = load(make_folder(tmp_path / "data", events=events, identities=identities))
    assert data.report.identity_conflicts == 1
    assert sorted(data.events[CUSTOMER_ID]) == ["C1", "C1", "C2"]  # C1 and C2 stay two customers
    assert data.aliases.to_dict("records") == [{"alias_id": "card-1", "customer_id": "C1"}]
    assert data.report.quarantined["identities"] == {"identity_conflict": 1, "missing_id": 1}
    assert data.report.rows_read["identities"] == 3 and data.report.rows_kept["identities"] == 1
    path = tmp_path / "quarantine" / "identities.quarantine.csv"
    rows = pd.read_csv(path, dtype=str, keep_default_na=False)
    assert rows.to_dict("records") == [
        {"alias_id": "card-1", "customer_id": "C2", "source": "crm", "reason": "identity_conflict",
         "source_row": "2"},
        {"alias_id": "", "customer_id": "C2", "source": "crm", "reason": "missing_id", "source_row": "3"}]


# --- stock --------------------------------------------------------------------------------------------------

def test_stock_is_read_and_validated(tmp_path: Path) -> None:
    stock = (["store_id", "item_id", "quantity_on_hand"],
             [["s1", "0001", "5"], ["s1", "0001", "7"], ["s1", "", "1"], ["s2", "0001", "lots"],
              ["s2", "0002", "0"]])
    data = load(make_folder(tmp_path / "data", stock=stock))
    assert data.stock.to_dict("records") == [{"store_id": "s1", "item_id": "0001", "quantity_on_hand": 5.0},
                                             {"store_id": "s2", "item_id": "0002", "quantity_on_hand": 0.0}]
    assert data.report.quarantined["stock"] == {"duplicate": 1, "missing_id": 1, "bad_quantity": 1}


# --- file formats -------------------------------------------------------------------------------------------

@pytest.mark.parametrize("suffix", [".csv.gz", ".parquet"])
def test_csv_gz_and_parquet_read_the_same_as_csv(tmp_path: Path, suffix: str) -> None:
    identities = (IDENTITY_HEADER, [["card-1", "007", "pos"]])
    expected = load(make_folder(tmp_path / "csv", identities=identities), tmp_path / "q_csv")
    other = load(make_folder(tmp_path / "other", suffix=suffix, identities=identities), tmp_path / "q_other")
    for name in ("events", "items", "customers", "aliases", "stock"):
        pd.testing.assert_frame_equal(getattr(other, name), getattr(expected, name), obj=name)
    assert other.channels == expected.channels
    assert other.report.quarantined == expected.report.quarantined
    tables = ("events", "items", "identities")
    assert [p.name for p in other.report.input_files] == [f"{table}{suffix}" for table in tables]
    for name in ("events.quarantine.csv", "items.quarantine.csv"):
        assert (tmp_path / "q_other" / name).read_text() == (tmp_path / "q_csv" / name).read_text()


def test_typed_parquet_columns_are_read_as_text(tmp_path: Path) -> None:
    folder = make_folder(tmp_path / "data", events=[])
    (folder / "events.csv").unlink()
    pd.DataFrame({
        "timestamp": pd.to_datetime(["2024-01-01T10:00:00Z", "2024-01-02T00:00:00Z"], utc=True),
        "customer_id": ["007", "008"], "item_id": ["0001", "0002"], "event": ["purchase", "view"],
        "quantity": [2, 1], "price": [1.5, np.nan],
    }).to_parquet(folder / "events.parquet")
    events = load(folder).events
    assert events[TIMESTAMP].tolist() == [pd.Timestamp("2024-01-01T10:00:00Z"),
                                          pd.Timestamp("2024-01-02", tz="UTC")]
    assert events[QUANTITY].tolist() == [2.0, 1.0]
    assert events[PRICE].iloc[0] == 1.5 and np.isnan(events[PRICE].iloc[1])
    assert events[CUSTOMER_ID].tolist() == ["007", "008"]


def test_byte_order_mark_does_not_hide_the_first_column(tmp_path: Path) -> None:
    folder = make_folder(tmp_path / "data", events=[EVENT_ROWS[0]])
    path = folder / "events.csv"
    path.write_bytes(b"\xef\xbb\xbf" + path.read_bytes())
    assert len(load(folder).events) == 1


def test_non_iso_numeric_dates_are_read_month_first(tmp_path: Path) -> None:
    rows = [["11/1/2000", "01", "0001", "purchase", "", "", "", "1", ""],
            ["May", "01", "0001", "view", "", "", "", "", ""]]  # dateutil would read this as a date: refused
    data = load(make_folder(tmp_path / "data", events=rows))
    assert data.events[TIMESTAMP].tolist() == [pd.Timestamp("2000-11-01", tz="UTC")]
    assert data.report.quarantined["events"] == {"bad_timestamp": 1}


# --- input errors -------------------------------------------------------------------------------------------

def test_missing_required_column_names_the_column_and_the_file(tmp_path: Path) -> None:
    folder = make_folder(tmp_path / "data")
    write_csv(folder / "events.csv", ["timestamp", "customer_id", "item", "event"],
              [["2024-01-01", "1", "A", "view"]])
    with pytest.raises(InputError, match=r"events\.csv.*item_id.*customer_id") as excinfo:
        load(folder)
    assert isinstance(excinfo.value, ValueError)
    assert "'item'" in str(excinfo.value)  # lists the columns the file does have


def test_missing_items_table_names_the_folder_and_expected_files(tmp_path: Path) -> None:
    folder = make_folder(tmp_path / "data")
    (folder / "items.csv").unlink()
    with pytest.raises(InputError, match=r"items\.csv, items\.csv\.gz, items\.parquet") as excinfo:
        load(folder)
    assert str(folder) in str(excinfo.value)


@pytest.mark.parametrize("text", ["item_id,title\nA,x,extra\n", "item_id,title\nA,x\nB,y,z\n"])
def test_rows_with_more_fields_than_the_header_are_an_input_error_not_a_shift(tmp_path: Path, text: str) -> None:
    folder = make_folder(tmp_path / "data")
    (folder / "items.csv").write_text(text)
    with pytest.raises(InputError, match=r"items\.csv: cannot read"):
        load(folder)


def test_two_files_for_one_table_is_ambiguous(tmp_path: Path) -> None:
    folder = make_folder(tmp_path / "data")
    write_csv(folder / "events.csv.gz", EVENT_HEADER, EVENT_ROWS)
    with pytest.raises(InputError, match="more than one file"):
        load(folder)


def test_events_with_nothing_valid_is_an_input_error(tmp_path: Path) -> None:
    folder = make_folder(tmp_path / "data", events=[EVENT_ROWS[1], EVENT_ROWS[3]])
    with pytest.raises(InputError, match=r"none of the 2 events rows is valid") as excinfo:
        load(folder)
    # The message points at the quarantine file, which is written even though the run fails.
    path = tmp_path / "quarantine" / "events.quarantine.csv"
    assert str(path) in str(excinfo.value)
    assert pd.read_csv(path)["reason"].tolist() == ["missing_id", "unknown_event"]


def test_empty_events_table_is_an_input_error(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no rows"):
        load(make_folder(tmp_path / "data", events=[]))


def test_empty_default_channel_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="default_channel"):
        load_training_data(make_folder(tmp_path / "data"), TrainingSettings(default_channel=" "),
                           tmp_path / "q")


def test_missing_data_folder_is_an_input_error(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="does not exist"):
        load(tmp_path / "nowhere")
