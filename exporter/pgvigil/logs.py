"""Logging in the logfmt style of Prometheus exporters, with secrets scrubbed."""

from __future__ import annotations

import logging
import sys
import time

from pgvigil.redact import scrub


class _ScrubFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = scrub(record.getMessage())
        record.args = None
        if record.exc_info:
            # Keep the one-line reason, drop the traceback: a user's mistake is not a crash.
            record.msg = f"{record.msg}: {scrub(str(record.exc_info[1]))}"
            record.exc_info = None
            record.exc_text = None
        return True


_ESCAPES = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def printable(text: str) -> str:
    """Text for one line of a log or a terminal: line breaks, escape sequences and other
    unprintable characters (a table name can hold any) spelt out, so no name forges a line."""
    if text.isprintable():
        return text
    return "".join(
        ch
        if ch.isprintable()
        else _ESCAPES.get(ch) or (f"\\x{ord(ch):02x}" if ord(ch) < 0x100 else f"\\u{ord(ch):04x}")
        for ch in text
    )


class _LogfmtFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        ts = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
        msg = printable(record.getMessage()).replace('"', "'")
        return f'ts={ts}Z level={record.levelname.lower()} logger={record.name} msg="{msg}"'


def setup(level: str = "info") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_LogfmtFormatter())
    handler.addFilter(_ScrubFilter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # Library chatter (pool resets, pgserver's command dumps) is not the user's business.
    for noisy in ("sqlalchemy", "pgserver", "urllib3", "schedule"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
