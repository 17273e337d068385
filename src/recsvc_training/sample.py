"""The bundled sample data set: a small, made-up omnichannel retailer written in the input contract.

The README's main command trains on this folder, so it has to exercise everything the trainer does with real
data, and it has to be small enough to train in seconds. :func:`generate_sample` simulates, from one seed:

* three channels (``web``, ``app``, ``store``) and five stores ``S01`` .. ``S05``; every customer has a home
  store, a preferred channel mix, and shops online and in several stores;
* identities: in-store events are logged under a loyalty-card alias (``LC-004711``), app events under an app
  install alias (``app-1f3a9c0e``), web events under the customer id (``C000123``); e-mail hashes
  (``em-...``) exist only in ``identities.csv``; some customers replaced a card or a phone and have two cards
  or two installs, so one customer can have up to five aliases;
* about 17 categories with complementary products bought in the same order (pram -> rain cover, coffee machine
  -> beans and descaler, smartphone -> case, ...), readable titles, brands and price bands;
* consumables with a repurchase cycle of 7, 14, 30 or 90 days that customers re-buy with jitter;
* seasonal categories (barbecue and garden in summer, school in August-September, outerwear in autumn),
  view -> cart -> purchase funnels online, abandoned browsing, returns (some online orders returned in store,
  online-only items included: ``channels`` says where an item is sold, not where it may be handed back),
  click-and-collect, a few online-only and store-only items, and a segment of new customers who only have
  recent events;
* a deliberate ~0.5 % of dirty rows (missing customer id, unknown event ``wishlist``, unparseable timestamp,
  non-numeric quantity, exact duplicates), added as extra rows so that the clean events are exactly what is
  left after the trainer's quarantine.

The simulation's ground truth (each consumable's cycle, each anchor item's matching complement) is returned in
:class:`SampleSummary` so tests and benchmarks can check that the models find it.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Final

import numpy as np
import pandas as pd

from recsvc_training.input import columns as col

logger = logging.getLogger(__name__)

__all__ = ["SampleSummary", "generate_sample"]

WEB: Final = "web"
APP: Final = "app"
STORE: Final = "store"
SAMPLE_CHANNELS: Final = (WEB, APP, STORE)
STORES: Final = ("S01", "S02", "S03", "S04", "S05")
AREAS: Final = ("Centre", "North", "East", "South", "West")  # area i is home to store i
#: Share of dirty rows added on top of the clean events.
DIRTY_SHARE: Final = 0.005
#: New customers only have events in this many last days of the window.
NEW_CUSTOMER_DAYS: Final = 21

_ONLINE_ONLY: Final = f"{WEB}{col.CHANNEL_SEPARATOR}{APP}"
_DIRTY_KINDS: Final = (
    col.REASON_MISSING_ID,
    col.REASON_UNKNOWN_EVENT,
    col.REASON_BAD_TIMESTAMP,
    col.REASON_BAD_QUANTITY,
    col.REASON_DUPLICATE,
)
_BAD_TIMESTAMPS: Final = ("not-a-date", "2026-02-30T10:00:00Z", "31/06/2026 10:00")
_BAD_QUANTITIES: Final = ("two", "1,5", "3 pcs")


@dataclass(frozen=True)
class SampleSummary:
    """What :func:`generate_sample` wrote, and the ground truth it planted.

    ``n_events`` counts every row of ``events.csv.gz``, dirty ones included; ``n_clean_events`` is what
    should survive the trainer's quarantine. ``dirty_rows`` is keyed by the trainer's quarantine reasons
    (``recsvc_training.input.columns.REASON_*``). ``repurchase_cycles`` maps each consumable item id to its typical
    re-buy interval in days; ``complements`` lists (anchor item, matching complement item) pairs that the
    simulation puts in the same order.
    """

    out_dir: Path
    events_path: Path
    items_path: Path
    customers_path: Path
    identities_path: Path
    stock_path: Path
    seed: int
    start_date: date
    end_date: date
    n_events: int
    n_clean_events: int
    n_orders: int
    n_customers: int
    n_items: int
    n_aliases: int
    n_stock_rows: int
    dirty_rows: Mapping[str, int]
    repurchase_cycles: Mapping[str, int] = field(repr=False)
    complements: tuple[tuple[str, str], ...] = field(repr=False)

    @property
    def n_dirty_rows(self) -> int:
        return sum(self.dirty_rows.values())

    def __str__(self) -> str:
        dirty = ", ".join(f"{reason} {n}" for reason, n in self.dirty_rows.items())
        return "\n".join(
            [
                f"sample retailer (seed {self.seed}) in {self.out_dir}",
                f"  {self.start_date} .. {self.end_date}: {self.n_events:,} events "
                f"({self.n_clean_events:,} clean, {self.n_orders:,} orders)",
                f"  {self.n_customers:,} customers, {self.n_aliases:,} aliases, {self.n_items:,} items, "
                f"{self.n_stock_rows:,} stock rows",
                f"  dirty rows on purpose: {self.n_dirty_rows} ({dirty})",
            ]
        )


# --------------------------------------------------------------------------------------------------------------
# The catalog specification: categories, products, brands. Prices in the shop's currency, cycles in days.


@dataclass(frozen=True)
class _Product:
    name: str
    base_price: float
    #: (label, price multiplier); label "" for a product without sizes or colours
    variants: tuple[tuple[str, float], ...] = (("", 1.0),)
    #: > 0: a consumable that customers re-buy about every cycle_days
    cycle_days: int = 0
    #: names of products bought in the same order as this one
    complements: tuple[str, ...] = ()


@dataclass(frozen=True)
class _Category:
    name: str
    #: share of shopping missions, before customer affinity and season
    weight: float
    #: (brand, price factor): <= 0.8 is a budget brand, >= 1.2 a premium one
    brands: tuple[tuple[str, float], ...]
    products: tuple[_Product, ...]
    #: 12 monthly multipliers, January first
    season: tuple[float, ...] = (1.0,) * 12
    return_rate: float = 0.01
    store_only: float = 0.0
    online_only: float = 0.0
    #: customer interest that boosts the category ("" = everybody); without it the category is rare
    interest: str = ""
    #: typical stock on hand per store
    stock_level: float = 12.0


_SUMMER: Final = (0.2, 0.2, 0.4, 0.8, 1.5, 2.5, 3.0, 2.5, 1.0, 0.4, 0.2, 0.3)
_SPRING: Final = (0.2, 0.3, 0.8, 2.0, 2.5, 2.0, 1.5, 1.0, 0.8, 0.5, 0.2, 0.2)
_BACK_TO_SCHOOL: Final = (0.5, 0.5, 0.5, 0.5, 0.5, 0.6, 1.0, 3.0, 3.0, 0.8, 0.5, 0.6)
_AUTUMN: Final = (1.5, 1.2, 1.0, 0.7, 0.4, 0.3, 0.3, 0.5, 1.2, 2.5, 2.5, 2.0)
_SIZES_CLOTHING: Final = (("S", 1.0), ("M", 1.0), ("L", 1.0))
_PRAM_COLOURS: Final = (("black", 1.0), ("grey", 1.0), ("navy", 1.0))

_CATEGORIES: Final[tuple[_Category, ...]] = (
    _Category(
        "dairy", 1.0, (("Alpenhof", 1.3), ("Green Valley", 1.0), ("Farmhouse", 1.1), ("Everyday", 0.75)),
        (
            _Product("Organic oat milk", 1.9, (("1 l", 1.0), ("6 x 1 l", 5.4)), cycle_days=7),
            _Product("Whole milk", 1.2, (("1 l", 1.0), ("2 l", 1.8)), cycle_days=7),
            _Product("Greek yoghurt", 2.4, (("500 g", 1.0), ("1 kg", 1.8)), cycle_days=7),
            _Product("Butter", 2.6, (("250 g", 1.0), ("500 g", 1.9)), cycle_days=14),
            _Product("Mature cheddar", 3.0, (("200 g", 1.0), ("400 g", 1.8)), cycle_days=14),
        ),
        return_rate=0.002, store_only=0.1, stock_level=30,
    ),
    _Category(
        "bakery", 0.7, (("Old Mill", 1.2), ("Baker's Pride", 1.0), ("Everyday", 0.8)),
        (
            _Product("Sourdough loaf", 3.5, (("800 g", 1.0),), cycle_days=7),
            _Product("Rye bread", 2.8, (("500 g", 1.0),), cycle_days=7),
            _Product("Croissants", 3.2, (("4 pcs", 1.0), ("8 pcs", 1.8)), cycle_days=7),
            _Product("Crispbread", 2.2, (("250 g", 1.0),), cycle_days=30),
        ),
        return_rate=0.002, store_only=0.6, stock_level=20,
    ),
    _Category(
        "coffee", 0.6, (("Roastery No. 9", 1.4), ("Bean & Co", 1.0), ("Highland", 1.15), ("Everyday", 0.75)),
        (
            _Product("Espresso beans", 9.0, (("500 g", 1.0), ("1 kg", 1.85)), cycle_days=30),
            _Product("Filter coffee, ground", 6.5, (("500 g", 1.0),), cycle_days=30),
            _Product("Decaf beans", 9.5, (("500 g", 1.0),), cycle_days=30),
            _Product("Coffee capsules", 3.5, (("10 pcs", 1.0), ("30 pcs", 2.6)), cycle_days=14),
        ),
        return_rate=0.003, interest="coffee", stock_level=20,
    ),
    _Category(
        "coffee_machines", 0.15, (("Barista Pro", 1.4), ("Kaffeform", 1.0), ("Brewmaster", 1.2), ("Everyday", 0.7)),
        (
            _Product("Bean-to-cup coffee machine", 449.0, complements=("Espresso beans", "Descaler")),
            _Product("Espresso machine", 229.0, complements=("Espresso beans", "Descaler")),
            _Product("Capsule coffee machine", 89.0, complements=("Coffee capsules",)),
            _Product("Milk frother", 59.0, complements=("Organic oat milk",)),
        ),
        return_rate=0.06, online_only=0.2, interest="coffee", stock_level=4,
    ),
    _Category(
        "household", 0.8, (("Sparkle", 1.2), ("CleanCo", 1.0), ("Brite", 1.05), ("Everyday", 0.75)),
        (
            _Product("Dishwasher tablets", 7.5, (("40 pcs", 1.0), ("80 pcs", 1.8)), cycle_days=30),
            _Product("Laundry detergent", 9.0, (("2 l", 1.0), ("4 l", 1.8)), cycle_days=30),
            _Product("Descaler", 6.0, (("250 ml", 1.0),), cycle_days=90),
            _Product("Kitchen roll", 3.5, (("4 rolls", 1.0), ("8 rolls", 1.8)), cycle_days=14),
        ),
        return_rate=0.003, stock_level=25,
    ),
    _Category(
        "baby_care", 0.5, (("Little Ones", 1.2), ("Babyjoy", 1.0), ("Tiny Steps", 1.1), ("Everyday", 0.8)),
        (
            _Product("Nappies size 3", 12.0, (("50 pcs", 1.0), ("100 pcs", 1.8)), cycle_days=14),
            _Product("Baby wipes", 2.5, (("72 pcs", 1.0), ("3 x 72 pcs", 2.7)), cycle_days=14),
            _Product("Infant formula", 14.0, (("800 g", 1.0),), cycle_days=14),
            _Product("Baby shampoo", 4.5, (("250 ml", 1.0),), cycle_days=90),
        ),
        return_rate=0.005, interest="parent", stock_level=20,
    ),
    _Category(
        "prams", 0.1, (("Strollo", 1.3), ("Babyjoy", 1.0), ("Wanderkid", 0.8)),
        (
            _Product("City pram", 499.0, _PRAM_COLOURS, complements=("Pram rain cover", "Pram footmuff")),
            _Product("Jogging pram", 649.0, _PRAM_COLOURS, complements=("Pram rain cover", "Pram footmuff")),
            _Product("Travel system pram", 799.0, _PRAM_COLOURS,
                     complements=("Pram rain cover", "Pram organiser bag")),
            _Product("Lightweight stroller", 249.0, _PRAM_COLOURS,
                     complements=("Pram rain cover", "Pram cup holder")),
        ),
        return_rate=0.05, online_only=0.25, interest="parent", stock_level=3,
    ),
    _Category(
        "pram_accessories", 0.1, (("Strollo", 1.3), ("Babyjoy", 1.0), ("Everyday", 0.75)),
        (
            _Product("Pram rain cover", 25.0),
            _Product("Pram footmuff", 59.0, (("black", 1.0), ("grey", 1.0))),
            _Product("Pram cup holder", 12.0),
            _Product("Pram organiser bag", 29.0),
        ),
        return_rate=0.04, interest="parent", stock_level=6,
    ),
    _Category(
        "bbq", 0.15, (("Flameking", 1.3), ("Grillmaster", 1.0), ("Emberline", 1.15), ("Everyday", 0.7)),
        (
            _Product("Charcoal grill", 119.0, (("47 cm", 1.0), ("57 cm", 1.3)),
                     complements=("Charcoal briquettes", "Firelighters")),
            _Product("Gas grill", 349.0, (("2 burners", 1.0), ("3 burners", 1.35)),
                     complements=("Grill cover", "Grill tongs")),
            _Product("Portable grill", 59.0, complements=("Charcoal briquettes",)),
        ),
        season=_SUMMER, return_rate=0.04, stock_level=4,
    ),
    _Category(
        "bbq_supplies", 0.3, (("Grillmaster", 1.0), ("Flameking", 1.2), ("Emberline", 1.1), ("Everyday", 0.75)),
        (
            _Product("Charcoal briquettes", 7.0, (("3 kg", 1.0), ("10 kg", 2.6))),
            _Product("Firelighters", 3.5, (("32 pcs", 1.0),)),
            _Product("Grill tongs", 12.0),
            _Product("Grill cover", 29.0),
        ),
        season=_SUMMER, return_rate=0.01, stock_level=15,
    ),
    _Category(
        "garden", 0.35, (("Greenthumb", 1.2), ("Hortus", 1.0), ("Verdant", 1.1), ("Everyday", 0.75)),
        (
            _Product("Garden hose", 24.0, (("15 m", 1.0), ("25 m", 1.5)), complements=("Hose spray nozzle",)),
            _Product("Hose spray nozzle", 12.0),
            _Product("Lawn seed", 11.0, (("1 kg", 1.0), ("2.5 kg", 2.2))),
            _Product("Plant food", 6.0, (("1 l", 1.0),), cycle_days=30),
            _Product("Pruning shears", 19.0),
        ),
        season=_SPRING, return_rate=0.02, store_only=0.1, interest="garden", stock_level=10,
    ),
    _Category(
        "personal_care", 0.7, (("Pure", 1.25), ("Fresh", 1.0), ("Nordic Care", 1.1), ("Everyday", 0.7)),
        (
            _Product("Shampoo", 4.0, (("250 ml", 1.0), ("500 ml", 1.7)), cycle_days=30),
            _Product("Toothpaste", 2.2, (("75 ml", 1.0), ("2 x 75 ml", 1.8)), cycle_days=30),
            _Product("Shower gel", 2.8, (("250 ml", 1.0),), cycle_days=30),
            _Product("Razor blades", 9.0, (("4 pcs", 1.0), ("8 pcs", 1.8)), cycle_days=90),
            _Product("Sunscreen SPF 50", 11.0, (("200 ml", 1.0),)),
        ),
        return_rate=0.005, stock_level=25,
    ),
    _Category(
        "pet", 0.5, (("Happy Paws", 1.2), ("Pawsome", 1.0), ("Whiskers", 1.1), ("Everyday", 0.75)),
        (
            _Product("Dry dog food", 15.0, (("3 kg", 1.0), ("12 kg", 3.3)), cycle_days=30),
            _Product("Wet cat food", 7.0, (("12 x 85 g", 1.0),), cycle_days=7),
            _Product("Cat litter", 7.0, (("10 l", 1.0), ("20 l", 1.8)), cycle_days=14),
            _Product("Dog chew sticks", 4.0, (("7 pcs", 1.0),), cycle_days=14),
            _Product("Dog lead", 15.0),
            _Product("Cat scratching post", 35.0),
        ),
        return_rate=0.01, interest="pet", stock_level=15,
    ),
    _Category(
        "electronics", 0.25, (("Voltix", 1.3), ("Nexa", 1.0), ("Ampere", 1.1), ("Everyday", 0.7)),
        (
            _Product("Smartphone", 349.0, (("128 GB", 1.0), ("256 GB", 1.25)),
                     complements=("Phone case", "Screen protector")),
            _Product("Phone case", 19.0, (("black", 1.0), ("clear", 1.0))),
            _Product("Screen protector", 12.0),
            _Product("Wireless earbuds", 79.0, complements=("USB-C charger",)),
            _Product("USB-C charger", 19.0, (("20 W", 1.0), ("65 W", 1.8))),
        ),
        return_rate=0.07, online_only=0.3, stock_level=5,
    ),
    _Category(
        "school", 0.25, (("Scribo", 1.2), ("Classmate", 1.0), ("Everyday", 0.8)),
        (
            _Product("School backpack", 39.0, (("blue", 1.0), ("red", 1.0), ("black", 1.0)),
                     complements=("Pencil case",)),
            _Product("Pencil case", 9.0),
            _Product("Notebook A4", 6.0, (("5-pack", 1.0),)),
            _Product("Colouring pencils", 7.0, (("24 pcs", 1.0),)),
        ),
        season=_BACK_TO_SCHOOL, return_rate=0.02, stock_level=10,
    ),
    _Category(
        "outerwear", 0.35, (("Northwind", 1.3), ("Trailway", 1.0), ("Fjell", 1.15), ("Everyday", 0.7)),
        (
            _Product("Rain jacket", 79.0, _SIZES_CLOTHING),
            _Product("Wool scarf", 29.0, (("grey", 1.0), ("red", 1.0))),
            _Product("Winter gloves", 19.0, (("S/M", 1.0), ("L/XL", 1.0))),
            _Product("Knitted hat", 15.0),
        ),
        season=_AUTUMN, return_rate=0.12, store_only=0.1, stock_level=8,
    ),
    _Category(
        "kitchen", 0.25, (("Chefline", 1.3), ("Cucina", 1.0), ("Ironworks", 1.15), ("Everyday", 0.7)),
        (
            _Product("Frying pan", 35.0, (("24 cm", 1.0), ("28 cm", 1.2))),
            _Product("Chef's knife", 49.0, (("20 cm", 1.0),), complements=("Cutting board", "Knife sharpener")),
            _Product("Cutting board", 19.0),
            _Product("Knife sharpener", 15.0),
            _Product("Cast-iron casserole", 89.0),
        ),
        return_rate=0.03, stock_level=6,
    ),
)

# Customer personas: (share, Dirichlet concentration over web, app, store).
_CHANNEL_PERSONAS: Final = (
    (0.35, (1.0, 1.0, 8.0)),   # mostly in store
    (0.25, (6.0, 3.0, 0.5)),   # mostly online
    (0.15, (1.0, 6.0, 1.0)),   # app first
    (0.25, (3.0, 3.0, 4.0)),   # everywhere
)
_INTERESTS: Final = {"parent": 0.18, "pet": 0.28, "coffee": 0.25, "garden": 0.30}
_AGE_GROUPS: Final = ("18-24", "25-34", "35-44", "45-54", "55-64", "65+")
_AGE_WEIGHTS: Final = (0.10, 0.22, 0.22, 0.19, 0.15, 0.12)
_PARENT_AGE_WEIGHTS: Final = (0.04, 0.46, 0.40, 0.08, 0.02, 0.0)
_AREA_WEIGHTS: Final = (0.30, 0.20, 0.20, 0.15, 0.15)
_STORE_SIZE: Final = (1.4, 1.0, 1.0, 0.8, 0.7)  # stock multiplier per store

# Hour-of-day weights (UTC) per channel.
_HOURS: Final = {
    STORE: np.array([0] * 8 + [1, 2, 3, 4, 4, 4, 4, 4, 5, 6, 6, 4, 2] + [0] * 3, dtype=float),
    WEB: np.array([1, 0.5, 0.3, 0.2, 0.2, 0.3, 0.8, 1.5, 2, 2.5, 3, 3, 3.5, 3, 3, 3, 3.5, 4, 5, 6, 6.5, 6, 4, 2]),
    APP: np.array([1, 0.5, 0.3, 0.2, 0.2, 0.5, 2, 4, 4, 3, 2.5, 3, 4, 3.5, 2.5, 2.5, 3, 4, 5, 6, 6, 5.5, 4, 2]),
}

# Rates that set the size of the data set (per customer and active week, times the customer's activity).
_MISSIONS_PER_WEEK: Final = 0.12
_BROWSES_PER_WEEK: Final = 0.12
_IMPULSE_ITEMS_PER_STORE_TRIP: Final = 0.9
_STAPLE_COUNT_WEIGHTS: Final = (0.45, 0.38, 0.13, 0.04)  # 0, 1, 2, 3 staples per customer
_COMPLEMENT_PROBABILITY: Final = 0.6
_MATCHING_COMPLEMENT_PROBABILITY: Final = 0.8
_CLICK_AND_COLLECT: Final = 0.1
_PROMOTION_SHARE: Final = 0.12


# --------------------------------------------------------------------------------------------------------------
# Public entry point


def generate_sample(
    out_dir: Path,
    seed: int = 7,
    n_customers: int = 2000,
    n_items: int = 400,
    days: int = 180,
    end_date: date = date(2026, 10, 31),
) -> SampleSummary:
    """Write the sample retailer into ``out_dir`` in the trainer's input contract.

    Parameters
    ----------
    out_dir
        Folder to write ``events.csv.gz``, ``items.csv``, ``customers.csv``, ``identities.csv`` and
        ``stock.csv`` into; created if missing, existing files of those names are overwritten.
    seed
        Everything is drawn from ``numpy.random.default_rng(seed)``: the same arguments write byte-identical
        files (the gzip header carries no time stamp).
    n_customers
        Customers in ``customers.csv`` (ids ``C000001`` ..); at least 50.
    n_items
        Catalog size. Every product type gets at least one item, so it must lie between the number of product
        types (74) and the number of brand x product x variant combinations (436).
    days
        Length of the event window ending on ``end_date`` (inclusive); at least 2 x the new-customer window
        (21 days). The defaults give 60-75k events (62k for seed 7), which train in seconds.
    end_date
        Last day with events. Timestamps are UTC, written as ``YYYY-MM-DDTHH:MM:SSZ``.

    Returns
    -------
    SampleSummary
        Paths written, counts (dirty rows by quarantine reason included) and the planted ground truth.

    Raises
    ------
    ValueError
        If a size argument is out of range.
    """
    products = [(c, p) for c in _CATEGORIES for p in c.products]
    max_items = sum(len(c.brands) * len(p.variants) for c, p in products)
    if n_customers < 50:
        raise ValueError(f"n_customers must be at least 50, got {n_customers}")
    if not len(products) <= n_items <= max_items:
        raise ValueError(f"n_items must lie in [{len(products)}, {max_items}], got {n_items}")
    if days < 2 * NEW_CUSTOMER_DAYS:
        raise ValueError(f"days must be at least {2 * NEW_CUSTOMER_DAYS}, got {days}")

    rng = np.random.default_rng(seed)
    start_date = end_date - timedelta(days=days - 1)
    catalog = _build_catalog(rng, n_items)
    people = _build_customers(rng, n_customers, days)
    identities = _build_identities(rng, people, days)
    sim = _Simulation(rng, catalog, people, identities, start_date, days)
    sim.run()
    clean = sim.events_frame()
    events, dirty = _add_dirty_rows(rng, clean)
    stock = _build_stock(rng, catalog)

    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {
        name: out_dir / f"{name}{suffix}"
        for name, suffix in (
            (col.EVENTS, ".csv.gz"),
            (col.ITEMS, ".csv"),
            (col.CUSTOMERS, ".csv"),
            (col.IDENTITIES, ".csv"),
            (col.STOCK, ".csv"),
        )
    }
    # mtime=0 keeps the gzip header free of the wall clock, so equal seeds give equal bytes.
    events.to_csv(
        paths[col.EVENTS], index=False, compression={"method": "gzip", "compresslevel": 6, "mtime": 0}
    )
    catalog.items.to_csv(paths[col.ITEMS], index=False)
    people.frame.to_csv(paths[col.CUSTOMERS], index=False)
    identities.frame.to_csv(paths[col.IDENTITIES], index=False)
    stock.to_csv(paths[col.STOCK], index=False)

    summary = SampleSummary(
        out_dir=out_dir,
        events_path=paths[col.EVENTS],
        items_path=paths[col.ITEMS],
        customers_path=paths[col.CUSTOMERS],
        identities_path=paths[col.IDENTITIES],
        stock_path=paths[col.STOCK],
        seed=seed,
        start_date=start_date,
        end_date=end_date,
        n_events=len(events),
        n_clean_events=len(clean),
        n_orders=sim.n_orders,
        n_customers=n_customers,
        n_items=n_items,
        n_aliases=len(identities.frame),
        n_stock_rows=len(stock),
        dirty_rows=dirty,
        repurchase_cycles=catalog.cycles(),
        complements=catalog.complement_pairs(),
    )
    logger.info(
        "sample written to %s: %d events (%d dirty), %d customers, %d items",
        out_dir, summary.n_events, summary.n_dirty_rows, n_customers, n_items,
    )
    return summary


# --------------------------------------------------------------------------------------------------------------
# Catalog


@dataclass
class _Catalog:
    items: pd.DataFrame          # the items.csv frame
    ids: list[str]
    category: np.ndarray         # category index per item
    product: np.ndarray          # global product index per item
    price: np.ndarray
    cycle: np.ndarray            # 0 for non-consumables
    popularity: np.ndarray       # relative weight inside the category
    channels: list[frozenset[str]]
    return_rate: np.ndarray
    #: item -> list of (complement product index, matching item of that product)
    complements: dict[int, list[tuple[int, int]]]
    items_by_product: list[np.ndarray]
    items_by_category: list[np.ndarray]

    def staple_shares(self) -> np.ndarray:
        """Popularity of each consumable relative to the other consumables of its category (0 otherwise)."""
        consumable = self.cycle > 0
        totals = np.bincount(self.category, weights=self.popularity * consumable, minlength=len(_CATEGORIES))
        return np.where(consumable, self.popularity / np.maximum(totals[self.category], 1e-12), 0.0)

    def cycles(self) -> dict[str, int]:
        return {self.ids[i]: int(c) for i, c in enumerate(self.cycle) if c > 0}

    def complement_pairs(self) -> tuple[tuple[str, str], ...]:
        return tuple(
            (self.ids[anchor], self.ids[match])
            for anchor, links in self.complements.items()
            for _, match in links
        )

    def sells(self, item: int, channel: str) -> bool:
        return channel in self.channels[item]


def _title(brand: str, product: str, variant: str) -> str:
    # "Green Valley organic oat milk 1 l"; keep acronyms and model names ("USB-C charger") as they are.
    name = product[0].lower() + product[1:] if product[1:2].islower() else product
    return f"{brand} {name} {variant}".strip()


def _shop_price(price: float) -> float:
    # Shelf prices end in .99 above 20 and in .x9 below.
    if price >= 20:
        return math.floor(price) + 0.99
    return max(0.49, round(math.floor(price * 10) / 10 + 0.09, 2))


def _build_catalog(rng: np.random.Generator, n_items: int) -> _Catalog:
    products = [(ci, c, p) for ci, c in enumerate(_CATEGORIES) for p in c.products]
    product_index = {p.name: k for k, (_, _, p) in enumerate(products)}
    combos = [
        (k, b, v)
        for k, (_, c, p) in enumerate(products)
        for b in range(len(c.brands))
        for v in range(len(p.variants))
    ]
    # One item per product type first (so every complement exists), then fill up at random.
    first_per_product: dict[int, int] = {}
    for pos in rng.permutation(len(combos)):
        first_per_product.setdefault(combos[pos][0], int(pos))
    chosen = sorted(first_per_product.values())
    rest = np.setdiff1d(np.arange(len(combos)), chosen)
    chosen = sorted([*chosen, *rng.choice(rest, size=n_items - len(chosen), replace=False).tolist()])

    numbers = _unique_codes(rng, n_items, 10_000, 9_999_999)
    rows = []
    cat_idx, prod_idx, prices, cycles, pops, chans, returns, brand_idx = [], [], [], [], [], [], [], []
    for n, pos in enumerate(chosen):
        k, b, v = combos[pos]
        ci, cat, prod = products[k]
        brand, factor = cat.brands[b]
        label, multiplier = prod.variants[v]
        price = _shop_price(prod.base_price * multiplier * factor * rng.uniform(0.92, 1.08))
        u = rng.random()
        if u < cat.store_only:
            channels = STORE
        elif u > 1.0 - cat.online_only:
            channels = _ONLINE_ONLY
        else:
            channels = ""
        band = "budget" if factor <= 0.8 else "premium" if factor >= 1.2 else "standard"
        rows.append(
            {
                col.ITEM_ID: f"{numbers[n]:08d}",  # article numbers with leading zeros, on purpose
                col.TITLE: _title(brand, prod.name, label),
                col.CATEGORY: cat.name,
                col.PRICE: f"{price:.2f}",
                col.CHANNELS: channels,
                "brand": brand,
                "price_band": band,
            }
        )
        cat_idx.append(ci)
        prod_idx.append(k)
        prices.append(price)
        cycles.append(prod.cycle_days)
        # Budget brands sell more, premium ones less; the rest is a random long tail.
        pops.append((0.3 + rng.pareto(1.5)) * (1.3 if factor <= 0.8 else 0.8 if factor >= 1.2 else 1.0))
        chans.append(frozenset(SAMPLE_CHANNELS) if channels == "" else frozenset(channels.split("|")))
        returns.append(cat.return_rate)
        brand_idx.append(brand)

    items = pd.DataFrame(rows, columns=[*col.ITEM_COLUMNS, "brand", "price_band"])
    product = np.array(prod_idx)
    items_by_product = [np.flatnonzero(product == k) for k in range(len(products))]
    category = np.array(cat_idx)
    items_by_category = [np.flatnonzero(category == ci) for ci in range(len(_CATEGORIES))]

    complements: dict[int, list[tuple[int, int]]] = {}
    for i, k in enumerate(prod_idx):
        links = []
        for name in products[k][2].complements:
            target = product_index[name]
            candidates = items_by_product[target]
            # The matching complement: same brand if the catalog has one, else any.
            same_brand = [j for j in candidates if brand_idx[j] == brand_idx[i]]
            pool = same_brand or candidates.tolist()
            links.append((target, int(pool[rng.integers(len(pool))])))
        if links:
            complements[i] = links

    return _Catalog(
        items=items,
        ids=items[col.ITEM_ID].tolist(),
        category=category,
        product=product,
        price=np.array(prices),
        cycle=np.array(cycles),
        popularity=np.array(pops),
        channels=chans,
        return_rate=np.array(returns),
        complements=complements,
        items_by_product=items_by_product,
        items_by_category=items_by_category,
    )


# --------------------------------------------------------------------------------------------------------------
# Customers and identities


@dataclass
class _People:
    frame: pd.DataFrame          # the customers.csv frame
    ids: list[str]
    mix: np.ndarray              # (n, 3) channel shares web, app, store
    home: np.ndarray             # home store index
    affinity: np.ndarray         # (n, n_categories)
    activity: np.ndarray
    start: np.ndarray            # first active day
    new: np.ndarray              # bool: the new-customer segment


def _build_customers(rng: np.random.Generator, n: int, days: int) -> _People:
    persona = rng.choice(len(_CHANNEL_PERSONAS), size=n, p=[s for s, _ in _CHANNEL_PERSONAS])
    mix = np.stack([rng.dirichlet(_CHANNEL_PERSONAS[k][1]) for k in persona])
    # Tiny shares mean "never": no loyalty card or no app install, hence no events on that channel.
    mix[:, 1:][mix[:, 1:] < 0.05] = 0.0
    mix /= mix.sum(axis=1, keepdims=True)

    interests = {name: rng.random(n) < share for name, share in _INTERESTS.items()}
    weights = np.array([c.weight for c in _CATEGORIES])
    affinity = weights * rng.lognormal(0.0, 0.6, size=(n, len(_CATEGORIES)))
    for ci, cat in enumerate(_CATEGORIES):
        if cat.interest:
            affinity[:, ci] *= np.where(interests[cat.interest], 4.0, 0.03)

    area = rng.choice(len(AREAS), size=n, p=_AREA_WEIGHTS)
    home = np.where(rng.random(n) < 0.85, area, rng.integers(len(STORES), size=n))
    age = np.where(
        interests["parent"],
        rng.choice(len(_AGE_GROUPS), size=n, p=_PARENT_AGE_WEIGHTS),
        rng.choice(len(_AGE_GROUPS), size=n, p=_AGE_WEIGHTS),
    )
    new = rng.random(n) < 0.12
    start = np.where(new, days - rng.integers(1, NEW_CUSTOMER_DAYS + 1, size=n), 0)
    ids = [f"C{i + 1:06d}" for i in range(n)]
    frame = pd.DataFrame(
        {
            col.CUSTOMER_ID: ids,
            "age_group": [_AGE_GROUPS[a] for a in age],
            "area": [AREAS[a] for a in area],
        }
    )
    return _People(
        frame=frame,
        ids=ids,
        mix=mix,
        home=home,
        affinity=affinity,
        activity=rng.lognormal(0.0, 0.5, size=n),
        start=start,
        new=new,
    )


@dataclass
class _Identities:
    frame: pd.DataFrame                          # the identities.csv frame
    #: per customer: [(first day it is used, alias)] for loyalty cards and app installs
    cards: list[list[tuple[int, str]]]
    apps: list[list[tuple[int, str]]]

    @staticmethod
    def active(aliases: list[tuple[int, str]], day: int) -> str:
        current = aliases[0][1]
        for first_day, alias in aliases:
            if day >= first_day:
                current = alias
        return current


def _unique_codes(rng: np.random.Generator, n: int, low: int, high: int) -> list[int]:
    # Generator.choice on an int population draws without building it (a set-based method for big ranges).
    return [low + int(x) for x in rng.choice(high - low, size=n, replace=False)]


def _build_identities(rng: np.random.Generator, people: _People, days: int) -> _Identities:
    n = len(people.ids)
    card_numbers = iter(_unique_codes(rng, 2 * n, 1, 999_999))
    hexes = iter(_unique_codes(rng, 3 * n, 1 << 28, 1 << 32))
    cards: list[list[tuple[int, str]]] = []
    apps: list[list[tuple[int, str]]] = []
    rows: list[tuple[str, str]] = []
    for i, customer in enumerate(people.ids):
        start = int(people.start[i])
        own_cards: list[tuple[int, str]] = []
        if people.mix[i, 2] > 0:
            own_cards.append((start, f"LC-{next(card_numbers):06d}"))
            if rng.random() < 0.08 and start + 1 < days:  # lost the card, got a new one
                own_cards.append((int(rng.integers(start + 1, days)), f"LC-{next(card_numbers):06d}"))
        own_apps: list[tuple[int, str]] = []
        if people.mix[i, 1] > 0:
            own_apps.append((start, f"app-{next(hexes):08x}"))
            if rng.random() < 0.10 and start + 1 < days:  # new phone, new install
                own_apps.append((int(rng.integers(start + 1, days)), f"app-{next(hexes):08x}"))
        rows.extend((alias, customer) for _, alias in own_cards + own_apps)
        if rng.random() < 0.7:
            rows.append((f"em-{next(hexes):08x}{int(rng.integers(1 << 32)):08x}", customer))
        cards.append(own_cards)
        apps.append(own_apps)
    frame = pd.DataFrame(rows, columns=list(col.IDENTITY_COLUMNS))
    return _Identities(frame=frame, cards=cards, apps=apps)


# --------------------------------------------------------------------------------------------------------------
# The simulation


@dataclass
class _Trip:
    customer: int
    day: int
    channel: str
    store: int                    # -1 online without click-and-collect
    seconds: int                  # since the window's first midnight
    lines: dict[int, int] = field(default_factory=dict)  # item -> quantity
    #: items the customer looked at before deciding (views only)
    browsed: list[int] = field(default_factory=list)
    order_id: str = ""


class _Simulation:
    """Customers' needs -> trips (orders) -> events, one customer at a time, in a fixed order of draws."""

    def __init__(
        self,
        rng: np.random.Generator,
        catalog: _Catalog,
        people: _People,
        identities: _Identities,
        start_date: date,
        days: int,
    ) -> None:
        self.rng = rng
        self.catalog = catalog
        self.people = people
        self.identities = identities
        self.days = days
        self.epoch = int(datetime(start_date.year, start_date.month, start_date.day, tzinfo=UTC).timestamp())
        self.month_of_day = np.array([(start_date + timedelta(days=d)).month - 1 for d in range(days)])
        self.season = np.array([c.season for c in _CATEGORIES]).T  # (12, n_categories)
        self.staple_share = catalog.staple_shares()
        self.hour_p = {channel: hours / hours.sum() for channel, hours in _HOURS.items()}
        #: (category, channels) -> (items sold there, their popularity as probabilities)
        self.pools: dict[tuple[int, frozenset[str]], tuple[np.ndarray, np.ndarray]] = {}
        self.trips: list[_Trip] = []
        #: (seconds, customer, item, alias, event, store, order_id, quantity, price); channel kept alongside
        self.rows: list[tuple[int, int, int, str, str, int, str, int, float]] = []
        self.channels: list[str] = []
        self.n_orders = 0

    # -- drawing helpers ------------------------------------------------------------------------------------
    def _seconds(self, day: int, channel: str) -> int:
        hour = int(self.rng.choice(24, p=self.hour_p[channel]))
        # Online funnels reach back up to ~2 h and browsing runs on for minutes: keep both inside the window.
        if day == 0:
            hour = max(hour, 3)
        elif day == self.days - 1:
            hour = min(hour, 22)
        return day * 86_400 + hour * 3600 + int(self.rng.integers(3600))

    def _pick_item(self, customer: int, day: int, channels: frozenset[str]) -> int:
        weights = self.people.affinity[customer] * self.season[self.month_of_day[day]]
        ci = int(self.rng.choice(len(weights), p=weights / weights.sum()))
        key = (ci, channels)
        if key not in self.pools:
            pool = np.array([i for i in self.catalog.items_by_category[ci] if self.catalog.channels[i] & channels])
            w = self.catalog.popularity[pool] if len(pool) else np.zeros(0)
            self.pools[key] = (pool, w / w.sum() if len(pool) else w)
        pool, p = self.pools[key]
        if not len(pool):
            return -1
        return int(pool[self.rng.choice(len(pool), p=p)])

    def _channel(self, customer: int, allowed: frozenset[str]) -> str:
        shares = zip(SAMPLE_CHANNELS, self.people.mix[customer], strict=True)
        mix = np.array([s if ch in allowed else 0.0 for ch, s in shares])
        if mix.sum() == 0:
            return ""
        return SAMPLE_CHANNELS[int(self.rng.choice(3, p=mix / mix.sum()))]

    def _store(self, customer: int) -> int:
        # Mostly the home store, sometimes another one (work, holidays, a bigger store for a big purchase).
        if self.rng.random() < 0.65:
            return int(self.people.home[customer])
        return int(self.rng.integers(len(STORES)))

    def _alias(self, customer: int, channel: str, day: int) -> str:
        if channel == STORE:
            return _Identities.active(self.identities.cards[customer], day)
        if channel == APP:
            return _Identities.active(self.identities.apps[customer], day)
        return self.people.ids[customer]

    def _customer_channels(self, customer: int) -> frozenset[str]:
        return frozenset(ch for ch, s in zip(SAMPLE_CHANNELS, self.people.mix[customer], strict=True) if s > 0)

    # -- needs -> trips -------------------------------------------------------------------------------------
    def _trip_for(self, trips: dict[int, list[_Trip]], customer: int, day: int, item: int) -> _Trip | None:
        """A trip on ``day`` that can sell ``item``, or a new one on a channel the customer uses."""
        for trip in trips.get(day, []):
            if self.catalog.sells(item, trip.channel):
                return trip
        channel = self._channel(customer, self.catalog.channels[item])
        if not channel:
            return None
        store = -1
        if channel == STORE:
            store = self._store(customer)
        elif self.people.mix[customer, 2] > 0 and self.rng.random() < _CLICK_AND_COLLECT:
            store = int(self.people.home[customer])
        trip = _Trip(customer, day, channel, store, self._seconds(day, channel))
        trips.setdefault(day, []).append(trip)
        return trip

    def _simulate_customer(self, i: int) -> None:
        rng, cat = self.rng, self.catalog
        start = int(self.people.start[i])
        active_weeks = (self.days - start) / 7
        channels = self._customer_channels(i)
        trips: dict[int, list[_Trip]] = {}

        # Staples: consumables re-bought about every cycle, with jitter and the odd skipped purchase.
        consumables = np.flatnonzero(cat.cycle > 0)
        n_staples = int(rng.choice(len(_STAPLE_COUNT_WEIGHTS), p=_STAPLE_COUNT_WEIGHTS))
        sellable = np.array([bool(cat.channels[j] & channels) for j in consumables])
        # Category by the customer's affinity, then the item by popularity inside it: the catalog draw (how
        # many weekly items, one runaway bestseller) must not swing the size of the whole data set.
        weights = self.people.affinity[i, cat.category[consumables]] * self.staple_share[consumables] * sellable
        n_staples = min(n_staples, int(np.count_nonzero(weights)))
        staples = (
            rng.choice(consumables, size=n_staples, replace=False, p=weights / weights.sum())
            if n_staples
            else np.zeros(0, dtype=np.int64)
        )
        for item in staples:
            cycle = cat.cycle[item] * rng.lognormal(0.0, 0.08)
            quantity = 1 + int(rng.random() < 0.25)
            day = start + rng.uniform(0, min(cycle, self.days - start))
            while day < self.days:
                if rng.random() > 0.05:  # 5 %: bought elsewhere this time
                    trip = self._trip_for(trips, i, int(day), int(item))
                    if trip is not None:
                        trip.lines[int(item)] = trip.lines.get(int(item), 0) + quantity
                day += cycle * max(0.5, rng.normal(1.0, 0.12))

        # Missions: one thing the customer sets out to buy, with its complements in the same order.
        for _ in range(rng.poisson(self.people.activity[i] * active_weeks * _MISSIONS_PER_WEEK)):
            day = int(rng.integers(start, self.days))
            item = self._pick_item(i, day, channels)
            if item < 0:
                continue
            trip = self._trip_for(trips, i, day, item)
            if trip is None:
                continue
            quantity = 1 if cat.cycle[item] == 0 else 1 + int(rng.random() < 0.3)
            trip.lines[item] = trip.lines.get(item, 0) + quantity
            if trip.channel != STORE:  # compared a few alternatives first
                pool = cat.items_by_category[cat.category[item]]
                trip.browsed.extend(int(j) for j in rng.choice(pool, size=int(rng.integers(1, 4))))
            for product, match in cat.complements.get(item, []):
                if rng.random() >= _COMPLEMENT_PROBABILITY:
                    continue
                if rng.random() < _MATCHING_COMPLEMENT_PROBABILITY:
                    extra = match
                else:
                    candidates = cat.items_by_product[product]
                    extra = int(candidates[rng.integers(len(candidates))])
                if cat.sells(extra, trip.channel):
                    trip.lines[extra] = trip.lines.get(extra, 0) + 1

        # Impulse items in store; then turn trips into events.
        all_trips = sorted((t for ts in trips.values() for t in ts), key=lambda t: t.seconds)
        for trip in all_trips:
            if trip.channel == STORE:
                for _ in range(rng.poisson(_IMPULSE_ITEMS_PER_STORE_TRIP)):
                    extra = self._pick_item(i, trip.day, frozenset((STORE,)))
                    if extra >= 0:
                        trip.lines[extra] = trip.lines.get(extra, 0) + 1
            if trip.lines:
                self.trips.append(trip)

        # Browsing without buying (abandoned carts included).
        online = [ch for ch in (WEB, APP) if ch in channels]
        online_share = float(self.people.mix[i, :2].sum())
        if online:
            n_sessions = rng.poisson(self.people.activity[i] * active_weeks * _BROWSES_PER_WEEK * online_share)
            for _ in range(n_sessions):
                day = int(rng.integers(start, self.days))
                channel = self._channel(i, frozenset(online))
                item = self._pick_item(i, day, frozenset((channel,)))
                if item < 0:
                    continue
                t = self._seconds(day, channel)
                alias = self._alias(i, channel, day)
                pool = [int(j) for j in cat.items_by_category[cat.category[item]] if cat.sells(int(j), channel)]
                looked = [item, *(pool[k] for k in rng.integers(len(pool), size=int(rng.integers(0, 3))))]
                for j in looked:
                    t += int(rng.integers(20, 300))
                    self._event(t, i, alias, col.VIEW, channel, -1, "", j, 1, cat.price[j])
                if rng.random() < 0.3:
                    self._event(t + int(rng.integers(10, 120)), i, alias, col.CART, channel, -1, "", item, 1,
                                cat.price[item])

    # -- trips -> events ------------------------------------------------------------------------------------
    def _event(self, seconds: int, customer: int, alias: str, event: str, channel: str, store: int,
               order_id: str, item: int, quantity: int, price: float) -> None:
        self.rows.append((seconds, customer, item, alias, event, store, order_id, quantity, float(price)))
        self.channels.append(channel)

    def run(self) -> None:
        for i in range(len(self.people.ids)):
            self._simulate_customer(i)
        self._emit_orders()

    def _emit_orders(self) -> None:
        rng, cat = self.rng, self.catalog
        self.trips.sort(key=lambda t: (t.seconds, t.customer))
        counters: dict[str, int] = {}
        for trip in self.trips:
            prefix = STORES[trip.store] if trip.channel == STORE else trip.channel.upper()
            counters[prefix] = counters.get(prefix, 0) + 1
            trip.order_id = f"{prefix}-{counters[prefix]:06d}"
        self.n_orders = len(self.trips)
        end = self.days * 86_400
        for trip in self.trips:
            i, channel, t = trip.customer, trip.channel, trip.seconds
            alias = self._alias(i, channel, trip.day)
            if channel != STORE:
                # The funnel: views (alternatives first), then a cart add per item, then the order.
                offset = 60 + 45 * len(trip.lines) + int(rng.integers(60, 600))
                for item in trip.lines:
                    if cat.cycle[item] == 0 or rng.random() < 0.3:  # re-buys often skip the product page
                        for _ in range(1 + int(rng.poisson(0.5))):
                            offset += int(rng.integers(30, 400))
                            self._event(t - offset, i, alias, col.VIEW, channel, -1, "", item, 1, cat.price[item])
                for item in trip.browsed:
                    if cat.sells(item, channel):
                        offset += int(rng.integers(30, 400))
                        self._event(t - offset, i, alias, col.VIEW, channel, -1, "", item, 1, cat.price[item])
                for k, item in enumerate(trip.lines):
                    self._event(t - 60 - 45 * k, i, alias, col.CART, channel, -1, "", item, trip.lines[item],
                                cat.price[item])
            for item, quantity in trip.lines.items():
                paid = cat.price[item] * (0.8 if rng.random() < _PROMOTION_SHARE else 1.0)
                paid = round(paid, 2)
                self._event(t, i, alias, col.PURCHASE, channel, trip.store, trip.order_id, item, quantity, paid)
                if rng.random() >= cat.return_rate[item]:
                    continue
                # A return 2-28 days later; a third of online orders come back through the home store.
                day = trip.day + int(rng.integers(2, 29))
                if day >= self.days:
                    continue
                if channel == STORE or (self.identities.cards[i] and rng.random() < 0.35):
                    back_channel, store = STORE, int(self.people.home[i]) if channel != STORE else trip.store
                else:
                    back_channel, store = channel, -1
                seconds = self._seconds(day, back_channel)
                if seconds < end:
                    self._event(seconds, i, self._alias(i, back_channel, day), col.RETURN, back_channel, store,
                                trip.order_id, item, quantity, paid)

    def events_frame(self) -> pd.DataFrame:
        """The clean events as strings in contract order, sorted by time, without exact duplicates."""
        rows = self.rows
        seconds = np.array([r[0] for r in rows], dtype=np.int64)
        order = np.lexsort((np.arange(len(rows)), seconds))
        stamps = pd.to_datetime(seconds[order] + self.epoch, unit="s", utc=True).strftime("%Y-%m-%dT%H:%M:%SZ")
        frame = pd.DataFrame(
            {
                col.TIMESTAMP: np.asarray(stamps, dtype=object),
                col.CUSTOMER_ID: [rows[k][3] for k in order],
                col.ITEM_ID: [self.catalog.ids[rows[k][2]] for k in order],
                col.EVENT: [rows[k][4] for k in order],
                col.CHANNEL: [self.channels[k] for k in order],
                col.STORE_ID: [STORES[rows[k][5]] if rows[k][5] >= 0 else "" for k in order],
                col.ORDER_ID: [rows[k][6] for k in order],
                col.QUANTITY: [str(rows[k][7]) for k in order],
                col.PRICE: [f"{rows[k][8]:.2f}" for k in order],
            },
            columns=list(col.EVENT_COLUMNS),
        )
        # Two views of one item in the same second would read as a duplicate: keep the clean part clean.
        return frame.drop_duplicates(ignore_index=True)


# --------------------------------------------------------------------------------------------------------------
# Dirty rows and stock


def _add_dirty_rows(rng: np.random.Generator, clean: pd.DataFrame) -> tuple[pd.DataFrame, dict[str, int]]:
    """Add ~0.5 % broken copies of clean rows, each right after its original; one defect per row."""
    n_dirty = max(len(_DIRTY_KINDS), round(DIRTY_SHARE * len(clean)))
    sources = rng.choice(len(clean), size=n_dirty, replace=False)
    kinds = np.arange(n_dirty) % len(_DIRTY_KINDS)
    dirty = clean.iloc[sources].copy()
    for k, reason in enumerate(_DIRTY_KINDS):
        rows = dirty.index[kinds == k]
        if reason == col.REASON_MISSING_ID:
            dirty.loc[rows, col.CUSTOMER_ID] = ""
        elif reason == col.REASON_UNKNOWN_EVENT:
            dirty.loc[rows, col.EVENT] = "wishlist"  # not a type of the contract ("click" is feedback now)
        elif reason == col.REASON_BAD_TIMESTAMP:
            dirty.loc[rows, col.TIMESTAMP] = rng.choice(_BAD_TIMESTAMPS, size=len(rows))
        elif reason == col.REASON_BAD_QUANTITY:
            dirty.loc[rows, col.QUANTITY] = rng.choice(_BAD_QUANTITIES, size=len(rows))
        # REASON_DUPLICATE: the exact copy as it is
    position = np.concatenate([np.arange(len(clean), dtype=float), sources + 0.5])
    events = pd.concat([clean, dirty], ignore_index=True)
    events = events.iloc[np.argsort(position, kind="stable")].reset_index(drop=True)
    counts = {reason: int(np.count_nonzero(kinds == k)) for k, reason in enumerate(_DIRTY_KINDS)}
    return events, counts


def _build_stock(rng: np.random.Generator, catalog: _Catalog) -> pd.DataFrame:
    """Quantity on hand for every store x item sold in stores; online-only items have no rows.

    About 7 % of rows are 0 (out of stock in that store), so stock-aware filtering has something to do.
    """
    levels = np.array([c.stock_level for c in _CATEGORIES])[catalog.category]
    rows = []
    for s, store in enumerate(STORES):
        for i, item in enumerate(catalog.ids):
            if STORE not in catalog.channels[i]:
                continue
            on_hand = 0 if rng.random() < 0.07 else 1 + int(rng.poisson(levels[i] * _STORE_SIZE[s]))
            rows.append((store, item, on_hand))
    return pd.DataFrame(rows, columns=list(col.STOCK_COLUMNS))
