"""The xDS resource types the control plane serves, one module each."""

from __future__ import annotations

from controlplane.resources.base import ResourceType
from controlplane.resources.cluster import CLUSTER
from controlplane.resources.endpoint import ENDPOINT
from controlplane.resources.listener import LISTENER
from controlplane.resources.route import ROUTE
from controlplane.resources.secret import SECRET
from controlplane.resources.walk import Reference

# Envoy's "eventual consistency considerations" (xds_protocol.rst) push order: clusters,
# endpoints, listeners, routes. Secrets go first: warming clusters and listeners wait for them.
PUSH_ORDER: tuple[ResourceType, ...] = (SECRET, CLUSTER, ENDPOINT, LISTENER, ROUTE)
BY_TYPE_URL: dict[str, ResourceType] = {kind.type_url: kind for kind in PUSH_ORDER}

# A type whose change makes the client re-request (warm) the dependent type: clusters warm on
# EDS, listeners warm on RDS (xds_protocol.rst, "Resource warming").
WARMED_BY: dict[str, str] = {ENDPOINT.type_url: CLUSTER.type_url,
                             ROUTE.type_url: LISTENER.type_url}

__all__ = ["BY_TYPE_URL", "CLUSTER", "ENDPOINT", "LISTENER", "PUSH_ORDER", "ROUTE", "SECRET",
           "WARMED_BY", "Reference", "ResourceType"]
