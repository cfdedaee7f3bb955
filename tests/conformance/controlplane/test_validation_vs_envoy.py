"""Our field validation (Envoy's protoc-gen-validate rules, controlplane/resources/pgv.py)
against `envoy --mode validate`: the same bootstraps must be accepted or refused by both."""

from __future__ import annotations

import copy
import json
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from envoy.config.bootstrap.v3 import bootstrap_pb2

from controlplane.resources.pgv import validate_message
from protos.errors import ConfigError
from protos.loader import parse_message
from tests.support.envoy import envoy_binary
from tests.unit.controlplane.builders import HCM, ROUTER

pytestmark = pytest.mark.conformance


def base() -> dict[str, Any]:
    return {"static_resources": {
        "listeners": [{
            "name": "http", "address": {"socket_address": {"address": "127.0.0.1",
                                                           "port_value": 10000}},
            "filter_chains": [{"filters": [{"name": "hcm", "typed_config": {
                "@type": HCM, "stat_prefix": "in",
                "route_config": {"name": "r", "virtual_hosts": [{
                    "name": "all", "domains": ["*"],
                    "routes": [{"match": {"prefix": "/"}, "route": {"cluster": "web"}}]}]},
                "http_filters": [{"name": "router", "typed_config": {"@type": ROUTER}}]}}]}]}],
        "clusters": [{
            "name": "web", "type": "STATIC", "connect_timeout": "1s",
            "load_assignment": {"cluster_name": "web", "endpoints": [{"lb_endpoints": [{
                "endpoint": {"address": {"socket_address": {"address": "127.0.0.1",
                                                            "port_value": 8080}}}}]}]}}]}}


def edit(change: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
    doc = base()
    change(doc)
    return doc


def _set(path: list[Any], value: Any) -> Callable[[dict[str, Any]], None]:
    def change(doc: dict[str, Any]) -> None:
        target: Any = doc
        for key in path[:-1]:
            target = target[key]
        target[path[-1]] = value
    return change


LISTENER = ["static_resources", "listeners", 0]
CLUSTER = ["static_resources", "clusters", 0]
TYPED = [*LISTENER, "filter_chains", 0, "filters", 0, "typed_config"]
ROUTE = [*TYPED, "route_config", "virtual_hosts", 0, "routes", 0]
ENDPOINT = [*CLUSTER, "load_assignment", "endpoints", 0, "lb_endpoints", 0]

CASES: dict[str, tuple[Callable[[dict[str, Any]], None], bool]] = {
    "valid": (lambda doc: None, True),
    "zero connect_timeout": (_set([*CLUSTER, "connect_timeout"], "0s"), False),
    "empty stat_prefix": (_set([*TYPED, "stat_prefix"], ""), False),
    "port above 65535": (_set([*LISTENER, "address", "socket_address", "port_value"], 70000),
                         False),
    "undefined lb_policy": (_set([*CLUSTER, "lb_policy"], 42), False),
    "route match without path": (_set([*ROUTE, "match"], {"headers": []}), False),
    "endpoint weight 0": (_set([*ENDPOINT, "load_balancing_weight"], 0), False),
    "endpoint weight 3": (_set([*ENDPOINT, "load_balancing_weight"], 3), True),
    "header name with newline": (_set([*TYPED, "route_config", "request_headers_to_remove"],
                                      ["bad\nname"]), False),
    "empty cluster name": (_set([*CLUSTER, "name"], ""), False),
    "retry count ok": (_set([*ROUTE, "route", "retry_policy"], {"num_retries": 2}), True),
}


def envoy_accepts(doc: dict[str, Any], folder: Path) -> tuple[bool, str]:
    path = folder / "bootstrap.json"
    path.write_text(json.dumps(doc))
    result = subprocess.run([envoy_binary(), "--mode", "validate", "-c", str(path),
                             "--disable-hot-restart", "--log-level", "critical"],
                            capture_output=True, text=True, timeout=60)
    return result.returncode == 0, result.stdout[-600:] + result.stderr[-600:]


def we_accept(doc: dict[str, Any]) -> tuple[bool, str]:
    try:
        validate_message(parse_message(copy.deepcopy(doc), bootstrap_pb2.Bootstrap))
    except ConfigError as error:
        return False, str(error)
    return True, ""


@pytest.mark.parametrize("case", sorted(CASES))
def test_we_accept_what_envoy_accepts(case: str, tmp_path: Path) -> None:
    change, expected = CASES[case]
    doc = edit(change)
    envoy_ok, envoy_said = envoy_accepts(doc, tmp_path)
    ours_ok, we_said = we_accept(doc)
    assert envoy_ok == expected, f"the case itself is wrong: Envoy said {envoy_said}"
    assert ours_ok == envoy_ok, f"Envoy: {envoy_said!r}; us: {we_said!r}"
