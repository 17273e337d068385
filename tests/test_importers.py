"""Public data set importers (recsvc_training.input.importers): hand-written slices with known answers, then real
slices of ../shared/data (skipped when the folder is absent)."""

from __future__ import annotations

import gzip
from pathlib import Path

import pandas as pd
import pytest

from recsvc_training.input import columns as col
from recsvc_training.input.importers import (
    DEFAULT_SOURCES,
    IMPORTERS,
    ImportSummary,
    import_movielens,
    import_online_retail,
    import_tafeng,
)
from recsvc_training.input.importers.movielens import MOVIELENS_GENRES
from recsvc_training.input.importers.online_retail import NON_PRODUCT_CODES

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
SLICE_ROWS = 20_000


def _read(path: Path) -> pd.DataFrame:
    return pd.read_csv(path, dtype=str, keep_default_na=False)


def _shared(name: str) -> Path:
    path = SHARED_DATA / DEFAULT_SOURCES[name]
    if not path.exists():
        pytest.skip(f"{path} not available")
    return path


def _assert_accounts_for_every_row(summary: ImportSummary) -> None:
    assert summary.rows_read == summary.rows_written + sum(summary.skipped.values())
    events = _read(summary.events_path)
    assert list(events.columns) == list(col.EVENT_COLUMNS)
    assert len(events) == summary.rows_written
    assert events[col.TIMESTAMP].str.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ").all()
    assert events[col.TIMESTAMP].is_monotonic_increasing
    assert (pd.to_numeric(events[col.QUANTITY]) > 0).all()
    assert set(events[col.EVENT]) <= set(col.EVENT_TYPES)
    assert list(_read(summary.items_path).columns[:5]) == list(col.ITEM_COLUMNS)
    assert _read(summary.items_path)[col.ITEM_ID].is_unique
    assert _read(summary.customers_path)[col.CUSTOMER_ID].is_unique


# -- Ta Feng ---------------------------------------------------------------------------------------------------

TAFENG_ROWS = [
    # TRANSACTION_DT, CUSTOMER_ID, AGE_GROUP, PIN_CODE, PRODUCT_SUBCLASS, PRODUCT_ID, AMOUNT, ASSET, SALES_PRICE
    ["11/1/2000", "01104905", "45-49", "115", "110411", "4710199010372", "2", "24", "30"],
    ["11/1/2000", "00418683", "", "Unknown", "110411", "0000000000017", "1", "48", "46"],
    ["12/25/2000", "01104905", "45-49", "115", "110411", "4710199010372", "-1", "12", "-15"],
    ["1/2/2001", "00418683", "", "Unknown", "100205", "4710199010372", "3", "30", "45"],
    ["2/30/2001", "01104905", "45-49", "115", "110411", "4710199010372", "1", "12", "15"],  # no such day
    ["1/5/2001", "01104905", "45-49", "115", "110411", "4710199010372", "0", "0", "0"],  # nothing sold
]


@pytest.fixture()
def tafeng_file(tmp_path: Path) -> Path:
    header = ["TRANSACTION_DT", "CUSTOMER_ID", "AGE_GROUP", "PIN_CODE", "PRODUCT_SUBCLASS", "PRODUCT_ID", "AMOUNT",
              "ASSET", "SALES_PRICE"]
    lines = [",".join(f'"{v}"' for v in row) for row in [header, *TAFENG_ROWS]]
    path = tmp_path / "tafeng.csv.gz"
    with gzip.open(path, "wt", encoding="utf-8-sig", newline="") as out:  # with a byte-order mark, as shipped
        out.write("\r\n".join(lines) + "\r\n")
    return path


def test_tafeng_converts_row_by_row(tafeng_file: Path, tmp_path: Path) -> None:
    summary = import_tafeng(tafeng_file, tmp_path / "out")
    _assert_accounts_for_every_row(summary)
    assert summary.skipped == {"bad_quantity": 1, "bad_timestamp": 1}
    events = _read(summary.events_path)
    assert events.to_dict("records")[:2] == [
        {col.TIMESTAMP: "2000-11-01T00:00:00Z", col.CUSTOMER_ID: "01104905", col.ITEM_ID: "4710199010372",
         col.EVENT: "purchase", col.CHANNEL: "store", col.STORE_ID: "", col.ORDER_ID: "", col.QUANTITY: "2",
         col.PRICE: "15.0"},
        {col.TIMESTAMP: "2000-11-01T00:00:00Z", col.CUSTOMER_ID: "00418683", col.ITEM_ID: "0000000000017",
         col.EVENT: "purchase", col.CHANNEL: "store", col.STORE_ID: "", col.ORDER_ID: "", col.QUANTITY: "1",
         col.PRICE: "46.0"},
    ]
    ret = events[events[col.EVENT] == col.RETURN]
    assert ret[[col.TIMESTAMP, col.QUANTITY, col.PRICE]].values.tolist() == [["2000-12-25T00:00:00Z", "1", "15.0"]]
    assert summary.facts["returns"] == 1


def test_tafeng_catalog_and_customers(tafeng_file: Path, tmp_path: Path) -> None:
    summary = import_tafeng(tafeng_file, tmp_path / "out")
    items = _read(summary.items_path).set_index(col.ITEM_ID)
    # most frequent subclass wins; the title is the id (the data has no names); median unit price
    assert items.loc["4710199010372", col.CATEGORY] == "110411"
    assert items.loc["4710199010372", col.TITLE] == "4710199010372"
    assert items.loc["4710199010372", col.PRICE] == "15.0"
    assert summary.facts["items_with_several_categories"] == 1
    customers = _read(summary.customers_path)
    assert customers.values.tolist() == [["00418683", "", "Unknown"], ["01104905", "45-49", "115"]]
    assert list(customers.columns) == [col.CUSTOMER_ID, "age_group", "area"]


def test_tafeng_rejects_another_file(tmp_path: Path) -> None:
    other = tmp_path / "other.csv"
    other.write_text("InvoiceNo,StockCode\n1,2\n")
    with pytest.raises(ValueError, match="TRANSACTION_DT"):
        import_tafeng(other, tmp_path / "out")


def test_tafeng_real_slice_keeps_leading_zeros(tmp_path: Path) -> None:
    summary = import_tafeng(_shared("tafeng"), tmp_path, limit_rows=SLICE_ROWS)
    _assert_accounts_for_every_row(summary)
    assert summary.rows_read == SLICE_ROWS
    assert summary.skipped == {}
    events = _read(summary.events_path)
    assert events[col.CUSTOMER_ID].str.fullmatch(r"\d{8}").all()
    assert events[col.CUSTOMER_ID].str.startswith("0").mean() > 0.99
    assert events[col.TIMESTAMP].str.startswith("2000-11-").all()  # the BOM did not eat TRANSACTION_DT
    assert set(events[col.CHANNEL]) == {"store"}
    with gzip.open(summary.events_path, "rb") as raw:
        assert raw.read(len("timestamp")) == b"timestamp"
    source = pd.read_csv(_shared("tafeng"), dtype=str, encoding="utf-8-sig", nrows=1)
    first = events.iloc[0]
    assert first[col.CUSTOMER_ID] == source.loc[0, "CUSTOMER_ID"] == "01104905"
    assert float(first[col.PRICE]) == pytest.approx(int(source.loc[0, "SALES_PRICE"]) / int(source.loc[0, "AMOUNT"]))
    customers = _read(summary.customers_path)
    assert customers["area"].ne("").all()


# -- Online Retail ---------------------------------------------------------------------------------------------

ONLINE_RETAIL_CSV = """\
InvoiceNo,StockCode,Description,Quantity,InvoiceDate,UnitPrice,CustomerID,Country
536365,85123A,WHITE HANGING HEART T-LIGHT HOLDER,6,2010-12-01 08:26:00,2.55,17850,United Kingdom
536365,POST,POSTAGE,1,2010-12-01 08:26:00,18.0,17850,United Kingdom
536366,85123a,WHITE HANGING HEART T-LIGHT HOLDER,2,2010-12-01 09:00:00,2.55,,United Kingdom
536366,gift_0001_20,Dotcomgiftshop Gift Voucher £20.00,1,2010-12-01 09:00:00,17.02,,United Kingdom
C536379,85123A,WHITE HANGING HEART T-LIGHT HOLDER,-2,2010-12-01 09:41:00,2.55,17850.0,United Kingdom
536380,21777,,-10,2010-12-01 16:50:00,0.0,,United Kingdom
536381,m,Manual,1,2010-12-01 17:00:00,2.0,14527,France
536382,22633,HAND WARMER UNION JACK,12,2010-12-02 10:00:00,1.85,14527,France
536382,22633,HAND WARMER UNION JACK,12,2010-12-02 10:00:00,1.85,14527,France
"""


@pytest.fixture()
def online_retail_summary(tmp_path: Path) -> ImportSummary:
    src = tmp_path / "online_retail.csv"
    src.write_text(ONLINE_RETAIL_CSV, encoding="utf-8")
    return import_online_retail(src, tmp_path / "out")


def test_online_retail_cancellations_are_returns(online_retail_summary: ImportSummary) -> None:
    events = _read(online_retail_summary.events_path)
    ret = events[events[col.EVENT] == col.RETURN]
    assert ret[[col.CUSTOMER_ID, col.ITEM_ID, col.ORDER_ID, col.QUANTITY]].values.tolist() == [
        ["17850", "85123A", "C536379", "2"]  # "17850.0" read as the integer id it is
    ]
    assert online_retail_summary.facts["returns"] == 1


def test_online_retail_guests_keep_their_basket(online_retail_summary: ImportSummary) -> None:
    events = _read(online_retail_summary.events_path)
    guest = events[events[col.ORDER_ID] == "536366"]
    assert guest[[col.CUSTOMER_ID, col.ITEM_ID]].values.tolist() == [["guest-536366", "85123A"]]
    assert online_retail_summary.facts["guest_rows"] == 1
    assert online_retail_summary.facts["guest_invoices"] == 1
    customers = _read(online_retail_summary.customers_path).set_index(col.CUSTOMER_ID)["country"].to_dict()
    assert customers == {"14527": "France", "17850": "United Kingdom", "guest-536366": "United Kingdom"}


def test_online_retail_leaves_out_non_products_and_stock_adjustments(online_retail_summary: ImportSummary) -> None:
    _assert_accounts_for_every_row(online_retail_summary)
    assert online_retail_summary.skipped == {"non_product": 3, "stock_adjustment": 1}
    assert online_retail_summary.non_product_rows == 3
    events = _read(online_retail_summary.events_path)
    items = _read(online_retail_summary.items_path)
    assert set(events[col.ITEM_ID]) == set(items[col.ITEM_ID]) == {"85123A", "22633"}
    assert items.set_index(col.ITEM_ID).loc["85123A", col.TITLE] == "WHITE HANGING HEART T-LIGHT HOLDER"
    assert set(items[col.CATEGORY]) == {""}
    # the source's own exact duplicate is passed on for the trainer's quarantine to count
    assert events.duplicated().sum() == 1


def test_online_retail_real_slice(tmp_path: Path) -> None:
    summary = import_online_retail(_shared("online_retail"), tmp_path, limit_rows=SLICE_ROWS)
    _assert_accounts_for_every_row(summary)
    assert summary.rows_read == SLICE_ROWS
    assert summary.non_product_rows > 0
    events = _read(summary.events_path)
    returns = events[events[col.EVENT] == col.RETURN]
    assert len(returns) > 100
    assert returns[col.ORDER_ID].str.startswith("C").all()
    assert not events.loc[events[col.EVENT] == col.PURCHASE, col.ORDER_ID].str.startswith("C").any()
    guests = events[events[col.CUSTOMER_ID].str.startswith("guest-")]
    assert len(guests) > 1000
    assert (guests[col.CUSTOMER_ID] == "guest-" + guests[col.ORDER_ID]).all()
    codes = set(events[col.ITEM_ID])
    assert not codes & NON_PRODUCT_CODES
    assert not any(c.lower().startswith("gift_") for c in codes)
    assert all(c == c.upper() for c in codes)
    assert set(events[col.CHANNEL]) == {"web"}


# -- MovieLens 100k --------------------------------------------------------------------------------------------


@pytest.fixture()
def movielens_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "ml-100k"
    folder.mkdir()
    (folder / "u.data").write_text("1\t10\t5\t881250949\n1\t20\t3\t881250950\n2\t10\t4\t891717742\n")
    comedy_drama = ["0"] * 19
    comedy_drama[MOVIELENS_GENRES.index("Comedy")] = comedy_drama[MOVIELENS_GENRES.index("Drama")] = "1"
    unknown = ["1"] + ["0"] * 18
    (folder / "u.item").write_bytes(
        (
            "|".join(["10", "Café au lait (1994)", "01-Jan-1994", "", "http://x", *comedy_drama]) + "\n"
            + "|".join(["20", "Unknown film", "", "", "", *unknown]) + "\n"
        ).encode("latin-1")
    )
    (folder / "u.user").write_text("1|24|M|technician|85711\n2|53|F|other|94043\n")
    return folder


def test_movielens_likes_are_purchases(movielens_dir: Path, tmp_path: Path) -> None:
    summary = import_movielens(movielens_dir, tmp_path / "out")
    _assert_accounts_for_every_row(summary)
    events = _read(summary.events_path)
    assert events[[col.CUSTOMER_ID, col.ITEM_ID, col.EVENT]].values.tolist() == [
        ["1", "10", "purchase"], ["1", "20", "view"], ["2", "10", "purchase"]
    ]
    assert events.loc[0, col.TIMESTAMP] == "1997-12-04T15:55:49Z"
    assert set(events[col.PRICE]) == {""}
    assert summary.facts == {"purchases": 2, "views": 1}


def test_movielens_catalog_and_customers(movielens_dir: Path, tmp_path: Path) -> None:
    summary = import_movielens(movielens_dir, tmp_path / "out")
    items = _read(summary.items_path).set_index(col.ITEM_ID)
    assert items.loc["10", col.TITLE] == "Café au lait (1994)"  # Latin-1 decoded
    assert items.loc["10", [col.CATEGORY, "genres", "year"]].tolist() == ["Comedy", "Comedy|Drama", "1994"]
    assert items.loc["20", [col.CATEGORY, "year"]].tolist() == ["unknown", ""]
    customers = _read(summary.customers_path)
    assert customers.values.tolist() == [["1", "18-24", "M", "technician"], ["2", "50-55", "F", "other"]]


def test_movielens_real_slice(tmp_path: Path) -> None:
    summary = import_movielens(_shared("movielens100k"), tmp_path, limit_rows=SLICE_ROWS)
    _assert_accounts_for_every_row(summary)
    assert summary.rows_read == SLICE_ROWS
    assert summary.n_items == 1682 and summary.n_customers == 943
    assert 0.4 < summary.facts["purchases"] / SLICE_ROWS < 0.7
    items = _read(summary.items_path)
    assert set(items[col.CATEGORY]) <= set(MOVIELENS_GENRES)
    assert items[col.TITLE].str.contains("é").any()  # Latin-1 titles, e.g. "Misérables"


# -- registry --------------------------------------------------------------------------------------------------


def test_registry_names_match_the_cli() -> None:
    assert set(IMPORTERS) == set(DEFAULT_SOURCES) == {"tafeng", "online_retail", "movielens100k"}
    assert IMPORTERS["tafeng"] is import_tafeng


def test_summary_prints_for_the_cli(online_retail_summary: ImportSummary) -> None:
    text = str(online_retail_summary)
    assert "online_retail" in text and "non_product 3" in text and "guest_rows 1" in text
