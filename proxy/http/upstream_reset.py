"""What an upstream stream that ended early becomes downstream (Envoy router.cc
`onUpstreamReset`, `streamResetReasonToResponseFlag`, and the response code details of
stream_info.h): the response flag, the status of the local reply, its body text, and
%RESPONSE_CODE_DETAILS%.

Before the response started, the router answers 503 (502 for a protocol error) with
"upstream connect error or disconnect/reset before headers. reset reason: <reason>" and the
details `upstream_reset_before_response_started{<reason>[|<transport failure>]}`; after it
started, it can only reset the downstream stream, and the details say
`upstream_reset_after_response_started{<reason>}`. Spaces become underscores in details, as
Envoy's StringUtil::replaceAllEmptySpace makes them.
"""

from __future__ import annotations

from proxy.codec.events import ResetReason, StreamReset
from proxy.codec.http2 import ErrorCodes

EARLY_RESET = "upstream_reset_before_response_started"
LATE_RESET = "upstream_reset_after_response_started"

_FLAGS = {
    ResetReason.LOCAL_CONNECTION_FAILURE: "UF",
    ResetReason.REMOTE_CONNECTION_FAILURE: "UF",
    ResetReason.CONNECTION_TIMEOUT: "UF",
    ResetReason.CONNECTION_TERMINATION: "UC",
    ResetReason.LOCAL_RESET: "LR",
    ResetReason.LOCAL_REFUSED_STREAM_RESET: "LR",
    ResetReason.OVERFLOW: "UO",
    ResetReason.REMOTE_RESET: "UR",
    ResetReason.REMOTE_REFUSED_STREAM_RESET: "UR",
    ResetReason.PROTOCOL_ERROR: "UPE",
}


def reason_of(event: StreamReset) -> ResetReason:
    """The reason an upstream StreamReset stands for: what the pool said, else what the codec
    saw (RST_STREAM REFUSED_STREAM from the peer, any other RST_STREAM from it, or our own
    HTTP/2 codec resetting a malformed response)."""
    if event.reason is not None:
        return event.reason
    if event.error_code == ErrorCodes.REFUSED_STREAM:
        return ResetReason.REMOTE_REFUSED_STREAM_RESET
    return ResetReason.REMOTE_RESET if event.remote else ResetReason.PROTOCOL_ERROR


def flag_of(reason: ResetReason) -> str:
    return _FLAGS[reason]


def status_of(reason: ResetReason) -> int:
    """Envoy answers a protocol error with 502 Bad Gateway, any other reset with 503."""
    return 502 if reason is ResetReason.PROTOCOL_ERROR else 503


def reply_text(reason: ResetReason, *, retried: bool) -> str:
    """The local reply's body. Envoy 1.40 leaves the transport failure out of it (measured:
    a refused connect answers "... reset reason: remote connection failure"); the details and
    %UPSTREAM_TRANSPORT_FAILURE_REASON% carry it."""
    return ("upstream connect error or disconnect/reset before headers. "
            f"{'retried and the latest ' if retried else ''}reset reason: {reason.value}")


def details(reason: ResetReason, transport_failure: str = "", *,
            response_started: bool) -> str:
    inner = reason.value + (f"|{transport_failure}" if transport_failure else "")
    return _underscored(f"{LATE_RESET if response_started else EARLY_RESET}{{{inner}}}")


def _underscored(text: str) -> str:
    """Envoy's StringUtil::replaceAllEmptySpace."""
    return "_".join(text.split(" "))
