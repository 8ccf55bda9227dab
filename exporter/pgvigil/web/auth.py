"""Basic auth against the bcrypt hashes of a web config, costing nothing on the hot path.

As in the exporter-toolkit, a hash is verified on the first request of each
(user, hash, password) and the outcome remembered, and unknown users cost one bcrypt too
(timing does not tell which users exist). bcrypt runs at most `BCRYPT_AT_ONCE` at a time
and a request waits for its turn at most `BCRYPT_WAIT_SECONDS`: a flood of wrong passwords
uses one core at most and never delays a scrape whose credentials are already remembered.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import threading
from collections import OrderedDict
from enum import Enum

import bcrypt

# The toolkit's fixed hash of "fakepassword", checked for users that do not exist.
UNKNOWN_USER_HASH = b"$2y$10$QOauhQNbBCuQDKes6eFzPeMqBSjb7Mr5DUmpZ/VcEd00UAV/LDeSi"
BCRYPT_AT_ONCE = 1
BCRYPT_WAIT_SECONDS = 5.0


class Outcome(Enum):
    ALLOWED = "allowed"
    DENIED = "denied"
    BUSY = "busy"  # too many unverified credentials queued: try again later


class BasicAuth:
    # Outcomes are remembered apart: wrong passwords, however many, never push a right one out.
    ALLOWED_SIZE = 64
    DENIED_SIZE = 1024

    def __init__(self, users: dict[str, str]):
        self._users = {user: hashed.encode() for user, hashed in users.items()}
        self._key = os.urandom(32)
        self._remembered: dict[bool, OrderedDict[bytes, None]] = {
            True: OrderedDict(),
            False: OrderedDict(),
        }
        self._lock = threading.Lock()
        self._bcrypt = threading.BoundedSemaphore(BCRYPT_AT_ONCE)

    def check(self, header: str | None) -> Outcome:
        credentials = parse_basic(header)
        if credentials is None:
            return Outcome.DENIED
        user, password = credentials
        hashed = self._users.get(user)
        # Length-prefixed fields under a keyed digest: no (user, password) split can collide
        # with another (the toolkit's cache-poisoning case), and no password sits in memory.
        key = self._digest(user.encode(), hashed or UNKNOWN_USER_HASH, password.encode())
        with self._lock:
            for ok, remembered in self._remembered.items():
                if key in remembered:
                    remembered.move_to_end(key)
                    return Outcome.ALLOWED if ok else Outcome.DENIED
        if not self._bcrypt.acquire(timeout=BCRYPT_WAIT_SECONDS):
            return Outcome.BUSY
        try:
            matches = bcrypt.checkpw(password.encode(), hashed or UNKNOWN_USER_HASH)
        except ValueError:  # a hash bcrypt cannot read: nobody logs in with it
            matches = False
        finally:
            self._bcrypt.release()
        ok = matches and hashed is not None
        with self._lock:
            remembered = self._remembered[ok]
            remembered[key] = None
            while len(remembered) > (self.ALLOWED_SIZE if ok else self.DENIED_SIZE):
                remembered.popitem(last=False)
        return Outcome.ALLOWED if ok else Outcome.DENIED

    def _digest(self, *fields: bytes) -> bytes:
        framed = b"".join(len(f).to_bytes(4, "big") + f for f in fields)
        return hmac.new(self._key, framed, hashlib.sha256).digest()


def parse_basic(header: str | None) -> tuple[str, str] | None:
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
