"""Output helpers shared by the verbs: kubectl-like tables, ages, YAML."""

from __future__ import annotations

import datetime
import time
from collections.abc import Sequence
from typing import Any

import yaml


def table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Columns padded to their widest cell and separated by three spaces, as kubectl."""
    widths = [max(len(str(cell)) for cell in column) for column in zip(headers, *rows,
                                                                       strict=False)]
    lines = ["   ".join(str(cell).ljust(width) for cell, width in zip(row, widths, strict=True))
             .rstrip() for row in (headers, *rows)]
    return "\n".join(lines)


def age(timestamp: str, now: float | None = None) -> str:
    """`5s`, `3m`, `2h`, `4d` since an RFC 3339 timestamp ("<unknown>" without one)."""
    try:
        moment = datetime.datetime.fromisoformat(timestamp.replace("Z", "+00:00"))
    except ValueError:
        return "<unknown>"
    seconds = max(0, int((now or time.time()) - moment.timestamp()))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def since(seconds: float, now: float | None = None) -> str:
    moment = datetime.datetime.fromtimestamp(seconds, datetime.UTC)
    return age(moment.isoformat(), now)


def to_yaml(data: Any) -> str:
    return str(yaml.safe_dump(data, sort_keys=False, allow_unicode=True, width=100))


def condition(data: dict[str, Any], kind: str) -> dict[str, Any] | None:
    status = data.get("status")
    for item in (status or {}).get("conditions", []) if isinstance(status, dict) else []:
        if isinstance(item, dict) and item.get("type") == kind:
            return item
    return None
