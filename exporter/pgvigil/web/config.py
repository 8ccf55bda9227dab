"""TLS, basic auth and response headers for pgvigil's HTTP endpoints, from a `--web.config.file`.

The file uses the format of the Prometheus exporter-toolkit, so one file can serve
node_exporter, postgres_exporter and pgvigil alike, and pgvigil refuses what the toolkit
refuses (docs/security.md lists each case):

    tls_server_config:
      cert_file: tls/server.crt     # relative paths are relative to this file's folder
      key_file: tls/server.key
      client_auth_type: RequireAndVerifyClientCert   # or VerifyClientCertIfGiven
      client_ca_file: tls/ca.crt
      min_version: TLS12            # TLS10 | TLS11 | TLS12 (default) | TLS13
    http_server_config:
      headers:
        Strict-Transport-Security: max-age=31536000
    basic_auth_users:
      prometheus: $2y$10$...        # bcrypt hash, e.g. from `htpasswd -nBC 10 "" | tr -d ':'`

The file is read once at start. Hashes are only parsed then (a cost-18 hash must not delay the
start or `--check-config`); bcrypt runs on the first request of each (user, password) pair.
"""

from __future__ import annotations

import ipaddress
import re
from pathlib import Path
from typing import Any

from pydantic import Field, field_validator, model_validator

from pgvigil.config.files import ConfigError, read_yaml, validate_model
from pgvigil.config.types import Strict

TLS_VERSIONS = {"TLS10": 0x0301, "TLS11": 0x0302, "TLS12": 0x0303, "TLS13": 0x0304}
CLIENT_AUTH_TYPES = ("NoClientCert", "VerifyClientCertIfGiven", "RequireAndVerifyClientCert")
# Go accepts an unverified client certificate in these modes; Python's ssl cannot ask for a
# certificate without verifying it.
UNHONOURED_CLIENT_AUTH_TYPES = ("RequestClientCert", "RequireAnyClientCert", "RequireClientCert")

# Go's names of the TLS 1.2 suites in crypto/tls.CipherSuites(), in Go's own preference order
# (Go ignores the order of the list in the file), with OpenSSL's names.
TLS12_CIPHERS = {
    "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256": "ECDHE-ECDSA-AES128-GCM-SHA256",
    "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256": "ECDHE-RSA-AES128-GCM-SHA256",
    "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384": "ECDHE-ECDSA-AES256-GCM-SHA384",
    "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384": "ECDHE-RSA-AES256-GCM-SHA384",
    "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256": "ECDHE-ECDSA-CHACHA20-POLY1305",
    "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256": "ECDHE-RSA-CHACHA20-POLY1305",
    "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA": "ECDHE-ECDSA-AES128-SHA",
    "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA": "ECDHE-RSA-AES128-SHA",
    "TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA": "ECDHE-ECDSA-AES256-SHA",
    "TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA": "ECDHE-RSA-AES256-SHA",
    "TLS_RSA_WITH_AES_128_GCM_SHA256": "AES128-GCM-SHA256",
    "TLS_RSA_WITH_AES_256_GCM_SHA384": "AES256-GCM-SHA384",
    "TLS_RSA_WITH_AES_128_CBC_SHA": "AES128-SHA",
    "TLS_RSA_WITH_AES_256_CBC_SHA": "AES256-SHA",
}
# TLS 1.3 suites are accepted in the list and always on, as in Go (neither Go nor Python's ssl
# lets a server choose them).
TLS13_CIPHERS = ("TLS_AES_128_GCM_SHA256", "TLS_AES_256_GCM_SHA384", "TLS_CHACHA20_POLY1305_SHA256")
# Go's net/http refuses to start HTTP/2 (on by default in the toolkit) without one of these.
HTTP2_REQUIRED_CIPHERS = (
    "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
    "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256",
)
CURVES = {"CurveP256": "prime256v1", "CurveP384": "secp384r1", "CurveP521": "secp521r1"}
CURVES["X25519"] = "X25519"

# The toolkit's allow-list: these headers only, and for two of them only these values.
HEADER_VALUES: dict[str, tuple[str, ...] | None] = {
    "Strict-Transport-Security": None,
    "X-Content-Type-Options": ("nosniff",),
    "X-Frame-Options": ("deny", "sameorigin"),
    "X-XSS-Protection": None,
    "Content-Security-Policy": None,
}

BCRYPT_HASH = re.compile(r"\$2[aby]\$(0[4-9]|[12][0-9]|3[01])\$[./A-Za-z0-9]{53}")


def _not_supported(name: str, instead: str) -> ValueError:
    return ValueError(f"{name} is not supported by pgvigil (see docs/security.md); {instead}")


class TlsServerConfig(Strict):
    cert_file: str = ""
    key_file: str = ""
    client_auth_type: str = ""
    client_ca_file: str = ""
    cipher_suites: list[str] = Field(default_factory=list)
    curve_preferences: list[str] = Field(default_factory=list)
    min_version: str = "TLS12"
    max_version: str = "TLS13"
    prefer_server_cipher_suites: bool = True  # ignored by Go since 1.17, and so here
    client_allowed_sans: list[str] | None = None
    # Inline PEM: the toolkit takes it, pgvigil refuses it by name.
    cert: Any = None
    key: Any = None
    client_ca: Any = None

    @field_validator("cert", "key", "client_ca")
    @classmethod
    def _inline(cls, v: Any, info: Any) -> Any:
        name = info.field_name
        raise _not_supported(f"inline {name}", f"put the PEM in a file and give {name}_file")

    @field_validator("min_version", "max_version")
    @classmethod
    def _version(cls, v: str) -> str:
        if v not in TLS_VERSIONS:
            raise ValueError(f"unknown TLS version: {v} (one of {', '.join(TLS_VERSIONS)})")
        return v

    @field_validator("client_auth_type")
    @classmethod
    def _client_auth(cls, v: str) -> str:
        if v in UNHONOURED_CLIENT_AUTH_TYPES:
            raise ValueError(
                f"{v} is not supported: Python's ssl cannot accept a client certificate "
                "without verifying it; use VerifyClientCertIfGiven or RequireAndVerifyClientCert"
            )
        if v and v not in CLIENT_AUTH_TYPES:
            raise ValueError(f"invalid ClientAuth: {v} (one of {', '.join(CLIENT_AUTH_TYPES)})")
        return v

    @field_validator("cipher_suites")
    @classmethod
    def _ciphers(cls, v: list[str]) -> list[str]:
        unknown = [c for c in v if c not in TLS12_CIPHERS and c not in TLS13_CIPHERS]
        if unknown:
            raise ValueError(f"unknown cipher: {', '.join(unknown)}")
        return v

    @field_validator("curve_preferences")
    @classmethod
    def _curves(cls, v: list[str]) -> list[str]:
        unknown = [c for c in v if c not in CURVES]
        if unknown:
            raise ValueError(f"unknown curve: {', '.join(unknown)} (one of {', '.join(CURVES)})")
        if len(set(v)) > 1:
            raise ValueError(
                "several curves cannot be honoured: Python's ssl restricts a server to one "
                "curve or none; give one, or remove curve_preferences for the default set"
            )
        return v

    @model_validator(mode="after")
    def _consistent(self) -> TlsServerConfig:
        problems = []
        if self.enabled:
            if not self.cert_file:
                problems.append("missing one of cert or cert_file: TLS is configured here")
            if not self.key_file:
                problems.append("missing one of key or key_file: TLS is configured here")
        if self.client_ca_file and self.client_auth_type in ("", "NoClientCert"):
            problems.append(
                "client CA's have been configured without a Client Auth Policy: set "
                "client_auth_type (RequireAndVerifyClientCert or VerifyClientCertIfGiven), "
                "else client certificates would not be checked"
            )
        if self.client_allowed_sans is not None and self.client_auth_type in ("", "NoClientCert"):
            # Go skips the SAN check when it asks for no certificate: everyone would get in.
            problems.append(
                "client_allowed_sans needs a client_auth_type that asks for certificates "
                "(RequireAndVerifyClientCert or VerifyClientCertIfGiven)"
            )
        if TLS_VERSIONS[self.max_version] < TLS_VERSIONS[self.min_version]:
            problems.append("max_version is lower than min_version")
        if problems:
            raise ValueError("; ".join(problems))
        return self

    @property
    def enabled(self) -> bool:
        """As the toolkit: any TLS key set means TLS, so a typo cannot fall back to plain HTTP."""
        return bool(self.cert_file or self.key_file or self.client_ca_file or self.client_auth_type)

    def openssl_ciphers(self) -> list[str]:
        return [name for go, name in TLS12_CIPHERS.items() if go in self.cipher_suites]

    @property
    def below_tls12(self) -> bool:
        return TLS_VERSIONS[self.min_version] < TLS_VERSIONS["TLS12"]


def _header_value(v: Any) -> str:
    if isinstance(v, bool):  # YAML scalars, as Go's yaml turns them into strings
        return "true" if v else "false"
    if isinstance(v, int | float | str):
        return str(v)
    raise ValueError("must be a single value, not a list or mapping")


class HttpServerConfig(Strict):
    # HTTP/2 is not served (Prometheus scrapes over HTTP/1.1); the key is kept for its rule.
    http2: bool = True
    headers: dict[str, str] = Field(default_factory=dict)

    @field_validator("headers", mode="before")
    @classmethod
    def _allowed_headers(cls, v: Any) -> Any:
        if not isinstance(v, dict):
            return v
        out, problems = {}, []
        for name, raw in v.items():
            try:
                value = _header_value(raw)
            except ValueError as e:
                problems.append(f"{name}: {e}")
                continue
            if name not in HEADER_VALUES:
                problems.append(
                    f'HTTP header "{name}" can not be configured (allowed: '
                    f"{', '.join(HEADER_VALUES)})"
                )
            elif (allowed := HEADER_VALUES[name]) is not None and value not in allowed:
                problems.append(
                    f"invalid value for {name}: expected one of {allowed}, got {value!r}"
                )
            elif any(ch in value for ch in "\r\n\0"):
                problems.append(f"{name}: the value must be one line")
            out[str(name)] = value
        if problems:
            raise ValueError("; ".join(problems))
        return out


class WebConfigFile(Strict):
    tls_server_config: TlsServerConfig = Field(default_factory=TlsServerConfig)
    http_server_config: HttpServerConfig = Field(default_factory=HttpServerConfig)
    basic_auth_users: dict[str, str] = Field(default_factory=dict)
    rate_limit: Any = None

    @field_validator("rate_limit")
    @classmethod
    def _rate_limit(cls, v: Any) -> Any:
        raise _not_supported("rate_limit", "remove it (or limit in a proxy in front)")

    @field_validator("basic_auth_users", mode="before")
    @classmethod
    def _bcrypt_hashes(cls, v: Any) -> Any:
        if not isinstance(v, dict):
            return v
        bad_names = sorted(str(u) for u in v if not isinstance(u, str) or ":" in u or not u)
        if bad_names:
            # Basic auth sends "user:password": such a user could never log in.
            raise ValueError(f"user names must be non-empty without ':': {', '.join(bad_names)}")
        bad = sorted(user for user, hashed in v.items() if not is_bcrypt_hash(hashed))
        if bad:
            raise ValueError(
                f"not a bcrypt hash for {', '.join(bad)} (expected '$2y$10$...', e.g. from "
                "`htpasswd -nBC 10 \"\" | tr -d ':'`; plain passwords are not accepted)"
            )
        return v

    @model_validator(mode="after")
    def _http2_cipher(self) -> WebConfigFile:
        tls = self.tls_server_config
        if (
            self.http_server_config.http2
            and tls.cipher_suites
            and tls.min_version != "TLS13"
            and not any(c in tls.cipher_suites for c in HTTP2_REQUIRED_CIPHERS)
        ):
            raise ValueError(
                "tls_server_config.cipher_suites is missing an HTTP/2-required "
                "AES_128_GCM_SHA256 cipher (the exporter-toolkit refuses this too): add "
                f"{HTTP2_REQUIRED_CIPHERS[0]} or set http_server_config.http2: false"
            )
        return self


def is_bcrypt_hash(value: Any) -> bool:
    """The shape and cost of a bcrypt hash, without the (deliberately slow) hashing."""
    return isinstance(value, str) and BCRYPT_HASH.fullmatch(value) is not None


def load(path: Path) -> WebConfigFile:
    """Read and validate a web config file; every problem at once, each with its place.
    Relative file names are resolved against the file's folder, as the toolkit does."""
    data, root = read_yaml(path, "web config file")
    config = validate_model(WebConfigFile, data, source=str(path), root=root)
    tls = config.tls_server_config
    folder = path.parent
    resolved = {
        key: str(folder / value)
        for key in ("cert_file", "key_file", "client_ca_file")
        if (value := getattr(tls, key))
    }
    return config.model_copy(update={"tls_server_config": tls.model_copy(update=resolved)})


def san_values(peer: dict[str, Any]) -> set[str]:
    """The subject alternative names of a verified peer certificate, spelt as Go spells them."""
    out = set()
    for kind, value in peer.get("subjectAltName", ()):
        if kind == "IP Address":
            try:
                value = str(ipaddress.ip_address(value.strip()))
            except ValueError:
                pass
        out.add(value)
    return out


__all__ = ["ConfigError", "WebConfigFile", "is_bcrypt_hash", "load", "san_values"]
