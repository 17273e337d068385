"""Server reflection under both names clients ask for: ``grpc.reflection.v1`` and ``v1alpha``.

grpcurl, Postman and grpc's own tools use reflection to call the server without its proto files; newer
clients ask ``grpc.reflection.v1`` first, older ones only ``v1alpha``, and grpcio-reflection ships only the
v1alpha service. The two protocols are the same messages under two package names (the v1 proto is a copy of
v1alpha), so one servicer answers both paths with v1alpha's message classes.

A request stream frame that does not parse is answered INVALID_ARGUMENT by us, not handed to grpc's
decoder: grpc answers it INTERNAL, and on grpcio 1.85 that path sometimes leaves the call registered in the
server for ever, so a later ``server.stop`` never returns (issue 15: one such request made a pod ignore
SIGTERM). :func:`recsvc.server.app.stop_server` bounds the stop regardless.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

import grpc
from grpc_reflection.v1alpha import reflection, reflection_pb2

from recsvc.server.interceptors import MalformedRequest, tolerant_parser

#: The reflection services this server registers (and lists).
REFLECTION_SERVICE_NAMES: tuple[str, ...] = ("grpc.reflection.v1.ServerReflection", reflection.SERVICE_NAME)
#: Method paths under this prefix are reflection (token authentication guards them when tokens are on).
REFLECTION_PREFIX = "/grpc.reflection."


def add_reflection(server: grpc.Server, service_names: Iterable[str]) -> None:
    """Serve reflection for ``service_names`` (plus the reflection services themselves) on ``server``."""
    servicer = reflection.ReflectionServicer((*service_names, *REFLECTION_SERVICE_NAMES))

    def info(requests: Iterator[Any], context: grpc.ServicerContext) -> Iterator[Any]:
        def parsed() -> Iterator[Any]:
            for request in requests:
                if isinstance(request, MalformedRequest):
                    context.abort(grpc.StatusCode.INVALID_ARGUMENT, request.message)
                yield request

        yield from servicer.ServerReflectionInfo(parsed(), context)

    handler = grpc.stream_stream_rpc_method_handler(
        info, request_deserializer=tolerant_parser(reflection_pb2.ServerReflectionRequest.FromString),
        response_serializer=reflection_pb2.ServerReflectionResponse.SerializeToString)
    server.add_generic_rpc_handlers([grpc.method_handlers_generic_handler(name, {"ServerReflectionInfo": handler})
                                     for name in REFLECTION_SERVICE_NAMES])
