"""`pointsman apply -f FILE|DIR|- [-f ...] [--dry-run] [--strict] [--wait] [-o text|json]`.

Sends the objects to the control plane, which checks them together with the mesh it has and
stores all of them or none (a refusal prints every problem, `file:line: Kind ns/name: field:
error: message (Reason)`, and changes nothing). Prints one line per object as kubectl does
(`httproute.gateway.networking.k8s.io/canary configured`) and analyze's findings about them
as warnings on stderr. `--wait` then waits until every applied object is Programmed (every
sidecar it concerns has ACKed it), or fails when a sidecar NACKs it. Exit status: see
controlplane/commands/client.py.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

from controlplane.api.kinds import resource_name
from controlplane.commands.client import (
    EPILOG,
    EXIT_OK,
    EXIT_REFUSED,
    Client,
    Failed,
    add_connection_arguments,
    connected,
    format_problem,
    read_documents,
    run,
)
from protos.cli_help import DefaultsHelpFormatter
from protos.gen.pointsman.mesh.v1 import mesh_pb2 as pb


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="pointsman apply", epilog=EPILOG, formatter_class=DefaultsHelpFormatter,
        description="Store mesh objects in the control plane: all of them, checked together "
                    "with the mesh, or none.")
    parser.add_argument("-f", "--filename", action="append", required=True,
                        help="a YAML file, a folder of them, or - for standard input "
                             "(repeatable)")
    parser.add_argument("--dry-run", action="store_true",
                        help="check and report, change nothing")
    parser.add_argument("--strict", action="store_true",
                        help="also refuse when analyze finds errors (references to nothing...)")
    parser.add_argument("--wait", action="store_true",
                        help="wait until every applied object is Programmed")
    parser.add_argument("--timeout", type=float, default=60.0, metavar="SECONDS",
                        help="how long --wait waits (default 60)")
    parser.add_argument("-o", "--output", choices=("text", "json"), default="text",
                        help="output format")
    add_connection_arguments(parser)
    return parser.parse_args(argv)


def outcome_line(item: pb.Outcome, dry_run: bool) -> str:
    ref = item.object
    name = resource_name(ref.kind) if ref.kind else "object"
    namespace = "" if ref.namespace in ("", "default") else f" -n {ref.namespace}"
    return f"{name}/{ref.name}{namespace} {item.action}{' (dry run)' if dry_run else ''}"


def apply(args: argparse.Namespace) -> int:
    documents = read_documents(args.filename)
    with connected(args) as client:
        response = client.call("Apply", pb.ApplyRequest(documents=documents,
                                                        dry_run=args.dry_run,
                                                        strict=args.strict))
        report(response.outcomes, response.warnings, args)
        if args.wait and not args.dry_run:
            return wait_programmed(client, list(response.outcomes), args.timeout)
    return EXIT_OK


def report(outcomes: list[pb.Outcome], warnings: list[pb.Problem],
           args: argparse.Namespace) -> None:
    if args.output == "json":
        print(json.dumps({"outcomes": [{"kind": item.object.kind,
                                        "namespace": item.object.namespace,
                                        "name": item.object.name, "action": item.action,
                                        "generation": item.generation} for item in outcomes],
                          "warnings": [format_problem(item) for item in warnings]}, indent=2))
    else:
        for item in outcomes:
            print(outcome_line(item, args.dry_run))
    for warning in warnings:
        print(f"Warning: {format_problem(warning)}", file=sys.stderr)


def wait_programmed(client: Client, outcomes: list[pb.Outcome], timeout: float) -> int:
    """Until each object's Programmed condition is True for its generation."""
    deadline = time.monotonic() + timeout
    waiting = {(item.object.kind, item.object.namespace, item.object.name): item.generation
               for item in outcomes}
    while waiting:
        for (kind, namespace, name), generation in list(waiting.items()):
            got = client.call("Get", pb.GetRequest(object=pb.ObjectRef(
                kind=kind, namespace=namespace, name=name)))
            condition = programmed(json.loads(got.json))
            if condition is None or int(condition.get("observedGeneration", 0)) < generation:
                continue
            if condition.get("status") == "True":
                del waiting[(kind, namespace, name)]
            elif condition.get("reason") == "Invalid":
                raise Failed(EXIT_REFUSED, f"{kind} {namespace}/{name} is not programmed: "
                                           f"{condition.get('message', '')}")
        if waiting and time.monotonic() > deadline:
            names = ", ".join(f"{kind} {ns}/{name}" for kind, ns, name in sorted(waiting))
            raise Failed(EXIT_REFUSED, f"not Programmed after {timeout:g}s: {names}")
        if waiting:
            time.sleep(0.2)
    print("programmed", file=sys.stderr)
    return EXIT_OK


def programmed(data: dict[str, Any]) -> dict[str, Any] | None:
    status = data.get("status")
    conditions = status.get("conditions", []) if isinstance(status, dict) else []
    for condition in conditions:
        if isinstance(condition, dict) and condition.get("type") == "Programmed":
            return condition
    return None


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    return run("pointsman apply", apply, args)
