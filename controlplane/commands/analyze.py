"""`pointsman analyze -f FILE|DIR|- [-f ...] [-o text|json] [--strict]`.

Reads mesh objects and reports what will not work as written (controlplane.mesh.analyze), one
finding per line, `file:line: Kind namespace/name: field: severity: message (Reason)`, like a
compiler, then a count. Exit status, for scripts: 0 no errors (warnings are printed), 1 errors
found (or warnings, with --strict), 2 bad usage or unreadable input.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from controlplane.mesh.analyze import analyze
from controlplane.mesh.errors import Location, MeshError
from controlplane.mesh.load import read_objects, read_path
from controlplane.mesh.objects import MeshObject
from protos.cli_help import DefaultsHelpFormatter

EXIT_OK, EXIT_FINDINGS, EXIT_USAGE = 0, 1, 2


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        formatter_class=DefaultsHelpFormatter,
        prog="pointsman analyze",
        description="Check mesh objects (Services, Gateway API routes, Envoy Gateway policies) "
                    "for references to nothing, shadowed rules, zero weights, policies "
                    "targeting nothing and protocols that do not fit; with file and line.",
        epilog="exit status: 0 no errors, 1 errors found (or warnings with --strict), "
               "2 bad usage or unreadable input")
    parser.add_argument("-f", "--filename", action="append", required=True,
                        help="a YAML file, a folder of them, or - for standard input "
                             "(repeatable)")
    parser.add_argument("-o", "--output", choices=("text", "json"), default="text",
                        help="output format")
    parser.add_argument("--strict", action="store_true", help="warnings fail too")
    return parser.parse_args(argv)


def read_inputs(names: list[str]) -> tuple[list[MeshObject], list[MeshError]]:
    objects: list[MeshObject] = []
    errors: list[MeshError] = []
    for name in names:
        if name == "-":
            try:
                text = sys.stdin.buffer.read().decode("utf-8")
            except UnicodeDecodeError as error:
                errors.append(MeshError(f"not UTF-8: {error}", Location("<stdin>")))
                continue
            found, failed = read_objects(text, "<stdin>")
        else:
            found, failed = read_path(Path(name))
        objects += found
        errors += failed
    return objects, errors


def main(argv: list[str] | None = None) -> int:
    try:
        return run(parse_args(sys.argv[1:] if argv is None else argv))
    except BrokenPipeError:  # `| head`: the reader left; like other command-line tools, quiet
        sys.stderr.close()
        return 0


def run(args: argparse.Namespace) -> int:
    try:
        objects, errors = read_inputs(args.filename)
    except MeshError as error:  # a path that does not exist
        print(f"pointsman analyze: {error}", file=sys.stderr)
        return EXIT_USAGE
    problems = analyze(objects, errors)
    if args.output == "json":
        print(json.dumps([problem.as_dict() for problem in problems], indent=2))
    else:
        for problem in problems:
            print(problem)
        counts = [sum(1 for item in problems if item.severity == kind)
                  for kind in ("error", "warning")]
        print(f"{len(objects)} objects: {counts[0]} error(s), {counts[1]} warning(s)",
              file=sys.stderr)
    failing = [item for item in problems
               if item.severity == "error" or (args.strict and item.severity == "warning")]
    return EXIT_FINDINGS if failing else EXIT_OK
