"""Property-based fuzzing of the gRPC surface: whatever a caller sends, the server answers with a deliberate
status (never INTERNAL or UNKNOWN, which mean a bug) and stays SERVING.

A real server on 127.0.0.1, port 0, over a real channel, serving the toy model (:mod:`toy_model`). Requests
are arbitrary and malformed on purpose: unicode and empty strings, strings of hundreds of kilobytes, id lists
below and above the request limits, negative and huge ``num_items`` / ``bundle_size``, and random bytes sent
as the raw request payload through ``channel.unary_unary`` with identity serializers (bytes that are not a
valid message, or a valid message with invalid UTF-8, must be INVALID_ARGUMENT, not grpc's default
INTERNAL "Exception deserializing request!").

Bounded for CI: ~150 examples per property, no per-example deadline (a loaded CI machine is slow, and
latency is the benchmarks' job), the whole file well under 60 s.
"""

from __future__ import annotations

from collections.abc import Iterator

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from recsvc.artifacts import load_current
from recsvc.config import ServerSettings
from recsvc.ranking import LoadedModel, RecommendationEngine
from recsvc.server.app import ModelHolder
from recsvc.v1 import recsvc_pb2, recsvc_pb2_grpc
from tests.conftest import LiveServer
from tests.toy_model import CREATED_AT, ITEMS, STORES, publish_toy

#: Statuses that mean "the server has a bug"; every other status is a deliberate answer.
BUG_STATUSES = {grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN}
#: Statuses a malformed request may legitimately get.
ALLOWED_ERRORS = {grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND,
                  grpc.StatusCode.RESOURCE_EXHAUSTED}
METHODS = ("Recommend", "RecommendBundle", "SimilarItems", "GetModelInfo")
TIMEOUT = 10.0

FUZZ = settings(max_examples=150, deadline=None, derandomize=False, print_blob=True,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                       HealthCheck.large_base_example])

INT32 = st.integers(min_value=-(2**31), max_value=2**31 - 1)
SMALL_AND_EDGE_INTS = st.one_of(st.integers(-3, 120), INT32, st.sampled_from([0, 1, 2, 4, 5, 100, 101, -1]))

_known_items = [item_id for item_id, *_ in ITEMS]
#: Strings a caller might send: real ids, unicode of any kind (including NUL and combining marks), empty,
#: and now and then a huge one (up to ~300k characters, still under grpc's 4 MB message limit).
ANY_STRING = st.one_of(
    st.sampled_from(["", "C001", "LOY-1", "APP-4", "web", "store", "app", "bakery", *STORES, *_known_items]),
    st.text(max_size=40),
    st.text(alphabet=st.characters(codec="utf-8"), max_size=200),
    st.builds(lambda ch, n: ch * n, st.text(min_size=1, max_size=3), st.integers(10_000, 100_000)),
)
ID_LIST = st.one_of(
    st.lists(ANY_STRING, max_size=8),
    st.lists(st.sampled_from([*_known_items, "", "nope"]), min_size=90, max_size=1_100),
    st.integers(0, 1_200).map(lambda n: [f"x{i}" for i in range(n)]),
)


@pytest.fixture(scope="module")
def channel(tmp_path_factory: pytest.TempPathFactory) -> Iterator[grpc.Channel]:
    root = tmp_path_factory.mktemp("fuzz-artifacts")
    publish_toy(root)
    server_settings = ServerSettings(host="127.0.0.1", port=0, artifact_root=str(root), max_workers=4,
                                     shutdown_grace_seconds=1.0)
    engine = RecommendationEngine(LoadedModel(load_current(root)), server_settings, clock=lambda: CREATED_AT)
    with LiveServer(server_settings, holder=ModelHolder(engine)) as server:
        yield server.channel
        _assert_serving(server.channel)  # after every property of the module has run


@pytest.fixture(scope="module")
def stub(channel: grpc.Channel) -> recsvc_pb2_grpc.RecommenderStub:
    return recsvc_pb2_grpc.RecommenderStub(channel)


def _assert_serving(chan: grpc.Channel) -> None:
    health = health_pb2_grpc.HealthStub(chan)
    for service in ("", "recsvc.v1.Recommender"):
        status = health.Check(health_pb2.HealthCheckRequest(service=service), timeout=TIMEOUT).status
        assert status == health_pb2.HealthCheckResponse.SERVING, f"health of {service!r} is {status}"


def _call(rpc: grpc.UnaryUnaryMultiCallable, request: object) -> grpc.StatusCode:
    """Send one request and return its status; a bug status fails the test with the server's message."""
    try:
        rpc(request, timeout=TIMEOUT)
    except grpc.RpcError as exc:
        code = exc.code()
        assert code not in BUG_STATUSES, f"{code.name}: {exc.details()}"
        assert code in ALLOWED_ERRORS, f"unexpected {code.name}: {exc.details()}"
        return code
    return grpc.StatusCode.OK


# ------------------------------------------------------------------------------------ well-formed messages

@FUZZ
@given(customer_id=ANY_STRING, channel_name=ANY_STRING, store_id=ANY_STRING, num_items=SMALL_AND_EDGE_INTS,
       exclude=ID_LIST, context=ID_LIST, include_categories=ID_LIST, exclude_categories=ID_LIST)
def test_recommend_never_fails_internally(stub: recsvc_pb2_grpc.RecommenderStub, customer_id: str,
                                          channel_name: str, store_id: str, num_items: int, exclude: list[str],
                                          context: list[str], include_categories: list[str],
                                          exclude_categories: list[str]) -> None:
    request = recsvc_pb2.RecommendRequest(
        customer_id=customer_id, channel=channel_name, store_id=store_id, num_items=num_items,
        exclude_item_ids=exclude, context_item_ids=context, include_categories=include_categories,
        exclude_categories=exclude_categories)
    code = _call(stub.Recommend, request)
    if code == grpc.StatusCode.OK:  # the valid ones keep their promises: never an excluded or context item
        response = stub.Recommend(request, timeout=TIMEOUT)
        returned = {item.item_id for item in response.items}
        assert not returned & (set(exclude) | set(context))
        assert len(response.items) <= (num_items or 10)


@FUZZ
@given(basket=ID_LIST, customer_id=ANY_STRING, channel_name=ANY_STRING, store_id=ANY_STRING,
       num_items=SMALL_AND_EDGE_INTS, bundle_size=SMALL_AND_EDGE_INTS)
def test_bundle_never_fails_internally(stub: recsvc_pb2_grpc.RecommenderStub, basket: list[str],
                                       customer_id: str, channel_name: str, store_id: str, num_items: int,
                                       bundle_size: int) -> None:
    _call(stub.RecommendBundle, recsvc_pb2.RecommendBundleRequest(
        basket_item_ids=basket, customer_id=customer_id, channel=channel_name, store_id=store_id,
        num_items=num_items, bundle_size=bundle_size))


@FUZZ
@given(item_id=ANY_STRING, num_items=SMALL_AND_EDGE_INTS, channel_name=ANY_STRING)
def test_similar_items_never_fails_internally(stub: recsvc_pb2_grpc.RecommenderStub, item_id: str,
                                              num_items: int, channel_name: str) -> None:
    _call(stub.SimilarItems, recsvc_pb2.SimilarItemsRequest(item_id=item_id, num_items=num_items,
                                                            channel=channel_name))


# ------------------------------------------------------------------------------------------- raw payloads

def _identity(data: bytes) -> bytes:
    return data


def _utf8(data: bytes) -> bool:
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


RAW_PAYLOAD = st.one_of(
    st.binary(max_size=64),
    st.binary(min_size=64, max_size=4_096),
    # valid tag bytes followed by garbage, truncated varints, and strings that are not UTF-8
    st.builds(lambda tag, rest: bytes([tag]) + rest, st.integers(0, 255), st.binary(max_size=32)),
    st.builds(lambda field, raw: bytes([(field << 3) | 2, len(raw)]) + raw,
              st.integers(1, 8), st.binary(min_size=1, max_size=100).filter(lambda b: not _utf8(b))),
)


@FUZZ
@given(method=st.sampled_from(METHODS), payload=RAW_PAYLOAD)
def test_raw_bytes_never_fail_internally(channel: grpc.Channel, method: str, payload: bytes) -> None:
    rpc = channel.unary_unary(f"/recsvc.v1.Recommender/{method}", request_serializer=_identity,
                              response_deserializer=_identity)
    code = _call(rpc, payload)
    assert code in {grpc.StatusCode.OK, *ALLOWED_ERRORS}


def test_invalid_utf8_is_invalid_argument_not_internal(channel: grpc.Channel) -> None:
    """Regression: a RecommendRequest whose customer_id is not UTF-8 used to get grpc's INTERNAL
    "Exception deserializing request!"; it is the caller's fault, so INVALID_ARGUMENT naming the method."""
    rpc = channel.unary_unary("/recsvc.v1.Recommender/Recommend", request_serializer=_identity,
                              response_deserializer=_identity)
    with pytest.raises(grpc.RpcError) as info:
        rpc(bytes([0x0A, 2, 0xFF, 0xFE]), timeout=TIMEOUT)  # field 1 (customer_id), 2 bytes, not UTF-8
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "RecommendRequest" in (info.value.details() or "")


def test_trailing_nul_does_not_resolve_to_another_customer(stub: recsvc_pb2_grpc.RecommenderStub) -> None:
    """Regression: numpy drops trailing NULs from unicode arrays, so "C001\\x00" was served as customer C001
    (and "B01\\x00" excluded item B01); an id ending in NUL is now simply unknown."""
    response = stub.Recommend(recsvc_pb2.RecommendRequest(customer_id="C001\x00", channel="web"), timeout=TIMEOUT)
    assert not response.known_customer and response.resolved_customer_id == ""
    with pytest.raises(grpc.RpcError) as info:
        stub.SimilarItems(recsvc_pb2.SimilarItemsRequest(item_id="B01\x00"), timeout=TIMEOUT)
    assert info.value.code() == grpc.StatusCode.NOT_FOUND


def test_an_id_wider_than_every_stored_id_is_unknown_and_cheap() -> None:
    """Regression (benchmarks/load.py): looking up an id longer than the stored ids made searchsorted copy the
    whole id array to the query's width — 17 ms per unknown customer at 1M customers. It must stay unknown
    without the copy, and a longer id must never match its prefix ("c10" is not "c1")."""
    import tracemalloc

    import numpy as np

    from recsvc.artifacts import IdIndex

    index = IdIndex(np.char.add("C", np.char.zfill(np.arange(200_000).astype("U6"), 6)))
    tracemalloc.start()
    try:
        rows = index.lookup(["C000042", "C0000420", "guest-with-a-long-id", "C000043\x00"])
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert rows.tolist() == [42, -1, -1, -1]
    assert peak < 1_000_000, f"lookup allocated {peak} bytes (the id array is {index.ids.nbytes})"
    assert IdIndex(np.array(["c1", "c2"])).lookup(["c10", "c1", "c"]).tolist() == [-1, 0, -1]


def test_server_is_serving_after_the_fuzzing(channel: grpc.Channel) -> None:
    _assert_serving(channel)


# ------------------------------------------------------------------ Events: RecordEvents and LinkIdentities

@pytest.fixture(scope="module")
def events_channel(tmp_path_factory: pytest.TempPathFactory) -> Iterator[grpc.Channel]:
    """A server with the Events service on the embedded store (its own, so the fixture above stays as it is)."""
    from recsvc.config import EventsSettings, Settings
    from recsvc.server.events import start_events

    root = tmp_path_factory.mktemp("fuzz-events")
    publish_toy(root)
    settings = Settings(server=ServerSettings(host="127.0.0.1", port=0, artifact_root=str(root), max_workers=4,
                                              shutdown_grace_seconds=1.0),
                        events=EventsSettings(sqlite_path=str(root / "fuzz.sqlite")))
    engine = RecommendationEngine(LoadedModel(load_current(root)), settings.server, clock=lambda: CREATED_AT)
    runtime = start_events(settings)
    try:
        with LiveServer(settings.server, holder=ModelHolder(engine), events=runtime) as server:
            yield server.channel
            _assert_serving(server.channel)
    finally:
        runtime.close()


SHORT_STRING = st.one_of(st.sampled_from(["", "C001", "LOY-4", "B01", "view", "purchase", "RETURN", " cart "]),
                         st.text(max_size=20), st.text(min_size=250, max_size=300))
FLOATS = st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.sampled_from([0.0, 1.0, -1.0, 2.5]))
TIMESTAMPS = st.one_of(st.none(), st.builds(lambda s, n: (s, n), st.integers(-(2**63), 2**63 - 1), INT32),
                       st.builds(lambda s: (s, 0), st.integers(1_700_000_000, 1_900_000_000)))


def _fuzz_event(fields: tuple) -> object:
    from google.protobuf.timestamp_pb2 import Timestamp

    from recsvc.v1 import events_pb2

    event_id, customer, item, kind, channel_name, store, quantity, price, stamp = fields
    message = events_pb2.Event(event_id=event_id, customer_id=customer, item_id=item, event=kind,
                               channel=channel_name, store_id=store, quantity=quantity, price=price)
    if stamp is not None:
        message.timestamp.CopyFrom(Timestamp(seconds=stamp[0], nanos=stamp[1]))
    return message


EVENT = st.tuples(SHORT_STRING, SHORT_STRING, SHORT_STRING, SHORT_STRING, SHORT_STRING, SHORT_STRING, FLOATS, FLOATS,
                  TIMESTAMPS).map(_fuzz_event)
EVENT_LISTS = st.one_of(st.lists(EVENT, max_size=20), st.integers(995, 1_005).flatmap(
    lambda n: st.lists(EVENT, min_size=1, max_size=1).map(lambda one: one * n)))


@FUZZ
@given(events=EVENT_LISTS)
def test_record_events_never_fails_internally(events_channel: grpc.Channel, events: list) -> None:
    from recsvc.events.validation import REASONS
    from recsvc.v1 import events_pb2, events_pb2_grpc

    stub = events_pb2_grpc.EventsStub(events_channel)
    request = events_pb2.RecordEventsRequest(events=events)
    try:
        response = stub.RecordEvents(request, timeout=TIMEOUT)
    except grpc.RpcError as exc:
        if exc.code() == grpc.StatusCode.RESOURCE_EXHAUSTED:  # over server.max_request_bytes: grpc's answer
            assert request.ByteSize() > 1_048_576, exc.details()
            return
        assert exc.code() == grpc.StatusCode.INVALID_ARGUMENT, f"{exc.code().name}: {exc.details()}"
        assert not 1 <= len(events) <= 1000
        return
    assert response.accepted + response.duplicates + len(response.rejected) == len(events)
    assert {r.reason for r in response.rejected} <= set(REASONS)


@FUZZ
@given(links=st.lists(st.tuples(SHORT_STRING, SHORT_STRING), max_size=30))
def test_link_identities_never_fails_internally(events_channel: grpc.Channel, links: list) -> None:
    from recsvc.events.validation import REASONS
    from recsvc.v1 import events_pb2, events_pb2_grpc

    stub = events_pb2_grpc.EventsStub(events_channel)
    request = events_pb2.LinkIdentitiesRequest(
        links=[events_pb2.IdentityLink(alias_id=a, customer_id=c) for a, c in links])
    try:
        response = stub.LinkIdentities(request, timeout=TIMEOUT)
    except grpc.RpcError as exc:
        assert exc.code() == grpc.StatusCode.INVALID_ARGUMENT and not links, f"{exc.code().name}: {exc.details()}"
        return
    assert response.linked + len(response.rejected) == len(links)
    assert {r.reason for r in response.rejected} <= set(REASONS)


@FUZZ
@given(method=st.sampled_from(["RecordEvents", "LinkIdentities"]), payload=RAW_PAYLOAD)
def test_raw_bytes_to_events_never_fail_internally(events_channel: grpc.Channel, method: str, payload: bytes) -> None:
    rpc = events_channel.unary_unary(f"/recsvc.v1.Events/{method}", request_serializer=_identity,
                                     response_deserializer=_identity)
    assert _call(rpc, payload) in {grpc.StatusCode.OK, *ALLOWED_ERRORS}
