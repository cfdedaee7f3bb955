"""The HTTP filters we ship. Importing this package registers each one (its module calls
`proxy.http.filter.register_http_filter`): by typed_config type, by Envoy extension name, and
its per-route config type, if it has one."""

from proxy.http.filters import (  # noqa: F401
    cors,
    fault,
    health_check,
    local_ratelimit,
    python,
    rbac,
)
