"""What the verbs that talk to a control plane share (apply, delete, get, status, describe):
where it is, credentials, reading -f inputs, calling, and turning failures into messages and
exit codes scripts can use.

Exit status: 0 done; 1 the control plane refused (invalid objects, not found, a conflict,
a NACK with --wait); 2 bad usage or unreadable input; 3 the control plane could not be reached
or refused the credentials.

Where: `--server HOST:PORT`, else $POINTSMAN_SERVER, else 127.0.0.1:18001. Credentials:
`--token-file FILE` or $POINTSMAN_TOKEN (a bearer token), `--ca FILE` (TLS, verifying the
control plane's certificate), `--cert FILE --key FILE` (a client certificate: mutual TLS).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import grpc
from google.rpc import status_pb2

from protos.gen.pointsman.mesh.v1 import mesh_pb2 as pb

EXIT_OK, EXIT_REFUSED, EXIT_USAGE, EXIT_UNREACHABLE = 0, 1, 2, 3
DEFAULT_SERVER = "127.0.0.1:18001"
SERVICE = "/pointsman.mesh.v1.MeshService/"
EPILOG = ("exit status: 0 done, 1 refused by the control plane, 2 bad usage or unreadable "
          "input, 3 control plane unreachable or credentials refused")
UNREACHABLE = {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.UNAUTHENTICATED,
               grpc.StatusCode.PERMISSION_DENIED, grpc.StatusCode.DEADLINE_EXCEEDED,
               grpc.StatusCode.UNIMPLEMENTED}

RESPONSES: dict[str, Any] = {
    "Apply": pb.ApplyResponse, "Delete": pb.DeleteResponse, "Get": pb.Object,
    "List": pb.ListResponse, "ProxyStatus": pb.ProxyStatusResponse,
    "DescribeService": pb.ServiceDescription}


class Failed(Exception):
    """The command failed; `code` is the exit status, the message is printed as is."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code


def add_connection_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("connection")
    group.add_argument("--server", default=os.environ.get("POINTSMAN_SERVER", DEFAULT_SERVER),
                       help="the control plane's management API, HOST:PORT (default "
                            f"$POINTSMAN_SERVER or {DEFAULT_SERVER})")
    group.add_argument("--token-file", type=Path,
                       help="bearer token (default $POINTSMAN_TOKEN)")
    group.add_argument("--ca", type=Path, help="CA bundle: connect with TLS, verifying the "
                                               "server's certificate")
    group.add_argument("--cert", type=Path, help="client certificate (mutual TLS)")
    group.add_argument("--key", type=Path, help="client private key (mutual TLS)")
    group.add_argument("--request-timeout", type=float, default=60.0, metavar="SECONDS",
                       help="how long one call may take (default 60)")


class Client:
    def __init__(self, args: argparse.Namespace) -> None:
        self.target = args.server
        self.timeout = args.request_timeout
        self.metadata = _metadata(args)
        self.channel = _channel(args)

    def call(self, method: str, request: Any, *, service: str = SERVICE,
             response: Any = None) -> Any:
        kind = response or RESPONSES[method]
        stub = self.channel.unary_unary(service + method, request_serializer=_serialise,
                                        response_deserializer=kind.FromString)
        try:
            return stub(request, timeout=self.timeout, metadata=self.metadata)
        except grpc.RpcError as error:
            raise refusal(error, self.target) from error

    def watch(self, request: pb.WatchRequest) -> Iterator[pb.WatchEvent]:
        stub = self.channel.unary_stream(SERVICE + "Watch", request_serializer=_serialise,
                                         response_deserializer=pb.WatchEvent.FromString)
        try:
            yield from stub(request, metadata=self.metadata)
        except grpc.RpcError as error:
            raise refusal(error, self.target) from error

    def close(self) -> None:
        self.channel.close()


def refusal(error: grpc.RpcError, target: str) -> Failed:
    """A Failed with the problems the control plane sent (one per line), or its message."""
    code = error.code()  # type: ignore[attr-defined]
    details = error.details() or code.name  # type: ignore[attr-defined]
    if code in UNREACHABLE:
        return Failed(EXIT_UNREACHABLE, f"control plane at {target}: {code.name}: {details}")
    problems = problems_of(error)
    if problems:
        lines = [format_problem(item) for item in problems]
        return Failed(EXIT_REFUSED, "\n".join(lines))
    return Failed(EXIT_REFUSED, f"{code.name}: {details}")


def problems_of(error: grpc.RpcError) -> list[pb.Problem]:
    for key, value in error.trailing_metadata() or ():  # type: ignore[attr-defined]
        if key == "grpc-status-details-bin":
            status = status_pb2.Status.FromString(value)
            out: list[pb.Problem] = []
            for detail in status.details:
                found = pb.Problems()
                if detail.Unpack(found):
                    out += found.problems
            return out
    return []


def format_problem(item: pb.Problem) -> str:
    """`file:line: Kind ns/name: field: severity: message (Reason)`, as analyze prints."""
    parts = []
    if item.file:
        parts.append(f"{item.file}:{item.line}" if item.line else item.file)
    parts += [part for part in (item.object, item.field) if part]
    prefix = ": ".join(parts)
    return f"{prefix + ': ' if prefix else ''}{item.severity}: {item.message} ({item.reason})"


def read_documents(names: list[str]) -> list[pb.Document]:
    """-f inputs as documents: a file, every .yaml/.yml/.json under a folder, or - (stdin)."""
    documents = []
    for name in names:
        if name == "-":
            documents.append(pb.Document(source="<stdin>", content=sys.stdin.buffer.read()))
            continue
        try:
            for path in input_files(Path(name)):
                documents.append(pb.Document(source=str(path), content=path.read_bytes()))
        except OSError as error:
            raise Failed(EXIT_USAGE, f"{name}: {error.strerror}") from error
    return documents


def input_files(path: Path) -> list[Path]:
    """A file, or the .yaml/.yml/.json files under a folder, sorted, hidden ones skipped (as
    controlplane.mesh.load.mesh_files reads a folder)."""
    if not path.exists():
        raise OSError(2, "no such file or folder", str(path))
    if path.is_file():
        return [path]
    return sorted(item for item in path.rglob("*")
                  if item.is_file() and item.suffix in (".yaml", ".yml", ".json")
                  and not any(part.startswith(".") for part in item.relative_to(path).parts))


@contextmanager
def connected(args: argparse.Namespace) -> Iterator[Client]:
    client = Client(args)
    try:
        yield client
    finally:
        client.close()


def run(prog: str, body: Any, args: argparse.Namespace) -> int:
    """Run `body(args)`, printing a failure as `prog: message` (or its problem lines)."""
    try:
        return int(body(args))
    except Failed as failure:
        text = str(failure)
        print(text if "\n" in text or text.startswith(("/", "<")) else f"{prog}: {text}",
              file=sys.stderr)
        return failure.code
    except KeyboardInterrupt:
        return 130


def _metadata(args: argparse.Namespace) -> tuple[tuple[str, str], ...]:
    token = os.environ.get("POINTSMAN_TOKEN", "")
    if args.token_file is not None:
        try:
            token = args.token_file.read_text().strip()
        except OSError as error:
            raise Failed(EXIT_USAGE, f"--token-file {args.token_file}: {error.strerror}") \
                from error
    return (("authorization", f"Bearer {token}"),) if token else ()


def _channel(args: argparse.Namespace) -> grpc.Channel:
    options = [("grpc.max_receive_message_length", 256 * 1024 * 1024),
               ("grpc.max_send_message_length", 64 * 1024 * 1024)]
    if args.ca is None and args.cert is None:
        return grpc.insecure_channel(args.server, options=options)
    if bool(args.cert) != bool(args.key):
        raise Failed(EXIT_USAGE, "--cert and --key go together")
    try:
        credentials = grpc.ssl_channel_credentials(
            root_certificates=args.ca.read_bytes() if args.ca else None,
            private_key=args.key.read_bytes() if args.key else None,
            certificate_chain=args.cert.read_bytes() if args.cert else None)
    except OSError as error:
        raise Failed(EXIT_USAGE, f"{error.filename}: {error.strerror}") from error
    return grpc.secure_channel(args.server, credentials, options=options)


def _serialise(message: Any) -> bytes:
    return bytes(message.SerializeToString())
