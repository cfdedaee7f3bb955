import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Document(_message.Message):
    __slots__ = ("source", "content")
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    CONTENT_FIELD_NUMBER: _ClassVar[int]
    source: str
    content: bytes
    def __init__(self, source: _Optional[str] = ..., content: _Optional[bytes] = ...) -> None: ...

class ObjectRef(_message.Message):
    __slots__ = ("kind", "namespace", "name")
    KIND_FIELD_NUMBER: _ClassVar[int]
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    kind: str
    namespace: str
    name: str
    def __init__(self, kind: _Optional[str] = ..., namespace: _Optional[str] = ..., name: _Optional[str] = ...) -> None: ...

class Problem(_message.Message):
    __slots__ = ("severity", "reason", "message", "file", "line", "object", "field")
    SEVERITY_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    FILE_FIELD_NUMBER: _ClassVar[int]
    LINE_FIELD_NUMBER: _ClassVar[int]
    OBJECT_FIELD_NUMBER: _ClassVar[int]
    FIELD_FIELD_NUMBER: _ClassVar[int]
    severity: str
    reason: str
    message: str
    file: str
    line: int
    object: str
    field: str
    def __init__(self, severity: _Optional[str] = ..., reason: _Optional[str] = ..., message: _Optional[str] = ..., file: _Optional[str] = ..., line: _Optional[int] = ..., object: _Optional[str] = ..., field: _Optional[str] = ...) -> None: ...

class Problems(_message.Message):
    __slots__ = ("problems",)
    PROBLEMS_FIELD_NUMBER: _ClassVar[int]
    problems: _containers.RepeatedCompositeFieldContainer[Problem]
    def __init__(self, problems: _Optional[_Iterable[_Union[Problem, _Mapping]]] = ...) -> None: ...

class Outcome(_message.Message):
    __slots__ = ("object", "action", "generation")
    OBJECT_FIELD_NUMBER: _ClassVar[int]
    ACTION_FIELD_NUMBER: _ClassVar[int]
    GENERATION_FIELD_NUMBER: _ClassVar[int]
    object: ObjectRef
    action: str
    generation: int
    def __init__(self, object: _Optional[_Union[ObjectRef, _Mapping]] = ..., action: _Optional[str] = ..., generation: _Optional[int] = ...) -> None: ...

class ApplyRequest(_message.Message):
    __slots__ = ("documents", "dry_run", "strict")
    DOCUMENTS_FIELD_NUMBER: _ClassVar[int]
    DRY_RUN_FIELD_NUMBER: _ClassVar[int]
    STRICT_FIELD_NUMBER: _ClassVar[int]
    documents: _containers.RepeatedCompositeFieldContainer[Document]
    dry_run: bool
    strict: bool
    def __init__(self, documents: _Optional[_Iterable[_Union[Document, _Mapping]]] = ..., dry_run: _Optional[bool] = ..., strict: _Optional[bool] = ...) -> None: ...

class ApplyResponse(_message.Message):
    __slots__ = ("revision", "outcomes", "warnings")
    REVISION_FIELD_NUMBER: _ClassVar[int]
    OUTCOMES_FIELD_NUMBER: _ClassVar[int]
    WARNINGS_FIELD_NUMBER: _ClassVar[int]
    revision: int
    outcomes: _containers.RepeatedCompositeFieldContainer[Outcome]
    warnings: _containers.RepeatedCompositeFieldContainer[Problem]
    def __init__(self, revision: _Optional[int] = ..., outcomes: _Optional[_Iterable[_Union[Outcome, _Mapping]]] = ..., warnings: _Optional[_Iterable[_Union[Problem, _Mapping]]] = ...) -> None: ...

class DeleteRequest(_message.Message):
    __slots__ = ("documents", "objects", "ignore_not_found", "dry_run")
    DOCUMENTS_FIELD_NUMBER: _ClassVar[int]
    OBJECTS_FIELD_NUMBER: _ClassVar[int]
    IGNORE_NOT_FOUND_FIELD_NUMBER: _ClassVar[int]
    DRY_RUN_FIELD_NUMBER: _ClassVar[int]
    documents: _containers.RepeatedCompositeFieldContainer[Document]
    objects: _containers.RepeatedCompositeFieldContainer[ObjectRef]
    ignore_not_found: bool
    dry_run: bool
    def __init__(self, documents: _Optional[_Iterable[_Union[Document, _Mapping]]] = ..., objects: _Optional[_Iterable[_Union[ObjectRef, _Mapping]]] = ..., ignore_not_found: _Optional[bool] = ..., dry_run: _Optional[bool] = ...) -> None: ...

class DeleteResponse(_message.Message):
    __slots__ = ("revision", "outcomes", "warnings")
    REVISION_FIELD_NUMBER: _ClassVar[int]
    OUTCOMES_FIELD_NUMBER: _ClassVar[int]
    WARNINGS_FIELD_NUMBER: _ClassVar[int]
    revision: int
    outcomes: _containers.RepeatedCompositeFieldContainer[Outcome]
    warnings: _containers.RepeatedCompositeFieldContainer[Problem]
    def __init__(self, revision: _Optional[int] = ..., outcomes: _Optional[_Iterable[_Union[Outcome, _Mapping]]] = ..., warnings: _Optional[_Iterable[_Union[Problem, _Mapping]]] = ...) -> None: ...

class Object(_message.Message):
    __slots__ = ("ref", "resource_version", "generation", "json")
    REF_FIELD_NUMBER: _ClassVar[int]
    RESOURCE_VERSION_FIELD_NUMBER: _ClassVar[int]
    GENERATION_FIELD_NUMBER: _ClassVar[int]
    JSON_FIELD_NUMBER: _ClassVar[int]
    ref: ObjectRef
    resource_version: int
    generation: int
    json: bytes
    def __init__(self, ref: _Optional[_Union[ObjectRef, _Mapping]] = ..., resource_version: _Optional[int] = ..., generation: _Optional[int] = ..., json: _Optional[bytes] = ...) -> None: ...

class GetRequest(_message.Message):
    __slots__ = ("object",)
    OBJECT_FIELD_NUMBER: _ClassVar[int]
    object: ObjectRef
    def __init__(self, object: _Optional[_Union[ObjectRef, _Mapping]] = ...) -> None: ...

class ListRequest(_message.Message):
    __slots__ = ("kind", "namespace")
    KIND_FIELD_NUMBER: _ClassVar[int]
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    kind: str
    namespace: str
    def __init__(self, kind: _Optional[str] = ..., namespace: _Optional[str] = ...) -> None: ...

class ListResponse(_message.Message):
    __slots__ = ("revision", "objects")
    REVISION_FIELD_NUMBER: _ClassVar[int]
    OBJECTS_FIELD_NUMBER: _ClassVar[int]
    revision: int
    objects: _containers.RepeatedCompositeFieldContainer[Object]
    def __init__(self, revision: _Optional[int] = ..., objects: _Optional[_Iterable[_Union[Object, _Mapping]]] = ...) -> None: ...

class WatchRequest(_message.Message):
    __slots__ = ("kind", "namespace", "resource_version", "status")
    KIND_FIELD_NUMBER: _ClassVar[int]
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    RESOURCE_VERSION_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    kind: str
    namespace: str
    resource_version: int
    status: bool
    def __init__(self, kind: _Optional[str] = ..., namespace: _Optional[str] = ..., resource_version: _Optional[int] = ..., status: _Optional[bool] = ...) -> None: ...

class WatchEvent(_message.Message):
    __slots__ = ("type", "object", "revision")
    class Type(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        TYPE_UNSPECIFIED: _ClassVar[WatchEvent.Type]
        ADDED: _ClassVar[WatchEvent.Type]
        MODIFIED: _ClassVar[WatchEvent.Type]
        DELETED: _ClassVar[WatchEvent.Type]
    TYPE_UNSPECIFIED: WatchEvent.Type
    ADDED: WatchEvent.Type
    MODIFIED: WatchEvent.Type
    DELETED: WatchEvent.Type
    TYPE_FIELD_NUMBER: _ClassVar[int]
    OBJECT_FIELD_NUMBER: _ClassVar[int]
    REVISION_FIELD_NUMBER: _ClassVar[int]
    type: WatchEvent.Type
    object: Object
    revision: int
    def __init__(self, type: _Optional[_Union[WatchEvent.Type, str]] = ..., object: _Optional[_Union[Object, _Mapping]] = ..., revision: _Optional[int] = ...) -> None: ...

class ProxyStatusRequest(_message.Message):
    __slots__ = ("node",)
    NODE_FIELD_NUMBER: _ClassVar[int]
    node: str
    def __init__(self, node: _Optional[str] = ...) -> None: ...

class ControlPlane(_message.Message):
    __slots__ = ("id", "version", "revision", "started")
    ID_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    REVISION_FIELD_NUMBER: _ClassVar[int]
    STARTED_FIELD_NUMBER: _ClassVar[int]
    id: str
    version: str
    revision: int
    started: _timestamp_pb2.Timestamp
    def __init__(self, id: _Optional[str] = ..., version: _Optional[str] = ..., revision: _Optional[int] = ..., started: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class TypeStatus(_message.Message):
    __slots__ = ("type", "state", "sent_version", "acked_version", "error", "since", "suspects")
    class State(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        STATE_UNSPECIFIED: _ClassVar[TypeStatus.State]
        SYNCED: _ClassVar[TypeStatus.State]
        STALE: _ClassVar[TypeStatus.State]
        NACKED: _ClassVar[TypeStatus.State]
        NOT_SENT: _ClassVar[TypeStatus.State]
    STATE_UNSPECIFIED: TypeStatus.State
    SYNCED: TypeStatus.State
    STALE: TypeStatus.State
    NACKED: TypeStatus.State
    NOT_SENT: TypeStatus.State
    TYPE_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    SENT_VERSION_FIELD_NUMBER: _ClassVar[int]
    ACKED_VERSION_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    SINCE_FIELD_NUMBER: _ClassVar[int]
    SUSPECTS_FIELD_NUMBER: _ClassVar[int]
    type: str
    state: TypeStatus.State
    sent_version: str
    acked_version: str
    error: str
    since: _timestamp_pb2.Timestamp
    suspects: _containers.RepeatedCompositeFieldContainer[ObjectRef]
    def __init__(self, type: _Optional[str] = ..., state: _Optional[_Union[TypeStatus.State, str]] = ..., sent_version: _Optional[str] = ..., acked_version: _Optional[str] = ..., error: _Optional[str] = ..., since: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., suspects: _Optional[_Iterable[_Union[ObjectRef, _Mapping]]] = ...) -> None: ...

class ProxyStatus(_message.Message):
    __slots__ = ("node_id", "kind", "namespace", "name", "address", "control_plane", "connected", "types", "synced_revision", "error", "identity", "mtls", "certificate_not_after", "certificate_renew_at", "health", "health_message")
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    ADDRESS_FIELD_NUMBER: _ClassVar[int]
    CONTROL_PLANE_FIELD_NUMBER: _ClassVar[int]
    CONNECTED_FIELD_NUMBER: _ClassVar[int]
    TYPES_FIELD_NUMBER: _ClassVar[int]
    SYNCED_REVISION_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    IDENTITY_FIELD_NUMBER: _ClassVar[int]
    MTLS_FIELD_NUMBER: _ClassVar[int]
    CERTIFICATE_NOT_AFTER_FIELD_NUMBER: _ClassVar[int]
    CERTIFICATE_RENEW_AT_FIELD_NUMBER: _ClassVar[int]
    HEALTH_FIELD_NUMBER: _ClassVar[int]
    HEALTH_MESSAGE_FIELD_NUMBER: _ClassVar[int]
    node_id: str
    kind: str
    namespace: str
    name: str
    address: str
    control_plane: str
    connected: _timestamp_pb2.Timestamp
    types: _containers.RepeatedCompositeFieldContainer[TypeStatus]
    synced_revision: int
    error: str
    identity: str
    mtls: str
    certificate_not_after: _timestamp_pb2.Timestamp
    certificate_renew_at: _timestamp_pb2.Timestamp
    health: str
    health_message: str
    def __init__(self, node_id: _Optional[str] = ..., kind: _Optional[str] = ..., namespace: _Optional[str] = ..., name: _Optional[str] = ..., address: _Optional[str] = ..., control_plane: _Optional[str] = ..., connected: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., types: _Optional[_Iterable[_Union[TypeStatus, _Mapping]]] = ..., synced_revision: _Optional[int] = ..., error: _Optional[str] = ..., identity: _Optional[str] = ..., mtls: _Optional[str] = ..., certificate_not_after: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., certificate_renew_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., health: _Optional[str] = ..., health_message: _Optional[str] = ...) -> None: ...

class ProxyStatusResponse(_message.Message):
    __slots__ = ("control_planes", "proxies")
    CONTROL_PLANES_FIELD_NUMBER: _ClassVar[int]
    PROXIES_FIELD_NUMBER: _ClassVar[int]
    control_planes: _containers.RepeatedCompositeFieldContainer[ControlPlane]
    proxies: _containers.RepeatedCompositeFieldContainer[ProxyStatus]
    def __init__(self, control_planes: _Optional[_Iterable[_Union[ControlPlane, _Mapping]]] = ..., proxies: _Optional[_Iterable[_Union[ProxyStatus, _Mapping]]] = ...) -> None: ...

class DescribeServiceRequest(_message.Message):
    __slots__ = ("namespace", "name")
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    namespace: str
    name: str
    def __init__(self, namespace: _Optional[str] = ..., name: _Optional[str] = ...) -> None: ...

class ServicePort(_message.Message):
    __slots__ = ("name", "port", "target_port", "app_protocol", "protocol", "mtls_mode", "mtls_source", "callers_use_mtls")
    NAME_FIELD_NUMBER: _ClassVar[int]
    PORT_FIELD_NUMBER: _ClassVar[int]
    TARGET_PORT_FIELD_NUMBER: _ClassVar[int]
    APP_PROTOCOL_FIELD_NUMBER: _ClassVar[int]
    PROTOCOL_FIELD_NUMBER: _ClassVar[int]
    MTLS_MODE_FIELD_NUMBER: _ClassVar[int]
    MTLS_SOURCE_FIELD_NUMBER: _ClassVar[int]
    CALLERS_USE_MTLS_FIELD_NUMBER: _ClassVar[int]
    name: str
    port: int
    target_port: int
    app_protocol: str
    protocol: str
    mtls_mode: str
    mtls_source: str
    callers_use_mtls: bool
    def __init__(self, name: _Optional[str] = ..., port: _Optional[int] = ..., target_port: _Optional[int] = ..., app_protocol: _Optional[str] = ..., protocol: _Optional[str] = ..., mtls_mode: _Optional[str] = ..., mtls_source: _Optional[str] = ..., callers_use_mtls: _Optional[bool] = ...) -> None: ...

class ServiceEndpoint(_message.Message):
    __slots__ = ("address", "port", "health", "source", "transport")
    ADDRESS_FIELD_NUMBER: _ClassVar[int]
    PORT_FIELD_NUMBER: _ClassVar[int]
    HEALTH_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    TRANSPORT_FIELD_NUMBER: _ClassVar[int]
    address: str
    port: int
    health: str
    source: str
    transport: str
    def __init__(self, address: _Optional[str] = ..., port: _Optional[int] = ..., health: _Optional[str] = ..., source: _Optional[str] = ..., transport: _Optional[str] = ...) -> None: ...

class RouteUse(_message.Message):
    __slots__ = ("route", "role", "port", "accepted", "reason", "detail")
    ROUTE_FIELD_NUMBER: _ClassVar[int]
    ROLE_FIELD_NUMBER: _ClassVar[int]
    PORT_FIELD_NUMBER: _ClassVar[int]
    ACCEPTED_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    DETAIL_FIELD_NUMBER: _ClassVar[int]
    route: ObjectRef
    role: str
    port: int
    accepted: bool
    reason: str
    detail: str
    def __init__(self, route: _Optional[_Union[ObjectRef, _Mapping]] = ..., role: _Optional[str] = ..., port: _Optional[int] = ..., accepted: _Optional[bool] = ..., reason: _Optional[str] = ..., detail: _Optional[str] = ...) -> None: ...

class PolicyUse(_message.Message):
    __slots__ = ("policy", "target", "section", "accepted", "reason", "fields")
    POLICY_FIELD_NUMBER: _ClassVar[int]
    TARGET_FIELD_NUMBER: _ClassVar[int]
    SECTION_FIELD_NUMBER: _ClassVar[int]
    ACCEPTED_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    FIELDS_FIELD_NUMBER: _ClassVar[int]
    policy: ObjectRef
    target: ObjectRef
    section: str
    accepted: bool
    reason: str
    fields: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, policy: _Optional[_Union[ObjectRef, _Mapping]] = ..., target: _Optional[_Union[ObjectRef, _Mapping]] = ..., section: _Optional[str] = ..., accepted: _Optional[bool] = ..., reason: _Optional[str] = ..., fields: _Optional[_Iterable[str]] = ...) -> None: ...

class ProxyRef(_message.Message):
    __slots__ = ("node_id", "kind", "namespace", "name", "address", "control_plane", "state")
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    ADDRESS_FIELD_NUMBER: _ClassVar[int]
    CONTROL_PLANE_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    node_id: str
    kind: str
    namespace: str
    name: str
    address: str
    control_plane: str
    state: str
    def __init__(self, node_id: _Optional[str] = ..., kind: _Optional[str] = ..., namespace: _Optional[str] = ..., name: _Optional[str] = ..., address: _Optional[str] = ..., control_plane: _Optional[str] = ..., state: _Optional[str] = ...) -> None: ...

class ServiceDescription(_message.Message):
    __slots__ = ("service", "ports", "endpoints", "routes", "policies", "serving", "calling", "identity")
    SERVICE_FIELD_NUMBER: _ClassVar[int]
    PORTS_FIELD_NUMBER: _ClassVar[int]
    ENDPOINTS_FIELD_NUMBER: _ClassVar[int]
    ROUTES_FIELD_NUMBER: _ClassVar[int]
    POLICIES_FIELD_NUMBER: _ClassVar[int]
    SERVING_FIELD_NUMBER: _ClassVar[int]
    CALLING_FIELD_NUMBER: _ClassVar[int]
    IDENTITY_FIELD_NUMBER: _ClassVar[int]
    service: Object
    ports: _containers.RepeatedCompositeFieldContainer[ServicePort]
    endpoints: _containers.RepeatedCompositeFieldContainer[ServiceEndpoint]
    routes: _containers.RepeatedCompositeFieldContainer[RouteUse]
    policies: _containers.RepeatedCompositeFieldContainer[PolicyUse]
    serving: _containers.RepeatedCompositeFieldContainer[ProxyRef]
    calling: _containers.RepeatedCompositeFieldContainer[ProxyRef]
    identity: str
    def __init__(self, service: _Optional[_Union[Object, _Mapping]] = ..., ports: _Optional[_Iterable[_Union[ServicePort, _Mapping]]] = ..., endpoints: _Optional[_Iterable[_Union[ServiceEndpoint, _Mapping]]] = ..., routes: _Optional[_Iterable[_Union[RouteUse, _Mapping]]] = ..., policies: _Optional[_Iterable[_Union[PolicyUse, _Mapping]]] = ..., serving: _Optional[_Iterable[_Union[ProxyRef, _Mapping]]] = ..., calling: _Optional[_Iterable[_Union[ProxyRef, _Mapping]]] = ..., identity: _Optional[str] = ...) -> None: ...
