"""Which feedback event counts for which served answer: the one rule the server's metrics and the report share.

* An impression, click, cart or purchase that carries a ``recommendation_id`` counts for that answer (``by
  id``) when the answer suggested the event's item and went to the same customer: the event's customer id,
  resolved through aliases, equals the answer's resolved customer. An answer to an anonymous request (no
  customer) accepts any customer. An id of an answer to *another* customer is not attributed (``foreign``), nor
  is an id the log does not hold (``unmatched``: never served, past retention, or dropped under overload).
* A purchase without an id counts for the latest answer that suggested the same item to the same resolved
  customer at most ``attribution_window_days`` before it (``by window``); a cart without an id is not
  attributed (a cart is a step on the way, the purchase is the outcome).
* Views, returns and ``message_sent`` are not attributed. Each event counts once (the store applies each
  ``event_id`` once); revenue is quantity x price of attributed purchases (an unknown price adds nothing).
"""

from __future__ import annotations

import bisect
import math
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Final

from recsvc.events.validation import CART, CLICK, IMPRESSION, PURCHASE, EventRecord
from recsvc.feedback.served import ServedRecommendation

BY_ID: Final = "id"
BY_WINDOW: Final = "window"
#: Outcomes of an event carrying an id that is not attributed.
UNMATCHED: Final = "unmatched"
FOREIGN: Final = "foreign"
NOT_SUGGESTED: Final = "not_suggested"
#: Event types an answer can be credited with.
ATTRIBUTED_TYPES: Final = (IMPRESSION, CLICK, CART, PURCHASE)

#: Resolves any customer id or alias to the customer id answers are logged under.
Resolver = Callable[[str], str]


@dataclass(frozen=True)
class Attribution:
    """One event credited to one answer, ``how`` (``BY_ID`` or ``BY_WINDOW``)."""

    event: EventRecord
    served: ServedRecommendation
    how: str

    @property
    def revenue(self) -> float:
        e = self.event
        return e.quantity * e.price if e.event == PURCHASE and not math.isnan(e.price) else 0.0


def by_id(event: EventRecord, served: ServedRecommendation | None, resolve: Resolver) -> Attribution | str | None:
    """The attribution of an event that carries a ``recommendation_id``, or why there is none (``UNMATCHED``,
    ``FOREIGN``, ``NOT_SUGGESTED``); None for event types never attributed."""
    if event.event not in ATTRIBUTED_TYPES:
        return None
    if served is None:
        return UNMATCHED
    if served.customer_id and resolve(event.customer_id) != served.customer_id:
        return FOREIGN
    if event.item_id not in served.items:
        return NOT_SUGGESTED
    return Attribution(event, served, BY_ID)


@dataclass
class _Suggested:
    """The answers to one customer, in time order, for the window rule."""

    times: list[int] = field(default_factory=list)
    answers: list[ServedRecommendation] = field(default_factory=list)


@dataclass(frozen=True)
class AttributionResult:
    """Every attributed event, and the count of events with an id that were not (by reason)."""

    attributed: tuple[Attribution, ...]
    not_attributed: Mapping[str, int]


def attribute(served: Iterable[ServedRecommendation], events: Iterable[EventRecord], resolve: Resolver,
              window_days: float, lookup: Callable[[list[str]], Mapping[str, ServedRecommendation]] | None = None
              ) -> AttributionResult:
    """Credit ``events`` to ``served`` answers by the module's rules.

    ``served`` is every answer of the period (and some before it, so a purchase early in the period finds
    an answer within the window); ``lookup`` finds answers by id that ``served`` lacks (older ones), e.g.
    :meth:`recsvc.events.store.EventStore.served_by_id`.
    """
    by_rid: dict[str, ServedRecommendation] = {}
    per_customer: dict[str, _Suggested] = {}
    for answer in sorted(served, key=lambda s: s.timestamp_ms):
        by_rid[answer.recommendation_id] = answer
        if answer.customer_id:
            suggested = per_customer.setdefault(answer.customer_id, _Suggested())
            suggested.times.append(answer.timestamp_ms)
            suggested.answers.append(answer)
    events = list(events)
    if lookup is not None:
        missing = sorted({e.recommendation_id for e in events
                          if e.recommendation_id and e.recommendation_id not in by_rid})
        if missing:
            by_rid.update(lookup(missing))
    window_ms = int(window_days * 86_400_000)
    out: list[Attribution] = []
    refused: Counter[str] = Counter()
    for event in events:
        if event.recommendation_id:
            found = by_id(event, by_rid.get(event.recommendation_id), resolve)
            if isinstance(found, Attribution):
                out.append(found)
            elif found is not None:
                refused[found] += 1
            continue
        if event.event != PURCHASE:
            continue
        answered = per_customer.get(resolve(event.customer_id))
        if answered is None:
            continue
        at = bisect.bisect_right(answered.times, event.timestamp_ms)
        for answer in reversed(answered.answers[:at]):
            if event.timestamp_ms - answer.timestamp_ms > window_ms:
                break
            if event.item_id in answer.items:
                out.append(Attribution(event, answer, BY_WINDOW))
                break
    return AttributionResult(tuple(out), dict(refused))
