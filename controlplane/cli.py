"""`pointsman` command: one entry point, a subcommand per component.

Each subcommand's module owns its own argument parser (`controlplane.main`, `proxy.main`);
this dispatcher only picks one, importing it lazily so the sidecar never loads control-plane code.
"""

from __future__ import annotations

import importlib
import sys

from protos.cli_help import version

SUBCOMMANDS = {
    "controlplane": ("controlplane.main", "the xDS control plane"),
    "proxy": ("proxy.main", "the sidecar proxy (boots from an Envoy v3 bootstrap)"),
    "sidecar": ("proxy.deploy.sidecar",
                "a mesh sidecar from a few flags (--service, --server): no bootstrap to write"),
    "run": ("proxy.deploy.run", "a sidecar and the application beside it, started and "
                                "stopped in order"),
    "analyze": ("controlplane.commands.analyze",
                "check mesh objects: unknown references, shadowed rules, ... (file:line)"),
    "explain": ("controlplane.commands.explain",
                "what the mesh does with one request from one Service or Gateway"),
    "apply": ("controlplane.commands.apply",
              "store mesh objects in the control plane (all or none)"),
    "delete": ("controlplane.commands.delete", "delete mesh objects (all or none)"),
    "get": ("controlplane.commands.get", "show mesh objects and their status"),
    "status": ("controlplane.commands.status",
               "connected sidecars per xDS type: SYNCED, STALE, NACKED (proxy-status)"),
    "describe": ("controlplane.commands.describe",
                 "a Service: ports, endpoints, routes, policies, sidecars"),
    "token": ("controlplane.commands.token",
              "join tokens: create (one per Service), list, revoke (docs/security.md)"),
}


def usage() -> str:
    lines = ["usage: pointsman [--version] SUBCOMMAND [ARGS...]", "", "subcommands:"]
    lines += [f"  {name:<14}{text}" for name, (_, text) in SUBCOMMANDS.items()]
    lines += ["", "`pointsman SUBCOMMAND --help` tells each one's options and their defaults."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if not args or args[0] in ("-h", "--help"):
        print(usage())
        return 0 if args else 2
    if args[0] in ("-V", "--version"):
        print(version())
        return 0
    name, rest = args[0], args[1:]
    if name not in SUBCOMMANDS:
        print(f"pointsman: unknown subcommand {name!r}\n\n{usage()}", file=sys.stderr)
        return 2
    module = importlib.import_module(SUBCOMMANDS[name][0])
    return int(module.main(rest) or 0)


if __name__ == "__main__":
    sys.exit(main())
