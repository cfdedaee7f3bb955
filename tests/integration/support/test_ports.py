"""free_port never hands out the same port twice in one process, although the kernel may
return a just-released port to the next bind(0)."""

from __future__ import annotations

from tests.support.ports import free_port


def test_ports_are_distinct() -> None:
    ports = [free_port() for _ in range(300)]
    assert len(set(ports)) == len(ports)
