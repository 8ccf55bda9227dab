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


class _LogfmtFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        ts = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
        msg = record.getMessage().replace('"', "'")
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
