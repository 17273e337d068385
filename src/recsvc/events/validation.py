"""One live event or identity link checked against the input contract, without any transport.

The servicer turns a proto ``Event`` into a :class:`RawEvent` and calls :func:`validate_event`; a test (or a
future HTTP edge) calls the same function. Each bad event gets exactly one reason code, the first that
applies, in the trainer's order (``missing_id``, ``unknown_event``, ``bad_timestamp``, ``bad_quantity``), so
an event the server rejects is one the trainer would have quarantined under the same name. Live-only reasons
(``future_timestamp``, ``bad_price``, ``id_too_long``) come after.

The reason names are the contract with the trainer: :data:`REASONS` must hold every quarantine reason
:mod:`recsvc_training.input.columns` and :mod:`recsvc_training.input.identity` use (a test pins it), so the
trainer can later import them from here instead of keeping its own copy. The server never imports the trainer.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Final, NamedTuple

from recsvc.days import MS_PER_DAY, day_of_ms
from recsvc.ids import clean_channel, clean_id

REASON_MISSING_ID: Final = "missing_id"
REASON_UNKNOWN_EVENT: Final = "unknown_event"
REASON_BAD_TIMESTAMP: Final = "bad_timestamp"
REASON_BAD_QUANTITY: Final = "bad_quantity"
REASON_DUPLICATE: Final = "duplicate"
REASON_IDENTITY_CONFLICT: Final = "identity_conflict"
#: The timestamp is further ahead of the server's clock than ``events.max_future_seconds`` (the trainer's
#: bound is ``training.max_future_hours`` after the run).
REASON_FUTURE_TIMESTAMP: Final = "future_timestamp"
#: The timestamp is before ``training.earliest_event_date`` (the trainer's rule, applied at the door).
REASON_ANCIENT_TIMESTAMP: Final = "ancient_timestamp"
#: Live only: the price is not a finite number >= 0.
REASON_BAD_PRICE: Final = "bad_price"
#: Live only: an id longer than :data:`MAX_ID_LENGTH` characters (ids are keys in every store).
REASON_ID_TOO_LONG: Final = "id_too_long"
REASONS: Final = (REASON_MISSING_ID, REASON_UNKNOWN_EVENT, REASON_BAD_TIMESTAMP, REASON_BAD_QUANTITY,
                  REASON_DUPLICATE, REASON_IDENTITY_CONFLICT, REASON_FUTURE_TIMESTAMP, REASON_ANCIENT_TIMESTAMP,
                  REASON_BAD_PRICE, REASON_ID_TOO_LONG)

VIEW: Final = "view"
CART: Final = "cart"
PURCHASE: Final = "purchase"
RETURN: Final = "return"
#: The input contract's types: what the trainer learns from.
TRAINING_EVENT_TYPES: Final = (VIEW, CART, PURCHASE, RETURN)
#: Feedback on served answers (issue 18): an item was shown, it was clicked, a campaign message went out.
#: They feed the online report (:mod:`recsvc.feedback`); the overlay and the trainer ignore them.
IMPRESSION: Final = "impression"
CLICK: Final = "click"
MESSAGE_SENT: Final = "message_sent"
FEEDBACK_EVENT_TYPES: Final = (IMPRESSION, CLICK, MESSAGE_SENT)
EVENT_TYPES: Final = (*TRAINING_EVENT_TYPES, *FEEDBACK_EVENT_TYPES)

MAX_ID_LENGTH: Final = 256
# The timestamps the trainer's datetime64[ns] can hold (1677-09-22 .. 2262-04-11); outside is bad_timestamp.
_MIN_MS: Final = -9_223_372_036_854 + MS_PER_DAY
_MAX_MS: Final = 9_223_372_036_854 - MS_PER_DAY


@dataclass(frozen=True)
class RawEvent:
    """An event as a caller sent it; ``timestamp_ms`` None = unset (the server's clock applies)."""

    event_id: str = ""
    customer_id: str = ""
    item_id: str = ""
    event: str = ""
    channel: str = ""
    store_id: str = ""
    order_id: str = ""
    quantity: float = 0.0
    price: float = 0.0
    timestamp_ms: int | None = None
    recommendation_id: str = ""
    position: int = 0


class EventRecord(NamedTuple):
    """A valid event as stored: ids cleaned (:func:`recsvc.ids.clean_id`), channel and type lower-case, a
    negative purchase turned into a return, ``quantity`` > 0, ``price`` NaN when unknown, times in ms since
    1970 UTC (``timestamp_ms`` when it happened, ``recorded_ms`` when the server took it).

    A NamedTuple rather than a frozen dataclass: every server process decodes every event of the feed, and a
    tuple is built several times faster (immutable all the same).
    """

    event_id: str
    customer_id: str
    item_id: str
    event: str
    channel: str
    store_id: str
    order_id: str
    quantity: float
    price: float
    timestamp_ms: int
    recorded_ms: int
    #: The answer this event follows from (feedback, issue 18); "" = none.
    recommendation_id: str = ""
    #: 1-based position of the item in that answer (impressions and clicks); 0 = unknown.
    position: int = 0

    @property
    def day(self) -> int:
        """The UTC day number of ``timestamp_ms`` (the unit of the model's ``data_end_day``)."""
        return day_of_ms(self.timestamp_ms)


@dataclass(frozen=True)
class Invalid:
    """Why one event or link was refused: a reason code from :data:`REASONS` and a sentence for a person."""

    reason: str
    detail: str


def validate_event(raw: RawEvent, now_ms: int, default_channel: str, max_future_seconds: float,
                   earliest_ms: int | None = None) -> EventRecord | Invalid:
    """``raw`` as an :class:`EventRecord`, or the first reason it cannot be one (see the module docstring).

    ``now_ms`` is the server's clock (it stamps events sent without a timestamp and bounds future ones);
    ``default_channel`` fills an empty channel, as the trainer does; ``earliest_ms`` (when given) is the
    trainer's earliest plausible event time, so an event the next training would quarantine is refused now.
    """
    event_id, customer_id, item_id = clean_id(raw.event_id), clean_id(raw.customer_id), clean_id(raw.item_id)
    missing = [name for name, value in (("event_id", event_id), ("customer_id", customer_id),
                                        ("item_id", item_id)) if not value]
    if missing:
        return Invalid(REASON_MISSING_ID, f"{', '.join(missing)}: required")
    kind = clean_channel(raw.event)  # event types compare like channels: trimmed, case-insensitive
    if kind not in EVENT_TYPES:
        return Invalid(REASON_UNKNOWN_EVENT, f"event: expected one of {', '.join(EVENT_TYPES)}, got {raw.event!r}")
    timestamp = now_ms if raw.timestamp_ms is None else raw.timestamp_ms
    if not _MIN_MS <= timestamp <= _MAX_MS:
        return Invalid(REASON_BAD_TIMESTAMP, "timestamp: outside 1677-09-22 .. 2262-04-11")
    quantity = 1.0 if raw.quantity == 0 else float(raw.quantity)
    if not math.isfinite(quantity) or (quantity < 0 and kind not in (PURCHASE, RETURN)):
        return Invalid(REASON_BAD_QUANTITY, f"quantity: expected a finite number (0 = 1; negative only on a "
                                            f"purchase or return), got {raw.quantity!r}")
    if timestamp > now_ms + max_future_seconds * 1000:
        return Invalid(REASON_FUTURE_TIMESTAMP, f"timestamp: more than {max_future_seconds:g} s ahead of the "
                                                "server's clock; send UTC")
    if earliest_ms is not None and timestamp < earliest_ms:
        return Invalid(REASON_ANCIENT_TIMESTAMP, "timestamp: before training.earliest_event_date; check the "
                                                 "clock or the unit (milliseconds since 1970 in UTC)")
    if not math.isfinite(raw.price) or raw.price < 0:
        return Invalid(REASON_BAD_PRICE, f"price: expected a finite number >= 0 (0 = unknown), got {raw.price!r}")
    store_id, order_id = clean_id(raw.store_id), clean_id(raw.order_id)
    recommendation_id = clean_id(raw.recommendation_id)
    too_long = [name for name, value in (("event_id", event_id), ("customer_id", customer_id),
                                         ("item_id", item_id), ("store_id", store_id), ("order_id", order_id),
                                         ("channel", raw.channel), ("recommendation_id", recommendation_id))
                if len(value) > MAX_ID_LENGTH]
    if too_long:
        return Invalid(REASON_ID_TOO_LONG, f"{', '.join(too_long)}: longer than {MAX_ID_LENGTH} characters")
    if quantity < 0:  # the trainer's rule: a negative purchase is a return of abs(quantity)
        kind, quantity = RETURN, -quantity
    return EventRecord(event_id=event_id, customer_id=customer_id, item_id=item_id, event=kind,
                       channel=clean_channel(raw.channel) or default_channel, store_id=store_id, order_id=order_id,
                       quantity=quantity, price=float(raw.price) if raw.price > 0 else math.nan,
                       timestamp_ms=int(timestamp), recorded_ms=int(now_ms), recommendation_id=recommendation_id,
                       position=max(0, int(raw.position)))


def validate_link(alias_id: str, customer_id: str) -> tuple[str, str] | Invalid:
    """The cleaned ``(alias_id, customer_id)`` of one link, or why it is refused (``missing_id``, too long)."""
    alias, customer = clean_id(alias_id), clean_id(customer_id)
    missing = [name for name, value in (("alias_id", alias), ("customer_id", customer)) if not value]
    if missing:
        return Invalid(REASON_MISSING_ID, f"{', '.join(missing)}: required")
    if max(len(alias), len(customer)) > MAX_ID_LENGTH:
        return Invalid(REASON_ID_TOO_LONG, f"alias_id or customer_id: longer than {MAX_ID_LENGTH} characters")
    return alias, customer
