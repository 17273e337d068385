"""Recording events and linking identities: the transport-free core behind ``recsvc.v1.Events``.

Bad items of a call are reported one by one and never fail the good ones; only a call that is wrong as a
whole (no items, over the limit) raises :class:`~recsvc.errors.InvalidRequest`, and a store that cannot be
reached raises :class:`~recsvc.events.store.StoreUnavailable` before anything is acknowledged (the caller
retries; ``event_id`` makes that safe). What this process writes goes into its own overlay at once, so the
next request on the same worker sees it without waiting for the feed.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

from recsvc.errors import InvalidRequest
from recsvc.events.overlay import EventOverlay
from recsvc.events.store import EventStore, FeedBatch, LiveLink
from recsvc.events.validation import (
    REASON_IDENTITY_CONFLICT,
    EventRecord,
    Invalid,
    RawEvent,
    validate_event,
    validate_link,
)
from recsvc.ranking.model import LoadedModel

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Rejected:
    """One refused event or link: its 0-based position in the call, a reason code and a sentence."""

    index: int
    reason: str
    detail: str


@dataclass(frozen=True)
class RecordResult:
    accepted: int
    duplicates: int
    rejected: tuple[Rejected, ...]
    #: The events this call committed (new ``event_id``), in call order.
    fresh: tuple[EventRecord, ...] = ()


@dataclass(frozen=True)
class LinkResult:
    linked: int
    rejected: tuple[Rejected, ...]


def _check_size(n: int, what: str, limit: int) -> None:
    if not 1 <= n <= limit:
        raise InvalidRequest(f"{what}: send 1 to {limit} per call, got {n}")


def record_events(store: EventStore, raws: Sequence[RawEvent], *, now_ms: int, default_channel: str,
                  max_future_seconds: float, max_per_call: int, overlay: EventOverlay | None = None,
                  earliest_ms: int | None = None) -> RecordResult:
    """Validate every event, commit the valid ones (each ``event_id`` once), and say what happened to each.

    Raises
    ------
    InvalidRequest
        No events, or more than ``max_per_call``.
    StoreUnavailable
        The store cannot be reached; nothing of this call is acknowledged.
    """
    _check_size(len(raws), "events", max_per_call)
    valid: list[EventRecord] = []
    rejected: list[Rejected] = []
    for index, raw in enumerate(raws):
        outcome = validate_event(raw, now_ms, default_channel, max_future_seconds, earliest_ms)
        if isinstance(outcome, Invalid):
            rejected.append(Rejected(index, outcome.reason, outcome.detail))
        else:
            valid.append(outcome)
    new = store.append(valid) if valid else []
    fresh = tuple(e for e, is_new in zip(valid, new, strict=True) if is_new)
    if overlay is not None and fresh:
        overlay.apply(FeedBatch(events=fresh, links=(), cursor=""))
    return RecordResult(accepted=len(fresh), duplicates=len(valid) - len(fresh), rejected=tuple(rejected),
                        fresh=fresh)


def link_identities(store: EventStore, overlay: EventOverlay, model: LoadedModel, links: Sequence[tuple[str, str]],
                    *, max_per_call: int) -> LinkResult:
    """Apply alias -> customer links with the trainer's rule: never merge two different known customers.

    A customer is known when the model knows them or a live link already points at them. Linking an id
    nobody knows to a known customer makes it that customer's alias, whichever side of the link it is on;
    linking two unknown ids makes ``customer_id`` the customer. A link joining two known customers, or an
    alias already linked elsewhere (checked atomically in the store, so two replicas cannot both win), is
    rejected with ``identity_conflict``.

    Raises
    ------
    InvalidRequest
        No links, or more than ``max_per_call``.
    StoreUnavailable
        The store cannot be reached (links applied before the failure stay applied; repeating them is safe).
    """
    _check_size(len(links), "links", max_per_call)
    linked = 0
    rejected: list[Rejected] = []
    for index, (alias_id, customer_id) in enumerate(links):
        outcome = validate_link(alias_id, customer_id)
        if isinstance(outcome, Invalid):
            rejected.append(Rejected(index, outcome.reason, outcome.detail))
            continue
        alias, customer = outcome
        _, alias_final, alias_known = overlay.resolve(model, alias)
        _, customer_final, customer_known = overlay.resolve(model, customer)
        if alias_final == customer_final:
            linked += 1
            continue
        if alias_known and customer_known:
            rejected.append(Rejected(index, REASON_IDENTITY_CONFLICT,
                                     f"{alias!r} and {customer!r} are two different known customers "
                                     f"({alias_final!r}, {customer_final!r}); links never merge customers"))
            continue
        link = (LiveLink(alias_id=alias, customer_id=customer_final) if not alias_known
                else LiveLink(alias_id=customer, customer_id=alias_final))
        if not store.link(link):
            rejected.append(Rejected(index, REASON_IDENTITY_CONFLICT,
                                     f"{link.alias_id!r} is already linked to another customer"))
            continue
        overlay.apply(FeedBatch(events=(), links=(link,), cursor=""))
        linked += 1
    return LinkResult(linked=linked, rejected=tuple(rejected))
