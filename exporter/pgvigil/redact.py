"""Keeps passwords out of logs, metrics, HTTP answers and error messages.

Every password pgvigil learns (from a DSN, a password file or the environment) is registered
here; `scrub()` replaces each with `***` and also masks anything that looks like a password in
a URL (`user:secret@host`) or a key=value DSN (`password=secret`). The logging filter installed
by `pgvigil.logs` runs every record through it, so even a library's exception text is safe.
"""

from __future__ import annotations

import re
import threading

MASK = "***"

_lock = threading.Lock()
_secrets: set[str] = set()

_URL_PASSWORD = re.compile(r"(?P<scheme>[a-zA-Z][\w+.-]*://)(?P<user>[^:/@\s]*):(?P<pw>[^@\s]*)@")
_KV_PASSWORD = re.compile(r"(?P<key>\bpassword\s*=\s*)(?P<pw>'(?:[^'\\]|\\.)*'|[^\s]+)", re.I)


def register_secret(secret: str | None) -> None:
    """Remember a secret so that scrub() removes it wherever it appears."""
    if secret and len(secret) >= 3:  # shorter strings would mask ordinary text
        with _lock:
            _secrets.add(secret)


def scrub(text: str) -> str:
    """Return text with every known secret and every DSN password masked."""
    text = _URL_PASSWORD.sub(lambda m: f"{m['scheme']}{m['user']}:{MASK}@", text)
    text = _KV_PASSWORD.sub(lambda m: f"{m['key']}{MASK}", text)
    with _lock:
        secrets = sorted(_secrets, key=len, reverse=True)
    for secret in secrets:
        text = text.replace(secret, MASK)
    return text


def password_in_dsn(dsn: str) -> str | None:
    """The password written inside a URL or key=value DSN, if any (without parsing it)."""
    m = _URL_PASSWORD.search(dsn)
    if m and m["pw"]:
        return m["pw"]
    m = _KV_PASSWORD.search(dsn)
    if m:
        return m["pw"].strip("'")
    return None
