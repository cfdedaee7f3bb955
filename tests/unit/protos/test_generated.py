"""protos/gen/ is what `make protos` makes from protos/pointsman/**/*.proto: a .proto edited
without regenerating fails here."""

from __future__ import annotations

from pathlib import Path

from google.protobuf import descriptor_pb2
from grpc_tools import protoc

from protos.gen.pointsman.mesh.v1 import mesh_pb2

PROTOS = Path(__file__).resolve().parents[3] / "protos"


def test_generated_code_matches_the_proto(tmp_path: Path) -> None:
    out = tmp_path / "set.pb"
    source = "pointsman/mesh/v1/mesh.proto"
    include = Path(protoc.__file__).parent / "_proto"
    status = protoc.main(["protoc", f"-I{PROTOS}", f"-I{include}",
                          f"--descriptor_set_out={out}", str(PROTOS / source)])
    assert status == 0
    built = {item.name: item for item in
             descriptor_pb2.FileDescriptorSet.FromString(out.read_bytes()).file}
    for message in _messages(built[source].message_type):
        for field in message.field:
            field.ClearField("json_name")  # protoc adds it to descriptor sets, not to gencode
    committed = descriptor_pb2.FileDescriptorProto.FromString(mesh_pb2.DESCRIPTOR.serialized_pb)
    assert built[source] == committed, "run `make protos` after editing the .proto"


def _messages(items: object) -> list[descriptor_pb2.DescriptorProto]:
    out = []
    for message in items:  # type: ignore[attr-defined]
        out.append(message)
        out += _messages(message.nested_type)
    return out
