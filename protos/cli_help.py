"""What every `pointsman` subcommand's --help shares: defaults shown beside each option, and
`--version`.

argparse's ArgumentDefaultsHelpFormatter also prints `(default: None)` and `(default: False)`
for options that are simply off; this one shows a default only when it says something.
"""

from __future__ import annotations

import argparse
import importlib.metadata


def version() -> str:
    """`pointsman --version`: the installed distribution's version (pyproject.toml)."""
    try:
        number = importlib.metadata.version("pointsman")
    except importlib.metadata.PackageNotFoundError:  # run from a source tree, not installed
        number = "unknown"
    return f"pointsman {number} (Envoy v3 xDS API)"


class DefaultsHelpFormatter(argparse.HelpFormatter):
    """`--listen HOST:PORT  xDS gRPC address (default: 127.0.0.1:18000)`."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        default = action.default
        if ("%(default)" in text or "(default " in text  # the help says it already
                or default is None or default is False
                or default is argparse.SUPPRESS or default == [] or not action.option_strings):
            return text
        return f"{text} (default: %(default)s)" if text else "(default: %(default)s)"
