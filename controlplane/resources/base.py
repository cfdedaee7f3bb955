"""What every xDS resource type module provides: type URL, naming, references, validation."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from google.protobuf.message import Message

from controlplane.resources.walk import Reference
from protos.errors import ConfigError


@dataclass(frozen=True)
class ResourceType:
    """One xDS resource type. `validate` raises ConfigError naming the field."""

    type_url: str
    short_name: str  # "cluster", used in logs and metrics labels
    message_class: type[Message]
    name_of: Callable[[Message], str]
    references: Callable[[Message], list[Reference]]
    validate: Callable[[Message], None]
    # Listener and Cluster responses always carry the full set (xDS protocol, "SotW").
    full_set: bool = False


def require_name(value: str, field: str = "name") -> None:
    if not value:
        raise ConfigError("a name is required", field=field)


def check_unique(values: list[str], field: str, what: str) -> None:
    seen: set[str] = set()
    for index, value in enumerate(values):
        if value in seen:
            raise ConfigError(f"duplicate {what} {value!r}", field=f"{field}[{index}]")
        seen.add(value)
