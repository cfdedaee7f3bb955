"""Events the sans-I/O codecs return (past tense), shared by HTTP/1.1 and HTTP/2.

Slotted, not frozen: a dozen are created per proxied request, and a frozen dataclass costs
~5x more to build (its __init__ goes through object.__setattr__). Treat them as read-only."""

from __future__ import annotations

from dataclasses import dataclass

from proxy.http.headers import Headers, RequestHead, ResponseHead


@dataclass(slots=True)
class RequestReceived:
    stream_id: int
    head: RequestHead
    end_stream: bool


@dataclass(slots=True)
class ResponseReceived:
    stream_id: int
    head: ResponseHead
    end_stream: bool


@dataclass(slots=True)
class InformationalReceived:
    """A 1xx response other than 101 (e.g. 100 Continue) on the client side."""

    stream_id: int
    head: ResponseHead


@dataclass(slots=True)
class DataReceived:
    stream_id: int
    data: bytes
    end_stream: bool = False
    flow_controlled_length: int = 0  # HTTP/2: bytes to acknowledge once consumed


@dataclass(slots=True)
class TrailersReceived:
    stream_id: int
    trailers: Headers


@dataclass(slots=True)
class StreamEnded:
    stream_id: int


@dataclass(slots=True)
class StreamReset:
    stream_id: int
    error_code: int = 0
    remote: bool = True


@dataclass(slots=True)
class TunnelEstablished:
    """HTTP/1.1 Upgrade/CONNECT: bytes after the request head belong to the tunnel."""

    stream_id: int
    data: bytes


@dataclass(slots=True)
class ProtocolFailed:
    """The peer broke the protocol. HTTP/1.1: answer `status` and close; HTTP/2: GOAWAY sent."""

    reason: str
    status: int = 400


@dataclass(slots=True)
class WindowOpened:
    stream_id: int  # 0: the connection window


@dataclass(slots=True)
class SettingsChanged:
    max_concurrent_streams: int | None


@dataclass(slots=True)
class ConnectionEnded:
    """HTTP/2 GOAWAY received: no new streams above `last_stream_id`."""

    last_stream_id: int
    error_code: int = 0


Event = (RequestReceived | ResponseReceived | InformationalReceived | DataReceived
         | TrailersReceived | StreamEnded | StreamReset | TunnelEstablished | ProtocolFailed
         | WindowOpened | SettingsChanged | ConnectionEnded)
