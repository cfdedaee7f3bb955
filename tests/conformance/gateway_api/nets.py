"""The loopback ranges the conformance runners bind, overridable so two harnesses share a machine.

Each runner gives every pod and Gateway proxy addresses of its own in a /16 of 127.0.0.0/8
(RFC 1122 section 3.2.1.3: the whole block is loopback), so the manifests' fixed ports never
collide. By default they are 127.61-127.64; `POINTSMAN_CONFORMANCE_NET_BASE=N` moves the four
ranges to 127.N-127.(N+3), e.g. 170 for 127.170-127.173, for a second run alongside the first.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

ENV_VAR = "POINTSMAN_CONFORMANCE_NET_BASE"
DEFAULT_BASE = 61
RANGES = 4  # mesh (Pointsman), mesh (Envoy), gateway pods, Gateway proxies


@dataclass(frozen=True)
class Nets:
    """The runners' /16 prefixes ("127.N"), from one base second octet."""

    base: int

    def __post_init__(self) -> None:
        if not 1 <= self.base <= 255 - (RANGES - 1):
            top = self.base + RANGES - 1
            raise ValueError(f"{ENV_VAR}={self.base}: want 1..{255 - (RANGES - 1)}"
                             f" so 127.{self.base}-127.{top} are loopback ranges")

    @property
    def mesh(self) -> dict[str, str]:
        return {"pointsman": f"127.{self.base}", "envoy": f"127.{self.base + 1}"}

    @property
    def pods(self) -> str:
        return f"127.{self.base + 2}"

    @property
    def gateways(self) -> str:
        return f"127.{self.base + 3}"


def nets_from(environ: Mapping[str, str]) -> Nets:
    """The ranges `environ` asks for (the default ones when ENV_VAR is unset or empty)."""
    raw = environ.get(ENV_VAR, "").strip()
    if not raw:
        return Nets(DEFAULT_BASE)
    try:
        base = int(raw)
    except ValueError:
        raise ValueError(f"{ENV_VAR}={raw!r}: want a second octet such as 170") from None
    return Nets(base)


NETS = nets_from(os.environ)
