"""Admission at the door (issue 15, part 2): 10x the cap, probes never refused, refusals never queued.

Behaviour, not wall-clock targets (the machine is shared): the admitted calls block in the engine until the
test releases them, so "refused at the door" is observable as refusals that come back while every ranking
thread is still busy. The latency numbers against the echo server are ``python -m benchmarks.admission``.
"""

from __future__ import annotations

from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2

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


def test_ten_times_the_cap_is_refused_at_the_door_and_probes_never_are(root: Path,
                                                                        live_server: LiveServers) -> None:
    """Regression, issue 15: the cap was checked only when a pool thread picked a call up, so the excess
    waited behind the ranking calls (refused as late as admitted calls finished), and grpc's own limit
    (``max_workers + max_queued_rpcs``, which the server set) refused health and Admin probes.

    Every ranking thread busy with an admitted call that will not finish until released: the other 18 of
    10x the cap come back RESOURCE_EXHAUSTED before the release, and 20 health and Admin probes sent then
    all answer OK; after the release the admitted calls complete OK."""
    # max_queued_rpcs below the load, so the limit the server used to give grpc is exceeded here
    settings = settings_for(root, max_workers=CAP, max_concurrent_rpcs=CAP, max_queued_rpcs=4)
    factory = SlowFactory(settings)
    server = live_server(settings, engine_factory=factory)
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
    finally:
        engine.release.set()
    assert [call.result(timeout=15).model_version for call in admitted] == [VERSION] * CAP
    assert "LOY-1" not in engine.customers  # no refused call reached the engine
