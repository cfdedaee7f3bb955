"""`pointsman get KIND [NAME...] [-n NAMESPACE | -A] [-o wide|yaml|json|name]`.

Like kubectl get: a table (NAME, ACCEPTED, PROGRAMMED, AGE; NAMESPACE with -A; the ports of
Services), or the objects with their status (`-o yaml`, `-o json`; several as a `kind: List`).
KIND takes kubectl's forms (`svc`, `httproutes`, `HTTPRoute`, `KIND/NAME`). Exit status: 0,
1 when a named object does not exist, 2 bad usage, 3 control plane unreachable.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from controlplane.api.kinds import canonical_kind
from controlplane.commands.client import (
    EPILOG,
    EXIT_OK,
    EXIT_USAGE,
    Failed,
    add_connection_arguments,
    connected,
    run,
)
from controlplane.commands.output import age, condition, table, to_yaml
from protos.cli_help import DefaultsHelpFormatter
from protos.gen.pointsman.mesh.v1 import mesh_pb2 as pb


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="pointsman get", epilog=EPILOG,
                                     formatter_class=DefaultsHelpFormatter,
                                     description="Show mesh objects and their status.")
    parser.add_argument("kind", help="svc, httproute, gateway, btp, ... (or KIND/NAME)")
    parser.add_argument("names", nargs="*", help="only these objects")
    parser.add_argument("-n", "--namespace", default="default", help="the namespace")
    parser.add_argument("-A", "--all-namespaces", action="store_true")
    parser.add_argument("-o", "--output", choices=("wide", "yaml", "json", "name"))
    add_connection_arguments(parser)
    args = parser.parse_args(argv)
    if "/" in args.kind:
        args.kind, name = args.kind.split("/", 1)
        args.names.insert(0, name)
    return args


def get(args: argparse.Namespace) -> int:
    kind = canonical_kind(args.kind)
    if kind is None:
        raise Failed(EXIT_USAGE, f"unknown kind {args.kind!r}")
    namespace = "" if args.all_namespaces else args.namespace
    with connected(args) as client:
        if args.names:
            objects = [client.call("Get", pb.GetRequest(object=pb.ObjectRef(
                kind=kind, namespace=args.namespace, name=name))) for name in args.names]
        else:
            objects = list(client.call("List", pb.ListRequest(
                kind=kind, namespace=namespace)).objects)
    items = [json.loads(item.json) for item in objects]
    print(render(items, args, single=len(args.names) == 1), end="")
    if not items and args.output in (None, "wide"):
        where = "any namespace" if args.all_namespaces else f"{args.namespace} namespace"
        print(f"No {kind} found in {where}.", file=sys.stderr)
    return EXIT_OK


def render(items: list[dict[str, Any]], args: argparse.Namespace, *, single: bool) -> str:
    if args.output in ("yaml", "json"):
        data: Any = items[0] if single else {"apiVersion": "v1", "kind": "List",
                                             "items": items}
        return to_yaml(data) if args.output == "yaml" else json.dumps(data, indent=2) + "\n"
    if args.output == "name":
        return "".join(f"{item['kind'].lower()}/{item['metadata']['name']}\n" for item in items)
    if not items:
        return ""
    wide = args.output == "wide"
    headers = (["NAMESPACE"] if args.all_namespaces else []) + ["NAME", *extra_headers(
        items[0]["kind"], wide), "ACCEPTED", "PROGRAMMED", "AGE"]
    rows = [(([item["metadata"].get("namespace", "")] if args.all_namespaces else [])
             + [item["metadata"]["name"], *extra_cells(item, wide), state(item, "Accepted"),
                state(item, "Programmed"), age(item["metadata"].get("creationTimestamp", ""))])
            for item in items]
    return table(headers, rows) + "\n"


def state(item: dict[str, Any], kind: str) -> str:
    found = condition(item, kind)
    if found is None:
        return "Unknown"
    return str(found.get("status")) if found.get("status") == "True" else \
        f"{found.get('status')} ({found.get('reason')})"


def extra_headers(kind: str, wide: bool) -> list[str]:
    if kind == "Service":
        return ["PORT(S)"]
    if wide and kind in ("HTTPRoute", "GRPCRoute", "TCPRoute", "TLSRoute"):
        return ["PARENTS"]
    return []


def extra_cells(item: dict[str, Any], wide: bool) -> list[str]:
    spec = item.get("spec") or {}
    if item["kind"] == "Service":
        ports = [f"{port.get('port')}/{port.get('appProtocol') or port.get('protocol') or 'TCP'}"
                 for port in spec.get("ports", [])]
        return [",".join(ports) or "<none>"]
    if wide and item["kind"] in ("HTTPRoute", "GRPCRoute", "TCPRoute", "TLSRoute"):
        return [",".join(f"{ref.get('kind', 'Gateway')}/{ref.get('name')}"
                         for ref in spec.get("parentRefs", [])) or "<none>"]
    return []


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    return run("pointsman get", get, args)
