"""`pointsman explain -f FILE|DIR --from SERVICE [-n NAMESPACE] METHOD URL [-H 'Name: value']`.

Tells what the mesh does with one request from one caller, computed by the sidecar's own
routing code (controlplane.mesh.explain): the route and rule that match, the backends and
their weights, the policies that apply, the endpoints that could be picked. `--from
gateway/NAME` asks about a Gateway's proxy instead (the URL's port picks its listener);
`--from spiffe://cluster.local/ns/NS/sa/NAME` calls as that identity, and each backend says
whether its sidecars admit the caller (mTLS or plaintext, and the AuthorizationPolicy rule
that allows or denies it).

Exit status, for scripts: 0 the request is forwarded or redirected, 1 it is not (no listener,
no route: 404, every backend invalid: 500, or every backend's sidecars refuse the caller), 2
bad usage or unreadable input.
"""

from __future__ import annotations

import argparse
import json
import sys

from controlplane.commands.analyze import read_inputs
from controlplane.mesh.errors import MeshError
from controlplane.mesh.explain import ExplainError, Explanation, explain
from controlplane.mesh.identity import TRUST_DOMAIN, MeshIdentity
from controlplane.mesh.resolve import resolve
from protos.cli_help import DefaultsHelpFormatter

EXIT_ROUTED, EXIT_NOT_ROUTED, EXIT_USAGE = 0, 1, 2


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        formatter_class=DefaultsHelpFormatter,
        prog="pointsman explain",
        description="Explain which route, rule, backends, policies and endpoints a request "
                    "from a Service (or a Gateway) gets, as its sidecar would route it.",
        epilog="exit status: 0 forwarded or redirected, 1 not routed or refused, 2 bad "
               "usage or unreadable input")
    parser.add_argument("-f", "--filename", action="append", required=True,
                        help="a YAML file, a folder of them, or - (repeatable)")
    parser.add_argument("--from", dest="caller", required=True,
                        help="the calling Service (NAME, NAMESPACE/NAME, or its SPIFFE ID "
                             "spiffe://DOMAIN/ns/NAMESPACE/sa/NAME) or gateway/NAME")
    parser.add_argument("--trust-domain", default=TRUST_DOMAIN,
                        help="the mesh's SPIFFE trust domain (sidecars talk mTLS)")
    parser.add_argument("--no-mtls", action="store_true",
                        help="the mesh issues no certificates: sidecars talk plaintext")
    parser.add_argument("-n", "--namespace", default="default",
                        help="the caller's namespace when --from has none")
    parser.add_argument("method", help="GET, POST, ...")
    parser.add_argument("url", help="http://SERVICE:PORT/path?query as the caller sends it")
    parser.add_argument("-H", "--header", action="append", default=[],
                        help="a request header, 'Name: value' (repeatable)")
    parser.add_argument("-o", "--output", choices=("text", "json"), default="text",
                        help="output format")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    try:
        return run(parse_args(sys.argv[1:] if argv is None else argv))
    except BrokenPipeError:  # `| head`: the reader left; like other command-line tools, quiet
        sys.stderr.close()
        return 0


def run(args: argparse.Namespace) -> int:
    headers = []
    for header in args.header:
        name, sep, value = header.partition(":")
        if not sep or not name.strip():
            print(f"pointsman explain: bad header {header!r}, expected 'Name: value'",
                  file=sys.stderr)
            return EXIT_USAGE
        headers.append((name.strip(), value.strip()))
    try:
        objects, errors = read_inputs(args.filename)
        if errors:
            raise errors[0]
        identity = None if args.no_mtls else MeshIdentity(args.trust_domain)
        answer = explain(resolve(objects), args.caller, args.method, args.url, headers,
                         namespace=args.namespace, identity=identity)
    except (MeshError, ExplainError) as error:
        print(f"pointsman explain: {error}", file=sys.stderr)
        return EXIT_USAGE
    if args.output == "json":
        print(json.dumps(answer.as_dict(), indent=2))
    else:
        print(render(answer))
    return EXIT_ROUTED if answer.action in ("forward", "redirect") and not _refused(answer) \
        else EXIT_NOT_ROUTED


def _refused(answer: Explanation) -> bool:
    """Every backend's sidecars refuse the caller (AuthorizationPolicy, or STRICT)."""
    told = [backend.admission for backend in answer.backends if backend.admission]
    return bool(told) and len(told) == len(answer.backends) and all(
        item.startswith("denied") for item in told)


def render(answer: Explanation) -> str:
    """kubectl-describe-like text."""
    lines = [f"Request:        {answer.request}", f"From:           {answer.caller}"]
    if answer.listener:
        lines.append(f"Listener:       {answer.listener}")
    if answer.virtual_host:
        lines.append(f"Virtual host:   {answer.virtual_host}")
    if answer.rule:
        lines.append(f"Matched:        {answer.rule}")
    outcome = {"forward": "forwarded", "redirect": f"redirected ({answer.status}) to "
               f"{answer.location}", "direct_response": f"answered {answer.status} by the "
               "sidecar", "none": f"not routed ({answer.status or 'no listener'})"}
    lines.append(f"Outcome:        {outcome.get(answer.action, answer.action)}")
    if answer.policies:
        lines.append("Route policies:")
        lines += [f"  {item}" for item in answer.policies]
    if answer.backends:
        lines.append("Backends:")
    for backend in answer.backends:
        lines.append(f"  {backend.service or backend.cluster} port {backend.port}: weight "
                     f"{backend.weight} ({backend.share:.1f}%)")
        lines.append(f"    cluster:        {backend.cluster}")
        lines.append(f"    load balancer:  {backend.load_balancer}")
        if backend.health_check:
            lines.append(f"    health checks:  {backend.health_check}")
        if backend.circuit_breakers:
            lines.append(f"    circuit breakers: {backend.circuit_breakers}")
        for item in backend.server_side:
            lines.append(f"    at the receiving sidecars: {item}")
        if backend.admission:
            lines.append(f"    admission:      {backend.admission}")
        lines.append("    endpoints:")
        lines += [f"      {endpoint}" for endpoint in backend.endpoints]
    if answer.notes:
        lines.append("Notes:")
        lines += [f"  {note}" for note in answer.notes]
    return "\n".join(lines)
