"""One attempt of a forwarded request on one upstream host (Envoy's router UpstreamRequest).

`UpstreamRequest` owns the attempt from the moment the pool hands it a stream: the request
head as this attempt sends it (the host's name for auto_host_rewrite, the trace context of its
CLIENT span), the body pump (proxy.http.replay), the wait for the
response head within the per-try timeout, the response forwarded downstream, and what the
attempt leaves behind: outlier detection and the cluster's stats (proxy.upstream.cluster
request_finished; a response the router retries charges no code, an attempt without a
response head charges none either: whoever answers charges it), the CLIENT span and the
attempt metrics. Failures before a response head raise `AttemptFailed`; the router decides
what follows (proxy.http.retry).
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import replace
from typing import Any, Protocol

from proxy.codec.events import (
    DataReceived,
    InformationalReceived,
    ResetReason,
    ResponseReceived,
    StreamEnded,
    StreamReset,
    TrailersReceived,
)
from proxy.codec.headers import Headers, RequestHead, ResponseHead
from proxy.codec.http2 import ErrorCodes
from proxy.http import upstream_reset
from proxy.http.body import BodyChannel
from proxy.http.filter import HttpStream, LocalReply
from proxy.http.forward_plan import ForwardPlan
from proxy.http.replay import BodyReplay, count, log_pump_failure
from proxy.http.retry import Failed, Failure
from proxy.upstream.pools import ConnectFailedError, PoolOverflowError
from proxy.upstream.pools.base import UpstreamStream


class Downstream(Protocol):
    """The downstream side of one stream, as the router writes to it (proxy.http.active_stream
    implements it)."""

    body: BodyChannel
    head_sent: bool

    async def send_response(self, head: ResponseHead, *, end_stream: bool) -> None: ...

    async def send_data(self, data: bytes, *, end_stream: bool) -> None: ...

    async def send_trailers(self, trailers: Headers) -> None: ...

    async def send_local_reply(self, reply: LocalReply) -> None: ...

    def reset(self) -> None: ...


class AttemptFailed(Exception):
    """An attempt that got no response head: `failure` is its retry category, `reason` the
    upstream reset it was in Envoy's terms (None: the per-try timeout)."""

    def __init__(self, failure: Failure, reason: ResetReason | None,
                 transport_failure: str = "") -> None:
        super().__init__(failure)
        self.failure = failure
        self.reason = reason
        self.transport_failure = transport_failure

    @property
    def flag(self) -> str:
        return "UT" if self.reason is None else upstream_reset.flag_of(self.reason)

    @property
    def status(self) -> int:
        return 504 if self.reason is None else upstream_reset.status_of(self.reason)

    @property
    def outcome(self) -> Failed:
        return Failed(self.failure, self.flag)

    def reply(self, headers: Headers, *, retried: bool, informational: bool) -> LocalReply:
        """The local reply when no retry follows (Envoy onUpstreamReset, onPerTryTimeout).
        After a 1xx from the upstream Envoy counts the response as started (its details
        say so), though the status it answers with is still the reset's."""
        if self.reason is None:
            return LocalReply(504, "upstream request timeout", headers,
                              details="upstream_per_try_timeout")
        return LocalReply(
            self.status,
            upstream_reset.reply_text(self.reason, retried=retried),
            headers, details=upstream_reset.details(self.reason, self.transport_failure,
                                                    response_started=informational))


def pool_failure(error: ConnectFailedError | PoolOverflowError,
                 stream: HttpStream) -> AttemptFailed:
    """No upstream stream: a connect failure (UF; Envoy onPoolFailure also logs the
    transport's words) or a circuit breaker's overflow (UO)."""
    if isinstance(error, PoolOverflowError):
        return AttemptFailed("overflow", ResetReason.OVERFLOW)
    stream.upstream_transport_failure_reason = error.transport_failure
    return AttemptFailed("connect_failure", error.reset_reason, error.transport_failure)


class UpstreamRequest:
    """One attempt: send, await the head, forward or give up; then settle (`finish`)."""

    __slots__ = ("attempt_flag", "client_span", "head", "host", "plan", "pump", "started",
                 "status", "stream", "upstream")

    def __init__(self, stream: HttpStream, plan: ForwardPlan, host: Any,
                 upstream: UpstreamStream) -> None:
        self.stream = stream
        self.plan = plan
        self.host = host
        self.upstream = upstream
        # None: no response head (yet); -1: the per-try timeout (already charged).
        self.status: int | None = None
        self.attempt_flag = ""  # the attempt's own flag (Envoy: its upstream span's)
        self.pump: asyncio.Future[None] | None = None
        self.client_span: Any = None
        plan.runtime.request_started(host)
        self.started = time.monotonic()
        self.head = plan.head

    # --- sending -------------------------------------------------------------------------------

    def _traced(self, head: RequestHead) -> RequestHead:
        """The trace context: a CLIENT span's per attempt when the SERVER span spawns them,
        else the SERVER span's (set on the router's copy)."""
        server_span = self.stream.state.get("span")
        if server_span is None:
            return head
        if server_span.spawns_client_spans:
            stream = self.stream
            self.client_span = server_span.start_client_span(
                cluster=stream.upstream_cluster, upstream_host=stream.upstream_host,
                method=head.method, path=head.path, authority=head.authority)
            head = replace(head, headers=head.headers.copy())  # a span id per attempt
            injected = self.client_span.inject_headers()
        else:
            injected = server_span.inject_headers()
        for name, value in injected:
            head.headers.set(name, value)
        return head

    async def send(self, body: BodyChannel, replay: BodyReplay) -> None:
        """This attempt's head (`self.head`), then the body pumped alongside (its own task:
        the response may start before the request ends)."""
        plan = self.plan
        head = plan.head
        if plan.action.auto_host_rewrite and str(getattr(self.host, "hostname", "")):
            # Envoy: the chosen host's hostname (strict_dns / logical_dns clusters only).
            head = replace(head, headers=head.headers.copy(), authority=self.host.hostname)
        end_stream = body.exhausted and not replay.chunks and body.trailers is None
        if end_stream and plan.route_timer is not None:
            plan.route_timer.start()  # the body ended while we connected
        self.head = head if "span" not in self.stream.state else self._traced(head)
        upstream = self.upstream
        if not upstream.send_head_nowait(self.head, end_stream=end_stream):
            await upstream.send_head(self.head, end_stream=end_stream)
        if not end_stream:
            self.pump = asyncio.ensure_future(replay.pump(upstream, self.stream))

    # --- the response head -----------------------------------------------------------------------

    async def response_head(self, per_try: float | None) -> ResponseReceived:
        """The response head, within the per-try timeout; AttemptFailed without one."""
        upstream = self.upstream
        try:
            if per_try:
                async with asyncio.timeout(per_try):
                    return await self._await_head()
            while True:  # _await_head inline (the common case): one coroutine less
                event = upstream.next_event_nowait() or await upstream.next_event()
                if type(event) is ResponseReceived:
                    return event
                self._not_yet(event)
        except TimeoutError:
            upstream.reset()
            count(self.plan.runtime, "upstream_rq_per_try_timeout")
            self.plan.runtime.request_finished(self.host, http_status=504, charge_code=False)
            self.status = -1
            raise AttemptFailed("per_try_timeout", None) from None

    async def _await_head(self) -> ResponseReceived:
        while True:
            event = await self.upstream.next_event()
            if type(event) is ResponseReceived:
                return event
            self._not_yet(event)

    def _not_yet(self, event: object) -> None:
        """A reset before the response head fails the attempt (a 1xx is only noted)."""
        if type(event) is InformationalReceived:
            self.stream.informational_received = True
        elif isinstance(event, StreamReset):
            refused = event.error_code == ErrorCodes.REFUSED_STREAM
            raise AttemptFailed("refused_stream" if refused else "reset",
                                upstream_reset.reason_of(event))

    # --- the outcome ---------------------------------------------------------------------------

    def retried(self, status: int) -> None:
        """The response is retried. Envoy router.cc onUpstreamHeaders: a retried response
        feeds outlier detection but charges no upstream_rq_<code> / upstream_rq_completed."""
        self.status = status
        self.upstream.reset()
        self.plan.runtime.request_finished(self.host, http_status=status, charge_code=False)
        if self.pump is not None:
            self.pump.cancel()


    def abandon(self, error: BaseException) -> None:
        """The attempt ends early (a failure, the route timeout, the downstream gone)."""
        self.upstream.reset()
        if isinstance(error, AttemptFailed):
            self.attempt_flag = error.flag
        runtime, status = self.plan.runtime, self.status
        if status is None:
            # No response head: the code is charged by whoever answers (the router), once,
            # as Envoy does.
            runtime.request_finished(self.host, http_status=503, charge_code=False)
        elif status > 0:
            # Cut off after the response head (route timeout, downstream reset): the request
            # still ends, with the status Envoy charged at the head.
            runtime.request_finished(self.host, http_status=status)

    async def finish(self, observability: Any) -> None:
        """Whatever happened: the CLIENT span and metrics, and the body pump stopped."""
        self._settle(observability)
        pump = self.pump
        if pump is not None:
            if not pump.done():
                pump.cancel()
            (pumped,) = await asyncio.gather(pump, return_exceptions=True)
            log_pump_failure(pumped)

    def _settle(self, observability: Any) -> None:
        duration = time.monotonic() - self.started
        status = self.status
        code = status if status is not None and status > 0 else None
        stream, span = self.stream, self.client_span
        if span is not None and span.spawned:  # else nothing to end
            flags = tuple(stream.response_flags)
            if self.attempt_flag and self.attempt_flag not in flags:
                flags += (self.attempt_flag,)
            span.finish(status_code=code, response_flags=flags, duration=duration)
        if observability is not None:
            observability.upstream_attempt_finished(
                duration=duration, method=self.head.method, status_code=code,
                cluster=stream.upstream_cluster, upstream_host=stream.upstream_host)

    # --- response streaming ---------------------------------------------------------------------

    async def forward(self, response: ResponseReceived, downstream: Downstream) -> None:
        """The response goes downstream as it comes; charged once it ended (or when it is
        cut off: `abandon`)."""
        self.status = response.head.status
        stream, upstream = self.stream, self.upstream
        await downstream.send_response(self._response_head(response.head),
                                       end_stream=response.end_stream)
        if response.end_stream:
            upstream.release()
        while not response.end_stream:
            event = upstream.next_event_nowait() or await upstream.next_event()
            stream.touch()
            if isinstance(event, DataReceived):
                # The last chunk carries END_STREAM itself when the end is already queued.
                last = upstream.end_is_next()
                await downstream.send_data(event.data, end_stream=event.end_stream or last)
                upstream.consumed(event)
                if last:
                    upstream.next_event_nowait()  # the StreamEnded
                    upstream.release()
                    break
            elif isinstance(event, TrailersReceived):
                stream.response_trailers = event.trailers
                await downstream.send_trailers(event.trailers)
            elif isinstance(event, StreamEnded):
                if stream.response_trailers is None:
                    await downstream.send_data(b"", end_stream=True)
                upstream.release()
                break
            elif isinstance(event, StreamReset):
                self._reset_after_head(event, downstream)
                break
        self.plan.runtime.request_finished(self.host, http_status=self.status)

    def _response_head(self, head: ResponseHead) -> ResponseHead:
        """The router's response headers (Envoy's x-envoy-upstream-service-time, the hash
        policy's cookie) and the response details."""
        if not self.plan.suppress_envoy_headers:
            elapsed_ms = int((time.monotonic() - self.started) * 1000)
            head.headers.set("x-envoy-upstream-service-time", str(elapsed_ms))
        if self.plan.set_cookie:
            head.headers.add("set-cookie", self.plan.set_cookie)
        self.stream.response_details = "via_upstream"
        return head

    def _reset_after_head(self, event: StreamReset, downstream: Downstream) -> None:
        """A truncated or reset answer must not look complete: the downstream stream is reset
        too (HTTP/1.1: the connection closes), as Envoy onUpstreamAbort. The request ends
        with the status charged at the head."""
        reason = upstream_reset.reason_of(event)
        self.stream.set_flag(upstream_reset.flag_of(reason))
        self.stream.response_details = upstream_reset.details(reason, response_started=True)
        downstream.reset()
