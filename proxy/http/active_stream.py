"""One request/response exchange inside the connection manager (Envoy `ActiveStream`).

Order, as in Envoy's HCM: request header rules (XFF, x-request-id, internal headers), then the
decoder filters in chain order, then the route lookup, then the router. Every response head,
local or proxied, passes the route's response header manipulation, the encoder filters (reverse
order) and the `server`/`date` rules before the codec writes it.

A stream knows its connection only as a `StreamOwner` (below): the connection manager's
context (`HttpManager`), the connection's facts (`ConnectionInfo`), its timers and write flow,
and the few calls that write for the stream and end it. The HTTP/1.1 and HTTP/2 connections
(proxy.http.http1_server, proxy.http.http2_server) implement it; nothing here imports them.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import replace
from email.utils import formatdate
from functools import partial
from typing import Any, Protocol

from proxy.codec.flow import WriteFlow
from proxy.codec.headers import Headers, RequestHead, ResponseHead
from proxy.http.body import BodyChannel
from proxy.http.deadline import Deadline
from proxy.http.filter import HttpFilter, HttpStream, LocalReply, Paced
from proxy.http.header_mutation import apply_response_mutations, route_levels
from proxy.http.local_reply import render_local_reply
from proxy.http.local_reply_config import mapped
from proxy.http.manager import ConnectionInfo, HttpManager
from proxy.http.request_headers import mutate_request_headers
from proxy.http.routing import resolve_route
from proxy.http.stream_timers import StreamTimers
from proxy.model.route import ForwardAction, RouteConfig, request_buffer_limit
from proxy.observability.request_info import EMPTY_HEADERS, RequestInfo

log = logging.getLogger(__name__)


class StreamOwner(Protocol):
    """The connection a stream belongs to, as the stream sees it."""

    manager: HttpManager
    info: ConnectionInfo
    loop: asyncio.AbstractEventLoop
    timers: StreamTimers  # the streams' idle timeouts and deadlines, one loop timer
    flow: WriteFlow  # the transport's backpressure: await drained() while paused

    def body_pressure(self, stream_id: int, on: bool) -> None:
        """The stream's request body queued past its limit (on) or drained below half."""

    def body_consumed(self, stream_id: int, length: int) -> None:
        """`length` flow-controlled bytes of the request body left our buffers."""

    def write_head(self, stream: ActiveStream, head: ResponseHead, *, end_stream: bool) -> None:
        """Queue the response head (the caller awaits `flow.drained()` when paused)."""

    def write_data_nowait(self, stream: ActiveStream, data: bytes, *, end_stream: bool) -> bool:
        """Queue DATA when that needs no waiting; False: use write_data()."""

    async def write_data(self, stream: ActiveStream, data: bytes, *, end_stream: bool) -> None:
        """Write DATA, waiting for the peer's flow-control windows as needed."""

    async def write_trailers(self, stream: ActiveStream, trailers: Headers) -> None: ...

    def reset_stream(self, stream: ActiveStream) -> None:
        """End the response abnormally (HTTP/2 RST_STREAM; HTTP/1.1: the connection goes)."""

    def close_after_response(self) -> None:
        """Close the connection once this response is out (HTTP/2: GOAWAY)."""

    def stream_finished(self, stream: ActiveStream) -> None:
        """The stream's task ends: the connection forgets it and logs it."""



_date_cache: tuple[int, str] = (0, "")


class _Activity:
    """When a stream last moved (stream idle timeout). Separate from the stream so that
    `HttpStream.touch` does not tie the stream into a reference cycle."""

    __slots__ = ("clock", "last")

    def __init__(self, clock: Callable[[], float]) -> None:
        self.clock = clock  # touch() runs per frame: the loop's clock is looked up once
        self.last = 0.0

    def touch(self) -> None:
        self.last = self.clock()


def http_date() -> str:
    """The Date header value (RFC 9110 6.6.1), formatted once per second, not per response."""
    global _date_cache
    second = int(time.time())
    if _date_cache[0] != second:
        _date_cache = (second, formatdate(second, usegmt=True))
    return _date_cache[1]


class ActiveStream:
    def __init__(self, owner: StreamOwner, stream_id: int, head: RequestHead) -> None:
        self.owner = owner
        self.manager = manager = owner.manager
        self.stream_id = stream_id
        settings = manager.settings
        connection = owner.info
        self.info = HttpStream(head, connection.remote_address, connection.local_address,
                               connection.connection_id,
                               connection_state=connection.filter_state)
        # Nothing the stream owns may point back at it: a reference cycle per request left
        # ~36 objects for the cyclic collector each time (its passes cost ~14 us per request
        # under load); without cycles reference counting frees a finished stream at once.
        self.body = BodyChannel(high_watermark=connection.buffer_limit,
                                on_pressure=partial(owner.body_pressure, stream_id),
                                on_consumed=partial(owner.body_consumed, stream_id))
        self.filters: list[HttpFilter] = [make() for make in manager.filter_makers]
        if self.filters:
            self._read_request_data()
        self.head_sent = False
        self.complete = False
        self.config: RouteConfig | None = None
        self.task: asyncio.Task[None] | None = None
        # Stream idle timeout (HCM stream_idle_timeout, overridden by the route's
        # idle_timeout): checked lazily against the last activity, re-armed only on expiry.
        self.idle_timeout = settings.stream_idle_timeout
        self.idle_expired = False
        self._loop = owner.loop
        self._activity = _Activity(self._loop.time)
        self._timers = owner.timers  # the connection's StreamTimers (idle timeout)
        self.when = 0.0  # when the idle timeout is next due (StreamTimer), once armed
        self._idle_armed = False
        self._request_timer: asyncio.TimerHandle | None = None
        self.timeout_reply: LocalReply | None = None
        self.info.touch = self._activity.touch

    def __repr__(self) -> str:
        request = self.info.request
        return f"ActiveStream({self.stream_id} {request.method} {request.path})"

    # --- the request path --------------------------------------------------------------------

    def _read_request_data(self) -> None:
        """The filters with an on_request_data see the request body as the router reads it."""
        readers = tuple(f for f in self.filters
                        if type(f).on_request_data is not HttpFilter.on_request_data)
        if readers:
            self.body.transform = partial(_request_data, self.info, readers)

    async def run(self) -> None:
        self._arm_idle(self.idle_timeout)
        request_timeout = self.manager.settings.request_timeout
        if request_timeout:
            # HCM request_timeout: the whole request must arrive within it (Envoy answers 408
            # "request timeout"), unless a response has started by then.
            self._request_timer = self._loop.call_later(
                request_timeout, self._check_request_complete)
        try:
            await self._process()
        except asyncio.CancelledError:
            if not self.idle_expired:
                # Envoy flags DC on the streams still active when the downstream connection
                # closes (ConnectionManagerImpl::onEvent); a stream whose response was sent
                # whole is done there, whatever cleanup is left here (an HTTP/1.1
                # `connection: close` answer closes the connection right after it).
                if not self.complete:
                    self.info.set_flag("DC")
                    self.info.response_details = "downstream_remote_disconnect"
                raise
            await self._idle_reply()
        except Exception:
            log.exception("stream %s failed", self)
            if not self.head_sent:
                await self.send_local_reply(LocalReply(500, "internal error", flag="LR"))
            else:
                self.reset()
        finally:
            if self._idle_armed:
                self._timers.discard(self)
            if self._request_timer is not None:
                self._request_timer.cancel()
                self._request_timer = None  # its callback holds self
            self._finish()

    # --- stream idle timeout (Envoy "stream_idle_timeout", route "idle_timeout") ---------------

    def touch(self) -> None:
        self._activity.touch()

    def _arm_idle(self, timeout: float | None) -> None:
        """(Re)start the idle timeout; checked lazily against the last activity, through the
        connection's StreamTimers (no loop timer per stream)."""
        if self._idle_armed:
            self._timers.discard(self)
            self._idle_armed = False
        self.idle_timeout = timeout
        if timeout:
            self.touch()
            self.when = self._activity.last + timeout
            self._idle_armed = True
            self._timers.add(self)

    def fire(self, now: float) -> None:
        """StreamTimer: the idle timeout is due unless there was activity since it was set."""
        assert self.idle_timeout
        due = self._activity.last + self.idle_timeout
        if due > now:
            self.when = due
            self._timers.add(self)
            return
        self._idle_armed = False
        # Envoy's onIdleTimeout: maybeRequestTimeoutCode(remoteDecodeComplete()), 504 once the
        # whole request arrived, 408 while it is still arriving.
        status = 504 if self.body.ended else 408
        self._expire(LocalReply(status, "stream timeout", details="stream_idle_timeout",
                                flag="SI"))

    def _check_request_complete(self) -> None:
        self._request_timer = None
        # Envoy docs (HCM request_timeout): disarmed when the response is initiated, too.
        if not self.body.ended and not self.head_sent:
            self._expire(LocalReply(408, "request timeout", details="request_overall_timeout"))

    def _expire(self, reply: LocalReply) -> None:
        if self.complete or self.task is None or self.task.done() or self.idle_expired:
            return
        self.idle_expired = True
        self.timeout_reply = reply
        self.task.cancel()

    async def _idle_reply(self) -> None:
        task = asyncio.current_task()
        if task is not None:
            task.uncancel()
        reply = self.timeout_reply
        assert reply is not None
        self.info.set_flag(reply.flag)
        if self.head_sent:
            self.reset()
        else:
            await self.send_local_reply(reply)

    async def _process(self) -> None:
        manager = self.manager
        settings = manager.settings
        request = self.info.request
        if not request.authority:
            # Envoy's HCM (decodeHeaders): a request without Host / :authority gets an empty
            # 400, missing_host_header, and the connection closes.
            await self.send_local_reply(LocalReply(400, details="missing_host_header",
                                                   close_connection=True))
            return
        if request.path and request.path[0] != "/":
            # Envoy's HCM takes only origin-form paths at the application layer: an absolute
            # target kept by allow_absolute_url=false, or "*", gets 404 (conn_manager_impl.cc,
            # details absolute_path_rejected, stat downstream_rq_non_relative_path).
            manager.count("downstream_rq_non_relative_path")
            await self.send_local_reply(LocalReply(404, details="absolute_path_rejected"))
            return
        self.config = self.info.route_config = manager.route_config()
        internal_only = self.config.internal_only_headers if self.config else ()
        client, internal = mutate_request_headers(
            request, self.info.remote_address[0], self.owner.info.scheme, settings,
            internal_only)
        self.info.trusted_client_address, self.info.internal = client, internal
        if manager.tracer is not None:  # Headers' names are lower-case: no HeaderMap copy
            span = self.info.state["span"] = manager.tracer.start_server_span(
                request.headers, method=request.method, path=request.path,
                authority=request.authority, start_time=self.info.start_time)
            if span.request_id is not None:  # Envoy's pack_trace_reason
                request.headers.set("x-request-id", span.request_id)
        for http_filter in self.filters:
            reply = http_filter.on_request_headers(self.info)
            if reply is not None and not isinstance(reply, LocalReply):
                reply = await reply  # the filter holds the request (StopIteration)
            if reply is not None:
                await self.send_local_reply(reply)
                return
        self._resolve_route()
        if "span" in self.info.state:
            self._decorate_span(self.info.state["span"])
        if request.upgrade and not self._upgrade_allowed():
            # Envoy answers an upgrade no route or HCM enables with 403 (upgrade_failed) and
            # closes the connection (HTTP/1.1 `connection: close`, HTTP/2 GOAWAY).
            await self.send_local_reply(LocalReply(403, details="upgrade_failed",
                                                   close_connection=True))
            return
        if not settings.has_router:
            await self._unanswered()
            return
        await manager.router.handle(self.info, self.config, self)  # returns an awaitable

    async def _unanswered(self) -> None:
        """An HCM without HTTP filters has no router (Envoy 1.40 adds none): nothing answers.
        The body is read and dropped, and the stream waits for its stream idle timeout or
        request_timeout, as Envoy (tests/conformance/proxy/http/test_minimal_hcm_vs_envoy.py).
        """
        while await self.body.read() is not None:
            pass
        await self._loop.create_future()  # until a timeout or the connection ends

    def _resolve_route(self) -> None:
        if self.config is None:
            return
        route = resolve_route(self.info)  # a filter may have looked it up already
        vhost = self.info.virtual_host
        if vhost is None:
            return
        limit = request_buffer_limit(route, vhost)
        if limit is not None:
            # per_request_buffer_limit_bytes replaces the listener's limit for this request's
            # body (how much we queue before we stop reading; the retry buffer, router.py).
            self.body.high_watermark = limit
        if route is not None and isinstance(route.action, ForwardAction) \
                and route.action.idle_timeout is not None:
            self._arm_idle(route.action.idle_timeout or None)
        if route is not None:
            self.info.state["response_levels"] = route_levels(self.config, vhost, route)

    def _decorate_span(self, span: Any) -> None:
        """Envoy's ingress tracing (conn_manager_impl traceRequest, checked against Envoy
        1.40): the route's decorator names the SERVER span, an x-envoy-decorator-operation
        request header overrides it and is not forwarded; with `propagate` the operation goes
        back in the response (send_response)."""
        route = self.info.route
        decorator = route.decorator if route is not None else None
        if decorator is not None:
            span.name = decorator.operation
        if span.egress:
            self._decorate_egress_request(decorator)
            return
        headers = self.info.request.headers
        incoming = headers.get("x-envoy-decorator-operation")
        if incoming is not None:
            headers.remove("x-envoy-decorator-operation")
            if incoming:
                span.name = incoming
        if decorator is not None and decorator.propagate:
            self.info.state["decorator_operation"] = decorator.operation

    def _decorate_egress_request(self, decorator: Any) -> None:
        """Egress (OUTBOUND listener), as Envoy's traceRequest: an incoming
        x-envoy-decorator-operation is left alone, and with `propagate` the decorator's
        operation goes upstream (for the next hop's server span), not back downstream."""
        if decorator is not None and decorator.propagate:
            self.info.request.headers.set("x-envoy-decorator-operation", decorator.operation)

    def _upgrade_allowed(self) -> bool:
        kind = self.info.request.upgrade
        route = self.info.route
        if route is not None and isinstance(route.action, ForwardAction):
            if kind in route.action.upgrades:
                return True
            if kind in route.action.upgrades_disabled:
                return False  # the route's enabled: false beats the HCM's
        return kind in self.manager.settings.upgrades

    # --- the response path (the router's Downstream) -----------------------------------------

    async def send_response(self, head: ResponseHead, *, end_stream: bool) -> None:
        if self.head_sent:
            return
        levels = self.info.state.get("response_levels")
        if levels:
            apply_response_mutations(head.headers, levels, self.info)
        for http_filter in reversed(self.filters):
            http_filter.on_response_headers(self.info, head)
        self._server_and_date(head.headers)
        operation = self.info.state.get("decorator_operation")
        if operation is not None:
            head.headers.set("x-envoy-decorator-operation", operation)
        self.head_sent = True
        self.info.response = head
        self.info.response_code = head.status
        owner = self.owner
        owner.write_head(self, head, end_stream=end_stream)
        if end_stream:
            self.complete = True
        if owner.flow.paused:
            await owner.flow.drained()

    def _server_and_date(self, headers: Headers) -> None:
        settings = self.manager.settings
        if settings.server_header == "OVERWRITE" or (
            settings.server_header == "APPEND_IF_ABSENT" and "server" not in headers
        ):
            headers.set("server", settings.server_name)
        headers.set("date", http_date())

    async def send_data(self, data: bytes, *, end_stream: bool) -> None:
        self.touch()
        filters = self.filters
        for index in range(len(filters) - 1, -1, -1):  # encoder order: the chain reversed
            out = filters[index].on_response_data(self.info, data, end_stream)
            if type(out) is Paced:
                await self._send_paced(out, index)
                return
            data = out  # type: ignore[assignment]
        # _write_data inline (the common case): one coroutine less per chunk.
        self.info.bytes_sent += len(data)
        owner = self.owner
        if not owner.write_data_nowait(self, data, end_stream=end_stream):
            await owner.write_data(self, data, end_stream=end_stream)
        elif owner.flow.paused:
            await owner.flow.drained()
        if end_stream:
            self.complete = True

    async def _send_paced(self, paced: Paced, below: int) -> None:
        """A filter lets the chunk out in pieces: each goes through the filters after it in
        encoder order (those before it in the chain) and downstream as it comes."""
        async for piece, end_stream in paced.pieces:
            self.touch()  # each piece is activity (stream idle timeout)
            for http_filter in reversed(self.filters[:below]):
                out = http_filter.on_response_data(self.info, piece, end_stream)
                assert type(out) is not Paced, "one filter paces a response"
                piece = out  # type: ignore[assignment]
            await self._write_data(piece, end_stream)

    async def _write_data(self, data: bytes, end_stream: bool) -> None:
        self.info.bytes_sent += len(data)
        owner = self.owner
        if not owner.write_data_nowait(self, data, end_stream=end_stream):
            await owner.write_data(self, data, end_stream=end_stream)
        elif owner.flow.paused:
            await owner.flow.drained()
        if end_stream:
            self.complete = True

    async def send_trailers(self, trailers: Headers) -> None:
        await self.owner.write_trailers(self, trailers)
        self.complete = True

    async def send_local_reply(self, reply: LocalReply) -> None:
        self.info.set_flag(reply.flag)
        self.info.response_details = reply.details
        if self.head_sent:
            self.reset()
            return
        mappers = self.manager.settings.local_reply_mappers
        if mappers:
            reply = replace(reply, headers=mapped(mappers, self.info.response_flags,
                                                  reply.headers, self.info))
        head, body = render_local_reply(reply, self.info.request)
        if reply.close_connection:
            self.owner.close_after_response()
        await self.send_response(head, end_stream=not body)
        if body:
            await self.send_data(body, end_stream=True)

    def deadline(self, seconds: float, *, started: bool = True) -> Deadline:
        assert self.task is not None
        return Deadline(self._timers, self.task, seconds, started=started)

    def reset(self) -> None:
        if not self.complete:
            self.info.set_flag("LR" if not self.info.response_flags else "")
            self.owner.reset_stream(self)
            self.complete = True

    # --- bookkeeping -------------------------------------------------------------------------

    def _finish(self) -> None:
        for http_filter in self.filters:
            try:
                http_filter.on_complete(self.info)
            except Exception:
                log.exception("filter %r on_complete failed", http_filter)
        self.owner.stream_finished(self)

    def finish_span(self, span: Any) -> None:
        """End the SERVER span when nothing else reads the request record: the span gets the
        request's shape (the order of span_encoder.request_shape) instead of a record."""
        info = self.info
        request = info.request
        route = info.route
        shape = (request.method, request.scheme, request.authority, request.protocol,
                 info.response_code,
                 _envoy_order(info.response_flags),
                 route.name if route is not None else "", info.upstream_cluster,
                 info.upstream_host, request.path, info.bytes_received, info.bytes_sent,
                 info.remote_address)
        span.finish_shaped(shape, time.monotonic() - info.start_monotonic, self.request_info)

    def request_info(self) -> Any:
        """The observability record of this stream (proxy.observability.request_info)."""
        info = self.info
        request = info.request
        span = info.state.get("span")
        trace_id = span.trace_id if span is not None and span.sampled else ""
        response = info.response
        trailers = info.response_trailers
        return RequestInfo(
            start_time=info.start_time,
            duration=time.monotonic() - info.start_monotonic,
            method=request.method, path=request.path, authority=request.authority,
            scheme=request.scheme, protocol=request.protocol,
            response_code=info.response_code, response_code_details=info.response_details,
            response_flags=_envoy_order(info.response_flags),
            upstream_host=info.upstream_host,
            upstream_cluster=info.upstream_cluster, attempt_count=info.attempt_count,
            upstream_transport_failure_reason=info.upstream_transport_failure_reason,
            route_name=info.route.name if info.route else "",
            bytes_received=info.bytes_received, bytes_sent=info.bytes_sent,
            downstream_remote_address=info.remote_address,
            downstream_local_address=info.local_address,
            connection_id=info.connection_id, trace_id=trace_id,
            # Headers (lower-case names) read as they are: the stream is over, nothing
            # changes them any more, and copying them cost ~1 us each per request.
            request_headers=request.headers,
            response_headers=response.headers if response else EMPTY_HEADERS,
            response_trailers=trailers if trailers else EMPTY_HEADERS,
        )


def _envoy_order(flags: list[str]) -> tuple[str, ...]:
    """Response flags as Envoy 1.40 prints %RESPONSE_FLAGS%: in the order they were set
    (StreamInfoImpl keeps them in a vector; checked in test_response_code_details_vs_envoy)."""
    return tuple(flags) if flags else ()


def _request_data(stream: HttpStream, filters: tuple[HttpFilter, ...], data: bytes,
                  end_stream: bool) -> bytes:
    """A request body chunk through the filters' on_request_data, in chain order (Envoy's
    decodeData; BodyChannel.transform says when it is the last)."""
    for http_filter in filters:
        data = http_filter.on_request_data(stream, data, end_stream)
    return data
