"""The suite's gRPC echo service (echo-basic's grpcecho.proto, package
gateway_api_conformance.echo_basic.grpcecho: GrpcEcho's Echo, EchoTwo and the intentionally
unimplemented EchoThree), its messages built with protobuf's descriptor API from the field
list below (the .proto's field names and numbers), so neither generated code nor protoc is
needed: the echo server (echo.py --grpc-echo) answers with them and the gateway runner's gRPC
client reads them.
"""

from __future__ import annotations

from typing import Any

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

PACKAGE = "gateway_api_conformance.echo_basic.grpcecho"
SERVICE = f"{PACKAGE}.GrpcEcho"
METHODS = ("Echo", "EchoTwo", "EchoThree")
UNIMPLEMENTED_METHOD = "EchoThree"  # "An intentionally unimplemented method."

_STRING = descriptor_pb2.FieldDescriptorProto.TYPE_STRING
_MESSAGE = descriptor_pb2.FieldDescriptorProto.TYPE_MESSAGE
_ONE = descriptor_pb2.FieldDescriptorProto.LABEL_OPTIONAL
_MANY = descriptor_pb2.FieldDescriptorProto.LABEL_REPEATED

# message -> (field, number, type, label, message type) as in grpcecho.proto
_MESSAGES: dict[str, tuple[tuple[str, int, int, int, str], ...]] = {
    "Header": (("key", 1, _STRING, _ONE, ""), ("value", 2, _STRING, _ONE, "")),
    "Context": (("namespace", 1, _STRING, _ONE, ""), ("ingress", 2, _STRING, _ONE, ""),
                ("service_name", 3, _STRING, _ONE, ""), ("pod", 4, _STRING, _ONE, "")),
    "TLSAssertions": (("version", 1, _STRING, _ONE, ""),
                      ("negotiated_protocol", 2, _STRING, _ONE, ""),
                      ("server_name", 3, _STRING, _ONE, ""),
                      ("cipher_suite", 4, _STRING, _ONE, ""),
                      ("peer_certificates", 5, _STRING, _MANY, "")),
    "Assertions": (("fully_qualified_method", 1, _STRING, _ONE, ""),
                   ("headers", 2, _MESSAGE, _MANY, "Header"),
                   ("authority", 3, _STRING, _ONE, ""),
                   ("context", 4, _MESSAGE, _ONE, "Context"),
                   ("tls_assertions", 5, _MESSAGE, _ONE, "TLSAssertions")),
    "EchoRequest": (),
    "EchoResponse": (("assertions", 1, _MESSAGE, _ONE, "Assertions"),
                     ("request", 2, _MESSAGE, _ONE, "EchoRequest")),
}


def _classes() -> dict[str, Any]:
    file = descriptor_pb2.FileDescriptorProto(name="pointsman/grpcecho.proto",
                                              package=PACKAGE, syntax="proto3")
    for name, fields in _MESSAGES.items():
        message = file.message_type.add(name=name)
        for field, number, kind, label, type_name in fields:
            added = message.field.add(name=field, number=number, type=kind, label=label)
            if type_name:  # a proto2 field: set (even to "") only for message types
                added.type_name = f".{PACKAGE}.{type_name}"
    pool = descriptor_pool.DescriptorPool()
    pool.Add(file)
    return {name: message_factory.GetMessageClass(pool.FindMessageTypeByName(
        f"{PACKAGE}.{name}")) for name in _MESSAGES}


CLASSES = _classes()
EchoRequest = CLASSES["EchoRequest"]
EchoResponse = CLASSES["EchoResponse"]


def full_method(method: str) -> str:
    """`/gateway_api_conformance.echo_basic.grpcecho.GrpcEcho/Echo`."""
    return f"/{SERVICE}/{method}"


def echo_response(method: str, metadata: list[tuple[str, str]], namespace: str,
                  pod: str) -> bytes:
    """What echo-basic's doEcho answers: the method, the request's metadata and authority,
    and the pod's context."""
    response = EchoResponse()
    assertions = response.assertions
    assertions.fully_qualified_method = method
    for key, value in metadata:
        if key == ":authority":
            assertions.authority = value
        header = assertions.headers.add()
        header.key, header.value = key, value
    assertions.context.namespace = namespace
    assertions.context.pod = pod
    response.request.SetInParent()
    data: bytes = response.SerializeToString()
    return data
