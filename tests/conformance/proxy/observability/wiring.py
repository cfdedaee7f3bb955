"""Whether the sidecar's HTTP path calls the tracing hooks yet (tests skip, naming why)."""

from __future__ import annotations

from typing import Any

import pytest

from protos.errors import ConfigError
from protos.loader import parse_message


def require_sidecar_tracing(hcm_config: dict[str, Any]) -> None:
    """Skip unless the sidecar's HCM translator accepts `tracing` (the hook is wired)."""
    from envoy.extensions.filters.network.http_connection_manager.v3 import (
        http_connection_manager_pb2,
    )

    from proxy.network.hcm_config import translate_http_connection_manager

    body = {key: value for key, value in hcm_config.items() if key != "@type"}
    message = parse_message(body, http_connection_manager_pb2.HttpConnectionManager)
    try:
        translate_http_connection_manager(message)
    except ConfigError as error:
        if "tracing" in str(error):
            pytest.skip("the sidecar's HTTP connection manager does not accept `tracing` yet "
                        "(wiring described in docs/observability.md, 'Wiring the HTTP path')")
        raise
