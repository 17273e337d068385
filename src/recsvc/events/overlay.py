"""The overlay: what each customer did since the model's data cut-off, as every worker and replica sees it.

Each server process follows the store's feed (:meth:`~recsvc.events.store.EventStore.read_feed`) every
``events.poll_seconds`` in a background thread and keeps, per customer id as sent, the newest
``recent_per_customer`` events, plus every live identity link. A request asks :meth:`EventOverlay.activity`
for one customer: the id is resolved through the live links and the model's aliases to one customer, and the
events of every id of that customer newer than the model's ``data_end_day`` come back as a
:class:`CustomerActivity`, a frozen value object the ranking core can use without knowing any store (item rows
in the model, days, channel, store, event type).

Only events after the cut-off count, so once the nightly model includes an event (it is exported with the
complete days before the training run, :mod:`recsvc_training.input.live_events`) the overlay ignores it.

When the store cannot be read the overlay keeps what it has, reports ``down`` (status, metric, one log line)
and retries at every poll: it recovers by itself when the store returns. Requests never wait for the store.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from recsvc.days import day_of_ms, ms_of_day
from recsvc.events.store import EventStore, FeedBatch, LiveLink, StoreUnavailable
from recsvc.events.validation import CART, FEEDBACK_EVENT_TYPES, PURCHASE, RETURN, VIEW, EventRecord
from recsvc.ranking.model import LoadedModel

logger = logging.getLogger(__name__)

#: Hops followed through live links before giving up (a chain longer than this is cut, never looped).
MAX_LINK_HOPS = 16


@dataclass(frozen=True)
class LiveEvent:
    """One live event of a customer; ``item_row`` is the item's row in the model (-1: the model lacks it)."""

    event_id: str
    item_id: str
    item_row: int
    event: str
    channel: str
    store_id: str
    order_id: str
    quantity: float
    price: float
    timestamp_ms: int

    @property
    def day(self) -> int:
        """UTC day number (the unit of ``LoadedModel.data_end_day`` and the history arrays)."""
        return day_of_ms(self.timestamp_ms)


@dataclass(frozen=True)
class CustomerActivity:
    """A customer's live events after the model's cut-off, oldest first (ordered by timestamp).

    ``customer_id`` is the model's id of the customer, or for a customer the model never saw the id their
    live events and links resolve to (``customer_row`` -1).
    """

    customer_id: str
    customer_row: int
    events: tuple[LiveEvent, ...]

    @property
    def known_customer(self) -> bool:
        return self.customer_row >= 0

    def of(self, kind: str) -> tuple[LiveEvent, ...]:
        """The events of one type (``view``, ``cart``, ``purchase``, ``return``), oldest first."""
        return tuple(e for e in self.events if e.event == kind)

    @property
    def views(self) -> tuple[LiveEvent, ...]:
        return self.of(VIEW)

    @property
    def carts(self) -> tuple[LiveEvent, ...]:
        return self.of(CART)

    def net_purchases(self) -> tuple[tuple[LiveEvent, float], ...]:
        """Per item, its latest live purchase and the quantity left after live returns, newest first; items
        returned in full are left out (a return cancels)."""
        net: dict[str, float] = {}
        latest: dict[str, LiveEvent] = {}
        for e in self.events:
            if e.event == PURCHASE:
                net[e.item_id] = net.get(e.item_id, 0.0) + e.quantity
                latest[e.item_id] = e
            elif e.event == RETURN:
                net[e.item_id] = net.get(e.item_id, 0.0) - e.quantity
        kept = [(latest[item], qty) for item, qty in net.items() if qty > 0 and item in latest]
        return tuple(sorted(kept, key=lambda pair: pair[0].timestamp_ms, reverse=True))

    def item_rows(self, kind: str) -> np.ndarray:
        """Model rows (int32) of the items of one event type the model knows, oldest first, repeats kept."""
        return np.array([e.item_row for e in self.of(kind) if e.item_row >= 0], dtype=np.int32)


@dataclass(frozen=True)
class OverlayStatus:
    """What ``Admin/GetStatus`` and the metrics report."""

    backend: str
    state: str  # "up", "down" or "off"
    events: int
    lag_seconds: float
    error: str


#: Models the overlay keeps an index for at once (the serving one, one an experiment arm pins, one swapping in).
MODEL_INDEXES = 3


@dataclass
class _ModelIndex:
    """What one model's requests read: customer key -> raw ids (None: rebuild after a new link) and raw id ->
    its held events as that model's value objects, sorted (built as events arrive, on the feed thread)."""

    model: LoadedModel
    members: dict[str, set[str]] | None
    live: dict[str, tuple[_Held, ...]]


#: One held event ready for a request: its sort key (timestamp, then recording time, in ms) and value object.
_Held = tuple[tuple[int, int], LiveEvent]


def cutoff_ms(model: LoadedModel) -> int:
    """Events at or after this time (ms since 1970) are newer than the model: the day after ``data_end_day``."""
    return ms_of_day(int(model.data_end_day) + 1)


class EventOverlay:
    """Follows one store (see the module docstring); ``on_state`` hears ``(up, error)`` at every change."""

    def __init__(self, store: EventStore, poll_seconds: float = 0.1, recent_per_customer: int = 200,
                 on_state: Callable[[bool, str], None] | None = None) -> None:
        self.store = store
        self._poll = max(0.01, poll_seconds)
        self._cap = recent_per_customer
        self._on_state = on_state
        self._lock = threading.Lock()
        self._events: dict[str, list[EventRecord]] = {}
        self._links: dict[str, str] = {}
        self._targets: set[str] = set()
        self._seen_ids: set[str] = set()
        self._cursor = ""
        self._up: bool | None = None
        self._error = ""
        self._last_read = 0.0
        self._cutoff = -(2**62)
        # one index per model asked about, newest last (the serving model, and one an experiment arm keeps
        # loaded beside it): at most MODEL_INDEXES
        self._indexes: list[_ModelIndex] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # -------------------------------------------------------------------------------------- following the feed

    def start(self, model: LoadedModel | None = None) -> None:
        """Read the whole feed once (so a fresh process starts with what the others have), then follow it.

        With the serving ``model`` given, events it already includes are not even held in memory.
        """
        if model is not None:
            self._cutoff = cutoff_ms(model)
        self.poll_once()
        self._thread = threading.Thread(target=self._run, name="recsvc-overlay", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def _run(self) -> None:
        while not self._stop.wait(self._poll):
            self.poll_once()

    def poll_once(self) -> bool:
        """Read everything new from the store; False (and state ``down``) when it cannot be read."""
        try:
            while True:
                batch = self.store.read_feed(self._cursor)
                self.apply(batch)
                if not batch.events and not batch.links:
                    break
        except StoreUnavailable as exc:
            self._set_state(False, str(exc))
            return False
        self._last_read = time.monotonic()
        self._set_state(True, "")
        return True

    def _set_state(self, up: bool, error: str) -> None:
        if up == self._up:
            return
        self._up, self._error = up, error
        if up:
            logger.info("event overlay is up (backend %s)", self.store.backend)
        else:
            logger.error("event overlay is down, serving from the model alone until the store returns: %s", error)
        if self._on_state is not None:
            self._on_state(up, error)

    def apply(self, batch: FeedBatch) -> None:
        """Take in events and links (from the feed, or just written by this process); repeats are ignored."""
        with self._lock:
            if batch.cursor:
                self._cursor = batch.cursor
            for link in batch.links:
                self._add_link(link)
            touched: set[str] = set()
            for event in batch.events:
                if (event.event_id in self._seen_ids or event.timestamp_ms < self._cutoff
                        or event.event in FEEDBACK_EVENT_TYPES):  # feedback changes no ranking (issue 18)
                    continue
                self._seen_ids.add(event.event_id)
                touched.add(event.customer_id)
                held = self._events.setdefault(event.customer_id, [])
                held.append(event)
                if len(held) > 1 and held[-2].timestamp_ms > event.timestamp_ms:  # a late event: keep time order
                    held.sort(key=lambda e: e.timestamp_ms)
                if len(held) > self._cap:
                    self._seen_ids.discard(held.pop(0).event_id)
                if len(held) == 1:
                    for index in self._indexes:
                        if index.members is not None:
                            key = self._key(index.model, event.customer_id)[0]
                            index.members.setdefault(key, set()).add(event.customer_id)
            if touched:
                for index in self._indexes:
                    index.live.update(self._as_live(index.model, touched))

    def _as_live(self, model: LoadedModel, raw_ids: set[str]) -> dict[str, tuple[_Held, ...]]:
        """The held events of ``raw_ids`` as :class:`LiveEvent` of ``model`` (one item lookup for all)."""
        held = [(raw, e) for raw in raw_ids for e in self._events.get(raw, ())]
        rows = model.items.lookup([e.item_id for _, e in held]).tolist() if held else []
        out: dict[str, list[_Held]] = {raw: [] for raw in raw_ids}
        for (raw, e), row in zip(held, rows, strict=True):
            out[raw].append(((e.timestamp_ms, e.recorded_ms), LiveEvent(
                event_id=e.event_id, item_id=e.item_id, item_row=row, event=e.event, channel=e.channel,
                store_id=e.store_id, order_id=e.order_id, quantity=e.quantity, price=e.price,
                timestamp_ms=e.timestamp_ms)))
        return {raw: tuple(sorted(events, key=lambda pair: pair[0])) for raw, events in out.items()}

    def _add_link(self, link: LiveLink) -> None:
        if self._links.get(link.alias_id) != link.customer_id:
            self._links[link.alias_id] = link.customer_id
            self._targets.add(link.customer_id)
            for index in self._indexes:
                index.members = None  # groups changed: rebuild at the next query

    # ---------------------------------------------------------------------------------------------- queries

    def _final(self, customer_id: str) -> str:
        current = customer_id
        for _ in range(MAX_LINK_HOPS):
            target = self._links.get(current)
            if target is None or target == current:
                break
            current = target
        return current

    def _key(self, model: LoadedModel, customer_id: str) -> tuple[str, int, str]:
        """(group key, model row or -1, the customer's id) of any id, through live links, then the model."""
        final = self._final(customer_id)
        row = model.resolve_customer(final)
        if row >= 0:
            return f"m:{row}", row, model.customer_id(row)
        return f"l:{final}", -1, final

    def resolve(self, model: LoadedModel, customer_id: str) -> tuple[int, str, bool]:
        """``(model row or -1, customer id, known)`` of any id; known = the model knows the customer or some
        live link points at the id (a live customer with aliases). Used by identity linking."""
        with self._lock:
            _, row, final = self._key(model, customer_id)
            known = row >= 0 or final in self._targets
        return row, final, known

    def activity(self, model: LoadedModel, customer_id: str) -> CustomerActivity | None:
        """The customer's live events after ``model``'s cut-off, or None when there are none."""
        with self._lock:
            index = self._index(model)
            key, row, final = self._key(model, customer_id)
            members = index.members.get(key) if index.members is not None else None
            if not members:
                return None
            lists = [index.live.get(raw, ()) for raw in members]
        cutoff = cutoff_ms(model)
        held = lists[0] if len(lists) == 1 else sorted((p for ps in lists for p in ps), key=lambda p: p[0])
        events = tuple(e for (at, _), e in held if at >= cutoff)
        return CustomerActivity(customer_id=final, customer_row=row, events=events) if events else None

    def _prune(self, cutoff: int) -> None:
        """Forget events the model (or a newer one) already includes."""
        if cutoff <= self._cutoff:
            return
        self._cutoff = cutoff
        for raw in list(self._events):
            kept = [e for e in self._events[raw] if e.timestamp_ms >= cutoff]
            for e in self._events[raw]:
                if e.timestamp_ms < cutoff:
                    self._seen_ids.discard(e.event_id)
            if kept:
                self._events[raw] = kept
            else:
                del self._events[raw]

    def _index(self, model: LoadedModel) -> _ModelIndex:
        """``model``'s index, built (or its groups rebuilt after a new link) when needed. A new serving model
        also forgets the events it includes; an older one an experiment arm keeps sees what is left of its
        own later events (those the newer model includes are gone)."""
        index = next((i for i in self._indexes if i.model is model), None)
        if index is None:
            self._prune(cutoff_ms(model))
            index = _ModelIndex(model, None, self._as_live(model, set(self._events)))
            self._indexes = [*self._indexes[-(MODEL_INDEXES - 1):], index]
        if index.members is None:
            members: dict[str, set[str]] = {}
            for raw in self._events:
                members.setdefault(self._key(model, raw)[0], set()).add(raw)
            index.members = members
        return index

    def status(self) -> OverlayStatus:
        with self._lock:
            held = sum(len(v) for v in self._events.values())
        state = "up" if self._up else "down"
        lag = time.monotonic() - self._last_read if self._last_read else 0.0
        return OverlayStatus(backend=self.store.backend, state=state, events=held, lag_seconds=lag,
                             error=self._error)
