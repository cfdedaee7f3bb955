"""`pointsman status [NODE|SERVICE] [-o json]`: every connected sidecar and Gateway proxy,
per xDS type, like `istioctl proxy-status`.

SYNCED: it ACKed what the control plane has for it now; STALE: a push waits for its ACK, or
the mesh changed since; NACKED: it refused the last version (the error and since when are
listed under the table, with the objects that changed what it refused); NOT_SENT: subscribed,
nothing to send yet; `-`: not subscribed. A sidecar that reports its application's health
(`--readiness-port`) and is not HEALTHY is listed under the table too: it is no endpoint.
With several replicas every proxy of the mesh is listed, each with the replica serving it.
Exit status: 0 every proxy SYNCED (or none connected), 1 some STALE or NACKED (or NODE not
connected), 2 bad usage, 3 control plane unreachable.
"""

from __future__ import annotations

import argparse
import datetime
import json
import sys

from google.protobuf import json_format

from controlplane.commands.client import (
    EPILOG,
    EXIT_OK,
    EXIT_REFUSED,
    add_connection_arguments,
    connected,
    run,
)
from controlplane.commands.output import since, table
from protos.cli_help import DefaultsHelpFormatter
from protos.gen.pointsman.mesh.v1 import mesh_pb2 as pb

TYPES = ("CDS", "LDS", "EDS", "RDS")


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="pointsman status", formatter_class=DefaultsHelpFormatter,
        epilog=EPILOG.replace("0 done", "0 all SYNCED").replace(
            "1 refused by the control plane", "1 some STALE or NACKED"),
        description="Connected sidecars and Gateway proxies, per xDS type: SYNCED, STALE, "
                    "NACKED (with the error), like istioctl proxy-status.")
    parser.add_argument("node", nargs="?", default="",
                        help="only this node id, or the sidecars of this Service "
                             "(NAME or NAMESPACE/NAME)")
    parser.add_argument("-o", "--output", choices=("text", "json"), default="text",
                        help="output format")
    add_connection_arguments(parser)
    return parser.parse_args(argv)


def state_cell(status: pb.TypeStatus) -> str:
    return pb.TypeStatus.State.Name(status.state)


def status(args: argparse.Namespace) -> int:
    with connected(args) as client:
        response = client.call("ProxyStatus", pb.ProxyStatusRequest(node=args.node))
    if args.output == "json":
        print(json.dumps(json_format.MessageToDict(response), indent=2))
    else:
        print(render(response, identities=bool(args.node)))
    states = {item.state for proxy in response.proxies for item in proxy.types}
    bad = states & {pb.TypeStatus.State.STALE, pb.TypeStatus.State.NACKED}
    return EXIT_REFUSED if bad or any(proxy.error for proxy in response.proxies) else EXIT_OK


def render(response: pb.ProxyStatusResponse, identities: bool = False) -> str:
    """`identities`: a line per proxy with its SPIFFE ID (`pointsman status NODE`)."""
    planes = ", ".join(f"{item.id} (pointsman {item.version}, revision {item.revision})"
                       for item in response.control_planes)
    lines = [f"Control planes: {planes}", ""]
    rows = []
    notes = []
    for proxy in sorted(response.proxies, key=lambda item: item.node_id):
        by_type = {item.type: item for item in proxy.types}
        member = f"{proxy.kind} {proxy.namespace}/{proxy.name}" if proxy.kind else \
            f"{proxy.name} (not a mesh member)"
        rows.append([proxy.node_id, member,
                     *[state_cell(by_type[kind]) if kind in by_type else "-" for kind in TYPES],
                     proxy.mtls or "-", proxy.control_plane, str(proxy.synced_revision)])
        if proxy.identity and identities:
            notes.append(f"{proxy.node_id}: identity {proxy.identity}"
                         + certificate_validity(proxy))
        if proxy.error:
            notes.append(f"{proxy.node_id}: gets nothing: {proxy.error}")
        if proxy.health and proxy.health != "HEALTHY":
            notes.append(f"{proxy.node_id}: application {proxy.health}"
                         + (f" ({proxy.health_message})" if proxy.health_message else "")
                         + ": not an endpoint of its Services")
        for item in proxy.types:
            if item.state == pb.TypeStatus.State.NACKED:
                suspects = ", ".join(f"{ref.kind} {ref.namespace}/{ref.name}"
                                     for ref in item.suspects)
                notes.append(f"{proxy.node_id}: {item.type} NACKED for "
                             f"{since(item.since.ToNanoseconds() / 1e9)} (version "
                             f"{item.sent_version}): {item.error}"
                             + (f"\n  changed by: {suspects}" if suspects else ""))
    if not rows:
        return "\n".join([*lines, "No proxies connected."])
    lines.append(table(["NAME", "MEMBER", *TYPES, "MTLS", "CONTROL PLANE", "REVISION"], rows))
    if notes:
        lines += ["", *notes]
    return "\n".join(lines)


def certificate_validity(proxy: pb.ProxyStatus) -> str:
    """", certificate valid until ... (renewed from ...)", or nothing before one is issued."""
    if not proxy.HasField("certificate_not_after"):
        return ""
    until = proxy.certificate_not_after.ToDatetime(datetime.UTC)
    renew = proxy.certificate_renew_at.ToDatetime(datetime.UTC)
    return (f", certificate valid until {until:%Y-%m-%dT%H:%M:%SZ} (renewed from "
            f"{renew:%Y-%m-%dT%H:%M:%SZ})")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    return run("pointsman status", status, args)
