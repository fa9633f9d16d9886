"""Structured logs: every service writes one JSON object per line to stderr.

Fields: ``ts`` (UTC, ms), ``level``, ``service``, ``logger``, ``msg``, whatever the call passed
in ``extra=``, and ``exc`` for exceptions — what a log pipeline (Loki, CloudWatch) can index
without parsing prose.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from typing import Any

# Attributes every LogRecord has; anything else on a record came from ``extra=``.
# uvicorn's ``color_message`` duplicates ``msg`` with terminal escapes.
_STANDARD = set(vars(logging.makeLogRecord({}))) | {
    "message",
    "asctime",
    "taskName",
    "color_message",
}
_CORE = ("ts", "level", "service", "logger", "msg")


class JsonFormatter(logging.Formatter):
    """One line per record, so a multi-line traceback stays one event for the log pipeline."""

    def __init__(self, service: str) -> None:
        super().__init__()
        self.service = service

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "service": self.service,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        # An extra named like a core field must not overwrite it: queries rely on those.
        entry.update(
            {k: v for k, v in vars(record).items() if k not in _STANDARD and k not in _CORE}
        )
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        return json.dumps(entry, default=str)


def configure_logging(service: str, level: str = "INFO") -> None:
    """Route every logger (and ``warnings``) to JSON lines on stderr, replacing any handler a
    library installed, so a service's stderr holds nothing a log pipeline cannot parse."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter(service))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    logging.captureWarnings(True)


def uvicorn_log_config(service: str, level: str = "INFO") -> dict[str, Any]:
    """For ``uvicorn.run(log_config=...)``: uvicorn applies its own logging config at start-up,
    which would otherwise replace ours with its plain-text formatters."""
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"json": {"()": JsonFormatter, "service": service}},
        "handlers": {
            "stderr": {
                "class": "logging.StreamHandler",
                "formatter": "json",
                "stream": "ext://sys.stderr",
            }
        },
        "loggers": {
            name: {"handlers": ["stderr"], "level": level.upper(), "propagate": False}
            for name in ("uvicorn", "uvicorn.error", "uvicorn.access")
        },
    }
