"""Header values with `%COMMAND%` substitutions (Envoy "Custom request/response headers").

Parsed once at config time into a `HeaderTemplate`; an unknown command is a config error, never
a literal. `%%` is a literal `%`. Only the commands in `COMMANDS` are supported.
"""

from __future__ import annotations

import re
import socket
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Protocol

_COMMAND = re.compile(r"%([A-Z_]+)(?:\(([^)]*)\))?%")

COMMANDS = frozenset({
    "DOWNSTREAM_REMOTE_ADDRESS", "DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT",
    "DOWNSTREAM_REMOTE_PORT", "DOWNSTREAM_LOCAL_ADDRESS",
    "DOWNSTREAM_LOCAL_ADDRESS_WITHOUT_PORT", "DOWNSTREAM_LOCAL_PORT",
    "PROTOCOL", "HOSTNAME", "REQ", "START_TIME", "UPSTREAM_REMOTE_ADDRESS",
})


class FormatContext(Protocol):
    @property
    def remote_address(self) -> tuple[str, int]: ...

    @property
    def local_address(self) -> tuple[str, int]: ...

    @property
    def protocol(self) -> str: ...  # "HTTP/1.1", "HTTP/2"

    def request_header(self, name: str) -> str | None: ...

    def upstream_address_value(self) -> tuple[str, int] | None: ...


@dataclass(frozen=True)
class HeaderTemplate:
    """Literal strings and (COMMAND, argument) pairs."""

    parts: tuple[str | tuple[str, str], ...]

    @property
    def is_literal(self) -> bool:
        return all(isinstance(part, str) for part in self.parts)

    def render(self, context: FormatContext) -> str:
        return "".join(p if isinstance(p, str) else _evaluate(p[0], p[1], context)
                       for p in self.parts)


def parse_header_template(text: str) -> HeaderTemplate:
    parts: list[str | tuple[str, str]] = []
    literal: list[str] = []
    index = 0
    while index < len(text):
        char = text[index]
        if char != "%":
            literal.append(char)
            index += 1
            continue
        if text.startswith("%%", index):
            literal.append("%")
            index += 2
            continue
        match = _COMMAND.match(text, index)
        if match is None or match.group(1) not in COMMANDS:
            raise ValueError(f"unsupported or malformed substitution at {text[index:]!r}")
        if literal:
            parts.append("".join(literal))
            literal = []
        parts.append((match.group(1), match.group(2) or ""))
        index = match.end()
    if literal:
        parts.append("".join(literal))
    return HeaderTemplate(tuple(parts))


def _host_port(address: tuple[str, int]) -> str:
    host, port = address[0], address[1]
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _evaluate(command: str, argument: str, context: FormatContext) -> str:
    if command == "DOWNSTREAM_REMOTE_ADDRESS":
        return _host_port(context.remote_address)
    if command == "DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT":
        return context.remote_address[0]
    if command == "DOWNSTREAM_REMOTE_PORT":
        return str(context.remote_address[1])
    if command == "DOWNSTREAM_LOCAL_ADDRESS":
        return _host_port(context.local_address)
    if command == "DOWNSTREAM_LOCAL_ADDRESS_WITHOUT_PORT":
        return context.local_address[0]
    if command == "DOWNSTREAM_LOCAL_PORT":
        return str(context.local_address[1])
    if command == "PROTOCOL":
        return context.protocol
    if command == "HOSTNAME":
        return socket.gethostname()
    if command == "REQ":
        return context.request_header(argument.lower()) or ""
    if command == "START_TIME":
        # Envoy's default START_TIME format: ISO 8601 in UTC with milliseconds.
        return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
    if command == "UPSTREAM_REMOTE_ADDRESS":
        address = context.upstream_address_value()
        return _host_port(address) if address else ""
    raise AssertionError(command)
