"""The server-side TLS context from a web config's `tls_server_config`."""

from __future__ import annotations

import ssl

from pgvigil.config.files import ConfigError
from pgvigil.web.config import CURVES, TLS12_CIPHERS, TlsServerConfig

_VERSIONS = {
    "TLS10": ssl.TLSVersion.TLSv1,
    "TLS11": ssl.TLSVersion.TLSv1_1,
    "TLS12": ssl.TLSVersion.TLSv1_2,
    "TLS13": ssl.TLSVersion.TLSv1_3,
}
# Go's default suites before TLS 1.3 (no RSA key exchange since Go 1.22), for TLS 1.0/1.1.
_GO_DEFAULT_TLS12 = [name for go, name in TLS12_CIPHERS.items() if "ECDHE" in go]
_VERIFY = {
    "": ssl.CERT_NONE,
    "NoClientCert": ssl.CERT_NONE,
    "VerifyClientCertIfGiven": ssl.CERT_OPTIONAL,
    "RequireAndVerifyClientCert": ssl.CERT_REQUIRED,
}


def server_context(tls: TlsServerConfig, source: str) -> ssl.SSLContext | None:
    """The SSLContext, or None when no TLS key is set (plain HTTP, as the toolkit does)."""
    if not tls.enabled:
        return None
    place = f"{source}: tls_server_config"
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = _VERSIONS[tls.min_version]
    ctx.maximum_version = _VERSIONS[tls.max_version]
    # Go picks the suite in its own order, whatever the client prefers.
    ctx.options |= ssl.OP_CIPHER_SERVER_PREFERENCE
    if tls.below_tls12:
        # OpenSSL's default security level refuses TLS 1.0/1.1 outright; level 0 with Go's
        # own suites (CBC with SHA-1 among them) is what the toolkit serves.
        ctx.set_ciphers(":".join([*(tls.openssl_ciphers() or _GO_DEFAULT_TLS12), "@SECLEVEL=0"]))
    elif tls.cipher_suites:
        tls12 = tls.openssl_ciphers()
        if tls12:
            ctx.set_ciphers(":".join(tls12))
        elif tls.max_version == "TLS12":
            raise ConfigError([f"{place}.cipher_suites: no TLS 1.2 suite, and TLS 1.3 is off"])
        else:  # only TLS 1.3 suites listed: as in Go, TLS 1.2 has nothing to negotiate
            ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    if tls.curve_preferences:
        ctx.set_ecdh_curve(CURVES[tls.curve_preferences[0]])
    try:
        ctx.load_cert_chain(tls.cert_file, tls.key_file)
    except (OSError, ssl.SSLError) as e:
        raise ConfigError(
            [f"{place}: cannot load cert_file {tls.cert_file} / key_file {tls.key_file}: {_why(e)}"]
        ) from None
    ctx.verify_mode = _VERIFY[tls.client_auth_type]
    if tls.client_ca_file:
        try:
            ctx.load_verify_locations(cafile=tls.client_ca_file)
        except (OSError, ssl.SSLError) as e:
            raise ConfigError(
                [f"{place}.client_ca_file: cannot load {tls.client_ca_file}: {_why(e)}"]
            ) from None
    elif ctx.verify_mode != ssl.CERT_NONE:
        # Go verifies client certificates against the system's roots when no CA is given.
        ctx.load_default_certs(ssl.Purpose.CLIENT_AUTH)
    return ctx


def _why(e: BaseException) -> str:
    return getattr(e, "strerror", None) or getattr(e, "reason", None) or str(e)
