"""Conversions between the management API's messages (protos/gen) and our types."""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from google.protobuf import timestamp_pb2

from controlplane.api.apply import Outcome
from controlplane.api.objects import rendered
from controlplane.api.proxies import ControlPlaneInfo, ProxyRecord
from controlplane.mesh import ObjectKey, Problem
from controlplane.store import Record
from protos.gen.pointsman.mesh.v1 import mesh_pb2 as pb


def ref(key: ObjectKey) -> pb.ObjectRef:
    return pb.ObjectRef(kind=key.kind, namespace=key.namespace, name=key.name)


def problem(item: Problem) -> pb.Problem:
    where = item.location
    return pb.Problem(severity=item.severity, reason=item.reason, message=item.message,
                      file=where.file, line=max(where.line, 0), object=where.obj,
                      field=where.field)


def problems(items: Iterable[Problem]) -> pb.Problems:
    return pb.Problems(problems=[problem(item) for item in items])


def outcome(item: Outcome) -> pb.Outcome:
    return pb.Outcome(object=ref(item.key), action=item.action, generation=item.generation)


def object_message(record: Record, status: dict[str, Any] | None) -> pb.Object:
    data = rendered(record, status)
    generation = data.get("metadata", {}).get("generation", 0)
    return pb.Object(ref=ref(record.key), resource_version=record.revision,
                     generation=int(generation or 0),
                     json=json.dumps(data, ensure_ascii=False).encode())


def timestamp(seconds: float) -> timestamp_pb2.Timestamp:
    stamp = timestamp_pb2.Timestamp()
    stamp.FromNanoseconds(int(seconds * 1e9))
    return stamp


def proxy_status(record: ProxyRecord) -> pb.ProxyStatus:
    return pb.ProxyStatus(
        node_id=record.node_id, kind=record.kind, namespace=record.namespace, name=record.name,
        address=record.address, control_plane=record.control_plane,
        connected=timestamp(record.connected_at), synced_revision=record.synced_revision,
        error=record.error, health=record.health, health_message=record.health_message,
        types=[pb.TypeStatus(type=item.type, state=item.state,  # type: ignore[arg-type]
                             sent_version=item.sent_version, acked_version=item.acked_version,
                             error=item.error, since=timestamp(item.since),
                             suspects=[ref(key) for key in item.suspects])
               for item in record.types])


def control_plane(info: ControlPlaneInfo) -> pb.ControlPlane:
    return pb.ControlPlane(id=info.id, version=info.version, revision=info.revision,
                           started=timestamp(info.started))
