"""Structured logs: one JSON object per line (`event` plus fields) on stderr."""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import Any

LOGGER = logging.getLogger("pointsman.controlplane")


class JsonLines(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {"ts": round(record.created, 3), "level": record.levelname.lower()}
        fields = getattr(record, "fields", None)
        if fields is not None:
            entry["event"] = record.getMessage()
            entry.update(fields)
        else:
            entry["event"] = "log"
            entry["message"] = record.getMessage()
        return json.dumps(entry, default=str)


def configure(level: str = "info") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonLines())
    root = logging.getLogger("pointsman")
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    root.propagate = False


def event(name: str, level: int = logging.INFO, **fields: Any) -> None:
    """Log `name` with `fields` (connect, push, ack, nack, config_loaded, config_rejected...)."""
    if LOGGER.isEnabledFor(level):
        LOGGER.log(level, name, extra={"fields": fields})


def now() -> float:
    return time.monotonic()
