"""Who may call: TLS, mutual TLS, token roles — and that nothing the server loads can run code.

Certificates are generated per test module with the ``openssl`` command (the ``cryptography`` package is not
a dependency); the TLS tests skip cleanly when neither is available. Every server listens on 127.0.0.1.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import grpc
import numpy as np
import pytest
from grpc_health.v1 import health_pb2
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from recsvc.artifacts import MANIFEST, VERSIONS, ArtifactError, load_artifact_set, set_current
from recsvc.config import ConfigError, ServerSettings
from recsvc.server.lifecycle import Outcome
from recsvc.server.security import load_tokens, server_credentials, token_sha256
from recsvc.v1 import admin_pb2, recsvc_pb2, recsvc_pb2_grpc
from tests.conftest import LiveServer, settings_for
from tests.test_lifecycle import publish_version
from tests.toy_model import VERSION, publish_toy

OPENSSL = shutil.which("openssl")
needs_openssl = pytest.mark.skipif(OPENSSL is None, reason="needs the openssl command to make test certificates")

READ_TOKEN, ADMIN_TOKEN = "read-token-0123456789", "admin-token-9876543210"


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("artifacts")
    publish_toy(root)
    return root


# ------------------------------------------------------------------------------------------ certificates

def _openssl(*args: str, cwd: Path) -> None:
    assert OPENSSL is not None
    subprocess.run([OPENSSL, *args], cwd=cwd, check=True, capture_output=True, timeout=30)


def _make_ca(folder: Path, name: str) -> None:
    _openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
             "-keyout", f"{name}.key", "-out", f"{name}.crt", "-days", "1", "-subj", f"/CN={name}", cwd=folder)


def _make_leaf(folder: Path, ca: str, name: str, usage: str) -> None:
    """A key and a certificate signed by ``ca``, valid for 127.0.0.1 and localhost."""
    ext = folder / f"{name}.ext"
    ext.write_text("subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\n"
                   f"extendedKeyUsage={usage}\n")
    _openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-keyout",
             f"{name}.key", "-out", f"{name}.csr", "-subj", f"/CN={name}", cwd=folder)
    _openssl("x509", "-req", "-in", f"{name}.csr", "-CA", f"{ca}.crt", "-CAkey", f"{ca}.key", "-set_serial",
             str(int.from_bytes(os.urandom(8), "big")), "-out", f"{name}.crt", "-days", "1", "-extfile", ext.name,
             cwd=folder)


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """ca -> server, client; rogue-ca -> rogue-client, rotated-server (a second CA for rotation)."""
    if OPENSSL is None:
        pytest.skip("needs the openssl command to make test certificates")
    folder = tmp_path_factory.mktemp("certs")
    _make_ca(folder, "ca")
    _make_ca(folder, "rogue-ca")
    _make_leaf(folder, "ca", "server", "serverAuth")
    _make_leaf(folder, "ca", "client", "clientAuth")
    _make_leaf(folder, "rogue-ca", "rogue-client", "clientAuth")
    _make_leaf(folder, "rogue-ca", "rotated-server", "serverAuth")
    return folder


def _channel_credentials(certs: Path, ca: str = "ca", client: str | None = None) -> grpc.ChannelCredentials:
    key = (certs / f"{client}.key").read_bytes() if client else None
    chain = (certs / f"{client}.crt").read_bytes() if client else None
    return grpc.ssl_channel_credentials(root_certificates=(certs / f"{ca}.crt").read_bytes(), private_key=key,
                                        certificate_chain=chain)


def _tls_settings(root: Path, certs: Path, mutual: bool = False) -> ServerSettings:
    return settings_for(root, tls_cert_file=str(certs / "server.crt"), tls_key_file=str(certs / "server.key"),
                        tls_client_ca_file=str(certs / "ca.crt") if mutual else "")


def _recommend(server: LiveServer, channel: grpc.Channel | None = None) -> recsvc_pb2.RecommendResponse:
    stub = server.stub if channel is None else recsvc_pb2_grpc.RecommenderStub(channel)
    response: recsvc_pb2.RecommendResponse = stub.Recommend(
        recsvc_pb2.RecommendRequest(customer_id="LOY-1", channel="web"), timeout=5)
    return response


def _fails_to_connect(target: str, credentials: grpc.ChannelCredentials | None) -> grpc.StatusCode:
    channel = grpc.secure_channel(target, credentials) if credentials else grpc.insecure_channel(target)
    with channel, pytest.raises(grpc.RpcError) as info:
        recsvc_pb2_grpc.RecommenderStub(channel).Recommend(recsvc_pb2.RecommendRequest(channel="web"), timeout=3)
    return info.value.code()


@needs_openssl
def test_tls_serves_encrypted_and_refuses_plaintext(root: Path, certs: Path) -> None:
    server = LiveServer(_tls_settings(root, certs), credentials=_channel_credentials(certs))
    try:
        assert _recommend(server).model_version == VERSION
        target = f"127.0.0.1:{server.port}"
        assert _fails_to_connect(target, None) == grpc.StatusCode.UNAVAILABLE  # plaintext client
        # a client that trusts another CA does not accept the server
        assert _fails_to_connect(target, _channel_credentials(certs, ca="rogue-ca")) == grpc.StatusCode.UNAVAILABLE
    finally:
        server.close()


@needs_openssl
def test_mutual_tls_rejects_clients_without_a_certificate_from_the_ca(root: Path, certs: Path) -> None:
    server = LiveServer(_tls_settings(root, certs, mutual=True),
                        credentials=_channel_credentials(certs, client="client"))
    try:
        assert _recommend(server).model_version == VERSION
        target = f"127.0.0.1:{server.port}"
        assert _fails_to_connect(target, _channel_credentials(certs)) == grpc.StatusCode.UNAVAILABLE  # no cert
        assert _fails_to_connect(target, _channel_credentials(certs, client="rogue-client")) == \
            grpc.StatusCode.UNAVAILABLE  # a certificate, but not from our CA
    finally:
        server.close()


@needs_openssl
def test_a_rotated_certificate_is_served_without_a_restart(root: Path, certs: Path, tmp_path: Path) -> None:
    cert, key = tmp_path / "tls.crt", tmp_path / "tls.key"
    shutil.copy(certs / "server.crt", cert)
    shutil.copy(certs / "server.key", key)
    settings = settings_for(root, tls_cert_file=str(cert), tls_key_file=str(key))
    server = LiveServer(settings, credentials=_channel_credentials(certs))
    try:
        assert _recommend(server).model_version == VERSION
        shutil.copy(certs / "rotated-server.key", key)
        shutil.copy(certs / "rotated-server.crt", cert)
        os.utime(cert, ns=(1, 1))  # a different mtime, however fast the copy was
        target = f"127.0.0.1:{server.port}"
        with grpc.secure_channel(target, _channel_credentials(certs, ca="rogue-ca")) as channel:
            assert _recommend(server, channel).model_version == VERSION  # new connection, new certificate
    finally:
        server.close()


def test_inconsistent_tls_settings_are_configuration_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="must be set together"):
        server_credentials(ServerSettings(tls_cert_file="server.crt"))
    with pytest.raises(ConfigError, match="tls_client_ca_file needs"):
        server_credentials(ServerSettings(tls_client_ca_file="ca.crt"))
    missing = tmp_path / "missing.crt"
    with pytest.raises(ConfigError, match=str(missing)):
        server_credentials(ServerSettings(tls_cert_file=str(missing), tls_key_file=str(missing)))
    assert server_credentials(ServerSettings()) is None


# ------------------------------------------------------------------------------------------------ tokens

def _tokens_file(folder: Path) -> Path:
    path = folder / "tokens.toml"
    path.write_text(f"""
# sha256 of each token; the tokens themselves are not stored
[[callers]]
name = "web-backend"
role = "read"
token_sha256 = "{token_sha256(READ_TOKEN)}"

[[callers]]
name = "ops"
role = "admin"
token_sha256 = "{token_sha256(ADMIN_TOKEN).upper()}"
""")
    return path


@pytest.fixture
def token_server(root: Path, tmp_path: Path) -> Iterator[LiveServer]:
    server = LiveServer(settings_for(root, tokens_file=str(_tokens_file(tmp_path)), log_json=True))
    yield server
    server.close()


def _code(call: object, *args: object, **kwargs: object) -> grpc.StatusCode:
    try:
        call(*args, **kwargs)  # type: ignore[operator]
    except grpc.RpcError as exc:
        return exc.code()
    return grpc.StatusCode.OK


def test_tokens_authenticate_callers_and_roles_guard_the_admin_api(token_server: LiveServer) -> None:
    server = token_server
    request = recsvc_pb2.RecommendRequest(customer_id="LOY-1", channel="web")
    status = admin_pb2.GetStatusRequest()

    def bearer(token: str) -> list[tuple[str, str]]:
        return [("authorization", f"Bearer {token}")]

    assert _code(server.stub.Recommend, request, timeout=5) == grpc.StatusCode.UNAUTHENTICATED
    assert _code(server.stub.Recommend, request, timeout=5, metadata=bearer("guess")) == \
        grpc.StatusCode.UNAUTHENTICATED
    assert _code(server.stub.Recommend, request, timeout=5, metadata=[("authorization", READ_TOKEN)]) == \
        grpc.StatusCode.UNAUTHENTICATED  # no "Bearer"
    assert _code(server.stub.Recommend, request, timeout=5, metadata=bearer(READ_TOKEN)) == grpc.StatusCode.OK
    assert _code(server.stub.Recommend, request, timeout=5, metadata=bearer(ADMIN_TOKEN)) == grpc.StatusCode.OK
    assert _code(server.admin.GetStatus, status, timeout=5) == grpc.StatusCode.UNAUTHENTICATED
    assert _code(server.admin.GetStatus, status, timeout=5, metadata=bearer(READ_TOKEN)) == \
        grpc.StatusCode.PERMISSION_DENIED
    assert _code(server.admin.ReloadModel, admin_pb2.ReloadModelRequest(), timeout=5, metadata=bearer(READ_TOKEN)) \
        == grpc.StatusCode.PERMISSION_DENIED
    assert _code(server.admin.GetStatus, status, timeout=5, metadata=bearer(ADMIN_TOKEN)) == grpc.StatusCode.OK
    # health checks stay open: probes carry no token
    assert server.health.Check(health_pb2.HealthCheckRequest(), timeout=5).status == \
        health_pb2.HealthCheckResponse.SERVING
    # reflection needs a token of any role (a stream an unknown caller does not need; README "Operations")
    reflection = reflection_pb2_grpc.ServerReflectionStub(server.channel)

    def list_services(**kwargs: object) -> set[str]:
        responses = reflection.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(list_services="")]),
                                                    timeout=5, **kwargs)
        return {s.name for r in responses for s in r.list_services_response.service}

    with pytest.raises(grpc.RpcError) as refused:
        list_services()
    assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED
    services = list_services(metadata=bearer(READ_TOKEN))
    assert {"recsvc.v1.Recommender", "recsvc.v1.Admin", "grpc.health.v1.Health"} <= services


def test_the_access_log_names_the_caller(token_server: LiveServer, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level("INFO", logger="recsvc.access"):
        token_server.stub.Recommend(recsvc_pb2.RecommendRequest(channel="web"), timeout=5,
                                    metadata=[("authorization", f"Bearer {READ_TOKEN}")])
    record = next(r for r in caplog.records if r.name == "recsvc.access")
    assert record.caller == "web-backend" and record.code == "OK"  # type: ignore[attr-defined]
    assert READ_TOKEN not in caplog.text


@pytest.mark.parametrize(("content", "message"), [
    ("", "at least one"),
    ('[[callers]]\nname = "a"\nrole = "root"\ntoken_sha256 = "' + "0" * 64 + '"', "role must be one of"),
    ('[[callers]]\nname = "a"\nrole = "read"\ntoken_sha256 = "my-secret-token"', "64 hex digits"),
    ('[[callers]]\nname = "a"\nrole = "read"\ntoken_sha256 = "' + "0" * 64 + '"\ntoken = "x"', "unknown key"),
    ('[[callers]]\nname = "a"\nrole = "read"\ntoken_sha256 = "' + "0" * 64 + '"\n'
     '[[callers]]\nname = "b"\nrole = "admin"\ntoken_sha256 = "' + "0" * 64 + '"', "repeats"),
    ("callers = [", "not valid TOML"),
])
def test_bad_tokens_files_are_configuration_errors(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "tokens.toml"
    path.write_text(content)
    with pytest.raises(ConfigError, match=message):
        load_tokens(path)
    with pytest.raises(ConfigError, match="does not exist"):
        load_tokens(tmp_path / "nope.toml")


# ------------------------------------------------------------------------------- nothing loaded runs code

class _Payload:
    """Unpickling this would create the marker file: proof that code ran."""

    marker = ""

    def __reduce__(self) -> tuple[object, tuple[Path]]:
        return (Path.touch, (Path(self.marker),))


def _plant_pickled_array(folder: Path, marker: Path) -> None:
    """Replace item_titles with a pickled object array and fix the manifest so checksums match: only the
    refusal to unpickle stands between the file and running code."""
    payload = _Payload()
    _Payload.marker = str(marker)
    path = folder / "item_titles.npy"
    np.save(path, np.array([payload] * 12, dtype=object), allow_pickle=True)
    manifest = json.loads((folder / MANIFEST).read_text())
    manifest["files"]["item_titles"] = {"sha256": hashlib.sha256(path.read_bytes()).hexdigest(), "dtype": "|O",
                                        "shape": [12]}
    (folder / MANIFEST).write_text(json.dumps(manifest))


@pytest.mark.parametrize("mmap", [False, True])
def test_a_pickled_object_array_is_refused_and_never_unpickled(tmp_path: Path, mmap: bool) -> None:
    folder = publish_toy(tmp_path / "artifacts")
    marker = tmp_path / "code-ran"
    _plant_pickled_array(folder, marker)
    with pytest.raises(ArtifactError, match=r"item_titles\.npy"):
        load_artifact_set(folder, verify=True, mmap=mmap)
    assert not marker.exists()


def test_a_server_refuses_a_published_pickle(root: Path, tmp_path: Path) -> None:
    artifact_root = tmp_path / "artifacts"
    publish_toy(artifact_root)
    server = LiveServer(settings_for(artifact_root))
    marker = tmp_path / "code-ran"
    try:
        scratch = publish_version(tmp_path / "scratch", "toy-2")
        shutil.copytree(scratch, artifact_root / VERSIONS / "toy-2")
        _plant_pickled_array(artifact_root / VERSIONS / "toy-2", marker)
        set_current(artifact_root, "toy-2")
        result = server.reload()
        assert result.outcome is Outcome.REJECTED and "item_titles.npy" in result.error
        assert server.version() == VERSION and not marker.exists()
    finally:
        server.close()
