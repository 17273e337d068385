"""Admission at the door (issue 15, part 2): 10x the cap, probes never refused, refusals never queued.

Behaviour, not wall-clock targets (the machine is shared): the admitted calls block in the engine until the
test releases them, so "refused at the door" is observable as refusals that come back while every ranking
thread is still busy, and as refusals answered on the serving thread (none reached a refusal thread). The one
timing test compares refusals with health checks sent between them in the same test, while the ranking
threads burn the GIL. The latency numbers against the echo server are ``python -m benchmarks.admission``.
"""

from __future__ import annotations

import statistics
import threading
import time
from pathlib import Path
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2

from recsvc.artifacts import ArtifactSet
from recsvc.ranking import RecommendationEngine, RecommendQuery, RecommendResult
from recsvc.server.admission import REFUSALS_ENV, inline_refusals_supported
from recsvc.server.versions import build_engine
from recsvc.v1 import admin_pb2, recsvc_pb2
from tests.conftest import LiveServers, settings_for, wait_for
from tests.test_ops import SlowFactory, _slow_request
from tests.toy_model import VERSION, publish_toy

CAP = 2


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("artifacts")
    publish_toy(root)
    return root


@pytest.mark.parametrize("refusals", ["door", "pool"])
def test_ten_times_the_cap_is_refused_at_the_door_and_probes_never_are(root: Path, live_server: LiveServers,
                                                                        refusals: str,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """Regression, issue 15: the cap was checked only when a pool thread picked a call up, so the excess
    waited behind the ranking calls (refused as late as admitted calls finished), and grpc's own limit
    (``max_workers + max_queued_rpcs``, which the server set) refused health and Admin probes.

    Every ranking thread busy with an admitted call that will not finish until released: the other 18 of
    10x the cap come back RESOURCE_EXHAUSTED before the release, and 20 health and Admin probes sent then
    all answer OK; after the release the admitted calls complete OK. ``door``: every refusal is answered on
    the serving thread; ``pool`` (``RECSVC_ADMISSION_REFUSALS=pool``, the fallback): on a refusal thread.
    Either way each refusal is counted once in the request counter."""
    if refusals == "pool":
        monkeypatch.setenv(REFUSALS_ENV, "pool")
    # max_queued_rpcs below the load, so the limit the server used to give grpc is exceeded here
    settings = settings_for(root, max_workers=CAP, max_concurrent_rpcs=CAP, max_queued_rpcs=4)
    factory = SlowFactory(settings)
    server = live_server(settings, engine_factory=factory, metrics=True)
    engine = factory.engines[0]
    try:
        admitted = [server.stub.Recommend.future(_slow_request(), timeout=30) for _ in range(CAP)]
        wait_for(lambda: engine.customers.count("SLOW") == CAP, what="both ranking threads busy")
        excess = [server.stub.Recommend.future(recsvc_pb2.RecommendRequest(customer_id="LOY-1", channel="web"),
                                               timeout=30) for _ in range(10 * CAP - CAP)]
        probes = [server.health.Check.future(health_pb2.HealthCheckRequest(), timeout=30) for _ in range(10)]
        probes += [server.admin.GetStatus.future(admin_pb2.GetStatusRequest(), timeout=30) for _ in range(10)]
        # the engine holds the admitted calls for up to 10 s: anything waiting behind them would time out here
        codes = [call.exception(timeout=5) for call in excess]
        assert all(isinstance(c, grpc.RpcError) and c.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
                   for c in codes), codes
        assert [p.exception(timeout=5) for p in probes] == [None] * len(probes)
        assert all(not call.done() for call in admitted)  # refusals came back while ranking still ran
        statuses = [p.result() for p in probes[10:]]
        assert {(s.in_flight_rpcs, s.max_concurrent_rpcs) for s in statuses} == {(CAP, CAP)}
        # door: answered on the serving thread without reading the request, no refusal thread ever started
        assert inline_refusals_supported(), "this grpc no longer allows answering a refusal at the door"
        door = server.admission.overloaded
        expected = (10 * CAP - CAP, 0) if refusals == "door" else (0, 10 * CAP - CAP)
        assert (door.answered, door.pooled) == expected
        # and still counted, though no interceptor's wrapper ran for them
        assert server.metrics is not None
        assert server.metrics.registry.get_sample_value(
            "recsvc_requests_total", {"rpc": "Recommend", "code": "RESOURCE_EXHAUSTED"}) == 10 * CAP - CAP
    finally:
        engine.release.set()
    assert [call.result(timeout=15).model_version for call in admitted] == [VERSION] * CAP
    assert "LOY-1" not in engine.customers  # no refused call reached the engine


BUSY = "BUSY"


class BusyEngine(RecommendationEngine):
    """Ranks customer ``BUSY`` by burning Python bytecode until ``release`` is set (at most 20 s), so the
    ranking threads compete for the GIL as real ranking does; ``busy`` counts the threads burning."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.release = threading.Event()
        self.busy = 0

    def recommend(self, query: RecommendQuery) -> RecommendResult:
        if query.customer_id == BUSY:
            self.busy += 1
            deadline = time.monotonic() + 20
            while not self.release.is_set() and time.monotonic() < deadline:
                sum(i * i for i in range(2_000))
        return super().recommend(query)


def test_a_refusal_costs_no_more_than_a_bare_call_while_ranking_burns_the_gil(root: Path,
                                                                             live_server: LiveServers) -> None:
    """Issue 15, part 2: "a refusal should cost what a bare call costs". The cap's ranking threads burn the
    GIL; refused Recommend calls alternate with health checks (a bare call: a tiny handler on a pool thread,
    as the echo server's). A refusal answered on a refusal thread needs as many turns at the GIL as the
    health check and more work; answered at the door it needs fewer. Compared within the test, medians over
    40 pairs: refused median <= health median (answered at the door it is a fraction of it; on a refusal
    thread it was above it)."""
    settings = settings_for(root, max_workers=CAP, max_concurrent_rpcs=CAP)
    engines: list[BusyEngine] = []

    def factory(artifacts: ArtifactSet) -> RecommendationEngine:
        engine = BusyEngine(build_engine(artifacts, settings).model, settings)
        engines.append(engine)
        return engine

    server = live_server(settings, engine_factory=factory)
    engine = engines[0]
    refused: list[float] = []
    bare: list[float] = []
    try:
        admitted = [server.stub.Recommend.future(recsvc_pb2.RecommendRequest(customer_id=BUSY, channel="web"),
                                                 timeout=30) for _ in range(CAP)]
        wait_for(lambda: engine.busy == CAP, what="both ranking threads burning")
        request = recsvc_pb2.RecommendRequest(customer_id="LOY-1", channel="web")
        for _ in range(40):
            start = time.perf_counter()
            with pytest.raises(grpc.RpcError) as info:
                server.stub.Recommend(request, timeout=10)
            refused.append(time.perf_counter() - start)
            assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            start = time.perf_counter()
            server.health.Check(health_pb2.HealthCheckRequest(), timeout=10)
            bare.append(time.perf_counter() - start)
        assert all(not call.done() for call in admitted)
    finally:
        engine.release.set()
    assert [call.result(timeout=15).model_version for call in admitted] == [VERSION] * CAP
    assert statistics.median(refused) <= statistics.median(bare), (
        f"refused median {statistics.median(refused) * 1e3:.2f} ms, "
        f"health median {statistics.median(bare) * 1e3:.2f} ms")
