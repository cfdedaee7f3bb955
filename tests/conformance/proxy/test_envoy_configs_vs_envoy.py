"""Envoy's own example bootstraps: `pointsman proxy` starts them where Envoy 1.40 does.

The corpus (envoy_configs/, see its README for origins and trims) holds every bootstrap of
envoyproxy/examples and a few of Envoy's docs that Envoy 1.40 accepts here, some trimmed of a
feature we do not implement. Each test runs the real processes on the same file, with its
listeners and admin moved to free loopback ports: `envoy --mode validate` must accept it, and
then either `python -m proxy -c FILE` becomes ready (its admin answers; /ready is 200 unless the
bootstrap waits for an ADS server), or, for the bootstraps in REFUSED, it exits with status 1 and
an error naming the field we really do not implement.
"""

from __future__ import annotations

import copy
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support.envoy import envoy_binary
from tests.support.pointsman import Pointsman
from tests.support.ports import free_port

pytestmark = pytest.mark.conformance

CORPUS = Path(__file__).parent / "envoy_configs"

# Bootstrap -> the field (as our error names it) of the feature Pointsman does not implement.
REFUSED = {
    "brotli_envoy.yaml": "http_filters[0].typed_config",  # envoy.filters.http.compressor
    "zstd_envoy.yaml": "http_filters[0].typed_config",  # envoy.filters.http.compressor
    "csrf_samesite_envoy.yaml":
        "virtual_hosts[0].typed_per_filter_config[envoy.filters.http.csrf]",
    "ext_authz_config_grpc-service_v3.yaml": "http_filters[0].typed_config",  # ext_authz
    "ext_authz_config_http-service.yaml": "http_filters[0].typed_config",  # ext_authz
    "grpc-bridge_client_envoy-proxy.yaml": "typed_config.add_user_agent",
    "jaeger-tracing_service1-envoy-jaeger.yaml": "tracing.provider.typed_config",  # Zipkin
    "jaeger-tracing_service2-envoy-jaeger.yaml": "tracing.provider.typed_config",  # Zipkin
    "load-reporting-service_envoy.yaml": "cluster_manager",  # load_stats_config (LRS)
    "lua-cluster-specifier_envoy.yaml": "route.inline_cluster_specifier_plugin",
    "rbac_envoy.yaml": "http_filters[0].matcher",
    "redis_envoy.yaml": "filters[0].typed_config",  # envoy.filters.network.redis_proxy
    "skywalking_envoy-1.yaml": "tracing.provider.typed_config",  # SkyWalking
    "skywalking_envoy-2.yaml": "tracing.provider.typed_config",  # SkyWalking
    "zipkin_envoy-1.yaml": "tracing.provider.typed_config",  # Zipkin
    "zipkin_envoy-2.yaml": "tracing.provider.typed_config",  # Zipkin
}
BOOTSTRAPS = sorted(path.name for path in CORPUS.glob("*.yaml"))


def _on_free_ports(document: dict[str, Any]) -> dict[str, Any]:
    """The bootstrap with each static listener on 127.0.0.1 and a free port (the Pointsman
    and Envoy helpers put the admin on one)."""
    moved = copy.deepcopy(document)
    for listener in (moved.get("static_resources") or {}).get("listeners") or []:
        address = listener["address"]["socket_address"]
        address["address"] = "127.0.0.1"
        address["port_value"] = free_port()
    return moved


def _envoy_accepts(bootstrap: dict[str, Any], tmp_path: Path) -> None:
    path = tmp_path / "envoy.yaml"
    path.write_text(yaml.safe_dump(bootstrap))
    done = subprocess.run([envoy_binary(), "--mode", "validate", "-c", str(path),
                           "--base-id", str(free_port()), "--disable-hot-restart",
                           "--log-level", "error"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, f"Envoy 1.40 refuses the corpus file:\n{done.stderr[-2000:]}"


@pytest.mark.parametrize("name", BOOTSTRAPS)
def test_we_start_what_envoy_starts(name: str, tmp_path: Path) -> None:
    bootstrap = _on_free_ports(yaml.safe_load((CORPUS / name).read_text()))
    _envoy_accepts(bootstrap, tmp_path)
    ours = Pointsman(bootstrap, name=f"pointsman-{name}")
    with ours:
        if name in REFUSED:
            assert ours.popen.wait(timeout=60) == 1, ours.output()[-2000:]
            error = ours.output()
            assert REFUSED[name] in error, error[-2000:]
            assert "is not supported by Pointsman" in error, error[-2000:]
            return
        if "dynamic_resources" in bootstrap:
            # Waits for its ADS server (as Envoy does): up and answering is what we can see.
            ours.wait_until(lambda: ours.admin("/ready")[0] in (200, 503), 60, "admin up")
        else:
            ours.wait_ready(timeout=60)
        assert ours.alive()
