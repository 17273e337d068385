"""Audience rules over every customer at once: each rule is a boolean mask over customer rows.

The customer profile a campaign reads (:class:`CustomerTable`) is the published artifact set's — purchase
history (net counts, first and last day, channel and store of the last purchase), the RFM segment and the
channels used (the ``customer_summary`` part), the item repurchase rhythm (``repurchase`` part) — with what
the event store holds laid over it (:class:`LiveActivity`: purchases since the model's cut-off, views and
carts, messages sent) and, when the spec names a customers file, customer attributes.

**Due to rebuy** (:func:`due_entries`): a customer is due for an item when ``last purchase + interval`` falls
in ``[today - max_overdue × interval, today + within_days]``. The interval is the customer's own rhythm
(first to last purchase over the repeat buys, the same rule as ``Recommend``'s buy-it-again source,
:func:`recsvc.ranking.repurchase.repurchase_interval`) and/or the item's median repurchase interval, as the
rule's ``rhythm`` says. For a category, the customer's purchases of every item in it count as one rhythm
(first to last purchase over the purchases minus one), and the category's typical interval is the median of
its items'. Everything is vectorised over the history's entries; nothing loops over customers.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import numpy as np

from recsvc_training.campaigns.spec import Rule


@dataclass(frozen=True)
class LiveActivity:
    """Events from the event store, as parallel arrays (one entry per event whose customer the model knows).

    ``customer`` is a customer row, ``item`` an item row (-1 unknown to the model), ``day`` days since 1970,
    ``kind`` the event type (view, cart, purchase, return, message_sent).
    """

    customer: np.ndarray
    item: np.ndarray
    day: np.ndarray
    kind: np.ndarray

    @classmethod
    def empty(cls) -> LiveActivity:
        return cls(np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, dtype="U1"))

    def of(self, *kinds: str) -> np.ndarray:
        return np.isin(self.kind, list(kinds))


@dataclass(frozen=True)
class PurchaseTable:
    """Purchase history as CSR arrays (the artifact's ``history`` part, or the trainer's arrays in a benchmark)
    and what the rules need of the catalog. Days are days since 1970-01-01."""

    indptr: np.ndarray          # int64 [n_customers + 1]
    items: np.ndarray           # int [nnz]
    count: np.ndarray           # float [nnz]
    first_day: np.ndarray       # int [nnz]
    last_day: np.ndarray        # int [nnz]
    item_interval: np.ndarray   # float [n_items], NaN unknown
    item_category: np.ndarray   # int [n_items] category code
    category_names: np.ndarray  # str [n_categories]

    @property
    def n_customers(self) -> int:
        return int(self.indptr.size - 1)

    @property
    def owner(self) -> np.ndarray:
        """Customer row of each history entry."""
        return np.repeat(np.arange(self.n_customers, dtype=np.int64), np.diff(self.indptr))


@dataclass(frozen=True)
class CustomerTable:
    """The profile of every customer row, as arrays (see the module docstring)."""

    purchases: PurchaseTable
    today: int
    segment: np.ndarray             # int [n] index into segment_names, -1 none
    segment_names: tuple[str, ...]
    channels_used: np.ndarray       # bool [n, n_channels]
    channel_names: tuple[str, ...]
    last_day: np.ndarray            # int [n] day of the last purchase (live included), -1 never
    last_channel: np.ndarray        # int [n] channel index of the last purchase, -1 unknown
    last_store: np.ndarray          # str [n] store id of the last purchase, "" none
    live: LiveActivity
    item_ids: np.ndarray
    attributes: Mapping[str, np.ndarray] = field(default_factory=dict)
    #: The model's last data day: live events up to it are already in ``purchases`` (the store keeps
    #: ``events.retention_days`` of them), so only later ones count as new purchases.
    cutoff_day: int = -(2**31)

    @property
    def n(self) -> int:
        return self.purchases.n_customers

    def is_buyer(self) -> np.ndarray:
        """Customers with a purchase (history net of returns, or a live purchase): never a first-purchase offer."""
        return self.last_day >= 0


@dataclass(frozen=True)
class DueEntry:
    """Per customer, the entry that makes them due (the one closest to its due day): arrays over customer rows,
    ``item`` -1 where the customer is not due."""

    due: np.ndarray        # bool [n]
    item: np.ndarray       # int [n] item row to remind of
    due_day: np.ndarray    # int [n]
    interval: np.ndarray   # float [n]
    last_day: np.ndarray   # int [n]
    count: np.ndarray      # float [n]
    own: np.ndarray        # bool [n] the interval is the customer's own rhythm
    category: np.ndarray   # int [n] the category code whose rhythm it is (-1: the item's own)


def _entry_mask(purchases: PurchaseTable, item: int, category: int) -> np.ndarray:
    if item >= 0:
        return np.asarray(purchases.items == item)
    if category >= 0:
        return np.asarray(purchases.item_category[purchases.items] == category)
    return np.ones(purchases.items.size, dtype=bool)


@dataclass(frozen=True)
class DuePairs:
    """Every (customer, item) — or (customer, category) — a due rule flags, as parallel arrays."""

    customer: np.ndarray   # int64 customer rows
    item: np.ndarray       # int64 item rows (for a category: the item to remind of)
    due_day: np.ndarray    # int64
    interval: np.ndarray   # float64 days
    last_day: np.ndarray   # int64
    count: np.ndarray      # float64
    own: np.ndarray        # bool: the customer's own rhythm


def category_intervals(purchases: PurchaseTable) -> np.ndarray:
    """Each category's typical repurchase interval: the median of its items' (NaN when none has one)."""
    n = int(purchases.category_names.size)
    out = np.full(n, np.nan)
    known = np.isfinite(purchases.item_interval)
    codes, values = purchases.item_category[known], purchases.item_interval[known]
    order = np.argsort(codes, kind="stable")
    codes, values = codes[order], values[order]
    bounds = np.searchsorted(codes, np.arange(n + 1))
    for c in np.flatnonzero(np.diff(bounds)):
        out[c] = float(np.median(values[bounds[c]:bounds[c + 1]]))
    return out


def due_pairs(purchases: PurchaseTable, today: int, *, item: int = -1, category: int = -1,
              by_category: bool = False, within_days: int = 14, rhythm: str = "own",
              max_overdue: float = 0.5) -> DuePairs:
    """Every entry due within ``within_days`` of ``today`` (see the module docstring): one per (customer,
    item), or one per (customer, category) for a ``category`` (a code) or with ``by_category`` (every
    category at once). :func:`due_entries` keeps one per customer."""
    keep = _entry_mask(purchases, item, category)
    owner = purchases.owner[keep]
    items = purchases.items[keep].astype(np.int64)
    count = purchases.count[keep].astype(np.float64)
    first = purchases.first_day[keep].astype(np.int64)
    last = purchases.last_day[keep].astype(np.int64)
    if category >= 0 or by_category:
        # one rhythm per (customer, category) over all their purchases in it; remind of the item they bought
        # most in it (the latest on a tie), the first entry of each group in this order
        cats = purchases.item_category[items].astype(np.int64)
        group = owner * max(1, int(purchases.category_names.size)) + cats
        order = np.lexsort((items, -last, -count, group))
        group, owner, items, count, first, last, cats = (group[order], owner[order], items[order], count[order],
                                                          first[order], last[order], cats[order])
        starts = np.flatnonzero(np.r_[True, group[1:] != group[:-1]]) if group.size else np.zeros(0, np.int64)
        total = np.add.reduceat(count, starts) if starts.size else np.zeros(0)
        span_first = np.minimum.reduceat(first, starts) if starts.size else np.zeros(0, np.int64)
        span_last = np.maximum.reduceat(last, starts) if starts.size else np.zeros(0, np.int64)
        owner, items, count, first, last, cats = (owner[starts], items[starts], total, span_first, span_last,
                                                  cats[starts])
        item_interval = category_intervals(purchases)[cats]
    else:
        item_interval = purchases.item_interval[items].astype(np.float64)
    span = (last - first).astype(np.float64)
    own_interval = np.where((count >= 2) & (span > 0), span / np.maximum(count - 1, 1), np.nan)
    if rhythm == "own":
        interval, own = own_interval, np.isfinite(own_interval)
    elif rhythm == "item":
        interval, own = item_interval, np.zeros(owner.size, dtype=bool)
    else:
        own = np.isfinite(own_interval)
        interval = np.where(own, own_interval, item_interval)
    known = np.isfinite(interval) & (interval > 0)
    due_day = np.where(known, last + np.round(np.where(known, interval, 0)), 0).astype(np.int64)
    flagged = known & (due_day <= today + within_days) & (due_day >= today - max_overdue * np.where(known, interval, 0))
    return DuePairs(owner[flagged], items[flagged], due_day[flagged], interval[flagged], last[flagged],
                    count[flagged], own[flagged])


def due_entries(purchases: PurchaseTable, today: int, *, item: int = -1, category: int = -1,
                within_days: int = 14, rhythm: str = "own", max_overdue: float = 0.5) -> DueEntry:
    """Who is due to rebuy ``item`` (a row), or anything in ``category`` (a code), or any item (both -1), within
    ``within_days`` of ``today``: per customer the flagged entry closest to its due day."""
    n = purchases.n_customers
    pairs = due_pairs(purchases, today, item=item, category=category, within_days=within_days, rhythm=rhythm,
                      max_overdue=max_overdue)
    owner, items, due_day, interval, last, count, own = (pairs.customer, pairs.item, pairs.due_day, pairs.interval,
                                                         pairs.last_day, pairs.count, pairs.own)
    result_item = np.full(n, -1, dtype=np.int64)
    out = DueEntry(due=np.zeros(n, dtype=bool), item=result_item, due_day=np.zeros(n, dtype=np.int64),
                   interval=np.full(n, np.nan), last_day=np.full(n, -1, dtype=np.int64), count=np.zeros(n),
                   own=np.zeros(n, dtype=bool), category=np.full(n, -1, dtype=np.int64))
    idx = np.arange(owner.size)
    if idx.size == 0:
        return out
    # per customer, the flagged entry closest to its due day (then the earliest due, then the item row)
    order = np.lexsort((items[idx], due_day[idx], np.abs(due_day[idx] - today), owner[idx]))
    idx = idx[order]
    first_of_customer = np.r_[True, owner[idx][1:] != owner[idx][:-1]]
    idx = idx[first_of_customer]
    rows = owner[idx]
    out.due[rows] = True
    out.item[rows] = items[idx]
    out.due_day[rows] = due_day[idx]
    out.interval[rows] = interval[idx]
    out.last_day[rows] = last[idx]
    out.count[rows] = count[idx]
    out.own[rows] = own[idx]
    if category >= 0:
        out.category[rows] = category
    return out


@dataclass
class Evaluation:
    """Masks of every rule (by rule path), the due entries of every due rule, and the final audience mask."""

    masks: dict[str, np.ndarray]
    due: dict[str, DueEntry]
    audience: np.ndarray


class RuleEvaluator:
    """Evaluates rules over a :class:`CustomerTable`.

    ``item_row(id)`` gives an item's row or -1 and ``category_codes`` maps category names to codes; an unknown
    item, category or attribute raises ``fail(rule, message)``, so the error names the rule's spec line.
    """

    def __init__(self, table: CustomerTable, item_row: Callable[[str], int], category_codes: Mapping[str, int],
                 fail: Callable[[Rule, str], Exception]) -> None:
        self.t = table
        self.item_row_of = item_row
        self.category_codes = category_codes
        self.fail = fail
        self.masks: dict[str, np.ndarray] = {}
        self.due: dict[str, DueEntry] = {}

    def _error(self, rule: Rule, message: str) -> Exception:
        return self.fail(rule, message)

    def item_row(self, rule: Rule, item: str) -> int:
        row = self.item_row_of(item)
        if row < 0:
            raise self._error(rule, f"unknown item {item!r}: the model's catalog has no such item id")
        return row

    def category_code(self, rule: Rule, category: str) -> int:
        code = self.category_codes.get(category, -1)
        if code < 0:
            names = sorted(self.category_codes)
            hint = ", ".join(names[:12]) + (" ..." if len(names) > 12 else "")
            raise self._error(rule, f"unknown category {category!r}; the catalog's categories are: {hint}")
        return code

    def evaluate(self, rule: Rule | None) -> Evaluation:
        audience = np.ones(self.t.n, dtype=bool) if rule is None else self.mask(rule)
        return Evaluation(self.masks, self.due, audience)

    def mask(self, rule: Rule) -> np.ndarray:
        if rule.kind == "all":
            out = np.logical_and.reduce([self.mask(c) for c in rule.children])
        elif rule.kind == "any":
            out = np.logical_or.reduce([self.mask(c) for c in rule.children])
        elif rule.kind == "not":
            out = ~self.mask(rule.children[0])
        else:
            out = getattr(self, f"_{rule.kind}")(rule)
        out = np.asarray(out, dtype=bool)
        self.masks[rule.path] = out
        return out

    # --- leaves ---------------------------------------------------------------------------------------------

    def _segment(self, rule: Rule) -> np.ndarray:
        codes = [self.t.segment_names.index(s) for s in rule.args["values"] if s in self.t.segment_names]
        return np.isin(self.t.segment, codes)

    def _channel_indexes(self, rule: Rule) -> list[int]:
        return [self.t.channel_names.index(c) for c in rule.args["values"] if c in self.t.channel_names]

    def _channels_used(self, rule: Rule) -> np.ndarray:
        found = self._channel_indexes(rule)
        used = self.t.channels_used
        return np.asarray(used[:, found].any(axis=1)) if found else np.zeros(self.t.n, dtype=bool)

    def _last_channel(self, rule: Rule) -> np.ndarray:
        return np.isin(self.t.last_channel, self._channel_indexes(rule)) & (self.t.last_channel >= 0)

    def _last_store(self, rule: Rule) -> np.ndarray:
        return np.isin(self.t.last_store, list(rule.args["values"]))

    def _days_since_last_purchase(self, rule: Rule) -> np.ndarray:
        days = self.t.today - self.t.last_day
        return (self.t.last_day >= 0) & (days >= rule.args["min"]) & (days <= rule.args["max"])

    def _target(self, rule: Rule) -> tuple[int, int]:
        item = self.item_row(rule, rule.args["item"]) if rule.args.get("item") else -1
        category = self.category_code(rule, rule.args["category"]) if rule.args.get("category") else -1
        return item, category

    def _bought(self, rule: Rule) -> np.ndarray:
        item, category = self._target(rule)
        p = self.t.purchases
        keep = _entry_mask(p, item, category)
        times = np.bincount(p.owner[keep], weights=p.count[keep].astype(np.float64), minlength=self.t.n)
        live = self.t.live
        about = ((live.item == item) if item >= 0
                 else (live.item >= 0) & (p.item_category[np.maximum(live.item, 0)] == category))
        bought_live = live.of("purchase") & about & (live.day > self.t.cutoff_day)
        times += np.bincount(live.customer[bought_live], minlength=self.t.n)
        return np.asarray(times >= rule.args["min_times"] - 1e-9)

    def _due(self, rule: Rule) -> np.ndarray:
        item, category = self._target(rule)
        entry = due_entries(self.t.purchases, self.t.today, item=item, category=category,
                            within_days=rule.args["within_days"], rhythm=rule.args["rhythm"],
                            max_overdue=rule.args["max_overdue"])
        self.due[rule.path] = entry
        return entry.due

    def _browsed_not_bought(self, rule: Rule) -> np.ndarray:
        item, category = self._target(rule)
        live = self.t.live
        recent = live.day >= self.t.today - rule.args["days"]
        if item >= 0:
            about = live.item == item
        elif category >= 0:
            about = (live.item >= 0) & (self.t.purchases.item_category[np.maximum(live.item, 0)] == category)
        else:
            about = live.item >= 0
        browsed = recent & about & live.of(*rule.args["events"])
        bought = recent & about & live.of("purchase")
        n = self.t.n
        n_items = int(self.t.item_ids.size)
        # "did not buy": no purchase of the browsed item itself in the window
        key_browsed = np.unique(live.customer[browsed] * n_items + live.item[browsed])
        key_bought = np.unique(live.customer[bought] * n_items + live.item[bought])
        left = np.setdiff1d(key_browsed, key_bought, assume_unique=True)
        out = np.zeros(n, dtype=bool)
        out[(left // n_items).astype(np.int64)] = True
        return out

    def _attribute(self, rule: Rule) -> np.ndarray:
        name = rule.args["name"]
        if name not in self.t.attributes:
            known = ", ".join(sorted(self.t.attributes)) or "none (set [inputs] customers = \"customers.csv\")"
            raise self._error(rule, f"unknown customer attribute {name!r}; the customers file has: {known}")
        return np.isin(self.t.attributes[name], list(rule.args["values"]))
