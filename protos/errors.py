"""The one configuration error: raised at the protobuf -> model boundary, naming the field."""

from __future__ import annotations


class ConfigError(ValueError):
    """Configuration that cannot be applied.

    `field` is a dotted path inside the resource (`filter_chains[0].filters[1].typed_config`),
    `resource` the resource's name, `source` the file or xDS type it came from. `str()` gives
    one line naming all three, which is what a NACK's error_detail and a start-up error carry.
    """

    def __init__(
        self, message: str, *, field: str = "", resource: str = "", source: str = ""
    ) -> None:
        super().__init__(message)
        self.message = message
        self.field = field
        self.resource = resource
        self.source = source

    def within(self, *, field: str = "", resource: str = "", source: str = "") -> ConfigError:
        """Return a copy with an outer field prefix, resource name or source added."""
        joined = _join(field, self.field)
        return ConfigError(
            self.message,
            field=joined,
            resource=self.resource or resource,
            source=self.source or source,
        )

    def __str__(self) -> str:
        parts = []
        if self.source:
            parts.append(self.source)
        if self.resource:
            parts.append(f"resource {self.resource!r}")
        if self.field:
            parts.append(f"field {self.field!r}")
        prefix = ": ".join(parts)
        return f"{prefix}: {self.message}" if prefix else self.message


def _join(outer: str, inner: str) -> str:
    if not outer:
        return inner
    if not inner:
        return outer
    return f"{outer}{inner}" if inner.startswith("[") else f"{outer}.{inner}"


def unsupported(field: str, detail: str = "") -> ConfigError:
    """A field Pointsman does not implement but that would change behaviour: refuse it by name."""
    suffix = f" ({detail})" if detail else ""
    return ConfigError(f"field is not supported by Pointsman{suffix}", field=field)
