"""Why an item is suggested: the machine-readable kind, the items behind it, and a short display text.

:class:`ReasonKind` mirrors the proto enum ``recsvc.v1.ReasonKind`` value for value (a test pins this), so the
core needs no protobuf import. Display texts are built from data only (titles, store ids, dates, days) for
the final, at most ~100, suggestions of a response; never for the whole candidate pool.
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass

from recsvc.days import date_of_day
from recsvc.ranking.model import LoadedModel


class ReasonKind(enum.IntEnum):
    """Why an item is suggested; values equal ``recsvc.v1.ReasonKind``."""

    UNSPECIFIED = 0
    BOUGHT_BEFORE = 1
    BOUGHT_TOGETHER = 2
    CUSTOMERS_LIKE_YOU = 3
    SIMILAR_ITEM = 4
    POPULAR_ON_CHANNEL = 5
    POPULAR_IN_STORE = 6
    POPULAR = 7


@dataclass(frozen=True)
class Reason:
    """The reason shown with one suggestion.

    ``source_item_ids`` are the items that caused it (bought together with, similar to, the item bought
    before). ``days_since_last_purchase`` and ``typical_interval_days`` are set for BOUGHT_BEFORE only (0 when
    unknown). ``source_channel`` / ``source_store_id`` say where the source item was last bought, when known.
    """

    kind: ReasonKind
    text: str
    source_item_ids: tuple[str, ...] = ()
    days_since_last_purchase: int = 0
    typical_interval_days: float = 0.0
    source_channel: str = ""
    source_store_id: str = ""


def _days(n: int) -> str:
    if n <= 0:
        return "today"
    return "1 day ago" if n == 1 else f"{n} days ago"


#: How a reason says where an item was bought, by channel name ("bought online on 3 May"); any other
#: channel reads "on <channel>", and a store purchase names the store.
_WHERE = {"web": "online", "online": "online", "app": "in the app"}
_MONTHS = ("January", "February", "March", "April", "May", "June", "July", "August", "September", "October",
           "November", "December")


def where_bought(channel: str, store: str) -> str:
    """"in store S01" when the store is known, else "online", "in the app" or "on <channel>"; "" for neither."""
    if store:
        return f"in store {store}"
    return _WHERE.get(channel, f"on {channel}") if channel else ""


def spoken_date(day: int, reference_day: int) -> str:
    """"3 May" for a day in the reference day's year, "3 May 2025" otherwise (days since 1970-01-01)."""
    when, ref = date_of_day(day), date_of_day(reference_day)
    text = f"{when.day} {_MONTHS[when.month - 1]}"  # not strftime: a server locale must not change the text
    return text if when.year == ref.year else f"{text} {when.year}"


def _joined_titles(model: LoadedModel, rows: list[int]) -> str:
    titles = [model.item_title(r) for r in rows]
    return " and ".join(titles)


def explain(model: LoadedModel, kind: ReasonKind, source_rows: list[int], *, days_since: int = -1,
            interval_days: float = math.nan, source_day: int = -1, source_channel: int = -1,
            source_store: int = -1, request_channel: int = -1, request_store: int = -1) -> Reason:
    """Build the :class:`Reason` for one suggestion from the numbers a candidate source recorded.

    ``source_rows`` are item rows (``-1`` entries are ignored). ``source_day/channel/store`` describe the
    last purchase of the first source item (``-1`` unknown); ``request_channel/store`` name where a
    popularity reason applies.
    """
    rows = [int(r) for r in source_rows if r >= 0]
    ids = tuple(model.item_id(r) for r in rows)
    channel = model.channel_name(source_channel)
    store = model.store_id(source_store)
    if kind == ReasonKind.BOUGHT_BEFORE:
        interval = float(interval_days) if math.isfinite(interval_days) and interval_days > 0 else 0.0
        days = max(int(days_since), 0)
        if interval > 0:
            text = f"You buy this every ~{round(interval)} days; last bought {_days(days)}"
        else:
            text = f"You bought this before; last bought {_days(days)}"
        return Reason(kind, text, ids, days, interval, channel, store)
    if kind == ReasonKind.BOUGHT_TOGETHER:
        # "Bought together with Oat milk 1 l (bought online on 3 May)": the source item is what the customer
        # bought (or has in the cart), so the clerk can name it and say where and when
        text = f"Bought together with {_joined_titles(model, rows)}" if rows else "Bought together"
        when = f" on {spoken_date(source_day, model.data_end_day)}" if source_day >= 0 else ""
        where = where_bought(channel, store)
        if where or when:
            text += f" (bought{' ' + where if where else ''}{when})"
        return Reason(kind, text, ids, source_channel=channel, source_store_id=store)
    if kind == ReasonKind.CUSTOMERS_LIKE_YOU:
        return Reason(kind, "Customers like you bought this", ids)
    if kind == ReasonKind.SIMILAR_ITEM:
        text = f"Similar to {_joined_titles(model, rows)}" if rows else "Similar items"
        return Reason(kind, text, ids)
    if kind == ReasonKind.POPULAR_IN_STORE and request_store >= 0:
        return Reason(kind, f"Popular in store {model.store_id(request_store)}")
    if kind == ReasonKind.POPULAR_ON_CHANNEL and request_channel >= 0:
        return Reason(kind, f"Popular on {model.channel_name(request_channel)}")
    return Reason(ReasonKind.POPULAR, "Popular")


#: SimilarItems' reason text per method (:mod:`recsvc.ranking.similar`): the kind, and the text around the
#: source item's title.
_SIMILAR_TEXT = {
    "als": (ReasonKind.SIMILAR_ITEM, "Similar to {}"),
    "item_knn": (ReasonKind.SIMILAR_ITEM, "Customers who bought {} also bought this"),
    "copurchase": (ReasonKind.BOUGHT_TOGETHER, "Often bought together with {}"),
}


def similar_reason(model: LoadedModel, method: str, row: int) -> Reason:
    """The reason of a SimilarItems suggestion found by ``method`` for the item at ``row``."""
    kind, text = _SIMILAR_TEXT.get(method, _SIMILAR_TEXT["als"])
    return Reason(kind, text.format(model.item_title(row)), (model.item_id(row),))
