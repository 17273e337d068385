"""Feedback without gRPC: the served log in every event store, attribution rules, arms, statistics, overload.

The Redis backend runs against a real redis-server (tests/redis_fixture.py); the SQLite one on a temp file.
"""

from __future__ import annotations

import math
import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

# both backends imported, so EventStore.__subclasses__ finds them
import recsvc.events.redis_store
import recsvc.events.sqlite_store
from recsvc.config import ConfigError, EventsSettings, ExperimentArm, ExperimentsSettings
from recsvc.days import MS_PER_DAY
from recsvc.events.store import EventStore, StoreUnavailable, open_store
from recsvc.events.validation import EventRecord, RawEvent, validate_event
from recsvc.feedback.attribution import BY_ID, BY_WINDOW, FOREIGN, NOT_SUGGESTED, UNMATCHED, attribute
from recsvc.feedback.experiments import Experiment, bucket
from recsvc.feedback.ids import RecommendationIds
from recsvc.feedback.log import ServedLog
from recsvc.feedback.metrics import Rate, compare, online_metrics, wilson
from recsvc.feedback.served import RECOMMEND, ServedRecommendation
from tests.redis_fixture import RedisServer, redis_server

__all__ = ["redis_server"]

T0 = 1_780_000_000_000  # a fixed instant (2026-05-28), ms since 1970


def answer(rid: str, customer: str, items: Sequence[str], at: int = T0, arm: str = "control",
           policy: str = "blend") -> ServedRecommendation:
    return ServedRecommendation(rid, at, RECOMMEND, "v1", policy, arm, "web", "", customer, tuple(items))


def event(i: int, customer: str, item: str, kind: str, at: int = T0 + 60_000, rid: str = "", price: float = 0.0,
          quantity: float = 1.0) -> EventRecord:
    return EventRecord(f"e{i}", customer, item, kind, "web", "", "", quantity, price if price else math.nan, at,
                       at, rid)


def same(customer: str) -> str:
    return {"LOY-1": "C1"}.get(customer, customer)


# ---------------------------------------------------------------------------------------- the store contract

@pytest.fixture(params=sorted(cls.backend for cls in EventStore.__subclasses__()))
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[EventStore]:
    if request.param == "redis":
        server: RedisServer = request.getfixturevalue("redis_server")
        server.flush()
        opened = open_store(EventsSettings(backend="redis", redis_url=server.url), tmp_path)
    else:
        opened = open_store(EventsSettings(backend="sqlite"), tmp_path)
    assert opened is not None
    yield opened
    opened.close()


def test_the_served_log_round_trips_by_time_and_by_id(store: EventStore) -> None:
    now = int(time.time() * 1000)
    old, new = answer("r-old", "C1", ["A", "B"], at=now - 5_000), answer("r-new", "", ["B"], at=now)
    store.log_served([old, new, new])  # a repeated id is kept once
    assert list(store.served(now - 10_000)) == [old, new]
    assert list(store.served(now - 1_000)) == [new]
    assert store.served_by_id(["r-new", "nobody", "r-old"]) == {"r-new": new, "r-old": old}
    assert store.served_by_id([]) == {}


def test_feedback_fields_of_an_event_round_trip(store: EventStore) -> None:
    raw = RawEvent(event_id="i1", customer_id="C1", item_id="A", event=" Impression ", recommendation_id=" r-1 ",
                   position=3, timestamp_ms=T0)
    record = validate_event(raw, T0, "web", 300)
    assert isinstance(record, EventRecord)
    assert (record.event, record.recommendation_id, record.position) == ("impression", "r-1", 3)
    store.append([record])
    assert store.read_feed("").events == (record,)


def test_an_events_file_of_the_first_release_gets_the_feedback_columns(tmp_path: Path) -> None:
    path = tmp_path / "old.sqlite"
    with sqlite3.connect(path) as db:
        db.executescript("""CREATE TABLE events (seq INTEGER PRIMARY KEY AUTOINCREMENT, event_id TEXT NOT NULL UNIQUE,
            customer_id TEXT NOT NULL, item_id TEXT NOT NULL, event TEXT NOT NULL, channel TEXT NOT NULL,
            store_id TEXT NOT NULL, order_id TEXT NOT NULL, quantity REAL NOT NULL, price REAL,
            timestamp_ms INTEGER NOT NULL, recorded_ms INTEGER NOT NULL);
            INSERT INTO events VALUES (1, 'o1', 'C1', 'A', 'purchase', 'web', '', '', 1.0, NULL, 5, 6);""")
    store = recsvc.events.sqlite_store.SqliteEventStore(path)
    try:
        (kept,) = store.read_feed("").events
        assert (kept.event_id, kept.recommendation_id, kept.position) == ("o1", "", 0)
        store.append([event(2, "C1", "A", "click", rid="r1")])
        assert store.read_feed("").events[-1].recommendation_id == "r1"
    finally:
        store.close()


# ------------------------------------------------------------------------------------------------ attribution

def test_events_with_an_id_count_for_their_answer_only_from_the_same_customer() -> None:
    served = [answer("r1", "C1", ["A", "B"]), answer("r-anon", "", ["A"])]
    events = [event(1, "C1", "A", "impression", rid="r1"), event(2, "LOY-1", "B", "click", rid="r1"),
              event(3, "C2", "A", "purchase", rid="r1", price=9.0),  # another customer's answer: not credited
              event(4, "C1", "Z", "purchase", rid="r1"),  # an item the answer did not suggest
              event(5, "C1", "A", "click", rid="r-gone"),  # an id the log does not hold
              event(6, "C9", "A", "click", rid="r-anon"),  # an anonymous answer accepts anyone
              event(7, "C1", "A", "view", rid="r1")]  # views are not attributed
    result = attribute(served, events, same, window_days=7)
    assert [(a.event.event_id, a.served.recommendation_id, a.how) for a in result.attributed] == [
        ("e1", "r1", BY_ID), ("e2", "r1", BY_ID), ("e6", "r-anon", BY_ID)]
    assert result.not_attributed == {FOREIGN: 1, NOT_SUGGESTED: 1, UNMATCHED: 1}


def test_a_purchase_without_an_id_counts_within_the_window_for_the_latest_answer() -> None:
    first, second = answer("r1", "C1", ["A", "B"], at=T0), answer("r2", "C1", ["A"], at=T0 + MS_PER_DAY)
    day = MS_PER_DAY
    events = [event(1, "LOY-1", "A", "purchase", at=T0 + 3 * day, price=2.0, quantity=3),  # -> r2 (latest)
              event(2, "C1", "B", "purchase", at=T0 + 7 * day - 1),  # -> r1, just inside 7 days
              event(3, "C1", "B", "purchase", at=T0 + 7 * day + 1),  # just outside
              event(4, "C1", "A", "purchase", at=T0 - 1),  # before any answer
              event(5, "C2", "A", "purchase", at=T0 + day),  # another customer
              event(6, "C1", "A", "cart", at=T0 + day)]  # a cart without an id is not attributed
    result = attribute([second, first], events, same, window_days=7)
    assert [(a.event.event_id, a.served.recommendation_id, a.how) for a in result.attributed] == [
        ("e1", "r2", BY_WINDOW), ("e2", "r1", BY_WINDOW)]
    assert result.attributed[0].revenue == 6.0
    assert attribute([first], [events[2]], same, window_days=8).attributed  # a longer window takes it


def test_lookup_finds_answers_older_than_the_period() -> None:
    old = answer("r-old", "C1", ["A"], at=T0 - 30 * MS_PER_DAY)
    result = attribute([], [event(1, "C1", "A", "click", rid="r-old")], same, 7, lookup=lambda ids: {"r-old": old})
    assert [a.served for a in result.attributed] == [old]


def test_metrics_group_answers_and_credited_events_by_dimension_and_day() -> None:
    served = [answer("r1", "C1", ["A"], arm="a"), answer("r2", "C2", ["A"], arm="b"),
              answer("r3", "C3", ["A"], arm="b", at=T0 + MS_PER_DAY)]
    events = [event(1, "C1", "A", "impression", rid="r1"), event(2, "C2", "A", "impression", rid="r2"),
              event(3, "C2", "A", "click", rid="r2"), event(4, "C2", "A", "purchase", rid="r2", price=5.0)]
    metrics = online_metrics(served, attribute(served, events, same, 7).attributed, ["arm"])
    b = metrics.groups[("b",)]
    assert (b.answers, b.impressions, b.clicks, b.purchases, b.revenue) == (2, 1, 1, 1, 5.0)
    assert b.rate("clicks").value == 1.0 and math.isnan(metrics.groups[("a",)].rate("clicks").value) is False
    assert sorted(day - T0 // MS_PER_DAY for day, _ in metrics.daily) == [0, 0, 1]
    with pytest.raises(ValueError, match="unknown dimension"):
        online_metrics(served, (), ["colour"])


# ---------------------------------------------------------------------------------------------- statistics

def test_wilson_interval_known_values() -> None:
    low, high = wilson(10, 100)
    assert (round(low, 4), round(high, 4)) == (0.0552, 0.1744)  # the textbook 95 % Wilson interval of 10/100
    assert wilson(0, 50)[0] == 0.0 and wilson(50, 50)[1] == 1.0
    assert all(math.isnan(v) for v in wilson(0, 0))


def test_a_comparison_says_when_it_is_settled_and_how_many_impressions_would_settle_it() -> None:
    settled = compare("ctr", "control", Rate(100, 1000), "new", Rate(200, 1000))
    assert settled.significant and settled.low > 0 and settled.more_impressions == 0
    assert "significant" in settled.verdict()
    open_question = compare("ctr", "control", Rate(10, 100), "new", Rate(12, 100))
    assert not open_question.significant
    # 10 % vs 12 %: about 3,840 impressions per arm for 80 % power at 95 % (the usual two-proportion formula)
    assert 3_700 < open_question.needed_per_arm < 4_000
    assert open_question.more_impressions == 2 * (open_question.needed_per_arm - 100)
    assert "not yet significant" in open_question.verdict()
    assert compare("ctr", "a", Rate(0, 0), "b", Rate(1, 10)).verdict() == "no impressions yet"


# -------------------------------------------------------------------------------------------- experiments

def arms(**shares: float) -> ExperimentsSettings:
    return ExperimentsSettings(name="exp", arms={name: ExperimentArm(share=s) for name, s in shares.items()})


def test_assignment_is_a_stable_hash_with_the_configured_shares() -> None:
    experiment = Experiment(arms(control=0.5, new=0.3))
    assert bucket("exp", "C1") == bucket("exp", "C1") != bucket("other", "C1")
    # pinned: the same point on every machine and Python version (BLAKE2b, not the salted hash())
    assert round(bucket("exp", "C1"), 6) == round(int.from_bytes(
        __import__("hashlib").blake2b(b"exp\x00C1", digest_size=8).digest(), "big") / 2**64, 6)
    names = [getattr(experiment.assign(f"C{i}"), "name", "") for i in range(20_000)]
    assert abs(names.count("control") / 20_000 - 0.5) < 0.015
    assert abs(names.count("new") / 20_000 - 0.3) < 0.015
    assert abs(names.count("") / 20_000 - 0.2) < 0.015  # outside the experiment
    assert experiment.assign("") is None
    # a config file's order is not the order the workers see: the slices follow the names
    reordered = Experiment(ExperimentsSettings(name="exp", arms=dict(reversed(list(arms(control=0.5,
                                                                                         new=0.3).arms.items())))))
    assert all(reordered.assign(f"C{i}") == experiment.assign(f"C{i}") for i in range(200))


@pytest.mark.parametrize(("settings", "message"), [
    (arms(a=0.7, b=0.4), "sum to 1.1"),
    (arms(a=1.5), r"share: expected 0..1"),
    (ExperimentsSettings(arms={"a": ExperimentArm(share=0.5, ranker="gbdt")}), "ranker"),
    (ExperimentsSettings(arms={"h": ExperimentArm(share=0.5, holdout=True, ranker="blend")}), "holdout"),
])
def test_bad_experiments_are_config_errors(settings: ExperimentsSettings, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        Experiment(settings)


def test_ids_are_unique_across_threads_and_instances() -> None:
    ids, other = RecommendationIds(), RecommendationIds()
    seen: list[str] = []

    def draw() -> None:
        seen.extend(ids.new() for _ in range(5_000))

    threads = [threading.Thread(target=draw) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(set(seen)) == 20_000
    assert other.new() not in set(seen)


# ------------------------------------------------------------------------------------------------ overload

class _StalledStore(recsvc.events.sqlite_store.SqliteEventStore):
    """Writes of the served log wait for ``release`` (a slow disk), or fail while ``down`` is set."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.release = threading.Event()
        self.down = False

    def log_served(self, served: Sequence[ServedRecommendation]) -> None:
        if self.down:
            raise StoreUnavailable("down for the test")
        self.release.wait(10)
        super().log_served(served)


def test_a_full_queue_drops_and_counts_and_never_blocks(tmp_path: Path) -> None:
    store = _StalledStore(tmp_path / "e.sqlite")
    log = ServedLog(store, max_queued=100, flush_seconds=0.01)
    try:
        log.put(answer("r-first", "C1", ["A"]))
        time.sleep(0.1)  # the writer took the first one and is stuck on the "disk"
        started = time.perf_counter()
        accepted = [log.put(answer(f"r{i}", "C1", ["A"])) for i in range(1_000)]
        assert time.perf_counter() - started < 0.5  # never waits for the store
        assert accepted.count(True) == 100 and log.status().dropped_full == 900
        store.release.set()
        log.flush()
        assert log.status().written == 101 and len(list(store.served(0))) == 101
        store.down = True
        log.put(answer("r-lost", "C1", ["A"]))
        log.flush()
        assert log.status().dropped_store == 1
        store.down = False
        log.put(answer("r-back", "C1", ["A"]))
        log.flush()
        assert "r-back" in store.served_by_id(["r-back"])
    finally:
        store.release.set()
        log.close()
        store.close()


# ------------------------------------------------------------------------------------------------ the trainer

def test_the_trainer_accepts_feedback_rows_and_learns_nothing_from_them(tmp_path: Path) -> None:
    from tests.test_ingest import EVENT_ROWS, load, make_folder

    rows = [EVENT_ROWS[0],
            ["2024-01-01T10:01:00Z", "007", "0002", "Impression", "web", "", "", "1", ""],
            ["2024-01-01T10:02:00Z", "007", "0002", "click", "web", "", "", "1", ""],
            ["2024-01-01T10:03:00Z", "007", "0002", "message_sent", "app", "", "", "1", ""]]
    data = load(make_folder(tmp_path / "data", events=rows))
    assert data.report.quarantined["events"] == {}  # valid rows, not quarantined as unknown_event ...
    assert data.report.feedback_events == 3 and data.report.rows_kept["events"] == 4
    assert data.events["event"].tolist() == ["purchase"]  # ... and no model sees them (no weak negatives)


def test_the_live_import_leaves_feedback_in_the_store(tmp_path: Path) -> None:
    from recsvc_training.input.live_events import import_live_events
    from tests.test_ingest import EVENT_ROWS, make_folder

    folder = make_folder(tmp_path / "data", events=[EVENT_ROWS[0]])
    store = recsvc.events.sqlite_store.SqliteEventStore(tmp_path / "ev.sqlite")
    try:
        store.append([event(1, "C1", "A", "purchase", rid="r1"), event(2, "C1", "A", "impression", rid="r1"),
                      event(3, "C1", "A", "click", rid="r1")])
        result = import_live_events(folder, store, retention_days=10_000, now_ms=T0 + 2 * MS_PER_DAY)
        assert (result.read, result.added) == (1, 1)
        assert store.count() == 3  # the report still reads the impressions and clicks
    finally:
        store.close()


# ------------------------------------------------------------------------------------------- arm engines

def test_each_arm_is_served_by_its_own_engine_and_variants_follow_the_model(tmp_path: Path) -> None:
    from recsvc.artifacts import load_current
    from recsvc.config import ServerSettings
    from recsvc.feedback.experiments import ArmEngines, recommend_in_arm
    from recsvc.ranking import LoadedModel, RecommendationEngine, RecommendQuery
    from tests.toy_model import publish_toy

    publish_toy(tmp_path / "a")
    base = RecommendationEngine(LoadedModel(load_current(tmp_path / "a")), ServerSettings())
    experiment = Experiment(ExperimentsSettings(name="t", arms={
        "control": ExperimentArm(share=0.3), "fresh": ExperimentArm(share=0.3, repurchase=False),
        "blend": ExperimentArm(share=0.2, ranker="blend"), "holdout": ExperimentArm(share=0.2, holdout=True)}))
    engines = ArmEngines(ServerSettings())
    query = RecommendQuery(customer_id="LOY-4", channel="app")  # C004, who bought dish soap H01 in the app

    def served(arm: str) -> tuple[str, list[str], str]:
        result = recommend_in_arm(engines, base, experiment.arm(arm), query)
        return result.policy, [s.item_id for s in result.items], result.resolved_customer_id

    control, fresh, holdout = served("control"), served("fresh"), served("holdout")
    assert "H01" in control[1] and "H01" not in fresh[1]  # the arm's policy: nothing bought before
    assert fresh[0] == "fresh"  # a policy arm is reported under its name
    assert holdout[0] == "popular" and holdout[2] == "C004"  # popular only, the customer still named
    assert engines.engine(base, experiment.arm("control")) is base
    variant = engines.engine(base, experiment.arm("fresh"))
    assert engines.engine(base, experiment.arm("fresh")) is variant  # built once per model
    other = RecommendationEngine(base.model, ServerSettings())
    assert engines.engine(other, experiment.arm("fresh")) is not variant  # a new serving engine: new variants
    assert engines.engine(other, experiment.arm("blend")) is not other


def test_a_pinned_version_that_cannot_be_loaded_is_tried_once_and_its_arm_served_by_the_serving_model(
        tmp_path: Path) -> None:
    from recsvc.artifacts import load_current
    from recsvc.config import ServerSettings
    from recsvc.feedback.experiments import ArmEngines
    from recsvc.ranking import LoadedModel, RecommendationEngine
    from tests.toy_model import publish_toy

    publish_toy(tmp_path / "a")
    base = RecommendationEngine(LoadedModel(load_current(tmp_path / "a")), ServerSettings())
    tried: list[str] = []

    def loader(version: str) -> RecommendationEngine:
        tried.append(version)
        raise OSError(f"no version {version}")

    engines = ArmEngines(ServerSettings(), loader=loader)
    arm = Experiment(ExperimentsSettings(arms={"old": ExperimentArm(share=1.0, model_version="gone")})).arm("old")
    assert engines.engine(base, arm) is base and engines.engine(base, arm) is base
    assert tried == ["gone"]
    serving = Experiment(ExperimentsSettings(arms={"same": ExperimentArm(share=1.0,
                                                                         model_version=base.model_version)}))
    assert engines.engine(base, serving.arm("same")) is base and tried == ["gone"]  # the serving version itself
