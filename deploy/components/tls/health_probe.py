"""Exec probe for a recsvc server with TLS on: the standard gRPC health check over TLS, from inside the pod.

The kubelet's native ``grpc`` probe speaks plaintext only, so with ``tls_cert_file`` set the pod probes
itself with this script (run by the server image's Python, which has grpcio and grpcio-health-checking).
Exit 0 when the service answers SERVING, 1 otherwise (NOT_SERVING, no answer, a TLS failure); the reason
goes to stdout, where ``kubectl describe pod`` shows it. It checks the certificate against ``--ca`` under
the name ``--server-name``, so a probe also fails when the served certificate does not match the Secret's CA.
"""

from __future__ import annotations

import argparse
import sys

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=50051)
    parser.add_argument("--ca", required=True, help="PEM CA bundle that signed the server's certificate")
    parser.add_argument("--server-name", required=True, help="a name in the certificate's subjectAltName")
    parser.add_argument("--service", default="", help="health service name ('' = the whole server)")
    parser.add_argument("--timeout", type=float, default=4.0, help="seconds (keep below the probe's timeout)")
    args = parser.parse_args(argv)
    with open(args.ca, "rb") as ca:
        credentials = grpc.ssl_channel_credentials(root_certificates=ca.read())
    options = [("grpc.ssl_target_name_override", args.server_name)]
    with grpc.secure_channel(f"127.0.0.1:{args.port}", credentials, options=options) as channel:
        try:
            response = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service=args.service), timeout=args.timeout)
        except grpc.RpcError as exc:
            print(f"health check failed: {exc.code().name}: {exc.details()}")
            return 1
    status = health_pb2.HealthCheckResponse.ServingStatus.Name(response.status)
    print(f"{args.service or 'server'}: {status}")
    return 0 if response.status == health_pb2.HealthCheckResponse.SERVING else 1


if __name__ == "__main__":
    sys.exit(main())
