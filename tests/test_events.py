"""Live events without gRPC: validation, the store contract (every backend, found by itself), the overlay, links.

The Redis backend runs against a real redis-server (tests/redis_fixture.py); the SQLite one on a temp file.
"""

from __future__ import annotations

import dataclasses
import math
import multiprocessing
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

# both backends imported, so EventStore.__subclasses__ finds them
import recsvc.events.redis_store
import recsvc.events.sqlite_store
from recsvc.artifacts import load_current
from recsvc.config import EventsSettings
from recsvc.days import MS_PER_DAY
from recsvc.errors import InvalidRequest
from recsvc.events import validation as v
from recsvc.events.overlay import EventOverlay
from recsvc.events.recording import link_identities, record_events
from recsvc.events.store import EventStore, LiveLink, StoreUnavailable, open_store
from recsvc.ranking import LoadedModel
from recsvc.ranking.profile import customer_profile
from tests.redis_fixture import RedisServer, redis_server
from tests.toy_model import DATA_END_DAY, publish_toy

__all__ = ["redis_server"]

NOW = (DATA_END_DAY + 3) * MS_PER_DAY + 12 * 3_600_000  # noon, three days after the toy model's cut-off


def raw(i: int = 0, **kwargs: object) -> v.RawEvent:
    fields: dict = {"event_id": f"o{i}:1", "customer_id": "C002", "item_id": "B01", "event": "purchase",
                    "channel": "web", "timestamp_ms": NOW - 60_000}
    fields.update(kwargs)
    return v.RawEvent(**fields)


def record(event: v.RawEvent) -> v.EventRecord:
    out = v.validate_event(event, NOW, "web", 300)
    assert isinstance(out, v.EventRecord), out
    return out


# ------------------------------------------------------------------------------------------------ validation

def test_the_trainers_reason_names_are_a_subset_of_the_servers() -> None:
    """The coordinator can point the trainer at recsvc.events.validation: nothing it names is missing here."""
    from recsvc_training.input import columns, identity

    trainer = {value for name, value in vars(columns).items() if name.startswith("REASON_")}
    trainer |= {value for name, value in vars(identity).items()
                if name.startswith("REASON_") and name != "REASON_COLUMN"}
    assert trainer and trainer <= set(v.REASONS)
    assert set(columns.EVENT_TYPES) == set(v.TRAINING_EVENT_TYPES)
    assert set(columns.FEEDBACK_EVENT_TYPES) == set(v.FEEDBACK_EVENT_TYPES)


@pytest.mark.parametrize(("kwargs", "reason"), [
    ({"event_id": "  "}, v.REASON_MISSING_ID),
    ({"customer_id": ""}, v.REASON_MISSING_ID),
    ({"item_id": ""}, v.REASON_MISSING_ID),
    ({"event": "wishlist"}, v.REASON_UNKNOWN_EVENT),
    ({"timestamp_ms": 10**16}, v.REASON_BAD_TIMESTAMP),
    ({"timestamp_ms": NOW + 3_600_000}, v.REASON_FUTURE_TIMESTAMP),
    ({"quantity": math.inf}, v.REASON_BAD_QUANTITY),
    ({"event": "view", "quantity": -1.0}, v.REASON_BAD_QUANTITY),
    ({"price": math.nan}, v.REASON_BAD_PRICE),
    ({"price": -2.0}, v.REASON_BAD_PRICE),
    ({"item_id": "x" * 300}, v.REASON_ID_TOO_LONG),
])
def test_each_bad_event_gets_its_reason(kwargs: dict, reason: str) -> None:
    out = v.validate_event(raw(**kwargs), NOW, "web", 300)
    assert isinstance(out, v.Invalid) and out.reason == reason and out.detail


def test_a_valid_event_is_cleaned_like_the_trainer_cleans_it() -> None:
    e = record(raw(customer_id=" LOY-4 ", event=" Purchase ", channel=" WEB ", quantity=-2.0, price=0.0,
                   timestamp_ms=None))
    assert (e.customer_id, e.event, e.channel, e.quantity) == ("LOY-4", "return", "web", 2.0)
    assert e.timestamp_ms == NOW and math.isnan(e.price)
    assert record(raw(channel="")).channel == "web" and record(raw(quantity=0.0)).quantity == 1.0


# ------------------------------------------------------------------------------------ the store contract

def _backends() -> list[str]:
    found = sorted(cls.backend for cls in EventStore.__subclasses__())
    assert found == ["redis", "sqlite"]
    return found


@pytest.fixture(params=_backends())
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[EventStore]:
    if request.param == "redis":
        server: RedisServer = request.getfixturevalue("redis_server")
        server.flush()
        opened = open_store(EventsSettings(backend="redis", redis_url=server.url, recent_per_customer=3), tmp_path)
    else:
        opened = open_store(EventsSettings(backend="sqlite"), tmp_path)
    assert opened is not None
    yield opened
    opened.close()


def test_append_applies_each_event_id_once(store: EventStore) -> None:
    events = [record(raw(i)) for i in range(5)]
    assert store.append(events[:3]) == [True] * 3
    assert store.append([events[2], events[3], events[3], events[4]]) == [False, True, False, True]
    assert store.count() == 5
    batch = store.read_feed("")
    assert [e.event_id for e in batch.events] == [e.event_id for e in events]
    assert batch.events[0] == events[0]  # a round trip keeps every field (NaN price aside)
    assert store.read_feed(batch.cursor).events == ()
    store.append([record(raw(9))])
    assert [e.event_id for e in store.read_feed(batch.cursor).events] == ["o9:1"]


def test_recent_export_and_purge(store: EventStore) -> None:
    old = record(raw(1, timestamp_ms=NOW - 10 * MS_PER_DAY))
    newer = [record(raw(i, timestamp_ms=NOW - i * 1000)) for i in range(2, 5)]
    store.append([old, *newer])
    assert [e.event_id for e in store.recent("C002", 2)] == ["o4:1", "o3:1"]
    assert store.recent("nobody", 5) == []
    assert [e.event_id for e in store.export(NOW - MS_PER_DAY)] == ["o1:1"]
    assert len(list(store.export(NOW + 1))) == 4


def test_a_link_never_moves_an_alias_to_another_customer(store: EventStore) -> None:
    assert store.link(LiveLink("LOY-9", "N1"))
    assert store.link(LiveLink("LOY-9", "N1"))  # repeating is fine
    assert not store.link(LiveLink("LOY-9", "N2"))
    assert store.read_feed("").links == (LiveLink("LOY-9", "N1"),)


def _append_from_process(path: str, start: int) -> None:
    from recsvc.events.sqlite_store import SqliteEventStore

    s = SqliteEventStore(path)
    for i in range(start, start + 200, 10):
        s.append([record(raw(j)) for j in range(i, i + 10)])


def test_sqlite_is_shared_by_processes_and_dedupes_across_them(tmp_path: Path) -> None:
    """Two processes append overlapping ids at once: each id lands once (dedupe is inside the transaction)."""
    path = str(tmp_path / "events.sqlite")
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_append_from_process, args=(path, start)) for start in (0, 100)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    store = recsvc.events.sqlite_store.SqliteEventStore(path)
    assert store.count() == 300 and len({e.event_id for e in store.export(NOW + 1)}) == 300


def test_redis_down_is_unavailable_and_comes_back(redis_server: RedisServer) -> None:
    store = recsvc.events.redis_store.RedisEventStore(redis_server.url, prefix="outage", timeout_seconds=0.5)
    store.ping()
    redis_server.stop()
    try:
        with pytest.raises(StoreUnavailable, match="not reachable"):
            store.append([record(raw(1))])
        with pytest.raises(StoreUnavailable):
            store.read_feed("")
    finally:
        redis_server.start()
    assert store.append([record(raw(1))]) == [True]


# ------------------------------------------------------------------------------------- overlay and links

@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> LoadedModel:
    root = tmp_path_factory.mktemp("toy")
    publish_toy(root)
    return LoadedModel(load_current(root))


@pytest.fixture
def overlay(tmp_path: Path) -> Iterator[EventOverlay]:
    store = open_store(EventsSettings(), tmp_path)
    assert store is not None
    yield EventOverlay(store)
    store.close()


def _record(overlay: EventOverlay, *events: v.RawEvent) -> None:
    record_events(overlay.store, list(events), now_ms=NOW, default_channel="web", max_future_seconds=300,
                  max_per_call=1000)


def test_the_overlay_resolves_aliases_and_ignores_what_the_model_includes(overlay: EventOverlay,
                                                                        model: LoadedModel) -> None:
    _record(overlay, raw(1, customer_id="APP-4", item_id="D01", channel="web"),
            raw(2, customer_id="C004", item_id="B01", event="view", channel="app", timestamp_ms=NOW - 1000),
            raw(3, customer_id="LOY-4", item_id="H02", event="purchase", channel="store", store_id="S01",
                timestamp_ms=DATA_END_DAY * MS_PER_DAY + 5))  # on the cut-off day: the model has it
    assert overlay.poll_once()
    live = overlay.activity(model, "LOY-4")
    assert live is not None and live.customer_id == "C004" and live.known_customer
    assert [e.event_id for e in live.events] == ["o1:1", "o2:1"]
    assert [e.item_id for e, _ in live.net_purchases()] == ["D01"]
    assert live.item_rows("view").tolist() == [model.items.row("B01")]
    assert overlay.activity(model, "C001") is None


def test_a_return_cancels_and_the_profile_shows_live_purchases(overlay: EventOverlay, model: LoadedModel) -> None:
    _record(overlay, raw(1, customer_id="C002", item_id="B03", channel="store", store_id="S02"),
            raw(2, customer_id="C002", item_id="H01", timestamp_ms=NOW - 30_000),
            raw(3, customer_id="C002", item_id="H01", event="return", timestamp_ms=NOW - 20_000))
    overlay.poll_once()
    live = overlay.activity(model, "C002")
    assert live is not None
    profile = customer_profile(model, "C002", live=live)
    first = profile.recent_purchases[0]
    assert (first.item_id, first.channel, first.store_id, first.title) == ("B03", "store", "S02", "Bagels 4-pack")
    assert "H01" not in {p.item_id for p in profile.recent_purchases}  # bought and returned
    assert "D01" in {p.item_id for p in profile.recent_purchases}  # the model's purchase stays
    assert profile.rfm is None or profile.rfm.days_since_last_purchase == 0


def test_a_new_customer_who_bought_today_has_a_profile(overlay: EventOverlay, model: LoadedModel) -> None:
    _record(overlay, raw(1, customer_id="NEW-1", item_id="D04", channel="app"))
    overlay.poll_once()
    result = link_identities(overlay.store, overlay, model, [("LOY-NEW", "NEW-1")], max_per_call=10)
    assert result.linked == 1 and not result.rejected
    profile = customer_profile(model, "LOY-NEW", live=overlay.activity(model, "LOY-NEW"))
    assert profile.customer_id == "NEW-1" and [p.item_id for p in profile.recent_purchases] == ["D04"]


def test_links_never_join_two_known_customers(overlay: EventOverlay, model: LoadedModel) -> None:
    result = link_identities(overlay.store, overlay, model,
                             [("LOY-1", "C004"), ("CARD-7", "C001"), ("CARD-7", "C002"), ("", "C001"),
                              ("C005", "WEB-5"), ("WEB-5", "C001"), ("LOY-4", "APP-4")], max_per_call=10)
    assert result.linked == 3  # CARD-7 -> C001, C005 <- WEB-5, LOY-4 ~ APP-4 already one customer
    assert [(r.index, r.reason) for r in result.rejected] == [
        (0, "identity_conflict"), (2, "identity_conflict"), (3, "missing_id"), (5, "identity_conflict")]
    assert overlay.resolve(model, "WEB-5")[1] == "C005" and overlay.resolve(model, "CARD-7")[1] == "C001"


def test_call_size_limits_are_invalid_argument(overlay: EventOverlay, model: LoadedModel) -> None:
    with pytest.raises(InvalidRequest, match="1 to 1000"):
        _record(overlay)
    with pytest.raises(InvalidRequest, match="1 to 1000"):
        _record(overlay, *[raw(i) for i in range(1001)])
    with pytest.raises(InvalidRequest, match="1 to 10"):
        link_identities(overlay.store, overlay, model, [], max_per_call=10)


def test_the_overlay_reports_down_and_recovers(redis_server: RedisServer, model: LoadedModel) -> None:
    store = recsvc.events.redis_store.RedisEventStore(redis_server.url, prefix="ov", timeout_seconds=0.5)
    states: list[bool] = []
    overlay = EventOverlay(store, poll_seconds=0.05, on_state=lambda up, error: states.append(up))
    overlay.start()
    try:
        redis_server.stop()
        deadline = time.monotonic() + 5
        while overlay.status().state != "down" and time.monotonic() < deadline:
            time.sleep(0.05)
        assert overlay.status().state == "down" and "not reachable" in overlay.status().error
        redis_server.start()
        store.append([record(raw(1, customer_id="C003"))])
        deadline = time.monotonic() + 5
        while overlay.activity(model, "C003") is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert overlay.status().state == "up" and overlay.activity(model, "C003") is not None
        assert states == [True, False, True]
    finally:
        overlay.stop()
        store.close()


def test_the_events_section_reaches_the_workers() -> None:
    """Workers read no config file: the parent spells [events] out as RECSVC_EVENTS__* (regression: a config
    file's redis_url would otherwise silently fall back to the default in every worker)."""
    from recsvc.config import load_settings
    from recsvc.server.workers import section_environment

    wanted = EventsSettings(backend="redis", redis_url="redis://10.0.0.5:6380/2", poll_seconds=0.5,
                            retention_days=30)
    assert load_settings(env=section_environment("events", wanted)).events == wanted


def test_the_training_section_reaches_the_workers() -> None:
    """Live validation in a worker reads [training] (default_channel, earliest_event_date): the parent spells it
    out too (regression: a config file's default_channel was the default in every worker)."""
    from recsvc.config import TrainingSettings, load_settings
    from recsvc.server.workers import section_environment

    wanted = dataclasses.replace(TrainingSettings(), default_channel="app", earliest_event_date="2001-01-01",
                                 max_future_hours=6.0)
    assert load_settings(env=section_environment("training", wanted)).training == wanted


def test_an_event_before_the_earliest_date_is_refused_as_the_trainer_would_quarantine_it() -> None:
    """Pins the merge of the trainer's ``ancient_timestamp`` (issue 12) into live validation (issue 13)."""
    from recsvc.days import day_of_iso, ms_of_day
    from recsvc.events.validation import REASON_ANCIENT_TIMESTAMP, RawEvent, validate_event

    earliest = ms_of_day(day_of_iso("1990-01-01"))
    old = RawEvent(event_id="o:1", customer_id="C1", item_id="I1", event="purchase", timestamp_ms=earliest - 1)
    outcome = validate_event(old, now_ms=earliest + 10**12, default_channel="web", max_future_seconds=300,
                             earliest_ms=earliest)
    assert getattr(outcome, "reason", None) == REASON_ANCIENT_TIMESTAMP
    fine = validate_event(dataclasses.replace(old, timestamp_ms=earliest), now_ms=earliest + 10**12,
                          default_channel="web", max_future_seconds=300, earliest_ms=earliest)
    assert not hasattr(fine, "reason"), fine
