"""`pointsman --version`, and every subcommand's --help showing the defaults of its options."""

from __future__ import annotations

import argparse
import contextlib
import importlib
import io
import re

import pytest

from controlplane.cli import SUBCOMMANDS, main
from protos.cli_help import DefaultsHelpFormatter, version


def test_version_names_the_installed_distribution(capsys):
    assert main(["--version"]) == 0
    out = capsys.readouterr().out
    assert re.fullmatch(r"pointsman \d+\.\d+\.\d+\S* \(Envoy v3 xDS API\)\n", out), out
    assert out.strip() == version()


def test_usage_lists_every_subcommand(capsys):
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    assert "--version" in out
    for name in SUBCOMMANDS:
        assert f"  {name} " in out


def _help_of(name: str) -> str:
    module = importlib.import_module(SUBCOMMANDS[name][0])
    out = io.StringIO()
    with contextlib.redirect_stdout(out), pytest.raises(SystemExit) as ended:
        module.main(["--help"])
    assert ended.value.code == 0
    return out.getvalue()


@pytest.mark.parametrize("name", sorted(SUBCOMMANDS))
def test_help_shows_defaults(name):
    text = " ".join(_help_of(name).split())
    module = importlib.import_module(SUBCOMMANDS[name][0])
    parser = _parser_of(module)
    for action in parser._actions:
        if not action.option_strings or action.default in (None, False, [],
                                                           argparse.SUPPRESS):
            continue
        shown = f"(default: {action.default})"
        if action.help and "(default " in action.help:  # says it in its own words
            shown = action.help[action.help.index("(default "):]
        assert " ".join(shown.split()) in text, (name, action.option_strings, shown)


def _parser_of(module) -> argparse.ArgumentParser:  # type: ignore[no-untyped-def]
    """The subcommand's parser, caught as parse_args builds it."""
    caught: list[argparse.ArgumentParser] = []
    original = argparse.ArgumentParser.parse_args

    def spy(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        caught.append(self)
        raise SystemExit(0)

    argparse.ArgumentParser.parse_args = spy  # type: ignore[method-assign]
    try:
        with contextlib.suppress(SystemExit):
            module.main(["--help"])
    finally:
        argparse.ArgumentParser.parse_args = original  # type: ignore[method-assign]
    assert caught and caught[0].formatter_class is DefaultsHelpFormatter
    return caught[0]
