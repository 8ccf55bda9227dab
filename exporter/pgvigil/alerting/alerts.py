"""`pgvigil alerts`: what fires, and acknowledgement as Alertmanager silences.

    pgvigil alerts                                       list alerts with their silence state
    pgvigil alerts ack PgvigilDatabaseSizeHigh --for 4h --comment "archiving tonight"
    pgvigil alerts ack 'alertname=~"PgvigilDisk.*"' instance=db1:9839 --for 1d --comment ...
    pgvigil alerts unack PgvigilDatabaseSizeHigh         expire its silences (or a silence id)
    pgvigil alerts config --output am.yml                the effective Alertmanager config

An acknowledgement is a silence (author, comment, expiry): no more emails for the matching
alerts until it expires or is unacknowledged; a resolved condition still resolves.
"""

from __future__ import annotations

import argparse
import difflib
import getpass
import os
import re
import socket
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pgvigil.alerting.alertmanager import (
    DEFAULT_URL,
    URL_ENV,
    Alertmanager,
    AlertmanagerError,
    Matcher,
    effective_config,
    matcher_text,
    matches,
    parse_duration,
    short_time,
    shown,
)
from pgvigil.alerting.rules import alert_names, render
from pgvigil.config.thresholds import load_thresholds

# The repository's alertmanager.yml, shipped with the package (a link to it in the checkout).
DEFAULT_CONFIG = Path(__file__).with_name("alertmanager.yml")
WATCHDOG = "PgvigilWatchdog"
_SILENCE_ID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
_SHOWN = ("alertname", "severity", "instance", "job")


def configure(parser: argparse.ArgumentParser) -> None:
    parser.epilog = __doc__.split("\n\n")[1] if __doc__ else None
    _url_option(parser, default=None)
    sub = parser.add_subparsers(dest="alerts_action", metavar="ACTION")
    lst = sub.add_parser(
        "list", allow_abbrev=False, help="list alerts with their silence state (the default)"
    )
    _url_option(lst)
    ack = sub.add_parser(
        "ack", allow_abbrev=False, help="acknowledge: silence matching alerts for a while"
    )
    _url_option(ack)
    ack.add_argument(
        "matchers",
        nargs="+",
        metavar="MATCHER",
        help='an alert name, or matchers like instance="db1:9839", severity!=warning, '
        'alertname=~"Pgvigil.*"',
    )
    ack.add_argument("--for", dest="duration", default="4h", help="how long (default: 4h)")
    ack.add_argument("--comment", required=True, help="why (shown to everyone)")
    ack.add_argument("--author", default=None, help="who (default: USER@HOST)")
    unack = sub.add_parser(
        "unack", allow_abbrev=False, help="expire a silence (by id) or the silences of an alert"
    )
    _url_option(unack)
    unack.add_argument(
        "targets", nargs="+", metavar="SILENCE_ID|MATCHER", help="a silence id or matchers"
    )
    cfg = sub.add_parser(
        "config", allow_abbrev=False, help="print the effective Alertmanager config for this site"
    )
    cfg.add_argument("--file", type=Path, default=DEFAULT_CONFIG, help="default: %(default)s")
    cfg.add_argument("--output", type=Path, default=None, help="write here instead of stdout")


def _url_option(parser: argparse.ArgumentParser, default: Any = argparse.SUPPRESS) -> None:
    parser.add_argument(
        "--alertmanager.url",
        dest="alertmanager_url",
        default=default,
        help=f"Alertmanager base URL; comma-separated for an HA cluster "
        f"(default: ${URL_ENV} or {DEFAULT_URL})",
    )


def run(args: argparse.Namespace) -> int:
    action = args.alerts_action or "list"
    if action == "config":
        return _config(args)
    url = args.alertmanager_url or os.environ.get(URL_ENV) or DEFAULT_URL
    am = Alertmanager(url)
    try:
        if action == "ack":
            return _ack(am, args)
        if action == "unack":
            return _unack(am, args.targets)
        return _list(am)
    except AlertmanagerError as e:
        print(f"pgvigil: {e}", file=sys.stderr)
        return 1
    except ValueError as e:
        print(f"pgvigil: {e}", file=sys.stderr)
        return 2


def _list(am: Alertmanager) -> int:
    alerts = am.alerts()
    silences = {s["id"]: s for s in am.silences()}
    listed = [a for a in alerts if a["labels"].get("alertname") != WATCHDOG]
    rows = [("ALERT", "SEVERITY", "INSTANCE", "STATE", "SINCE", "DETAILS")]
    for alert in sorted(listed, key=_sort_key):
        labels = alert["labels"]
        rows.append(
            (
                shown(labels.get("alertname", "?")),
                shown(labels.get("severity", "")),
                shown(labels.get("instance", "")),
                _state(alert, silences),
                short_time(alert.get("startsAt", "")),
                " ".join(
                    f"{shown(k)}={shown(v)}" for k, v in sorted(labels.items()) if k not in _SHOWN
                ),
            )
        )
    if listed:
        widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]) - 1)]
        for row in rows:
            print("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=False)), row[-1])
    else:
        print(f"no alerts at {am.url}")
    watchdog = any(a["labels"].get("alertname") == WATCHDOG for a in alerts)
    print(
        "watchdog: firing (Prometheus -> Alertmanager works)"
        if watchdog
        else f"watchdog: MISSING ({WATCHDOG} is not firing: check that Prometheus loads "
        "rules/alerts.yml and sends to this Alertmanager)"
    )
    return 0


def _sort_key(alert: dict[str, Any]) -> tuple[int, str, str]:
    labels = alert["labels"]
    order = {"critical": 0, "warning": 1}.get(labels.get("severity", ""), 2)
    return order, labels.get("alertname", ""), labels.get("instance", "")


def _state(alert: dict[str, Any], silences: dict[str, dict[str, Any]]) -> str:
    status = alert.get("status", {})
    for silence_id in status.get("silencedBy") or []:
        s = silences.get(silence_id, {})
        until = short_time(s.get("endsAt", ""))
        also = ", inhibited" if status.get("inhibitedBy") else ""
        by = shown(s.get("createdBy", "?"))
        return f"acked by {by} until {until} ({shown(silence_id[:8])}{also})"
    if status.get("inhibitedBy"):
        return "inhibited (its critical fires)"
    return "firing" if status.get("state") == "active" else str(status.get("state", "?"))


def _ack(am: Alertmanager, args: argparse.Namespace) -> int:
    matchers = [Matcher.parse(t) for t in args.matchers]
    duration = parse_duration(args.duration)
    author = args.author or f"{getpass.getuser()}@{socket.gethostname()}"
    alerts = am.alerts()
    _check_alert_names(matchers, {str(a["labels"].get("alertname")) for a in alerts})
    active = [
        a
        for a in alerts
        if a["labels"].get("alertname") != WATCHDOG and matches(a["labels"], matchers)
    ]
    silence_id = am.create_silence(matchers, duration, author, args.comment)
    silence = next((s for s in am.silences() if s["id"] == silence_id), {})
    until = short_time(silence.get("endsAt", ""))
    what = ", ".join(str(m) for m in matchers)
    print(
        f"acknowledged {len(active)} alert(s) matching {shown(what, 200)} until {until} "
        f"by {shown(author)}"
    )
    print(f"silence {silence_id}; undo: pgvigil alerts unack {silence_id}")
    if not active:
        print("note: no alert matches right now; the silence still covers ones that start later")
    return 0


def _check_alert_names(matchers: Sequence[Matcher], firing: set[str]) -> None:
    """A silence for a misspelled alert name would silence nothing, forever unnoticed: an exact
    name must be one the rules define (or one firing now, from a site's own rules). Regular
    expressions stay free: a pre-emptive silence may match what does not exist yet."""
    known = alert_names(render(load_thresholds())) | firing
    for m in matchers:
        if m.name == "alertname" and m.is_equal and not m.is_regex and m.value not in known:
            close = difflib.get_close_matches(m.value, sorted(known), n=1)
            hint = f"; did you mean {close[0]}?" if close else ""
            raise ValueError(
                f"no rule defines an alert named {m.value!r}{hint} (nothing acknowledged)"
            )


def _unack(am: Alertmanager, targets: Sequence[str]) -> int:
    live = [s for s in am.silences() if s.get("status", {}).get("state") in ("active", "pending")]
    if len(targets) == 1 and _SILENCE_ID.match(targets[0]):
        chosen = [s for s in live if s["id"] == targets[0]]
        if not chosen:
            print(f"pgvigil: no active silence with id {targets[0]}", file=sys.stderr)
            return 1
    else:
        wanted = {str(Matcher.parse(t)) for t in targets}
        chosen = [s for s in live if wanted <= {matcher_text(m) for m in s["matchers"]}]
        if not chosen:
            print(
                f"pgvigil: no active silence matches {', '.join(sorted(wanted))}", file=sys.stderr
            )
            return 1
    for s in chosen:
        am.expire_silence(s["id"])
        what = ", ".join(matcher_text(m) for m in s["matchers"])
        by, why = shown(s.get("createdBy")), shown(s.get("comment"))
        print(f"expired silence {shown(s['id'])} ({shown(what, 200)}; by {by}: {why})")
    return 0


def _config(args: argparse.Namespace) -> int:
    try:
        text = effective_config(args.file.read_text(encoding="utf-8"))
    except OSError as e:
        print(f"pgvigil: cannot read {args.file}: {e.strerror}", file=sys.stderr)
        return 2
    except ValueError as e:
        print(f"pgvigil: {e}", file=sys.stderr)
        return 2
    if args.output is None:
        sys.stdout.write(text)
    else:
        args.output.write_text(text, encoding="utf-8")
        print(f"wrote {args.output}")
    return 0
