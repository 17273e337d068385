"""Who may talk to the server: TLS, mutual TLS and per-caller tokens with a read, write or admin role.

TLS (``tls_cert_file`` + ``tls_key_file``) encrypts every call and proves the server's identity; adding
``tls_client_ca_file`` makes it mutual: a client must present a certificate that CA signed, or the handshake
fails before any RPC (the client sees UNAVAILABLE). Certificate files are re-read when they change on disk
(checked at each new connection), so a rotated certificate (cert-manager, a mounted Secret) is served
without a restart.

Tokens (``tokens_file``) name the caller and its role. The file holds only the sha256 of each token, never
the token, so reading it (or a leaked copy) does not let anyone call::

    # printf %s "$TOKEN" | sha256sum   -> token_sha256
    [[callers]]
    name = "web-backend"
    role = "read"            # Recommender calls
    token_sha256 = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"

    [[callers]]
    name = "pos-gateway"
    role = "write"           # Recommender and Events calls (recording what customers do)
    token_sha256 = "..."

    [[callers]]
    name = "ops"
    role = "admin"           # every call
    token_sha256 = "..."

A caller sends ``authorization: Bearer <token>`` metadata. :class:`TokenAuthInterceptor` answers a missing
or unknown token UNAUTHENTICATED, a read caller on an Events method and a non-admin caller on an Admin
method PERMISSION_DENIED. Health checks stay open (a kubelet's probe carries no token). Reflection needs a
token of any role when tokens are on (decision, issue 15): the schema is no secret, but a reflection call is
a stream that holds a server thread for as long as the caller keeps it open and runs grpc's message decoder
on whatever it sends (one malformed frame once made a server ignore SIGTERM), so it is surface an unknown
caller on the network does not need. Operators with a token use grpcurl's ``-H 'authorization: Bearer ...'``.
Tokens over plain TCP can be read on the wire: use them with TLS except on loopback.

Nothing the server loads can execute code: artifacts are read with ``allow_pickle=False`` (see
:mod:`recsvc.artifacts`), settings and token files are TOML/JSON, and no module is imported by name from
configuration.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import tomllib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc

from recsvc.config import ConfigError, ServerSettings
from recsvc.server.interceptors import carry_lane, current_call
from recsvc.server.reflection import REFLECTION_PREFIX

logger = logging.getLogger(__name__)

ROLES = ("read", "write", "admin")
#: Metadata key of the token; the value is ``Bearer <token>``.
AUTHORIZATION_KEY = "authorization"
#: Methods that need the admin role.
ADMIN_PREFIX = "/recsvc.v1.Admin/"
#: Methods that need the write (or admin) role.
EVENTS_PREFIX = "/recsvc.v1.Events/"
#: Methods that need a token at all (health lives under another prefix and stays open).
PROTECTED_PREFIXES = ("/recsvc.", REFLECTION_PREFIX)

_SHA256_RE = re.compile(r"^[0-9a-f]{64}$")


@dataclass(frozen=True)
class Caller:
    """A known caller: its name (for logs) and role (``read``, ``write`` or ``admin``)."""

    name: str
    role: str


def token_sha256(token: str) -> str:
    """The hex sha256 of a token, as the tokens file stores it."""
    return hashlib.sha256(token.encode()).hexdigest()


def load_tokens(path: str | Path) -> dict[str, Caller]:
    """Read a tokens file (see the module docstring): sha256 hex -> :class:`Caller`.

    Raises
    ------
    ConfigError
        The file is missing, not TOML, or an entry lacks a field, has an unknown role, a malformed hash,
        or repeats a hash or a name; the message names the entry.
    """
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text())
    except FileNotFoundError as exc:
        raise ConfigError(f"tokens file {path} does not exist") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"tokens file {path} is not valid TOML: {exc}") from exc
    entries = data.get("callers")
    if not isinstance(entries, list) or not entries:
        raise ConfigError(f"tokens file {path}: expected at least one [[callers]] table")
    table: dict[str, Caller] = {}
    names: set[str] = set()
    for i, entry in enumerate(entries):
        where = f"tokens file {path}, caller {i + 1}"
        if not isinstance(entry, Mapping):
            raise ConfigError(f"{where}: expected a table with name, role and token_sha256")
        name, role, digest = entry.get("name"), entry.get("role"), entry.get("token_sha256")
        if not isinstance(name, str) or not name:
            raise ConfigError(f"{where}: name is required")
        if role not in ROLES:
            raise ConfigError(f"{where} ({name}): role must be one of {', '.join(ROLES)}, got {role!r}")
        if not isinstance(digest, str) or not _SHA256_RE.match(digest.lower()):
            raise ConfigError(f"{where} ({name}): token_sha256 must be 64 hex digits (the sha256 of the token, "
                              "not the token itself)")
        unknown = sorted(set(entry) - {"name", "role", "token_sha256"})
        if unknown:
            raise ConfigError(f"{where} ({name}): unknown key(s) {', '.join(unknown)}")
        if digest.lower() in table or name in names:
            raise ConfigError(f"{where} ({name}): repeats a token or a caller name")
        table[digest.lower()] = Caller(name=name, role=str(role))
        names.add(name)
    return table


class TokenAuthInterceptor(grpc.ServerInterceptor):
    """Rejects recsvc calls without a known token, and read callers on Admin methods (see module docstring).

    The presented token is hashed and looked up by its sha256: the table never holds a token, and the lookup
    time says nothing useful about one (finding a preimage of a hash prefix does not help an attacker).
    """

    def __init__(self, callers: Mapping[str, Caller]) -> None:
        self._callers = dict(callers)

    def intercept_service(self, continuation: Callable[[grpc.HandlerCallDetails], grpc.RpcMethodHandler | None],
                          handler_call_details: grpc.HandlerCallDetails) -> grpc.RpcMethodHandler | None:
        handler = continuation(handler_call_details)
        method = handler_call_details.method
        if handler is None or not method.startswith(PROTECTED_PREFIXES):
            return handler
        roles = (("admin",) if method.startswith(ADMIN_PREFIX)
                 else ("write", "admin") if method.startswith(EVENTS_PREFIX) else ROLES)
        # the check runs before the behaviour is called, so one wrapper fits every handler kind
        for kind in ("unary_unary", "unary_stream", "stream_unary", "stream_stream"):
            behavior = getattr(handler, kind)
            if behavior is not None:
                return handler._replace(**{kind: self._guard(behavior, method, roles)})
        return handler

    def _guard(self, behavior: Callable[[Any, grpc.ServicerContext], Any], method: str, roles: tuple[str, ...]
               ) -> Callable[[Any, grpc.ServicerContext], Any]:
        def wrapper(request: Any, context: grpc.ServicerContext) -> Any:
            caller, reason = self.authenticate(context.invocation_metadata() or ())
            if caller is None:
                logger.debug("%s refused: %s (peer %s)", method, reason, context.peer())
                context.abort(grpc.StatusCode.UNAUTHENTICATED, reason)
                return None  # not reached: abort raises
            info = current_call()
            if info is not None:
                info.caller = caller.name
            if caller.role not in roles:
                logger.warning("caller %s (role %s) refused on %s", caller.name, caller.role, method)
                context.abort(grpc.StatusCode.PERMISSION_DENIED,
                              f"caller {caller.name} has role {caller.role}; this method needs role "
                              f"{' or '.join(roles)}")
            return behavior(request, context)

        return carry_lane(wrapper, behavior)

    def authenticate(self, metadata: Iterable[tuple[str, Any]]) -> tuple[Caller | None, str]:
        """The caller of the bearer token in ``metadata``, or ``None`` and why not (said to the caller)."""
        value = next((str(v) for k, v in metadata if k == AUTHORIZATION_KEY), "")
        if not value:
            return None, "missing token: send metadata 'authorization: Bearer <token>'"
        scheme, _, token = value.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            return None, "malformed authorization: expected 'Bearer <token>'"
        caller = self._callers.get(token_sha256(token.strip()))
        return (caller, "") if caller is not None else (None, "unknown token")


# ------------------------------------------------------------------------------------------------- TLS

def _read(path: str, what: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise ConfigError(f"{what} {path} cannot be read: {exc.strerror or exc}") from exc


def tls_enabled(settings: ServerSettings) -> bool:
    """Whether the settings turn TLS on (both certificate and key given)."""
    return bool(settings.tls_cert_file and settings.tls_key_file)


def server_credentials(settings: ServerSettings) -> grpc.ServerCredentials | None:
    """Server credentials from the TLS settings: ``None`` for plaintext, TLS, or mutual TLS with a client CA.

    The files are read now (a missing or unreadable file stops the start-up with its name) and again
    whenever one of them changes on disk, at the next connection.

    Raises
    ------
    ConfigError
        Only one of certificate and key is set, a client CA without them, or a file cannot be read.
    """
    cert, key, ca = settings.tls_cert_file, settings.tls_key_file, settings.tls_client_ca_file
    if not cert and not key:
        if ca:
            raise ConfigError("server.tls_client_ca_file needs server.tls_cert_file and server.tls_key_file")
        return None
    if not (cert and key):
        raise ConfigError("server.tls_cert_file and server.tls_key_file must be set together")
    paths = [cert, key, *([ca] if ca else [])]

    def configuration() -> Any:
        pair = (_read(key, "server.tls_key_file"), _read(cert, "server.tls_cert_file"))
        roots = _read(ca, "server.tls_client_ca_file") if ca else None
        return grpc.ssl_server_certificate_configuration([pair], root_certificates=roots)

    def stamp() -> tuple[int, ...]:
        return tuple(os.stat(p).st_mtime_ns for p in paths)

    initial = configuration()  # names a missing or unreadable file before anything else touches it
    seen = [stamp()]

    def fetch() -> Any:
        # grpc calls this at each new connection: a stat of 2-3 files, a re-read only when one changed
        try:
            now = stamp()
            if now == seen[0]:
                return None
            config = configuration()
        except (OSError, ConfigError) as exc:  # mid-rotation (one file written, the other not yet): keep the old
            logger.warning("TLS files changed but cannot be read yet (%s); keeping the previous certificate", exc)
            return None
        seen[0] = now
        logger.info("TLS certificate files changed; new connections use the new certificate")
        return config

    return grpc.dynamic_ssl_server_credentials(initial, fetch, require_client_authentication=bool(ca))


def warn_if_tokens_in_clear(settings: ServerSettings) -> None:
    """Log a warning when tokens would travel unencrypted to a non-loopback address."""
    if settings.tokens_file and not tls_enabled(settings) and settings.host not in ("127.0.0.1", "::1", "localhost"):
        logger.warning("tokens are checked but TLS is off: tokens sent to %s can be read on the network; set "
                       "server.tls_cert_file and server.tls_key_file", settings.host)
