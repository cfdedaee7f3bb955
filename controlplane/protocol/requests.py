"""Requests shared between streams, sans-I/O.

A thousand sidecars of one mesh send byte-identical requests: their EDS and RDS requests name
the same resources, and their ACKs carry the same version, the same nonce (each stream numbers
its responses alike: controlplane/protocol/sotw.py) and the same names again (xds_protocol.rst,
"ACK and NACK semantics": an ACK repeats the subscribed names). Each such request is parsed
once (`RequestParser`, memoised by its bytes) and its name set is built once
(`requested_names`, memoised by the parsed message): a stream that ACKs a response pays neither
the parse of a thousand names nor the set of them again. The messages are shared, so nothing
may modify a request (the protocol code copies what it keeps: common.py copies the node).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable
from typing import Any, Generic, TypeVar

from google.protobuf.message import Message

M = TypeVar("M", bound=Message)

PARSED_LIMIT = 4096  # distinct request bodies remembered
PARSED_BYTES = 32 * 1024 * 1024
NAMES_LIMIT = 4096  # name sets remembered by request
_NAME_SETS_LIMIT = 65536

_NAME_SETS: dict[frozenset[str], frozenset[str]] = {}
_BY_REQUEST: dict[int, tuple[Any, frozenset[str]]] = {}


class RequestParser(Generic[M]):
    """`parse(data)`: the message of these bytes, the same object for the same bytes (within
    the limits); a gRPC request deserialiser."""

    def __init__(self, message_type: type[M], limit: int = PARSED_LIMIT,
                 limit_bytes: int = PARSED_BYTES) -> None:
        self.message_type = message_type
        self.limit = limit
        self.limit_bytes = limit_bytes
        self._parsed: OrderedDict[bytes, M] = OrderedDict()
        self._held = 0
        self.parsed = 0  # bodies actually parsed (tests, benchmarks)

    def parse(self, data: bytes) -> M:
        found = self._parsed.get(data)
        if found is not None:
            self._parsed.move_to_end(data)
            return found
        message = self.message_type.FromString(data)
        self.parsed += 1
        if len(data) <= self.limit_bytes // 8:
            self._parsed[data] = message
            self._held += len(data)
            while len(self._parsed) > self.limit or self._held > self.limit_bytes:
                dropped, _ = self._parsed.popitem(last=False)
                self._held -= len(dropped)
        return message


def shared_names(names: Iterable[str]) -> frozenset[str]:
    """One frozenset object per distinct name set across streams: a thousand Envoys asking EDS
    for the same thousand clusters hold one set, its hash is computed once, and comparing two
    streams' sets is an identity check."""
    requested = names if isinstance(names, frozenset) else frozenset(names)
    found = _NAME_SETS.get(requested)
    if found is None:
        if len(_NAME_SETS) >= _NAME_SETS_LIMIT:
            _NAME_SETS.clear()
        found = _NAME_SETS[requested] = requested
    return found


def requested_names(request: Any) -> frozenset[str]:
    """`request.resource_names` as a shared set, built once per request message (the entry
    holds the message, so its id is not reused while the entry lives)."""
    entry = _BY_REQUEST.get(id(request))
    if entry is not None and entry[0] is request:
        return entry[1]
    names = shared_names(request.resource_names)
    if len(_BY_REQUEST) >= NAMES_LIMIT:
        _BY_REQUEST.clear()
    _BY_REQUEST[id(request)] = (request, names)
    return names
