"""Envoy/xDS type registry: every message in xds-protos resolvable by name or type URL.

A type is resolved through the default descriptor pool; when it is not there yet, the
generated modules of its proto package are imported (`envoy.config.cluster.v3.Cluster`: the
`*_pb2` modules of `envoy.config.cluster.v3`), and only a type still unknown then imports every
module of the Envoy, xDS and UDPA APIs (`load_all`: 1.5-3 s here, which every start-up of a
sidecar and of a file-fed control plane used to pay).
"""

from __future__ import annotations

import functools
import importlib
import pkgutil

from google.protobuf import descriptor_pool, message_factory
from google.protobuf.message import Message

TYPE_PREFIX = "type.googleapis.com/"

LISTENER = TYPE_PREFIX + "envoy.config.listener.v3.Listener"
ROUTE_CONFIGURATION = TYPE_PREFIX + "envoy.config.route.v3.RouteConfiguration"
CLUSTER = TYPE_PREFIX + "envoy.config.cluster.v3.Cluster"
CLUSTER_LOAD_ASSIGNMENT = TYPE_PREFIX + "envoy.config.endpoint.v3.ClusterLoadAssignment"
SECRET = TYPE_PREFIX + "envoy.extensions.transport_sockets.tls.v3.Secret"

XDS_TYPES = (CLUSTER, CLUSTER_LOAD_ASSIGNMENT, LISTENER, ROUTE_CONFIGURATION, SECRET)


@functools.cache
def load_all() -> None:
    """Import every generated module of the Envoy, xDS and UDPA APIs (idempotent)."""
    for package_name in ("envoy", "xds", "udpa", "validate"):
        try:
            package = importlib.import_module(package_name)
        except ImportError:
            continue
        for info in pkgutil.walk_packages(package.__path__, package_name + "."):
            if info.name.endswith("_pb2"):
                importlib.import_module(info.name)


def type_name(type_url: str) -> str:
    """`type.googleapis.com/a.b.C` -> `a.b.C` (any host prefix is accepted, as protobuf does)."""
    return type_url.rsplit("/", 1)[-1]


@functools.cache
def _load_package(package_name: str) -> None:
    """Import the generated modules of one proto package (idempotent)."""
    try:
        package = importlib.import_module(package_name)
    except ImportError:
        return
    for info in pkgutil.iter_modules(getattr(package, "__path__", []), package_name + "."):
        if info.name.endswith("_pb2"):
            importlib.import_module(info.name)


def package_of(name: str) -> str:
    """`a.b.v3.Message.Nested` -> `a.b.v3`: proto packages are lower case, messages not."""
    parts = name.split(".")
    for index, part in enumerate(parts):
        if part[:1].isupper():
            return ".".join(parts[:index])
    return ".".join(parts[:-1])


def message_class(type_url_or_name: str) -> type[Message]:
    """The generated class for a type URL or full name; KeyError when unknown."""
    name = type_name(type_url_or_name)
    pool = descriptor_pool.Default()
    try:
        descriptor = pool.FindMessageTypeByName(name)
    except KeyError:
        _load_package(package_of(name))
        try:
            descriptor = pool.FindMessageTypeByName(name)
        except KeyError:
            load_all()  # a package named otherwise than its folder: look everywhere
            descriptor = pool.FindMessageTypeByName(name)
    return message_factory.GetMessageClass(descriptor)


def is_known(type_url_or_name: str) -> bool:
    try:
        message_class(type_url_or_name)
    except KeyError:
        return False
    return True
