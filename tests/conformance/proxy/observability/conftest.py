"""Session-wide real backends (each started once: Phoenix takes ~15 s to start)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.conformance.proxy.observability.backends import Phoenix, phoenix_binary


@pytest.fixture(scope="session")
def phoenix() -> Iterator[Phoenix]:
    binary = phoenix_binary()
    if binary is None:
        pytest.skip("Arize Phoenix is not installed: python3 -m venv .venv-phoenix && "
                    ".venv-phoenix/bin/pip install arize-phoenix (or set PHOENIX_BIN)")
    server = Phoenix(binary)
    try:
        server.wait_ready()
        yield server
    finally:
        server.stop()
