"""Logging set-up: journald lines, plain lines, or JSON lines (stdlib only).

The rich terminal handler is built by the CLI layer (rich is not stdlib) and passed in.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from collections.abc import Mapping
from typing import TextIO

# syslog priorities, so journalctl -p filters work on our lines
_JOURNAL_PRIORITY = {"DEBUG": 7, "INFO": 6, "WARNING": 4, "ERROR": 3, "CRITICAL": 2}


class JournalFormatter(logging.Formatter):
    """One line, no timestamp (journald adds its own), a `<priority>` prefix."""

    def format(self, record: logging.LogRecord) -> str:
        priority = _JOURNAL_PRIORITY.get(record.levelname, 6)
        text = f"<{priority}>{record.name}: {record.getMessage()}"
        if record.exc_info:
            text += " | " + self.formatException(record.exc_info).replace("\n", " | ")
        return text


class PlainFormatter(logging.Formatter):
    """One line with a UTC timestamp, for log files and pipes."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s.%(msecs)03dZ %(levelname)-7s %(name)s: %(message)s",
                         "%Y-%m-%dT%H:%M:%S")
        self.converter = time.gmtime


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ts (ISO UTC), level, logger, msg, and exc if any."""

    def format(self, record: logging.LogRecord) -> str:
        created = time.gmtime(record.created)
        entry = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", created) + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)


def resolve_format(fmt: str, environ: Mapping[str, str], stream: TextIO) -> str:
    """Turn the `log.format` setting into journal | plain | json | rich."""
    if fmt != "auto":
        return fmt
    if environ.get("JOURNAL_STREAM"):
        return "journal"
    return "rich" if stream.isatty() else "plain"


def stream_handler(kind: str, stream: TextIO | None = None) -> logging.Handler:
    """A handler writing `kind` lines (journal, plain or json) to `stream`."""
    formatter = {"journal": JournalFormatter, "plain": PlainFormatter,
                 "json": JsonFormatter}[kind]()
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(formatter)
    return handler


def install(handler: logging.Handler, level: str) -> None:
    """Make `handler` the root logger's only handler, at `level`."""
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
        old.close()
    root.addHandler(handler)
    root.setLevel(level.upper())
    logging.getLogger("asyncio").setLevel(logging.WARNING)
