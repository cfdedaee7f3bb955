"""Errors about mesh objects, each naming the file, line, object and field path.

`MeshError` is a `protos.errors.ConfigError` (so code that reports config errors reports these
too) that also carries the line and the object (`HTTPRoute shop/web`). `str()` reads
`mesh.yaml:12: HTTPRoute shop/web: spec.rules[0].matches[0].path.type: ...`, the shape of a
compiler diagnostic, so editors and CI logs can jump to it.

`Problem` is one finding of a whole-set check (`validate`, `analyze`): a severity, a reason
(the Gateway API condition reason where one fits, e.g. `BackendNotFound`) and the same location.
"""

from __future__ import annotations

from dataclasses import dataclass

from protos.errors import ConfigError


@dataclass(frozen=True)
class Location:
    """Where something is: file, 1-based line (0 = unknown), object label and field path."""

    file: str = ""
    line: int = 0
    obj: str = ""  # "Kind namespace/name"
    field: str = ""

    def __str__(self) -> str:
        parts = []
        if self.file:
            parts.append(f"{self.file}:{self.line}" if self.line else self.file)
        if self.obj:
            parts.append(self.obj)
        if self.field:
            parts.append(self.field)
        return ": ".join(parts)


class MeshError(ConfigError):
    """An object that cannot be accepted, located precisely."""

    def __init__(self, message: str, location: Location) -> None:
        super().__init__(message, field=location.field, resource=location.obj,
                         source=location.file)
        self.location = location

    @property
    def line(self) -> int:
        return self.location.line

    def __str__(self) -> str:
        where = str(self.location)
        return f"{where}: {self.message}" if where else self.message


@dataclass(frozen=True)
class Problem:
    """One finding about a set of objects. `severity` is "error" or "warning"."""

    severity: str
    reason: str
    message: str
    location: Location

    def __str__(self) -> str:
        where = str(self.location)
        prefix = f"{where}: " if where else ""
        return f"{prefix}{self.severity}: {self.message} ({self.reason})"

    def as_dict(self) -> dict[str, object]:
        return {"severity": self.severity, "reason": self.reason, "message": self.message,
                "file": self.location.file, "line": self.location.line,
                "object": self.location.obj, "field": self.location.field}
