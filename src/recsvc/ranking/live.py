"""What a customer did since the model's cut-off, as the ranking core uses it (issue 13).

The servicer looks the customer's live events up (:class:`recsvc.events.overlay.CustomerActivity`, a frozen
value object) and hands them to the engine inside the query; the engine never touches an event store. From
them :func:`live_rows` derives, per request:

* ``context``: the items the customer just bought (net of live returns), put in the cart or viewed, newest
  first. They act as the request's ``context_item_ids`` do for ranking (co-purchase seeds, ALS fold-in, the
  ``context`` path for a customer the model never saw), but are not hidden because of it: what she looked at
  and has not bought may well be what she wants.
* ``hidden``: live purchases not due again. The rule is the repurchase source's own
  (:meth:`~recsvc.ranking.repurchase.RepurchaseSource.dueness`): days since the live purchase over the
  item's rhythm (the customer's own, the live purchase counted in, else the item's median); an item is shown
  again only once that bell reaches :data:`DUE_AGAIN`, so milk bought an hour ago is not suggested, and a
  live return cancels the purchase (it is neither hidden nor a seed).
* ``purchases``: the latest live purchase per item row, so a "bought together" reason seeded by it can say
  where and when (:func:`with_live_reasons`).

Events at or before the model's cut-off never get here: the overlay keeps only later ones.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

import numpy as np

from recsvc.days import day_of_ms
from recsvc.ranking.model import CustomerHistory, LoadedModel
from recsvc.ranking.reasons import Reason, ReasonKind, spoken_date, where_bought
from recsvc.ranking.repurchase import RepurchaseSource, repurchase_interval

if TYPE_CHECKING:  # the overlay imports the model; the ranking core only reads its value objects
    from recsvc.events.overlay import CustomerActivity, LiveEvent

#: Dueness (0..1) a live-bought item needs before it is suggested again (0.5: about 60 % of its interval).
DUE_AGAIN = 0.5

_NO_ROWS = np.zeros(0, dtype=np.int64)


@dataclass(frozen=True)
class LiveRows:
    """A customer's live events as item rows of one model (see the module docstring)."""

    context: np.ndarray
    hidden: np.ndarray
    purchases: dict[int, LiveEvent]


def live_rows(model: LoadedModel, live: CustomerActivity, history: CustomerHistory, today: int,
              limit: int) -> LiveRows:
    """The live context (at most ``limit`` rows), hidden purchases and purchase events of ``live``.

    ``history`` is the model's purchase history of the customer (empty when unknown) and ``today`` the
    engine's reference day; items the model does not know are ignored.
    """
    bought = [(e, qty) for e, qty in live.net_purchases() if e.item_row >= 0]  # newest first
    purchases = {e.item_row: e for e, _ in bought}
    browsed = [e.item_row for e in reversed(live.events) if e.event in ("cart", "view") and e.item_row >= 0]
    context = np.array(list(dict.fromkeys([*purchases, *browsed]))[:max(limit, 0)], dtype=np.int64)
    if not bought:
        return LiveRows(context, _NO_ROWS, purchases)
    rows = np.array([e.item_row for e, _ in bought], dtype=np.int64)
    day = np.array([e.day for e, _ in bought], dtype=np.int64)
    count = np.array([qty for _, qty in bought], dtype=np.float64)
    first = day.copy()
    at = history.positions_of(rows)
    seen = at >= 0
    if seen.any():
        count[seen] += np.maximum(history.count[at[seen]].astype(np.float64), 0.0)
        first[seen] = history.first_day[at[seen]]
    interval = repurchase_interval(model, rows, count, first, day)
    due = RepurchaseSource.dueness(np.maximum(today - day, 0).astype(np.float64), interval)
    return LiveRows(context, rows[due < DUE_AGAIN], purchases)


def _ago(event: LiveEvent, now_ms: int, today: int, reference_day: int) -> str:
    minutes = max(0, now_ms - event.timestamp_ms) // 60_000
    if minutes < 1:
        return "just now"
    if minutes < 60:
        return "1 minute ago" if minutes == 1 else f"{minutes} minutes ago"
    days = today - event.day
    if days <= 0:
        return "today"
    return "yesterday" if days == 1 else f"on {spoken_date(event.day, reference_day)}"


def with_live_reasons(model: LoadedModel, reasons: Sequence[Reason], purchases: dict[int, LiveEvent],
                      now_ms: int) -> list[Reason]:
    """``reasons`` with every "bought together" reason whose first source item was bought live saying where
    and when: "Bought together with Bread loaf (bought online 3 minutes ago)"."""
    if not purchases:
        return list(reasons)
    by_id = {e.item_id: e for e in purchases.values()}
    rows = {e.item_id: row for row, e in purchases.items()}
    today = day_of_ms(now_ms)
    out = []
    for reason in reasons:
        event = by_id.get(reason.source_item_ids[0]) if reason.source_item_ids else None
        if reason.kind != ReasonKind.BOUGHT_TOGETHER or event is None:
            out.append(reason)
            continue
        titles = " and ".join(model.item_title(rows[i] if i in rows else model.items.row(i))
                              for i in reason.source_item_ids)
        where = where_bought(event.channel, event.store_id)
        when = _ago(event, now_ms, today, today)
        out.append(replace(reason, text=f"Bought together with {titles} (bought{' ' + where if where else ''} "
                                        f"{when})", source_channel=event.channel, source_store_id=event.store_id))
    return out
