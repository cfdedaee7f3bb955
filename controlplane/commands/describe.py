"""`pointsman describe service NAME [-n NAMESPACE] [-o text|json]`.

One Service as the mesh sees it: its conditions, ports (and the protocol the mesh carries
each as), endpoints (registered sidecars and EndpointSlice addresses, healthy or not), the
routes attached to it and sending to it, the policies that apply, the sidecars serving it and
the proxies that can call it, with their xDS sync state. Exit status: 0, 1 no such Service,
2 bad usage, 3 control plane unreachable.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from google.protobuf import json_format

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
from controlplane.commands.output import age, table
from protos.cli_help import DefaultsHelpFormatter
from protos.gen.pointsman.mesh.v1 import mesh_pb2 as pb


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="pointsman describe", epilog=EPILOG, formatter_class=DefaultsHelpFormatter,
        description="A Service with its ports, endpoints, routes, policies and sidecars.")
    parser.add_argument("kind", help="service (svc)")
    parser.add_argument("name")
    parser.add_argument("-n", "--namespace", default="default", help="the namespace")
    parser.add_argument("-o", "--output", choices=("text", "json"), default="text",
                        help="output format")
    add_connection_arguments(parser)
    return parser.parse_args(argv)


def describe(args: argparse.Namespace) -> int:
    if canonical_kind(args.kind) != "Service":
        raise Failed(EXIT_USAGE, f"describe supports Services only, not {args.kind!r}")
    with connected(args) as client:
        found = client.call("DescribeService", pb.DescribeServiceRequest(
            namespace=args.namespace, name=args.name))
    if args.output == "json":
        data = json_format.MessageToDict(found)
        data["service"]["json"] = json.loads(found.service.json)
        print(json.dumps(data, indent=2))
    else:
        print(render(found))
    return EXIT_OK


def _ref(ref: pb.ObjectRef) -> str:
    return f"{ref.kind} {ref.namespace}/{ref.name}"


def _section(title: str, headers: list[str], rows: list[list[str]]) -> list[str]:
    if not rows:
        return [f"{title}:  <none>"]
    return [f"{title}:", *("  " + line for line in table(headers, rows).splitlines())]


def render(found: pb.ServiceDescription) -> str:
    service: dict[str, Any] = json.loads(found.service.json)
    metadata = service["metadata"]
    conditions = service.get("status", {}).get("conditions", [])
    lines = [f"Name:          {metadata['name']}",
             f"Namespace:     {metadata['namespace']}",
             f"Generation:    {metadata.get('generation')} (resourceVersion "
             f"{metadata.get('resourceVersion')})",
             f"Created:       {metadata.get('creationTimestamp')} "
             f"({age(metadata.get('creationTimestamp', ''))} ago)",
             f"Identity:      {found.identity or '<none> (no certificates issued)'}"]
    lines += _section("Conditions", ["TYPE", "STATUS", "REASON", "MESSAGE"],
                      [[item["type"], item["status"], item["reason"], item.get("message", "")]
                       for item in conditions])
    lines += _section("Ports", ["NAME", "PORT", "TARGET", "APP PROTOCOL", "CARRIED AS", "MTLS",
                                "CALLERS", "MTLS SET BY"],
                      [[item.name or "-", str(item.port), str(item.target_port),
                        item.app_protocol or "-", item.protocol, item.mtls_mode or "-",
                        "mTLS" if item.callers_use_mtls else "plaintext",
                        item.mtls_source or "-"] for item in found.ports])
    lines += _section("Endpoints", ["ADDRESS", "PORT", "HEALTH", "CALLED WITH", "SOURCE"],
                      [[item.address, str(item.port) if item.port else "(service ports)",
                        item.health, item.transport or "-", item.source]
                       for item in found.endpoints])
    lines += _section("Routes", ["ROUTE", "ROLE", "PORT", "ACCEPTED", "DETAIL"],
                      [[_ref(item.route), item.role, str(item.port),
                        "True" if item.accepted else f"False ({item.reason})", item.detail]
                       for item in found.routes])
    lines += _section("Policies", ["POLICY", "TARGET", "ACCEPTED", "SETS"],
                      [[_ref(item.policy), _ref(item.target) + (
                          f" ({item.section})" if item.section else ""),
                        "True" if item.accepted else f"False ({item.reason})",
                        ",".join(item.fields)] for item in found.policies])
    lines += _section("Serving sidecars", ["NODE", "ADDRESS", "STATE", "CONTROL PLANE"],
                      [[item.node_id, item.address, item.state, item.control_plane]
                       for item in found.serving])
    lines += _section("Called by", ["NODE", "MEMBER", "STATE", "CONTROL PLANE"],
                      [[item.node_id, f"{item.kind} {item.namespace}/{item.name}", item.state,
                        item.control_plane] for item in found.calling])
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    return run("pointsman describe", describe, args)
