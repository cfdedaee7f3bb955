"""`gateway.networking.k8s.io/v1 GatewayClass`: taken so that exported cluster objects load.
The control plane serves every Gateway it is given whatever its class; `pointsman analyze`
warns when a Gateway names a class that is not among the objects."""

from __future__ import annotations

import re
from dataclasses import dataclass

from controlplane.mesh.fields import Fields

CONTROLLER = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*"
                        r"/[A-Za-z0-9/\-._~%!$&'()*+,;=:]+$")


@dataclass(frozen=True)
class GatewayClassSpec:
    controller_name: str


def parse_gatewayclass_spec(fields: Fields) -> GatewayClassSpec:
    controller = fields.req_str("controllerName", max_len=253, pattern=CONTROLLER)
    fields.text("description", max_len=64)
    fields.done(unsupported=("parametersRef",))
    return GatewayClassSpec(controller)
