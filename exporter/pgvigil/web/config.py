"""TLS and basic auth for pgvigil's HTTP endpoints, from a `--web.config.file`.

The file uses the format of the Prometheus exporter-toolkit, so one file can serve
node_exporter, postgres_exporter and pgvigil alike:

    tls_server_config:
      cert_file: /etc/pgvigil/tls/server.crt
      key_file: /etc/pgvigil/tls/server.key
      # client certificates (optional): NoClientCert (default), VerifyClientCertIfGiven,
      # RequireAndVerifyClientCert; the last two need client_ca_file.
      client_auth_type: RequireAndVerifyClientCert
      client_ca_file: /etc/pgvigil/tls/ca.crt
      min_version: TLS12          # TLS10 | TLS11 | TLS12 (default) | TLS13
    basic_auth_users:
      prometheus: $2b$12$...      # bcrypt hash, e.g. from `htpasswd -nBC 12 "" | tr -d ':'`

The file is read once at start. A bcrypt check costs tens of milliseconds by design, so the
outcome of each (user, password) pair is remembered (keyed by a salted digest, never the
password itself) and a scrape every few seconds stays cheap.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import logging
import os
import ssl
import threading
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

import bcrypt
from pydantic import Field, ValidationError, field_validator

from pgvigil.config.files import ConfigError, describe_errors, read_yaml
from pgvigil.config.types import Strict

log = logging.getLogger(__name__)

TLS_VERSIONS = {
    "TLS10": ssl.TLSVersion.TLSv1,
    "TLS11": ssl.TLSVersion.TLSv1_1,
    "TLS12": ssl.TLSVersion.TLSv1_2,
    "TLS13": ssl.TLSVersion.TLSv1_3,
}
# Go's RequestClientCert / RequireAnyClientCert accept unverified certificates; Python's ssl
# module cannot ask for a certificate without verifying it, so they are refused by name.
CLIENT_AUTH_MODES = {
    "NoClientCert": ssl.CERT_NONE,
    "VerifyClientCertIfGiven": ssl.CERT_OPTIONAL,
    "RequireAndVerifyClientCert": ssl.CERT_REQUIRED,
}
UNSUPPORTED_TLS_KEYS = ("cipher_suites", "curve_preferences", "client_allowed_sans", "cert", "key")


class TlsServerConfig(Strict):
    cert_file: Path | None = None
    key_file: Path | None = None
    client_auth_type: Literal[
        "NoClientCert", "VerifyClientCertIfGiven", "RequireAndVerifyClientCert"
    ] = "NoClientCert"
    client_ca_file: Path | None = None
    min_version: Literal["TLS10", "TLS11", "TLS12", "TLS13"] = "TLS12"
    max_version: Literal["TLS10", "TLS11", "TLS12", "TLS13"] | None = None
    prefer_server_cipher_suites: bool = True


class HttpServerConfig(Strict):
    # Accepted for compatibility with files written for Go exporters; HTTP/2 is not served.
    http2: bool = True
    headers: dict[str, str] = Field(default_factory=dict)


class WebConfigFile(Strict):
    tls_server_config: TlsServerConfig | None = None
    http_server_config: HttpServerConfig = Field(default_factory=HttpServerConfig)
    basic_auth_users: dict[str, str] = Field(default_factory=dict)

    @field_validator("basic_auth_users")
    @classmethod
    def _bcrypt_hashes(cls, v: dict[str, str]) -> dict[str, str]:
        colon = sorted(user for user in v if ":" in user or not user)
        if colon:
            # Basic auth sends "user:password": such a user could never log in.
            raise ValueError(f"user names must be non-empty without ':': {', '.join(colon)}")
        bad = sorted(user for user, hashed in v.items() if not is_bcrypt_hash(hashed))
        if bad:
            raise ValueError(
                f"not a bcrypt hash for {', '.join(bad)} (expected '$2b$...', e.g. from "
                "`htpasswd -nBC 10 \"\" | tr -d ':'`; plain passwords are not accepted)"
            )
        return v


def is_bcrypt_hash(value: str) -> bool:
    if not isinstance(value, str) or len(value) != 60 or value[:4] not in ("$2a$", "$2b$", "$2y$"):
        return False
    try:
        bcrypt.checkpw(b"", value.encode())
    except ValueError:
        return False
    return True


def load(path: Path) -> WebConfigFile:
    """Read and validate a web config file; every problem at once, each with its place."""
    data, root = read_yaml(path, "web config file")
    unsupported = _unsupported_keys(data)
    try:
        parsed = WebConfigFile.model_validate(_without(data, unsupported))
    except ValidationError as e:
        problems = describe_errors(e, source=str(path), root=root)
    else:
        problems = []
    problems += [
        f"{path}: tls_server_config.{key}: not supported by pgvigil (remove it)"
        for key in unsupported
    ]
    if problems:
        raise ConfigError(problems)
    return parsed


def _unsupported_keys(data: dict[str, Any]) -> list[str]:
    tls = data.get("tls_server_config")
    if not isinstance(tls, dict):
        return []
    return [k for k in UNSUPPORTED_TLS_KEYS if k in tls]


def _without(data: dict[str, Any], tls_keys: list[str]) -> dict[str, Any]:
    if not tls_keys:
        return data
    tls = {k: v for k, v in data["tls_server_config"].items() if k not in tls_keys}
    return {**data, "tls_server_config": tls}


def tls_context(tls: TlsServerConfig, source: str) -> ssl.SSLContext | None:
    """The server-side SSLContext, or None when no certificate is configured (plain HTTP,
    as the exporter-toolkit does)."""
    if tls.cert_file is None and tls.key_file is None:
        return None
    place = f"{source}: tls_server_config"
    if tls.cert_file is None or tls.key_file is None:
        raise ConfigError([f"{place}: cert_file and key_file must both be given"])
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = TLS_VERSIONS[tls.min_version]
    if tls.max_version is not None:
        if TLS_VERSIONS[tls.max_version] < ctx.minimum_version:
            raise ConfigError([f"{place}.max_version: lower than min_version"])
        ctx.maximum_version = TLS_VERSIONS[tls.max_version]
    try:
        ctx.load_cert_chain(tls.cert_file, tls.key_file)
    except (OSError, ssl.SSLError) as e:
        raise ConfigError(
            [f"{place}: cannot load cert_file {tls.cert_file} / key_file {tls.key_file}: {_why(e)}"]
        ) from None
    ctx.verify_mode = CLIENT_AUTH_MODES[tls.client_auth_type]
    if tls.client_ca_file is not None:
        try:
            ctx.load_verify_locations(cafile=tls.client_ca_file)
        except (OSError, ssl.SSLError) as e:
            raise ConfigError(
                [f"{place}.client_ca_file: cannot load {tls.client_ca_file}: {_why(e)}"]
            ) from None
    elif tls.client_auth_type != "NoClientCert":
        raise ConfigError(
            [f"{place}.client_ca_file: required when client_auth_type is {tls.client_auth_type}"]
        )
    return ctx


def _why(e: BaseException) -> str:
    return getattr(e, "strerror", None) or getattr(e, "reason", None) or str(e)


class BasicAuth:
    """Checks `Authorization: Basic ...` against bcrypt hashes, remembering outcomes."""

    CACHE_SIZE = 256

    def __init__(self, users: dict[str, str]):
        self._users = {user: hashed.encode() for user, hashed in users.items()}
        self._salt = os.urandom(16)
        self._cache: OrderedDict[bytes, bool] = OrderedDict()
        self._lock = threading.Lock()
        # Unknown users cost one bcrypt too, so timing does not tell which users exist.
        self._dummy = next(iter(self._users.values()), b"")

    def __call__(self, header: str | None) -> bool:
        return self.allowed(header)

    def allowed(self, header: str | None) -> bool:
        credentials = _parse_basic(header)
        if credentials is None:
            return False
        user, password = credentials
        key = hashlib.sha256(self._salt + user.encode() + b"\0" + password.encode()).digest()
        with self._lock:
            cached = self._cache.get(key)
            if cached is not None:
                self._cache.move_to_end(key)
                return cached
        hashed = self._users.get(user)
        ok = bcrypt.checkpw(password.encode(), hashed or self._dummy) and hashed is not None
        with self._lock:
            self._cache[key] = ok
            while len(self._cache) > self.CACHE_SIZE:
                self._cache.popitem(last=False)
        return ok


def _parse_basic(header: str | None) -> tuple[str, str] | None:
    if not header:
        return None
    scheme, _, encoded = header.strip().partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None
    user, sep, password = decoded.partition(":")
    return (user, password) if sep else None


def basic_auth_user(header: str | None) -> str | None:
    """The user named by an `Authorization: Basic` header (check it with BasicAuth first)."""
    credentials = _parse_basic(header)
    return credentials[0] if credentials else None


def check(path: Path) -> str:
    """Validate the file and its certificates as `apply` would; a one-line summary."""
    config = load(path)
    tls = config.tls_server_config is not None and tls_context(config.tls_server_config, str(path))
    users = len(config.basic_auth_users)
    return f"web config {path}: TLS {'on' if tls else 'off'}, basic auth " + (
        f"on ({users} users)" if users else "off"
    )


def apply(server: Any, path: Path) -> None:
    """Configure TLS and basic auth on a `pgvigil.web.server.Server` from the web config file."""
    config = load(path)
    server.tls_context = None
    if config.tls_server_config is not None:
        server.tls_context = tls_context(config.tls_server_config, str(path))
    authorize: Callable[[str | None], bool] | None = None
    if config.basic_auth_users:
        authorize = BasicAuth(config.basic_auth_users)
    server.authorize = authorize
    server.extra_headers = dict(config.http_server_config.headers)
    log.info(
        "web config %s: TLS %s, basic auth %s",
        path,
        "on" if server.tls_context else "off",
        f"on ({len(config.basic_auth_users)} users)" if authorize else "off",
    )
