from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest


@pytest.fixture(autouse=True)
def collect_garbage_after_each_test() -> Iterator[None]:
    """Collect after every integration test, so that a socket or transport a test leaks warns
    (ResourceWarning, an error here) inside that test rather than in whichever test runs when
    the collector happens to pass."""
    yield
    gc.collect()
