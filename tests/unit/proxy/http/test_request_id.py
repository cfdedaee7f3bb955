"""x-request-id generation: version-4 UUIDs from buffered kernel randomness."""

from __future__ import annotations

import os
import uuid

from proxy.http.request_headers import random_request_id


def test_ids_are_unique_version_4_uuids() -> None:
    ids = {random_request_id() for _ in range(2000)}  # crosses several 4 KiB refills
    assert len(ids) == 2000
    parsed = uuid.UUID(ids.pop())
    assert parsed.version == 4 and parsed.variant == uuid.RFC_4122


def test_a_forked_worker_does_not_repeat_the_parents_ids() -> None:
    random_request_id()  # the buffer is filled before the fork
    read_end, write_end = os.pipe()
    child = os.fork()
    if child == 0:  # pragma: no cover - runs in the child
        os.write(write_end, random_request_id().encode())
        os._exit(0)
    os.waitpid(child, 0)
    from_child = os.read(read_end, 64).decode()
    os.close(read_end)
    os.close(write_end)
    assert from_child != random_request_id()
