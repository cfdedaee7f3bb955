from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from tests.support.http_backends import EchoBackend


@pytest.fixture
def backends() -> Iterator[Callable[..., EchoBackend]]:
    started: list[EchoBackend] = []

    def start(name: str, **options: object) -> EchoBackend:
        backend = EchoBackend(name, **options).start()  # type: ignore[arg-type]
        started.append(backend)
        return backend

    yield start
    for backend in started:
        backend.stop()
