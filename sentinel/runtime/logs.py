"""Structured logs: one JSON object per line on stderr, whatever logged it."""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import Any

from sentinel import redact


class JsonFormatter(logging.Formatter):
    """``{"ts": ..., "level": ..., "logger": ..., ...}``: a message that is already a JSON
    object (actions, decisions, kills) is merged in; any other message goes under ``msg``.
    The line is scrubbed of every known secret (:func:`sentinel.redact.scrub`) last: a
    safety net under the senders' own care."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "ts": round(record.created, 3),
            "level": record.levelname.lower(),
            "logger": record.name,
        }
        message = record.getMessage()
        parsed: Any = None
        if message.startswith("{"):
            try:
                parsed = json.loads(message)
            except ValueError:
                parsed = None
        if isinstance(parsed, dict):
            line.update(parsed)
        else:
            line["msg"] = message
        if record.exc_info:
            line["error"] = self.formatException(record.exc_info)
        return redact.scrub(json.dumps(line, default=str))


def configure(level: int = logging.INFO) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    logging.getLogger("apscheduler").setLevel(logging.WARNING)
    logging.getLogger("urllib3").setLevel(logging.WARNING)
    logging.getLogger("docker").setLevel(logging.WARNING)


def event(logger: logging.Logger, kind: str, /, **fields: Any) -> None:
    """Log one structured event line (``{"event": kind, ...}``) at INFO."""
    logger.info(json.dumps({"event": kind, **fields}, default=str))


def now() -> float:
    return time.time()
