"""Envoy and Pointsman side by side, each given the same bootstrap on its own listener port."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

from tests.support.envoy import Envoy
from tests.support.pointsman import Pointsman
from tests.support.ports import free_port


@contextlib.contextmanager
def envoy_and_pointsman(bootstrap_for: Callable[[int], dict[str, Any]], name: str
                        ) -> Iterator[tuple[int, int]]:
    """Start both proxies from `bootstrap_for(listener_port)`, wait until both are ready, and
    yield (envoy_port, pointsman_port); both stop on exit."""
    envoy_port, ours_port = free_port(), free_port()
    envoy = Envoy(bootstrap_for(envoy_port), name=f"envoy-{name}")
    try:
        ours = Pointsman(bootstrap_for(ours_port), name=f"pointsman-{name}")
        try:
            envoy.wait_ready()
            ours.wait_ready()
            yield envoy_port, ours_port
        finally:
            ours.stop()
    finally:
        envoy.stop()
