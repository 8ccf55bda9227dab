"""A small Alertmanager API v2 client, and the effective Alertmanager config for a site.

Acknowledging an alert in pgvigil is creating a silence (with author, comment and expiry);
unacknowledging is expiring it. Only the standard library is used: the API is a handful of
JSON calls.
"""

from __future__ import annotations

import json
import os
import re
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import yaml

from pgvigil import units
from pgvigil.logs import printable

DEFAULT_URL = "http://127.0.0.1:9093"
URL_ENV = "PGVIGIL_ALERTMANAGER_URL"

_MATCHER = re.compile(r"^\s*([A-Za-z_][A-Za-z0-9_]*)\s*(=~|!~|!=|=)\s*(.*?)\s*$")


class AlertmanagerError(Exception):
    """Alertmanager could not be reached or refused a request; the message is one clear line."""


@dataclass(frozen=True)
class Matcher:
    name: str
    value: str
    is_regex: bool = False
    is_equal: bool = True

    @classmethod
    def parse(cls, text: str) -> Matcher:
        """`alertname`-only shorthand (`PgvigilX`), or `name=value`, `!=`, `=~`, `!~`."""
        m = _MATCHER.match(text)
        if m is None:
            if re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", text.strip()):
                return cls("alertname", text.strip())
            raise ValueError(f'{text!r} is not an alert name or a matcher like name="value"')
        name, op, value = m.groups()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
            value = value[1:-1]
        return cls(name, value, is_regex="~" in op, is_equal=not op.startswith("!"))

    def api(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "value": self.value,
            "isRegex": self.is_regex,
            "isEqual": self.is_equal,
        }

    def __str__(self) -> str:
        op = {(True, False): "=", (False, False): "!=", (True, True): "=~", (False, True): "!~"}[
            (self.is_equal, self.is_regex)
        ]
        return f'{self.name}{op}"{self.value}"'


def matcher_from_api(api_matcher: Mapping[str, Any]) -> Matcher:
    return Matcher(
        api_matcher["name"],
        api_matcher["value"],
        bool(api_matcher.get("isRegex")),
        bool(api_matcher.get("isEqual", True)),
    )


def matcher_text(api_matcher: Mapping[str, Any]) -> str:
    return str(matcher_from_api(api_matcher))


def matches(labels: Mapping[str, str], matchers: Sequence[Matcher]) -> bool:
    """Whether alert labels match every matcher, as Alertmanager decides it (a missing label
    reads as the empty string; regular expressions are anchored)."""
    for m in matchers:
        value = labels.get(m.name, "")
        hit = re.fullmatch(m.value, value) is not None if m.is_regex else value == m.value
        if hit != m.is_equal:
            return False
    return True


# A label value (a table name, an instance) may be as long as its author liked.
SHOWN_CHARACTERS = 80


def shown(value: object, limit: int = SHOWN_CHARACTERS) -> str:
    """An alert label, a silence's author or comment as terminal text: one line (line breaks
    and escape sequences spelt out, as in the logs) of at most `limit` characters."""
    text = printable(str(value))
    return text if len(text) <= limit else text[: limit - 1] + "…"


def short_time(iso: str) -> str:
    """An API timestamp as `2026-12-01 23:40 UTC` (the text itself when it is not one)."""
    try:
        return datetime.fromisoformat(iso.replace("Z", "+00:00")).strftime("%Y-%m-%d %H:%M UTC")
    except ValueError:
        return iso


def parse_duration(text: str) -> timedelta:
    """4h, 30m, 1h30m, 2d, 1w -> timedelta (positive): how long a silence lasts."""
    seconds = units.parse_duration(text)
    if seconds <= 0:
        raise ValueError(f"{text!r} must be longer than zero")
    return timedelta(seconds=seconds)


class Alertmanager:
    """API v2 of one Alertmanager, or of an HA cluster given as comma-separated URLs.

    Cluster peers share silences by gossip, so any one will do: calls go to the first peer that
    answers and stay there (a silence created is then read back from the same peer).
    """

    def __init__(self, url: str = DEFAULT_URL, timeout: float = 5.0):
        self.urls = [u.strip().rstrip("/") for u in url.split(",") if u.strip()] or [DEFAULT_URL]
        self.url = self.urls[0]
        self.timeout = timeout

    def _call(self, method: str, path: str, body: Any = None) -> Any:
        failures = []
        for url in [self.url, *(u for u in self.urls if u != self.url)]:
            try:
                raw = self._request(url, method, path, body)
            except OSError as e:  # URLError, refused, timeouts: try the next peer
                failures.append(f"{url}: {getattr(e, 'reason', e)}")
                continue
            self.url = url
            try:
                return json.loads(raw) if raw.strip() else None
            except ValueError:
                raise AlertmanagerError(f"{url} did not answer like Alertmanager API v2") from None
        if len(failures) == 1:
            raise AlertmanagerError(f"cannot reach Alertmanager at {failures[0]}")
        raise AlertmanagerError(f"cannot reach any Alertmanager ({'; '.join(failures)})")

    def _request(self, url: str, method: str, path: str, body: Any) -> bytes:
        request = urllib.request.Request(
            f"{url}/api/v2{path}",
            data=json.dumps(body).encode() if body is not None else None,
            method=method,
            headers={"Content-Type": "application/json", "Accept": "application/json"},
        )
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                return bytes(response.read())
        except urllib.error.HTTPError as e:  # it answered: no point asking a peer
            detail = e.read().decode(errors="replace").strip().strip('"')
            raise AlertmanagerError(
                f"Alertmanager at {url} refused {method} {path}: HTTP {e.code} {detail}"
            ) from None

    def alerts(self) -> list[dict[str, Any]]:
        """Every alert Alertmanager holds: active, silenced and inhibited."""
        return list(self._call("GET", "/alerts"))

    def silences(self) -> list[dict[str, Any]]:
        return list(self._call("GET", "/silences"))

    def create_silence(
        self, matchers: Sequence[Matcher], duration: timedelta, author: str, comment: str
    ) -> str:
        now = datetime.now(UTC)
        body = {
            "matchers": [m.api() for m in matchers],
            "startsAt": now.isoformat(),
            "endsAt": (now + duration).isoformat(),
            "createdBy": author,
            "comment": comment,
        }
        return str(self._call("POST", "/silences", body)["silenceID"])

    def expire_silence(self, silence_id: str) -> None:
        self._call("DELETE", f"/silence/{urllib.parse.quote(silence_id)}")


ENV_SETTINGS = {
    "PGVIGIL_SMTP_SMARTHOST": ("global", "smtp_smarthost"),
    "PGVIGIL_SMTP_FROM": ("global", "smtp_from"),
    "PGVIGIL_SMTP_USERNAME": ("global", "smtp_auth_username"),
    "PGVIGIL_SMTP_PASSWORD_FILE": ("global", "smtp_auth_password_file"),
    "PGVIGIL_SMTP_REQUIRE_TLS": ("global", "smtp_require_tls"),
}


def effective_config(text: str, env: Mapping[str, str] | None = None) -> str:
    """The committed alertmanager.yml with the site's values from the environment.

    PGVIGIL_SMTP_* set the global SMTP settings (the password only as a file path),
    PGVIGIL_ALERT_EMAIL_TO the recipients of every email receiver, PGVIGIL_CRITICAL_EMAIL_TO
    those of email-critical, PGVIGIL_WATCHDOG_URL a webhook (dead man's switch) for the
    watchdog receiver. Routing, inhibition and templates stay as committed.
    """
    env = os.environ if env is None else env
    config = yaml.safe_load(text)
    for var, (section, key) in ENV_SETTINGS.items():
        if env.get(var):
            value: Any = env[var]
            if key == "smtp_require_tls":
                value = value.strip().lower() in ("1", "true", "yes", "on")
            elif key == "smtp_auth_password_file" and not Path(value).is_file():
                raise ValueError(f"{var}: {value} is not a readable file")
            config.setdefault(section, {})[key] = value
    for receiver in config.get("receivers", []):
        to = env.get("PGVIGIL_ALERT_EMAIL_TO")
        if receiver["name"] == "email-critical":
            to = env.get("PGVIGIL_CRITICAL_EMAIL_TO") or to
        for email in receiver.get("email_configs", []):
            if to:
                email["to"] = to
        if receiver["name"] == "watchdog" and env.get("PGVIGIL_WATCHDOG_URL"):
            receiver["webhook_configs"] = [
                {"url": env["PGVIGIL_WATCHDOG_URL"], "send_resolved": False}
            ]
    header = "# GENERATED by `pgvigil alerts config` from alertmanager.yml and PGVIGIL_* env.\n"
    return header + yaml.dump(config, Dumper=_LiteralDumper, sort_keys=False, width=10_000)


class _LiteralDumper(yaml.SafeDumper):
    """Multi-line strings (the email templates) stay readable blocks."""


_LiteralDumper.add_representer(
    str,
    lambda d, v: d.represent_scalar("tag:yaml.org,2002:str", v, style="|" if "\n" in v else None),
)
