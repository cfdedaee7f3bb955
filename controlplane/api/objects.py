"""Mesh objects as the store keeps them and as the API hands them out.

The stored form is the object as the user wrote it (canonical JSON: sorted keys, no spaces),
with the metadata the control plane manages set the way Kubernetes' API server sets it:
`generation` (1 at creation, +1 whenever anything but metadata and status changes),
`creationTimestamp` (RFC 3339, second precision, set at creation and kept; it orders routes
and policies in the Gateway API's precedence rules) and `uid`. `resourceVersion` is not
stored: it is the store revision that last changed the object, added when it is read.
`status` is never stored: the control plane computes it (controlplane/api/status.py).
"""

from __future__ import annotations

import base64
import datetime
import json
from collections.abc import Mapping
from typing import Any

from controlplane.mesh.errors import Location, MeshError
from controlplane.mesh.load import parse_object
from controlplane.mesh.objects import MeshObject
from controlplane.mesh.yamldoc import Document
from controlplane.store import Record

# Set by the control plane; what an applied object says about them is not kept.
MANAGED_METADATA = ("resourceVersion", "generation", "uid", "creationTimestamp",
                    "managedFields", "selfLink", "deletionTimestamp",
                    "deletionGracePeriodSeconds")
STORE_SOURCE = ""  # errors about stored objects name the object and field, not a file


def now_timestamp(now: float) -> str:
    """RFC 3339 in UTC, second precision: how Kubernetes writes creationTimestamp."""
    moment = datetime.datetime.fromtimestamp(int(now), datetime.UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def plain(value: Any, obj: MeshObject, path: tuple[str | int, ...] = ()) -> Any:
    """`value` as JSON data: YAML timestamps become RFC 3339 strings, !!binary base64 (as
    Kubernetes encodes []byte); anything else JSON cannot hold is an error naming the field."""
    if isinstance(value, dict):
        return {key: plain(item, obj, (*path, key)) for key, item in value.items()}
    if isinstance(value, list):
        return [plain(item, obj, (*path, index)) for index, item in enumerate(value)]
    if isinstance(value, datetime.datetime):
        if value.tzinfo is not None:
            value = value.astimezone(datetime.UTC).replace(tzinfo=None)
        return value.isoformat() + "Z"
    if isinstance(value, datetime.date):
        return value.isoformat()
    if isinstance(value, bytes):
        return base64.b64encode(value).decode()
    if isinstance(value, float) and (value != value or value in (float("inf"), float("-inf"))):
        raise MeshError("not a number JSON can hold", obj.location(path))
    if value is None or isinstance(value, str | int | float | bool):
        return value
    raise MeshError(f"a {type(value).__name__} is not a JSON value", obj.location(path))


def content(data: Mapping[str, Any]) -> dict[str, Any]:
    """What the generation counts: everything but metadata and status."""
    return {key: value for key, value in data.items() if key not in ("metadata", "status")}


def user_metadata(obj: MeshObject) -> dict[str, Any]:
    found = obj.raw.get("metadata")
    metadata = dict(found) if isinstance(found, dict) else {}
    for key in MANAGED_METADATA:
        metadata.pop(key, None)
    metadata["namespace"] = obj.namespace
    return metadata


def stored_form(obj: MeshObject, *, generation: int, created: str, uid: str) -> dict[str, Any]:
    data = plain(content(obj.raw), obj)
    metadata = plain(user_metadata(obj), obj, ("metadata",))
    metadata.update(generation=generation, creationTimestamp=created, uid=uid)
    return {**data, "metadata": metadata}


def encode(data: Mapping[str, Any]) -> bytes:
    return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                      allow_nan=False).encode()


def decode(record: Record) -> MeshObject:
    """A stored object, validated again (the kinds' parsers are the only way in)."""
    try:
        data = json.loads(record.value)
    except ValueError as error:
        raise MeshError(f"stored object is not JSON: {error}",
                        Location(STORE_SOURCE, 0, str(record.key))) from error
    return parse_object(Document(data, STORE_SOURCE, 0, {}))


def rendered(record: Record, status: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The object as `get` shows it: with resourceVersion and its status."""
    data = json.loads(record.value)
    data["metadata"]["resourceVersion"] = str(record.revision)
    if status is not None:
        data["status"] = dict(status)
    return dict(data)
