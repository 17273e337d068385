"""The customer profile: one customer across web, app and stores, as the loaded model knows them.

Built from the purchase history arrays (each item's latest purchase: date, channel, store) and the trainer's
optional customer summary (``rfm_scores``, ``rfm_segment``, ``cust_monetary``, ``cust_channels``, segment
names in the manifest's ``extra["rfm_segments"]``; see :mod:`recsvc_training.models.rfm` for the rule). A model
without the summary still answers with purchases; channels then come from the purchases alone.

Live events (:class:`recsvc.events.overlay.CustomerActivity`, what the customer did after the model's cut-off)
are laid over the model's view by :func:`_with_live`: live purchases come first with their channel and store,
live returns cancel, the RFM recency counts from the newest purchase, and a customer the model never saw but
who bought today has a profile of their live purchases.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

import numpy as np

from recsvc.artifacts import ArtifactError
from recsvc.days import iso_of_day
from recsvc.errors import InvalidRequest, NotFound
from recsvc.ranking.model import LoadedModel

if TYPE_CHECKING:  # the overlay imports the model; the profile only reads its value objects
    from recsvc.events.overlay import CustomerActivity

logger = logging.getLogger(__name__)

DEFAULT_PURCHASES = 20
MAX_PURCHASES = 100
#: The optional arrays the profile reads.
PROFILE_ARRAYS: tuple[str, ...] = ("rfm_scores", "rfm_segment", "cust_monetary", "cust_channels")


@dataclass(frozen=True)
class Purchase:
    """One item the customer bought (net of returns), as of its latest purchase (``date`` YYYY-MM-DD)."""

    item_id: str
    title: str
    category: str
    channel: str
    store_id: str
    date: str
    count: float


@dataclass(frozen=True)
class Rfm:
    """RFM scores 1..5, the segment name, days since the last purchase and net spend."""

    recency: int
    frequency: int
    monetary: int
    segment: str
    days_since_last_purchase: int
    spend: float


@dataclass(frozen=True)
class CustomerProfile:
    """What :func:`customer_profile` returns; ``rfm`` is None for a customer who never bought anything."""

    customer_id: str
    recent_purchases: tuple[Purchase, ...]
    channels: tuple[str, ...]
    rfm: Rfm | None
    coldstart: bool
    model_version: str


def _summary_arrays(model: LoadedModel) -> dict[str, np.ndarray] | None:
    """The customer summary arrays, shape-checked, or None when the model has none.

    Raises
    ------
    ArtifactError
        Some but not all arrays are present, or a shape does not fit the model.
    """
    present = {name: model.arrays[name] for name in PROFILE_ARRAYS if name in model.arrays}
    if not present:
        return None
    n, n_ch = model.n_customers, len(model.channels)
    expect = {"rfm_scores": (n, 3), "rfm_segment": (n,), "cust_monetary": (n,), "cust_channels": (n, n_ch)}
    for name, shape in expect.items():
        if name not in present or present[name].shape != shape:
            got = present[name].shape if name in present else "missing"
            raise ArtifactError(f"model {model.version}: {name} is {got}, expected shape {shape}")
    return present


def customer_profile(model: LoadedModel, customer_id: str, num_purchases: int = 0,
                     live: CustomerActivity | None = None) -> CustomerProfile:
    """The profile of the customer ``customer_id`` names (a customer id or any alias).

    Parameters
    ----------
    model
        The loaded model; days count to its last data day.
    customer_id
        Customer id or alias.
    num_purchases
        Most recent purchased items to list (1..100; 0 means 20), most recent first.
    live
        The customer's live events after the model's cut-off (None: the model alone).

    Raises
    ------
    InvalidRequest
        Empty ``customer_id`` or ``num_purchases`` out of range.
    NotFound
        The model knows no customer or alias ``customer_id`` and there are no live events for it.
    """
    if not customer_id:
        raise InvalidRequest("customer_id: required; send a customer id or any alias (loyalty card, app id)")
    if num_purchases == 0:
        num_purchases = DEFAULT_PURCHASES
    if not 1 <= num_purchases <= MAX_PURCHASES:
        raise InvalidRequest(f"num_purchases: must be between 1 and {MAX_PURCHASES} (0 means "
                             f"{DEFAULT_PURCHASES}), got {num_purchases}")
    row = model.resolve_customer(customer_id) if live is None else live.customer_row
    if row < 0 and live is not None:
        return _with_live(model, CustomerProfile(customer_id=live.customer_id, recent_purchases=(), channels=(),
                                                 rfm=None, coldstart=False, model_version=model.version),
                          live, num_purchases)
    if row < 0:
        raise NotFound(f"customer_id: unknown customer {customer_id!r}; the model {model.version} knows no "
                       "customer or alias with this id")
    hist = model.history(row)
    # latest purchase first; the item row breaks ties so the order is stable
    order = np.lexsort((hist.items, -hist.last_day.astype(np.int64)))[:num_purchases]
    purchases = tuple(
        Purchase(item_id=model.item_id(item), title=model.item_title(item), category=str(model.item_categories[item]),
                 channel=model.channel_name(int(hist.last_channel[i])),
                 store_id=model.store_id(int(hist.last_store[i])), date=iso_of_day(int(hist.last_day[i])),
                 count=float(hist.count[i]))
        for i, item in ((int(i), int(hist.items[i])) for i in order))

    summary = _summary_arrays(model)
    rfm: Rfm | None = None
    if summary is None:
        used = np.zeros(len(model.channels), dtype=bool)
        used[hist.last_channel[hist.last_channel >= 0].astype(np.int64)] = True
    else:
        used = np.asarray(summary["cust_channels"][row], dtype=bool)
        segment = int(summary["rfm_segment"][row])
        names: Sequence[str] = model.extra.get("rfm_segments", ())
        if segment >= 0:
            r, f, m = (int(v) for v in summary["rfm_scores"][row])
            # -1 when every purchase was returned (the history keeps net purchases only)
            days = model.data_end_day - int(hist.last_day.max()) if len(hist) else -1
            rfm = Rfm(recency=r, frequency=f, monetary=m,
                      segment=str(names[segment]) if segment < len(names) else str(segment),
                      days_since_last_purchase=days, spend=float(summary["cust_monetary"][row]))
    flags = model.arrays.get("coldstart_customer")  # shape checked where the engine loads it (ColdStartSource)
    coldstart = bool(flags[row]) if flags is not None else False
    profile = CustomerProfile(customer_id=model.customer_id(row), recent_purchases=purchases,
                              channels=tuple(model.channels[c] for c in np.flatnonzero(used)), rfm=rfm,
                              coldstart=coldstart, model_version=model.version)
    return profile if live is None else _with_live(model, profile, live, num_purchases, all_purchases=purchases)


def _with_live(model: LoadedModel, profile: CustomerProfile, live: CustomerActivity, num_purchases: int,
               all_purchases: tuple[Purchase, ...] = ()) -> CustomerProfile:
    """``profile`` with the live events laid over it (see the module docstring).

    A live purchase of an item the model's history holds replaces that entry (newer date, channel and store;
    counts add up); a live return lowers the model's count of the item and drops it at zero.
    """
    live_bought = live.net_purchases()
    returned: dict[str, float] = {}
    for e in live.of("return"):
        returned[e.item_id] = returned.get(e.item_id, 0.0) + e.quantity
    bought_live: dict[str, float] = {}
    for e in live.of("purchase"):
        bought_live[e.item_id] = bought_live.get(e.item_id, 0.0) + e.quantity
    older = {p.item_id: p for p in all_purchases}
    fresh = []
    for event, quantity in live_bought:
        before = older.pop(event.item_id, None)
        fresh.append(Purchase(
            item_id=event.item_id, title=model.item_title(event.item_row) if event.item_row >= 0 else event.item_id,
            category=str(model.item_categories[event.item_row]) if event.item_row >= 0 else "",
            channel=event.channel, store_id=event.store_id, date=iso_of_day(event.day),
            count=quantity + (before.count if before is not None else 0.0)))
    kept = []
    for p in all_purchases:
        if p.item_id not in older:
            continue  # replaced by its live purchase above
        # returns beyond the live purchases of the item cancel what the model counted
        left = p.count - max(0.0, returned.get(p.item_id, 0.0) - bought_live.get(p.item_id, 0.0))
        if left > 0:
            kept.append(replace(p, count=left))
    purchases = tuple(fresh + kept)[:num_purchases]
    channels = tuple(dict.fromkeys([*profile.channels, *(e.channel for e in live.events if e.channel)]))
    rfm = profile.rfm
    if rfm is not None and live_bought:
        # the newest purchase is newer than anything the model saw: top recency, counted from the newest event
        newest = max(e.day for e in live.events)
        rfm = replace(rfm, recency=5, days_since_last_purchase=max(0, newest - live_bought[0][0].day),
                      spend=rfm.spend + sum(q * e.price for e, q in live_bought if e.price == e.price))
    return replace(profile, recent_purchases=purchases, channels=channels, rfm=rfm)
