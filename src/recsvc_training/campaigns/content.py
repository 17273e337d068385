"""What each customer is sent, and where: the contact alias, the reminder with its add-ons, launch affinity.

* **Suggestions** are the campaign channel's ``Recommend`` answer for the customer, from the one batch path
  the server's stored lists share (:func:`recsvc.ranking.batch.recommend_many`), so a campaign's list equals
  ``Recommend`` on that channel for that model, item for item.
* **A rebuy reminder** is the due item (reason: the customer's rhythm, BOUGHT_BEFORE) and its add-ons: the
  items bought together with it (the model's co-purchase neighbours), sellable on the channel, those this
  customer has bought before first (by how often), then by co-purchase confidence; each with the reason text
  of :func:`recsvc.ranking.reasons.explain` (BOUGHT_TOGETHER, naming the due item and where it was last
  bought), plus "you added it N times" for the ones they bought.
* **The contact alias** of a channel is the identity link whose alias id starts with the spec's
  ``alias_prefix`` (``LINE:`` for LINE ids, ``EM:`` for e-mail hashes; the first in sort order when a customer
  has several), or the customer id itself (``use_customer_id``). The input contract has no alias kind column:
  the retailer's id scheme already says what an alias is, and a prefix keeps the identities table as it is.
* **Launch affinity** (who should hear about item X or category Y): ``cf`` the ALS score against the item (or
  the category's mean factor), as a percentile among the candidates; ``due`` how due the customer is for it by
  their rhythm (the buy-it-again bell, :meth:`recsvc.ranking.repurchase.RepurchaseSource.dueness`); ``category``
  the share of the customer's purchases in its category. The score is their weighted sum (weights in the spec).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from recsvc.ranking import LoadedModel, Reason, ReasonKind
from recsvc.ranking.reasons import explain
from recsvc.ranking.repurchase import RepurchaseSource
from recsvc_training.campaigns.rules import CustomerTable, DueEntry


def contact_aliases(model: LoadedModel, prefix: str, use_customer_id: bool) -> np.ndarray:
    """Per customer row, the contact for the channel ("" none): see the module docstring."""
    if use_customer_id:
        return np.asarray(model.customers.ids).astype(str)
    out = np.full(model.n_customers, "", dtype=object)
    aliases = np.asarray(model.aliases.ids).astype(str)
    if aliases.size == 0:
        return out
    hit = np.flatnonzero(np.char.startswith(aliases, prefix))
    owners = np.asarray(model.alias_customer)[hit]
    # aliases are sorted, so the first hit of each owner is its smallest alias with the prefix
    first = np.unique(owners, return_index=True)[1]
    out[owners[first]] = aliases[hit[first]]
    return out


@dataclass(frozen=True)
class Item:
    """One item of a message: id, title, score, the reason text and its kind."""

    item_id: str
    title: str
    score: float
    reason: str
    kind: str


def _item(model: LoadedModel, row: int, score: float, reason: Reason) -> Item:
    return Item(model.item_id(row), model.item_title(row), float(score), reason.text, reason.kind.name.lower())


def reminder(model: LoadedModel, table: CustomerTable, due: DueEntry, row: int, channel_row: int,
             n_addons: int) -> list[Item]:
    """The due item of customer ``row`` and up to ``n_addons`` add-ons (see the module docstring)."""
    item = int(due.item[row])
    days_since = table.today - int(due.last_day[row])
    interval = float(due.interval[row])
    reason = explain(model, ReasonKind.BOUGHT_BEFORE, [item], days_since=days_since, interval_days=interval)
    text = reason.text
    if due.category[row] >= 0:
        # a category's rhythm: say so, since the last purchase in it may have been another item
        name = str(table.purchases.category_names[int(due.category[row])])
        ago = "today" if days_since <= 0 else ("1 day ago" if days_since == 1 else f"{days_since} days ago")
        text = f"You buy {name} every ~{round(interval)} days; last bought {ago}"
    due_in = int(due.due_day[row]) - table.today
    when = "due today" if due_in == 0 else (f"due in {due_in} days" if due_in > 0 else f"{-due_in} days overdue")
    out = [Item(model.item_id(item), model.item_title(item), float(RepurchaseSource.dueness(
        np.array([float(days_since)]), np.array([interval]))[0]), f"{text} ({when})", "bought_before")]
    if n_addons <= 0:
        return out
    lo, hi = int(model.copurchase_indptr[item]), int(model.copurchase_indptr[item + 1])
    neighbours = np.asarray(model.copurchase_items[lo:hi], dtype=np.int64)
    scores = np.asarray(model.copurchase_scores[lo:hi], dtype=np.float64)
    sellable = model.channel_mask(channel_row, neighbours) & (neighbours != item)
    neighbours, scores = neighbours[sellable], scores[sellable]
    if neighbours.size == 0:
        return out
    hist = model.history(row)
    at_neighbour = hist.positions_of(neighbours)
    own = np.where(at_neighbour >= 0, np.asarray(hist.count, dtype=np.float64)[np.maximum(at_neighbour, 0)], 0.0)
    order = np.lexsort((neighbours, -scores, -own))[:n_addons]
    at = int(hist.positions_of(np.array([item]))[0])
    source_day = int(hist.last_day[at]) if at >= 0 else -1
    source_channel = int(hist.last_channel[at]) if at >= 0 else -1
    source_store = int(hist.last_store[at]) if at >= 0 else -1
    for i in order:
        together = explain(model, ReasonKind.BOUGHT_TOGETHER, [item], source_day=source_day,
                           source_channel=source_channel, source_store=source_store)
        text = together.text
        if own[i] > 0:
            times = round(float(own[i]))
            text += f"; you bought it {'once' if times == 1 else f'{times} times'} before"
        out.append(Item(model.item_id(int(neighbours[i])), model.item_title(int(neighbours[i])), float(scores[i]),
                        text, "bought_together"))
    return out


def percentile(values: np.ndarray) -> np.ndarray:
    """Each value's rank among ``values`` as 0..1 (ties share the mean rank; one value is 1)."""
    if values.size <= 1:
        return np.ones(values.size)
    order = np.argsort(values, kind="stable")
    ranks = np.empty(values.size)
    ranks[order] = np.arange(values.size)
    # ties: the mean rank of equal values
    unique, inverse = np.unique(values, return_inverse=True)
    if unique.size < values.size:
        sums = np.bincount(inverse, weights=ranks)
        ranks = (sums / np.bincount(inverse))[inverse]
    return np.asarray(ranks / (values.size - 1))


@dataclass(frozen=True)
class Affinity:
    """Launch scores over candidate customer rows and the components behind them."""

    rows: np.ndarray
    score: np.ndarray
    cf: np.ndarray
    due: np.ndarray
    category_share: np.ndarray


def launch_affinity(model: LoadedModel, table: CustomerTable, rows: np.ndarray, item: int, category: int,
                    weights: dict[str, float]) -> Affinity:
    """Affinity of customer ``rows`` for ``item`` (a row) or ``category`` (a code); see the module docstring."""
    rows = np.asarray(rows, dtype=np.int64)
    p = table.purchases
    cat = int(p.item_category[item]) if item >= 0 else category
    if item >= 0:
        vector = np.asarray(model.item_factors[item], dtype=np.float32)
    else:
        members = np.flatnonzero(p.item_category == cat)
        vector = np.asarray(model.item_factors[members].mean(axis=0), dtype=np.float32)
    cf = np.asarray(model.user_factors[rows] @ vector, dtype=np.float64)
    owner = p.owner
    keep = (p.items == item) if item >= 0 else (p.item_category[p.items] == cat)
    # dueness of the customer's rhythm for the target (0 for customers who never bought it)
    due = np.zeros(table.n)
    if keep.any():
        count = p.count[keep].astype(np.float64)
        first, last = p.first_day[keep].astype(np.float64), p.last_day[keep].astype(np.float64)
        span = last - first
        own = np.where((count >= 2) & (span > 0), span / np.maximum(count - 1, 1), np.nan)
        interval = np.where(np.isfinite(own), own, p.item_interval[p.items[keep]].astype(np.float64))
        score = RepurchaseSource.dueness(table.today - last, interval)
        np.maximum.at(due, owner[keep], score)
    in_category = p.item_category[p.items] == cat
    total = np.bincount(owner, weights=p.count.astype(np.float64), minlength=table.n)
    in_cat = np.bincount(owner[in_category], weights=p.count[in_category].astype(np.float64), minlength=table.n)
    share = np.where(total > 0, in_cat / np.where(total > 0, total, 1.0), 0.0)
    score = (weights.get("cf", 0.0) * percentile(cf) + weights.get("due", 0.0) * due[rows]
             + weights.get("category", 0.0) * share[rows])
    return Affinity(rows, score, cf, due[rows], share[rows])


def launch_why(affinity: Affinity, i: int, category_name: str) -> str:
    """Why customer ``i`` of ``affinity`` is in a launch audience, in words."""
    parts = [f"predicted affinity {affinity.score[i]:.2f}"]
    parts.append(f"CF score {affinity.cf[i]:.3f}")
    if affinity.due[i] > 0.05:
        parts.append(f"due by their rhythm ({affinity.due[i]:.2f})")
    if affinity.category_share[i] > 0:
        parts.append(f"{100 * affinity.category_share[i]:.0f} % of their purchases in {category_name}")
    return "; ".join(parts)


def finite(value: float) -> float:
    return value if math.isfinite(value) else 0.0
