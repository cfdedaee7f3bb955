"""Envoy's protoc-gen-validate constraints, applied before publishing, naming the field."""

from __future__ import annotations

from typing import Any

import pytest

from controlplane.resources.pgv import validate_message
from protos.errors import ConfigError
from protos.loader import parse_any_resource
from tests.unit.controlplane.builders import cluster, endpoints, listener, route


def problem(obj: dict[str, Any]) -> ConfigError:
    with pytest.raises(ConfigError) as caught:
        validate_message(parse_any_resource(obj))
    return caught.value


def test_valid_resources_pass():
    for obj in (cluster("a"), endpoints("a", 1, 2), listener("http", "main"), route("main", "a")):
        validate_message(parse_any_resource(obj))


def test_string_length_rule():
    assert problem(cluster("")).field == "name"


def test_duration_must_be_positive():
    error = problem(dict(cluster("a"), connect_timeout="0s"))
    assert error.field == "connect_timeout" and "greater than" in str(error)


def test_enum_must_be_defined():
    assert problem(dict(cluster("a"), lb_policy=42)).field == "lb_policy"


def test_numeric_bound_deep_inside():
    error = problem(endpoints("a", 70000))
    assert error.field == "endpoints[0].lb_endpoints[0].endpoint.address.socket_address.port_value"


def test_wrapper_value_rule():
    bad = endpoints("a", 1)
    bad["endpoints"][0]["lb_endpoints"][0]["load_balancing_weight"] = 0
    assert problem(bad).field == "endpoints[0].lb_endpoints[0].load_balancing_weight"


def test_required_oneof_and_message():
    bad = route("main", "a")
    del bad["virtual_hosts"][0]["routes"][0]["match"]["prefix"]
    error = problem(bad)
    assert error.field == "virtual_hosts[0].routes[0].match.path_specifier"


def test_rules_inside_typed_config_are_checked():
    bad = listener("http", "main")
    bad["filter_chains"][0]["filters"][0]["typed_config"]["stat_prefix"] = ""
    error = problem(bad)
    assert error.field == "filter_chains[0].filters[0].typed_config.stat_prefix"


def test_header_name_well_known_regex():
    bad = route("main", "a")
    # strict: false in route_components.proto: only NUL, CR and LF are refused
    bad["virtual_hosts"][0]["request_headers_to_remove"] = ["bad\nheader"]
    assert problem(bad).field == "virtual_hosts[0].request_headers_to_remove[0]"
