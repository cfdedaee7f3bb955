"""`pointsman` command: one entry point, a subcommand per component.

Each subcommand's module owns its own argument parser (`controlplane.main`, `proxy.main`);
this dispatcher only picks one, importing it lazily so the sidecar never loads control-plane code.
"""

from __future__ import annotations

import importlib
import sys

SUBCOMMANDS = {
    "controlplane": ("controlplane.main", "the xDS control plane"),
    "proxy": ("proxy.main", "the sidecar proxy (boots from an Envoy v3 bootstrap)"),
    "analyze": ("controlplane.commands.analyze",
                "check mesh objects: unknown references, shadowed rules, ... (file:line)"),
    "explain": ("controlplane.commands.explain",
                "what the mesh does with one request from one Service or Gateway"),
}


def usage() -> str:
    lines = ["usage: pointsman SUBCOMMAND [ARGS...]", "", "subcommands:"]
    lines += [f"  {name:<14}{text}" for name, (_, text) in SUBCOMMANDS.items()]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if not args or args[0] in ("-h", "--help"):
        print(usage())
        return 0 if args else 2
    name, rest = args[0], args[1:]
    if name not in SUBCOMMANDS:
        print(f"pointsman: unknown subcommand {name!r}\n\n{usage()}", file=sys.stderr)
        return 2
    module = importlib.import_module(SUBCOMMANDS[name][0])
    return int(module.main(rest) or 0)
