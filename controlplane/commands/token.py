"""`pointsman token create --service S [-n NS]`, `pointsman token list`,
`pointsman token revoke ID`: the join tokens sidecars present to be served as their Service
(docs/security.md). `create` prints the token alone on stdout (the control plane keeps only
its hash: it is never shown again), `list` one line per token (ID, NAMESPACE, SERVICE),
`revoke` the token revoked and the streams it closed. Exit status: see
controlplane/commands/client.py.
"""

from __future__ import annotations

import argparse
import sys

from controlplane.commands.client import (
    EPILOG,
    EXIT_OK,
    add_connection_arguments,
    connected,
    run,
)
from protos.cli_help import DefaultsHelpFormatter
from protos.gen.pointsman.identity.v1 import identity_pb2 as pb

SERVICE = "/pointsman.identity.v1.IdentityService/"


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="pointsman token", epilog=EPILOG, formatter_class=DefaultsHelpFormatter,
        description="Join tokens: a sidecar presenting one is served as the Service it names.")
    verbs = parser.add_subparsers(dest="verb", required=True)
    create = verbs.add_parser("create", help="a new token for one Service (printed once)")
    create.add_argument("--service", required=True, help="the Service the token names")
    create.add_argument("-n", "--namespace", default="default", help="its namespace")
    verbs.add_parser("list", help="the tokens (ids, never the tokens themselves)")
    revoke = verbs.add_parser("revoke", help="forget a token and close its sidecars' streams")
    revoke.add_argument("id", help="the token's id, as `pointsman token list` shows it")
    for verb in verbs.choices.values():
        add_connection_arguments(verb)
    return parser.parse_args(argv)


def token(args: argparse.Namespace) -> int:
    with connected(args) as client:
        if args.verb == "create":
            created = client.call("CreateToken", pb.CreateTokenRequest(
                namespace=args.namespace, service=args.service), service=SERVICE,
                response=pb.CreateTokenResponse)
            print(created.token)
            print(f"token {created.info.id} created for service "
                  f"{created.info.namespace}/{created.info.service}", file=sys.stderr)
        elif args.verb == "list":
            listed = client.call("ListTokens", pb.ListTokensRequest(), service=SERVICE,
                                 response=pb.ListTokensResponse)
            print(f"{'ID':<14}{'NAMESPACE':<16}SERVICE")
            for item in listed.tokens:
                print(f"{item.id:<14}{item.namespace:<16}{item.service}")
        else:
            revoked = client.call("RevokeToken", pb.RevokeTokenRequest(id=args.id),
                                  service=SERVICE, response=pb.RevokeTokenResponse)
            print(f"token {revoked.info.id} revoked ({revoked.info.namespace}/"
                  f"{revoked.info.service}; {revoked.closed_streams} streams closed)")
    return EXIT_OK


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    return run("pointsman token", token, args)
