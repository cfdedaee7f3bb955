"""protos/registry.py: a type is resolved by importing its own package, not every module of the
APIs (a fresh interpreter each, since imports are process-wide)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from protos.registry import package_of

PROBE = """
import json, sys
from protos import registry
before = sum(name.startswith("envoy.") for name in sys.modules)
cls = registry.message_class(sys.argv[1])
after = sum(name.endswith("_pb2") and name.startswith("envoy.") for name in sys.modules)
print(json.dumps({"name": cls.DESCRIPTOR.full_name, "envoy_modules": after,
                  "known_unknown": registry.is_known("type.googleapis.com/no.such.v3.Type")}))
"""


def probe(type_url: str) -> dict[str, object]:
    done = subprocess.run([sys.executable, "-c", PROBE, type_url], capture_output=True,
                          text=True, check=True)
    return dict(json.loads(done.stdout))


def test_a_type_is_found_by_importing_its_package_only() -> None:
    found = probe("type.googleapis.com/envoy.extensions.filters.network."
                  "http_connection_manager.v3.HttpConnectionManager")
    assert found["name"] == ("envoy.extensions.filters.network.http_connection_manager.v3."
                             "HttpConnectionManager")
    # its package and what it imports: a few dozen modules, not the ~1,000 of the whole API
    assert isinstance(found["envoy_modules"], int) and found["envoy_modules"] < 100
    assert found["known_unknown"] is False


def test_an_unknown_type_is_looked_for_everywhere_then_refused() -> None:
    done = subprocess.run([sys.executable, "-c", PROBE, "no.such.v3.Type"],
                          capture_output=True, text=True)
    assert done.returncode != 0 and "KeyError" in done.stderr


@pytest.mark.parametrize(("name", "package"), [
    ("envoy.config.cluster.v3.Cluster", "envoy.config.cluster.v3"),
    ("envoy.config.core.v3.Address.SocketAddress", "envoy.config.core.v3"),
    ("google.protobuf.Struct", "google.protobuf"),
    ("udpa.type.v1.TypedStruct", "udpa.type.v1"),
])
def test_package_of(name: str, package: str) -> None:
    assert package_of(name) == package
