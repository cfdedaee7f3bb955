"""Every command in README.md and docs/*.md (the ```sh blocks) still works as written: each
`pointsman SUBCOMMAND ...` is parsed by that subcommand's own parser (unknown or malformed
flags fail), files it names under examples/ exist, `make TARGET` names a Makefile target and
scripts exist. What these commands do is run elsewhere: examples/hello/run.sh (the README's
hello mesh) by tests/integration/examples/test_hello_mesh.py, `make demo DURATION=30` by CI
(.ci/run), the sidecar and run commands by tests/integration/proxy/deploy/."""

from __future__ import annotations

import importlib
import re
import shlex
from pathlib import Path

import pytest

from controlplane.cli import SUBCOMMANDS

REPO = Path(__file__).resolve().parents[2]
DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
_BLOCK = re.compile(r"^```sh\n(.*?)^```", re.MULTILINE | re.DOTALL)


def commands() -> list[tuple[str, str]]:
    found = []
    for path in DOCS:
        for block in _BLOCK.findall(path.read_text()):
            for line in block.replace("\\\n", " ").splitlines():
                words = shlex.split(line, comments=True)
                if words:
                    found.append((f"{path.name}: {line.strip()}", shlex.join(words)))
    return found


def test_the_docs_have_commands() -> None:
    texts = [command for _, command in commands()]
    assert any(text.startswith(".venv/bin/pointsman run") for text in texts)
    assert "make demo" in texts


@pytest.mark.parametrize("where, command", commands(), ids=lambda value: value[:70])
def test_command_is_valid(where: str, command: str) -> None:
    words = shlex.split(command)
    program = words[0]
    if program.endswith("pointsman"):
        check_pointsman(words[1:])
    elif program == "make":
        targets = re.findall(r"^([\w-]+):", (REPO / "Makefile").read_text(), re.MULTILINE)
        assert words[1] in targets, where
    elif program.endswith("python"):
        assert (REPO / words[1]).is_file(), where
    elif program.startswith("examples/"):
        assert (REPO / program).is_file(), where
    else:
        assert program == "curl", f"{where}: no check for {program!r}"


def check_pointsman(argv: list[str]) -> None:
    subcommand, rest = argv[0], argv[1:]
    module = importlib.import_module(SUBCOMMANDS[subcommand][0])
    module.parse_args(rest)  # argparse exits (SystemExit) on anything it does not take
    for word in rest:
        if word.startswith("examples/"):
            assert (REPO / word).exists(), word
