"""Events the sans-I/O codecs return (past tense), shared by HTTP/1.1 and HTTP/2.

Slotted, not frozen: a dozen are created per proxied request, and a frozen dataclass costs
~5x more to build (its __init__ goes through object.__setattr__). Treat them as read-only."""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from proxy.codec.headers import Headers, RequestHead, ResponseHead


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


class ResetReason(Enum):
    """Why an upstream stream ended before its response did (Envoy Http::StreamResetReason);
    the value is Envoy's text for it (Http::Utility::resetReasonToString), which goes into
    local-reply bodies and, with "_" for spaces, into %RESPONSE_CODE_DETAILS%."""

    LOCAL_CONNECTION_FAILURE = "local connection failure"
    REMOTE_CONNECTION_FAILURE = "remote connection failure"
    CONNECTION_TIMEOUT = "connection timeout"
    CONNECTION_TERMINATION = "connection termination"
    LOCAL_RESET = "local reset"
    LOCAL_REFUSED_STREAM_RESET = "local refused stream reset"
    OVERFLOW = "overflow"
    REMOTE_RESET = "remote reset"
    REMOTE_REFUSED_STREAM_RESET = "remote refused stream reset"
    PROTOCOL_ERROR = "protocol error"


@dataclass(slots=True)
class StreamReset:
    """A stream ended before its end: RST_STREAM `error_code` from the peer (`remote`) or from
    our codec; upstream pools also say why in Envoy's terms (`reason`, see ResetReason)."""

    stream_id: int
    error_code: int = 0
    remote: bool = True
    reason: ResetReason | None = None


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
