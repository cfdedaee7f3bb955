"""`security.istio.io/v1 PeerAuthentication` (istio/api security/v1beta1/
peer_authentication.proto): whether a workload's inbound ports take mTLS.

- `mtls.mode`: UNSET (inherit from the parent: namespace, then mesh), DISABLE (plaintext),
  PERMISSIVE (plaintext and mTLS), STRICT (mTLS only). Istio's default is PERMISSIVE.
- `portLevelMtls`: a mode per workload port (a Service's targetPort here); Istio only takes
  it with a selector.
- `selector.matchLabels` picks workloads; a Pointsman workload is a Service's sidecars and
  its labels are the Service's `metadata.labels`. Without a selector the policy covers its
  namespace, or the whole mesh in the root namespace (controlplane/mesh/identity.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from controlplane.mesh.fields import Fields
from controlplane.mesh.kinds.istio import Selector, parse_selector

MODES = ("UNSET", "DISABLE", "PERMISSIVE", "STRICT")


@dataclass(frozen=True)
class PeerAuthenticationSpec:
    selector: Selector = None
    mode: str = "UNSET"
    port_modes: tuple[tuple[int, str], ...] = ()

    def mode_for(self, port: int) -> str:
        """The mode this policy sets for a workload port (UNSET: ask the parent)."""
        return dict(self.port_modes).get(port, self.mode)


def parse_peerauthentication_spec(fields: Fields) -> PeerAuthenticationSpec:
    selector = parse_selector(fields)
    mode = fields.obj("mtls", _mode) or "UNSET"
    ports = _port_modes(fields)
    if ports and selector is None:
        raise fields.error("portLevelMtls", "needs a selector (Istio applies port-level "
                                            "modes to selected workloads only)")
    fields.done()
    return PeerAuthenticationSpec(selector, mode, tuple(sorted(ports.items())))


def _mode(fields: Fields) -> str:
    return fields.text("mode", default="UNSET", enum=MODES) or "UNSET"


def _port_modes(fields: Fields) -> dict[int, str]:
    value: Any = fields.raw("portLevelMtls")
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise fields.error("portLevelMtls", "must be a mapping of port numbers to {mode}")
    out: dict[int, str] = {}
    for key, item in value.items():
        port = int(key) if isinstance(key, int) or (isinstance(key, str) and key.isdigit()) \
            else 0
        if not 1 <= port <= 65535:
            raise fields.error("portLevelMtls", f"invalid port {key!r} (1-65535)")
        inner = Fields(fields.context, (*fields.at("portLevelMtls"), key), item)
        out[port] = _mode(inner)
        inner.done()
    return out
