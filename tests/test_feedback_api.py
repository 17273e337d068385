"""Feedback and experiments through the real API: a simulated campaign with known rates per arm, and arms that
hold across server processes and a restart.

The campaign: 900 customers ask Recommend on the web; each answer's 5 items are shown (impressions sent back
with the recommendation_id), each impression is clicked with the arm's known probability and a click bought
with probability 1/2. The report must recover every arm's rates within its intervals, tell the better arm
apart, and agree with the server's Prometheus counters.
"""

from __future__ import annotations

import json
import os
import random
from collections import Counter
from pathlib import Path

import grpc
import pytest

from recsvc.config import EventsSettings, ExperimentArm, ExperimentsSettings, FeedbackSettings, Settings
from recsvc.server.events import start_events
from recsvc.server.feedback import FeedbackRuntime
from recsvc.v1 import events_pb2, events_pb2_grpc, recsvc_pb2
from recsvc_training.online_report import build_online_report
from tests.conftest import LiveServers, serve_command, settings_for
from tests.toy_model import publish_toy

#: True click probability per impression, per arm; a click is bought with probability PURCHASE_GIVEN_CLICK.
CLICK_RATE = {"control": 0.10, "discovery": 0.20, "holdout": 0.05}
PURCHASE_GIVEN_CLICK = 0.5
ARMS = ExperimentsSettings(name="spring", arms={
    "control": ExperimentArm(share=0.4),
    "discovery": ExperimentArm(share=0.4, weights={"als": 2.0, "popularity": 0.2}, repurchase=False),
    "holdout": ExperimentArm(share=0.2, holdout=True)})


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("artifacts")
    publish_toy(folder)
    return folder


def _sample(registry: object, name: str, **labels: str) -> float:
    """Sum of a metric's samples whose labels include ``labels``."""
    total = 0.0
    for family in registry.collect():  # type: ignore[attr-defined]
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                total += sample.value
    return total


def test_a_simulated_campaign_recovers_each_arms_rates(root: Path, tmp_path: Path, live_server: LiveServers
                                                       ) -> None:
    settings = Settings(server=settings_for(root), experiments=ARMS,
                        events=EventsSettings(sqlite_path=str(tmp_path / "ev.sqlite"), poll_seconds=0.05),
                        feedback=FeedbackSettings(log_flush_seconds=0.05))
    events_runtime = start_events(settings)
    feedback = FeedbackRuntime(settings, events_runtime.store, events_runtime.overlay)
    server = live_server(settings.server, metrics=True, events=events_runtime, feedback=feedback)
    feedback.register_metrics(server.registry())
    recorder = events_pb2_grpc.EventsStub(server.channel)
    rng = random.Random(18)
    sent: Counter[tuple[str, str]] = Counter()
    answers: dict[str, recsvc_pb2.RecommendResponse] = {}
    try:
        batch: list[events_pb2.Event] = []
        for c in range(900):
            customer = f"K{c:04d}"
            answer = server.stub.Recommend(recsvc_pb2.RecommendRequest(customer_id=customer, channel="web",
                                                                       num_items=5), timeout=10)
            assert answer.recommendation_id and answer.recommendation_id not in answers
            answers[answer.recommendation_id] = answer
            arm, rid = answer.experiment_arm, answer.recommendation_id
            assert arm in CLICK_RATE
            if arm == "holdout":
                assert answer.policy == "popular"
            for position, item in enumerate(answer.items, start=1):
                batch.append(events_pb2.Event(event_id=f"{rid}:i{position}", customer_id=customer,
                                              item_id=item.item_id, event="impression", recommendation_id=rid,
                                              position=position))
                sent[(arm, "impression")] += 1
                if rng.random() < CLICK_RATE[arm]:
                    batch.append(events_pb2.Event(event_id=f"{rid}:c{position}", customer_id=customer,
                                                  item_id=item.item_id, event="click", recommendation_id=rid))
                    sent[(arm, "click")] += 1
                    if rng.random() < PURCHASE_GIVEN_CLICK:
                        batch.append(events_pb2.Event(event_id=f"{rid}:p{position}", customer_id=customer,
                                                      item_id=item.item_id, event="purchase", price=2.5,
                                                      recommendation_id=rid))
                        sent[(arm, "purchase")] += 1
            if len(batch) > 900:
                assert recorder.RecordEvents(events_pb2.RecordEventsRequest(events=batch), timeout=10).accepted == len(
                    batch)
                batch = []
        first, second = list(answers.values())[:2]
        batch += [
            # bought without the id, an item suggested to the same customer minutes ago: credited by window
            events_pb2.Event(event_id="window:1", customer_id="K0000", item_id=first.items[0].item_id,
                             event="purchase", price=4.0),
            # the second customer's purchase carrying the first customer's id: not credited
            events_pb2.Event(event_id="foreign:1", customer_id="K0001", item_id=first.items[1].item_id,
                             event="purchase", price=4.0, recommendation_id=first.recommendation_id)]
        assert recorder.RecordEvents(events_pb2.RecordEventsRequest(events=batch), timeout=10).accepted == len(batch)
        assert second.experiment_arm
        assert feedback.log is not None
        feedback.log.flush()
        assert events_runtime.store is not None
        report = build_online_report(events_runtime.store, "2020-01-01", tmp_path / "report")
    finally:
        feedback.close()
        events_runtime.close()

    served_arms = Counter(a.experiment_arm for a in answers.values())
    for arm, p in CLICK_RATE.items():
        counts = report.arm(arm)
        assert counts.answers == served_arms[arm]
        assert counts.impressions == sent[(arm, "impression")] and counts.clicks == sent[(arm, "click")]
        assert counts.purchases - counts.purchases_by_window == sent[(arm, "purchase")]
        for counter, truth in (("clicks", p), ("purchases", p * PURCHASE_GIVEN_CLICK)):
            low, high = counts.rate(counter).interval()
            assert low <= truth <= high, (arm, counter, counts.rate(counter), truth)
        # what the server counted by id is what the report credits by id
        assert _sample(server.registry(), "recsvc_online_events_total", event="click", arm=arm) == counts.clicks
        assert _sample(server.registry(), "recsvc_online_events_total", event="impression",
                       arm=arm) == counts.impressions
        assert _sample(server.registry(), "recsvc_online_events_total", event="purchase",
                       arm=arm) == counts.purchases - counts.purchases_by_window
        assert _sample(server.registry(), "recsvc_recommendations_served_total", arm=arm) == counts.answers
        assert _sample(server.registry(), "recsvc_online_revenue_total", arm=arm) == pytest.approx(
            2.5 * sent[(arm, "purchase")])
    assert sum(report.arm(a).purchases_by_window for a in CLICK_RATE) == 1
    assert report.not_attributed == {"foreign": 1}
    assert _sample(server.registry(), "recsvc_online_not_attributed_total", reason="foreign") == 1
    ctr = {c.b: c for c in report.comparisons if c.metric == "ctr"}
    assert ctr["discovery"].significant and ctr["discovery"].difference > 0  # 20 % vs 10 %: settled
    markdown = report.files["markdown"].read_text()
    assert "## By experiment arm" in markdown and "discovery" in markdown and "## Daily trend per arm" in markdown
    assert report.files["chart_trend"].stat().st_size > 1000
    assert json.loads(report.files["json"].read_text())["not_attributed"] == {"foreign": 1}


def _arms_of(target: str, customers: list[str]) -> list[str]:
    with grpc.insecure_channel(target) as channel:
        from recsvc.v1 import recsvc_pb2_grpc

        stub = recsvc_pb2_grpc.RecommenderStub(channel)
        return [stub.Recommend(recsvc_pb2.RecommendRequest(customer_id=c, channel="app"), timeout=10).experiment_arm
                for c in customers]


def test_a_customer_keeps_the_arm_across_processes_aliases_and_a_restart(root: Path, tmp_path: Path,
                                                                         live_server: LiveServers) -> None:
    env = dict(os.environ, RECSVC_EVENTS__SQLITE_PATH=str(tmp_path / "ev.sqlite"),
               RECSVC_EXPERIMENTS__NAME="spring", RECSVC_SERVER__RELOAD_POLL_SECONDS="0",
               RECSVC_EXPERIMENTS__ARMS=json.dumps({"a": {"share": 0.5}, "b": {"share": 0.5, "ranker": "blend"}}))
    command = serve_command("--artifacts", str(root), "--host", "127.0.0.1", "--port", "0")
    customers = [f"C{i:03d}" for i in range(1, 6)] + [f"N{i}" for i in range(40)]
    one, two = live_server.process(command, env), live_server.process(command, env)
    first = _arms_of(one.target, customers)
    assert set(first) == {"a", "b"}  # both arms in use
    assert _arms_of(two.target, customers) == first
    assert _arms_of(one.target, ["LOY-4", "APP-4"]) == [first[3]] * 2  # C004's aliases: C004's arm
    one.kill()
    again = live_server.process(command, env)
    assert _arms_of(again.target, customers) == first


def test_the_report_command_reads_the_configured_store(root: Path, tmp_path: Path,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    import time

    from recsvc.cli import main
    from recsvc.events.sqlite_store import SqliteEventStore
    from recsvc.events.validation import EventRecord
    from recsvc.feedback.served import RECOMMEND, ServedRecommendation

    now = int(time.time() * 1000)
    store = SqliteEventStore(tmp_path / "ev.sqlite")
    store.log_served([ServedRecommendation("r1", now, RECOMMEND, "toy-1", "blend", "control", "app", "", "C004",
                                           ("H02", "H01"))])
    store.append([EventRecord("i1", "LOY-4", "H02", "impression", "app", "", "", 1.0, float("nan"), now, now, "r1",
                              1),
                  EventRecord("p1", "LOY-4", "H02", "purchase", "app", "", "o1", 2.0, 3.0, now, now)])
    store.close()
    config = tmp_path / "recsvc.toml"
    config.write_text(f'[events]\nsqlite_path = "{tmp_path / "ev.sqlite"}"\n')
    day = time.strftime("%Y-%m-%d", time.gmtime(now / 1000))
    assert main(["--config", str(config), "report", "online", "--since", day, "--artifacts", str(root),
                 "--out", str(tmp_path / "out"), "--no-charts"]) == 0
    markdown = (tmp_path / "out" / "online.md").read_text()
    assert str(tmp_path / "out" / "online.md") in capsys.readouterr().out
    # LOY-4 is C004's loyalty card (the model's alias): the purchase without an id counts by window
    assert ("| control | 1 | 1 | 0.00 % (0.00 %–79.35 %) | 0.00 % (0.00 %–79.35 %) | 100.00 % (20.65 %–100.00 %) "
            "| 1 | 1 | 6.00 |") in markdown
    assert main(["--config", str(config), "report", "online", "--since", "yesterday", "--artifacts",
                 str(root)]) == 1


def test_an_arm_pinned_to_the_previous_model_is_served_by_it_beside_the_current_one(
        tmp_path: Path, live_server: LiveServers) -> None:
    """The new model against the old: one arm names an older published version, which the server loads beside
    the serving one; its customers get that version's answers (model_version says so), the others the current
    one's, and a purchase on the web changes the pinned arm's answer too (its own live rows)."""
    from recsvc.artifacts import publish_artifacts
    from tests.toy_model import build_toy_artifacts

    root = tmp_path / "artifacts"
    old = build_toy_artifacts()
    old.version = "toy-0"
    publish_artifacts(old, root)
    publish_toy(root)  # toy-1, now CURRENT
    arms = ExperimentsSettings(name="new-vs-old", arms={"new": ExperimentArm(share=0.5),
                                                        "old": ExperimentArm(share=0.5, model_version="toy-0")})
    settings = Settings(server=settings_for(root), experiments=arms,
                        events=EventsSettings(sqlite_path=str(tmp_path / "ev.sqlite"), poll_seconds=0.05))
    events_runtime = start_events(settings)
    feedback = FeedbackRuntime(settings, events_runtime.store, events_runtime.overlay)
    server = live_server(settings.server, events=events_runtime, feedback=feedback)
    versions: dict[str, set[str]] = {"new": set(), "old": set()}
    for customer in ("C001", "C002", "C003", "C004", "C005", *(f"K{c:03d}" for c in range(60))):
        answer = server.stub.Recommend(recsvc_pb2.RecommendRequest(customer_id=customer, channel="web"), timeout=10)
        versions[answer.experiment_arm].add(answer.model_version)
    assert versions == {"new": {"toy-1"}, "old": {"toy-0"}}

    assigned = {c: feedback.experiment.assign(c) for c in ("C001", "C002", "C003", "C004", "C005")}
    old_arm = next(c for c, arm in assigned.items() if arm is not None and arm.name == "old")
    before = server.stub.Recommend(recsvc_pb2.RecommendRequest(customer_id=old_arm, channel="web"), timeout=10)
    bought = before.items[0].item_id
    recorder = events_pb2_grpc.EventsStub(server.channel)
    recorder.RecordEvents(events_pb2.RecordEventsRequest(events=[events_pb2.Event(
        event_id="pin:1", customer_id=old_arm, item_id=bought, event="purchase", channel="web")]), timeout=10)
    assert events_runtime.overlay is not None
    events_runtime.overlay.poll_once()
    after = server.stub.Recommend(recsvc_pb2.RecommendRequest(customer_id=old_arm, channel="web"), timeout=10)
    assert after.model_version == "toy-0" and after.experiment_arm == "old"
    assert bought not in [s.item_id for s in after.items]  # just bought: hidden on the pinned model as well
