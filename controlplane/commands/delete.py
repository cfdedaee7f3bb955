"""`pointsman delete (-f FILE|DIR|- [-f ...] | KIND NAME...) [-n NAMESPACE]
[--ignore-not-found] [--dry-run]`.

Deletes the objects the files name (kind, namespace and name are enough), or the ones named
on the command line, all or none: a missing object refuses the whole deletion unless
`--ignore-not-found`. Prints `service/api deleted` per object. Exit status: see
controlplane/commands/client.py.
"""

from __future__ import annotations

import argparse
import sys

from controlplane.api.kinds import canonical_kind
from controlplane.commands.apply import outcome_line
from controlplane.commands.client import (
    EPILOG,
    EXIT_OK,
    EXIT_USAGE,
    Failed,
    add_connection_arguments,
    connected,
    read_documents,
    run,
)
from protos.cli_help import DefaultsHelpFormatter
from protos.gen.pointsman.mesh.v1 import mesh_pb2 as pb


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="pointsman delete", epilog=EPILOG, formatter_class=DefaultsHelpFormatter,
        description="Delete mesh objects from the control plane, all of them or none.")
    parser.add_argument("-f", "--filename", action="append", default=[],
                        help="delete the objects a YAML file (folder, -) names (repeatable)")
    parser.add_argument("names", nargs="*", metavar="KIND NAME",
                        help="or: a kind (svc, httproute, ...) and names")
    parser.add_argument("-n", "--namespace", default="default", help="the namespace")
    parser.add_argument("--ignore-not-found", action="store_true")
    parser.add_argument("--dry-run", action="store_true")
    add_connection_arguments(parser)
    args = parser.parse_args(argv)
    if not args.filename and len(args.names) < 2:
        parser.error("give -f FILE or KIND NAME...")
    return args


def delete(args: argparse.Namespace) -> int:
    refs = []
    if args.names:
        kind = canonical_kind(args.names[0])
        if kind is None:
            raise Failed(EXIT_USAGE, f"unknown kind {args.names[0]!r}")
        refs = [pb.ObjectRef(kind=kind, namespace=args.namespace, name=name)
                for name in args.names[1:]]
    documents = read_documents(args.filename)
    with connected(args) as client:
        response = client.call("Delete", pb.DeleteRequest(
            documents=documents, objects=refs, ignore_not_found=args.ignore_not_found,
            dry_run=args.dry_run))
    for item in response.outcomes:
        print(outcome_line(item, args.dry_run))
    return EXIT_OK


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    return run("pointsman delete", delete, args)
