"""A real S3-compatible server on a loopback port for the object-storage tests: moto's standalone server.

moto (``moto[server]``, the ``dev`` extra) is the S3 API as a plain HTTP server that ``ThreadedMotoServer``
starts in a thread of the test process in a fraction of a second, with no binary to install, no credentials and
no network beyond 127.0.0.1; clients, s3fs in the tests and a ``recsvc serve`` process alike, talk to it over
HTTP exactly as to S3, pointed there by the standard ``AWS_ENDPOINT_URL``. A MinIO binary would be as real but
is not on PyPI. Tests that need it are skipped, with the reason, only when moto or s3fs is not installed.
"""

from __future__ import annotations

import logging
import os
import uuid
from collections.abc import Iterator

import pytest

#: What botocore needs to sign requests to moto (any values work) and where to send them (set per server).
FAKE_CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                    "AWS_DEFAULT_REGION": "us-east-1"}


class S3Server:
    """moto's S3 server on 127.0.0.1 (a free port); :attr:`env` is what a client process needs."""

    def __init__(self) -> None:
        pytest.importorskip("s3fs", reason="the s3 extra (s3fs) is not installed: pip install -e '.[dev,s3]'")
        moto_server = pytest.importorskip("moto.server", reason="moto[server] (the dev extra) is not installed")
        logging.getLogger("werkzeug").setLevel(logging.WARNING)  # one line per request otherwise
        self._server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        self._server.start()
        host, port = self._server.get_host_and_port()
        self.endpoint = f"http://{host}:{port}"
        self.env = {**FAKE_CREDENTIALS, "AWS_ENDPOINT_URL": self.endpoint}

    def new_bucket(self) -> str:
        import fsspec

        name = f"recsvc-{uuid.uuid4().hex[:12]}"
        fsspec.filesystem("s3").mkdir(name)
        return name

    def stop(self) -> None:
        self._server.stop()


@pytest.fixture(scope="session")
def s3_server() -> Iterator[S3Server]:
    """One moto server for the session, with this process's AWS environment pointed at it (restored after)."""
    saved = {key: os.environ.get(key) for key in (*FAKE_CREDENTIALS, "AWS_ENDPOINT_URL", "AWS_PROFILE")}
    server = S3Server()
    os.environ.pop("AWS_PROFILE", None)
    os.environ.update(server.env)
    try:
        yield server
    finally:
        server.stop()
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@pytest.fixture
def s3_root(s3_server: S3Server) -> str:
    """A fresh, empty artifact root on the S3 server: ``s3://<new bucket>/artifacts``."""
    return f"s3://{s3_server.new_bucket()}/artifacts"
