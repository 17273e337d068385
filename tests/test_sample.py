"""The bundled sample retailer (recsvc_training.sample): the behaviour it promises, checked on the files."""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from recsvc_training.input import columns as col
from recsvc_training.sample import STORES, SampleSummary, generate_sample

SMALL: dict[str, Any] = {"n_customers": 300, "n_items": 150, "days": 90}


@pytest.fixture(scope="module")
def sample(tmp_path_factory: pytest.TempPathFactory) -> SampleSummary:
    return generate_sample(tmp_path_factory.mktemp("sample"))


@pytest.fixture(scope="module")
def raw_events(sample: SampleSummary) -> pd.DataFrame:
    return pd.read_csv(sample.events_path, dtype=str, keep_default_na=False)


@pytest.fixture(scope="module")
def identities(sample: SampleSummary) -> pd.DataFrame:
    return pd.read_csv(sample.identities_path, dtype=str, keep_default_na=False)


@pytest.fixture(scope="module")
def items(sample: SampleSummary) -> pd.DataFrame:
    return pd.read_csv(sample.items_path, dtype=str, keep_default_na=False)


@pytest.fixture(scope="module")
def events(raw_events: pd.DataFrame, identities: pd.DataFrame) -> pd.DataFrame:
    """Clean events (the injected dirty rows dropped) with ``customer`` resolved through identities.csv."""
    frame = raw_events.drop_duplicates()
    stamps = pd.to_datetime(frame[col.TIMESTAMP], format="ISO8601", utc=True, errors="coerce")
    quantity = pd.to_numeric(frame[col.QUANTITY], errors="coerce")
    ok = (
        stamps.notna()
        & quantity.notna()
        & (frame[col.CUSTOMER_ID] != "")
        & frame[col.EVENT].isin(col.EVENT_TYPES)
    )
    frame = frame[ok].assign(ts=stamps[ok], qty=quantity[ok])
    owner = dict(zip(identities[col.ALIAS_ID], identities[col.CUSTOMER_ID], strict=True))
    return frame.assign(customer=frame[col.CUSTOMER_ID].map(lambda a: owner.get(a, a)))


def _file_bytes(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


# -- files and contract ---------------------------------------------------------------------------------------


def test_writes_every_table_with_the_contract_columns(sample: SampleSummary) -> None:
    expected = {
        sample.events_path: list(col.EVENT_COLUMNS),
        sample.items_path: [*col.ITEM_COLUMNS, "brand", "price_band"],
        sample.customers_path: [col.CUSTOMER_ID, "age_group", "area"],
        sample.identities_path: list(col.IDENTITY_COLUMNS),
        sample.stock_path: list(col.STOCK_COLUMNS),
    }
    assert sample.events_path.name == "events.csv.gz"
    for path, header in expected.items():
        assert list(pd.read_csv(path, dtype=str, nrows=0).columns) == header, path.name


def test_default_size_trains_in_seconds(sample: SampleSummary, raw_events: pd.DataFrame) -> None:
    assert 40_000 <= sample.n_events <= 80_000
    assert sample.n_events == len(raw_events)
    assert sample.n_clean_events + sample.n_dirty_rows == sample.n_events
    assert (sample.n_customers, sample.n_items) == (2000, 400)


def test_same_seed_same_bytes_other_seed_other_data(tmp_path: Path) -> None:
    generate_sample(tmp_path / "a", seed=11, **SMALL)
    generate_sample(tmp_path / "b", seed=11, **SMALL)
    generate_sample(tmp_path / "c", seed=12, **SMALL)
    a, b, c = (_file_bytes(tmp_path / name) for name in "abc")
    assert a == b
    assert set(a) == set(c)
    assert all(a[name] != c[name] for name in a)


def test_timestamps_are_iso_utc_inside_the_window(sample: SampleSummary, events: pd.DataFrame) -> None:
    assert events[col.TIMESTAMP].str.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ").all()
    assert events.ts.min().date() >= sample.start_date
    assert events.ts.max().date() == sample.end_date == date(2026, 10, 31)
    assert events[col.TIMESTAMP].is_monotonic_increasing


def test_item_ids_are_strings_with_leading_zeros(items: pd.DataFrame) -> None:
    assert items[col.ITEM_ID].str.fullmatch(r"\d{8}").all()
    assert items[col.ITEM_ID].str.startswith("0").all()
    assert items[col.ITEM_ID].is_unique


# -- channels, stores, identities -----------------------------------------------------------------------------


def test_all_channels_and_stores(events: pd.DataFrame) -> None:
    purchases = events[events[col.EVENT] == col.PURCHASE]
    assert set(purchases[col.CHANNEL]) == {"web", "app", "store"}
    in_store = events[events[col.CHANNEL] == "store"]
    assert set(in_store[col.STORE_ID]) == set(STORES)
    assert set(events[col.EVENT]) == set(col.EVENT_TYPES)
    # views and carts happen online only; click-and-collect puts a pickup store on some online orders
    assert set(events.loc[events[col.EVENT].isin([col.VIEW, col.CART]), col.CHANNEL]) == {"web", "app"}
    online_orders = purchases[purchases[col.CHANNEL] != "store"]
    assert 0.03 < (online_orders[col.STORE_ID] != "").mean() < 0.2


def test_events_are_logged_under_the_channels_alias(
    sample: SampleSummary, events: pd.DataFrame, identities: pd.DataFrame
) -> None:
    customers = set(pd.read_csv(sample.customers_path, dtype=str)[col.CUSTOMER_ID])
    aliases = set(identities[col.ALIAS_ID])
    by_channel = {ch: set(events.loc[events[col.CHANNEL] == ch, col.CUSTOMER_ID]) for ch in ("web", "app", "store")}
    assert by_channel["store"] <= aliases and all(a.startswith("LC-") for a in by_channel["store"])
    assert by_channel["app"] <= aliases and all(a.startswith("app-") for a in by_channel["app"])
    assert by_channel["web"] <= customers
    assert not aliases & customers
    assert identities[col.ALIAS_ID].is_unique
    assert set(identities[col.CUSTOMER_ID]) <= customers
    assert set(events.customer) <= customers


def test_some_customers_have_several_aliases_of_one_kind(identities: pd.DataFrame) -> None:
    kind = identities[col.ALIAS_ID].str.split("-").str[0]
    per_customer = identities.assign(kind=kind).groupby([col.CUSTOMER_ID, "kind"]).size().unstack(fill_value=0)
    assert set(kind) == {"LC", "app", "em"}
    assert (per_customer.sum(axis=1) >= 3).mean() > 0.3
    assert (per_customer["LC"] >= 2).sum() > 20  # replaced loyalty cards
    assert (per_customer["app"] >= 2).sum() > 20  # new phones


def test_customers_shop_online_and_in_several_stores(events: pd.DataFrame) -> None:
    purchases = events[events[col.EVENT] == col.PURCHASE]
    stores = purchases[purchases[col.CHANNEL] == "store"].groupby("customer")[col.STORE_ID].nunique()
    assert (stores >= 2).sum() > 0.4 * len(stores)
    online = set(purchases.loc[purchases[col.CHANNEL] != "store", "customer"])
    assert len(online & set(stores.index)) > 0.35 * purchases.customer.nunique()


# -- behaviour the models should find -------------------------------------------------------------------------


def test_complements_share_orders_far_more_than_chance(sample: SampleSummary, events: pd.DataFrame) -> None:
    lines = events.loc[events[col.EVENT] == col.PURCHASE, [col.ORDER_ID, col.ITEM_ID]].drop_duplicates()
    n_orders = lines[col.ORDER_ID].nunique()
    orders_with = lines.groupby(col.ITEM_ID)[col.ORDER_ID].apply(set).to_dict()
    together = expected = 0.0
    for anchor, complement in sample.complements:
        a, b = orders_with.get(anchor, set()), orders_with.get(complement, set())
        together += len(a & b)
        expected += len(a) * len(b) / n_orders
    assert len(sample.complements) > 40
    assert together > 100
    assert together > 20 * expected


def test_repurchase_intervals_follow_the_cycle(sample: SampleSummary, events: pd.DataFrame) -> None:
    purchases = events[events[col.EVENT] == col.PURCHASE]
    days = purchases.assign(day=purchases.ts.dt.floor("D"))[["customer", col.ITEM_ID, "day"]].drop_duplicates()
    days = days.sort_values("day")
    gaps = days.groupby(["customer", col.ITEM_ID])["day"].diff().dt.days
    cycle = days[col.ITEM_ID].map(sample.repurchase_cycles)
    median = gaps.groupby(cycle).median()
    assert set(sample.repurchase_cycles.values()) == {7, 14, 30, 90}
    for days_ in (7, 14, 30):
        assert median[days_] == pytest.approx(days_, rel=0.15), median.to_dict()
    # the 180-day window truncates 90-day gaps, and one-off purchases of the same item shorten some
    assert 45 <= median[90] <= 100
    assert gaps.groupby(cycle).size().min() > 50


def test_seasonal_categories_peak_in_season(events: pd.DataFrame, items: pd.DataFrame) -> None:
    purchases = events[events[col.EVENT] == col.PURCHASE].merge(items[[col.ITEM_ID, col.CATEGORY]], on=col.ITEM_ID)
    per_month = purchases.groupby([col.CATEGORY, purchases.ts.dt.month]).size().unstack(fill_value=0)
    assert per_month.loc["bbq", 7] > 2.5 * per_month.loc["bbq", 10]
    assert per_month.loc["outerwear", 10] > 3 * per_month.loc["outerwear", 6]
    assert per_month.loc["school", [8, 9]].sum() > 2 * per_month.loc["school", [5, 6]].sum()


def test_online_purchases_follow_a_view_cart_funnel(events: pd.DataFrame) -> None:
    online = events[events[col.CHANNEL] != "store"]
    first = online.groupby(["customer", col.ITEM_ID, col.EVENT]).ts.min().unstack()
    bought = first.dropna(subset=[col.PURCHASE])
    assert bought[col.CART].notna().mean() > 0.95
    assert (bought[col.CART] <= bought[col.PURCHASE]).mean() > 0.95
    assert bought[col.VIEW].notna().mean() > 0.4
    # abandoned browsing: views of items never bought
    assert first[col.PURCHASE].isna().sum() > 0.3 * len(first)


def test_returns_refer_to_an_earlier_purchase(events: pd.DataFrame) -> None:
    returns = events[events[col.EVENT] == col.RETURN]
    purchases = events[events[col.EVENT] == col.PURCHASE]
    assert 100 < len(returns) < 0.03 * len(purchases)
    matched = returns.merge(purchases, on=["customer", col.ORDER_ID, col.ITEM_ID], suffixes=("", "_bought"))
    assert len(matched) == len(returns)
    assert (matched.ts > matched.ts_bought).all()
    # some online orders come back through a store
    assert ((matched[col.CHANNEL] == "store") & (matched[f"{col.CHANNEL}_bought"] != "store")).any()


def test_new_customers_only_have_recent_events(sample: SampleSummary, events: pd.DataFrame) -> None:
    first_day = events.groupby("customer").ts.min().dt.date
    recent = (first_day >= date.fromordinal(sample.end_date.toordinal() - 20)).mean()
    assert 0.04 < recent < 0.2


# -- catalog and stock ----------------------------------------------------------------------------------------


def test_catalog_is_readable_and_attributed(items: pd.DataFrame) -> None:
    assert 14 <= items[col.CATEGORY].nunique() <= 20
    assert items[col.TITLE].is_unique
    assert items[col.TITLE].str.contains("organic oat milk").any()
    assert all(title.startswith(brand + " ") for title, brand in zip(items[col.TITLE], items["brand"], strict=True))
    assert set(items["price_band"]) == {"budget", "standard", "premium"}
    assert items["brand"].nunique() > 20
    assert (pd.to_numeric(items[col.PRICE]) > 0).all()
    assert set(items[col.CHANNELS]) == {"", "store", "web|app"}


def test_channel_restricted_items_are_consistent(sample: SampleSummary, items: pd.DataFrame,
                                                 events: pd.DataFrame) -> None:
    stock = pd.read_csv(sample.stock_path, dtype=str, keep_default_na=False)
    online_only = set(items.loc[items[col.CHANNELS] == "web|app", col.ITEM_ID])
    store_only = set(items.loc[items[col.CHANNELS] == "store", col.ITEM_ID])
    assert online_only and store_only
    assert not online_only & set(stock[col.ITEM_ID])
    assert store_only <= set(stock[col.ITEM_ID])
    # sold only where the catalog says; an online order may still be returned over a store counter
    sold = events[events[col.EVENT] != col.RETURN]
    assert not online_only & set(sold.loc[sold[col.CHANNEL] == "store", col.ITEM_ID])
    assert not store_only & set(events.loc[events[col.CHANNEL] != "store", col.ITEM_ID])


def test_stock_has_some_empty_shelves(sample: SampleSummary) -> None:
    stock = pd.read_csv(sample.stock_path, dtype={col.QUANTITY_ON_HAND: int})
    assert set(stock[col.STORE_ID]) == set(STORES)
    zero = (stock[col.QUANTITY_ON_HAND] == 0).mean()
    assert 0.02 < zero < 0.15
    assert (stock[col.QUANTITY_ON_HAND] >= 0).all()


# -- dirty rows -----------------------------------------------------------------------------------------------


def test_dirty_rows_are_the_promised_ones(sample: SampleSummary, raw_events: pd.DataFrame) -> None:
    dirty = sample.dirty_rows
    assert set(dirty) == {
        col.REASON_MISSING_ID, col.REASON_UNKNOWN_EVENT, col.REASON_BAD_TIMESTAMP, col.REASON_BAD_QUANTITY,
        col.REASON_DUPLICATE,
    }
    assert all(n > 0 for n in dirty.values())
    assert 0.003 < sample.n_dirty_rows / sample.n_events < 0.008
    stamps = pd.to_datetime(raw_events[col.TIMESTAMP], format="ISO8601", utc=True, errors="coerce")
    assert (raw_events[col.CUSTOMER_ID] == "").sum() == dirty[col.REASON_MISSING_ID]
    assert (~raw_events[col.EVENT].isin(col.EVENT_TYPES)).sum() == dirty[col.REASON_UNKNOWN_EVENT]
    assert set(raw_events.loc[~raw_events[col.EVENT].isin(col.EVENT_TYPES), col.EVENT]) == {"wishlist"}
    assert stamps.isna().sum() == dirty[col.REASON_BAD_TIMESTAMP]
    assert pd.to_numeric(raw_events[col.QUANTITY], errors="coerce").isna().sum() == dirty[col.REASON_BAD_QUANTITY]
    assert raw_events.duplicated().sum() == dirty[col.REASON_DUPLICATE]


def test_trainer_quarantines_exactly_the_dirty_rows(sample: SampleSummary, tmp_path: Path) -> None:
    ingest = pytest.importorskip("recsvc_training.input.ingest")
    from recsvc.config import TrainingSettings

    data = ingest.load_training_data(sample.out_dir, TrainingSettings(), tmp_path)
    assert data.report.quarantined[col.EVENTS] == dict(sample.dirty_rows)
    assert data.report.rows_kept[col.EVENTS] == sample.n_clean_events
    customers = set(pd.read_csv(sample.customers_path, dtype=str)[col.CUSTOMER_ID])
    assert set(data.events[col.CUSTOMER_ID]) <= customers


def test_rejects_sizes_it_cannot_honour(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="n_items"):
        generate_sample(tmp_path, n_items=10)
    with pytest.raises(ValueError, match="n_items"):
        generate_sample(tmp_path, n_items=10_000)
    with pytest.raises(ValueError, match="n_customers"):
        generate_sample(tmp_path, n_customers=5)
    with pytest.raises(ValueError, match="days"):
        generate_sample(tmp_path, days=10)
    assert not any(tmp_path.iterdir())


def test_summary_prints_for_the_cli(sample: SampleSummary) -> None:
    text = str(sample)
    assert "seed 7" in text and f"dirty rows on purpose: {sample.n_dirty_rows}" in text
    assert "repurchase_cycles" not in repr(sample)  # ground truth is long; kept out of the printout
