"""`envoy.filters.http.router`: forwards a routed request upstream (Envoy `router.cc`).

Per request: execute direct_response/redirect locally; otherwise pick the cluster (cluster,
cluster_header, weighted), rewrite path and host, apply header manipulation, compute the hash
key, then run attempts: pick a host (excluding tried hosts when the retry policy says so), get
a stream from the host's pool, send the request (body buffered for replay while it fits the
retry buffer), and read the response. Retries follow the route's retry policy; the route
timeout bounds the whole exchange, `per_try_timeout` each attempt. Local failures answer with
Envoy's texts and response flags: UH (no healthy upstream), UF (connect failure), UO
(overflow), UC/UR (reset), UT (timeout), URX (retries exhausted), NC (no cluster). Mirror
policies start their shadow requests with the first attempt and are fed the body as the
attempt reads it (`proxy.http.shadow`).
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable
from dataclasses import dataclass, replace
from typing import Any, Protocol

from proxy.codec.events import (
    DataReceived,
    InformationalReceived,
    ResetReason,
    ResponseReceived,
    StreamEnded,
    StreamReset,
)
from proxy.codec.events import TrailersReceived as TrailersEvent
from proxy.codec.headers import Headers, RequestHead, ResponseHead
from proxy.codec.http2 import ErrorCodes
from proxy.http import upstream_reset
from proxy.http.body import BodyChannel, StreamResetError
from proxy.http.deadline import Deadline
from proxy.http.filter import HttpStream, LocalReply
from proxy.http.hashing import compute_hash
from proxy.http.header_mutation import apply_request_mutations, ordered_levels, route_levels
from proxy.http.local_reply import GRPC_DEADLINE_EXCEEDED
from proxy.http.retry import Failure, RetryState, grpc_timeout_text, parse_grpc_timeout
from proxy.http.routing import CLUSTER_PICK, select_cluster
from proxy.http.shadow import Shadows, ShadowWriter
from proxy.model.route import (
    DirectResponseAction,
    ForwardAction,
    HeaderMutations,
    MirrorPolicy,
    RedirectAction,
    RegexRewrite,
    Route,
    RouteConfig,
    request_buffer_limit,
)
from proxy.upstream.circuit_breakers import Resource
from proxy.upstream.lb.base import LbContext
from proxy.upstream.pools import ConnectFailedError, PoolManager, PoolOverflowError
from proxy.upstream.pools.base import UpstreamStream

log = logging.getLogger(__name__)

_NO_PREFERENCE = LbContext()  # no hash key, no excluded host (never mutated)
_NO_RETRIES = RetryState(None)

BUFFER_LIMIT_TEXT = "exceeded request buffer limit while retrying upstream"


class Downstream(Protocol):
    """The downstream side of one stream, implemented by the connection manager."""

    body: BodyChannel
    head_sent: bool

    async def send_response(self, head: ResponseHead, *, end_stream: bool) -> None: ...

    async def send_data(self, data: bytes, *, end_stream: bool) -> None: ...

    async def send_trailers(self, trailers: Headers) -> None: ...

    async def send_local_reply(self, reply: LocalReply) -> None: ...

    def reset(self) -> None: ...

    def deadline(self, seconds: float, *, started: bool = True) -> Deadline:
        """A deadline on the stream's task (the route timeout), running now or from start()."""
        ...


class _AttemptFailed(Exception):
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


@dataclass(slots=True)
class _Plan:
    """Everything fixed before the first attempt."""

    action: ForwardAction
    runtime: Any
    head: RequestHead
    hash_key: int | None
    set_cookie: str | None
    timeout: float | None
    response_levels: list[HeaderMutations]
    # The route timeout while it waits for the end of the request to start (see _forward).
    route_timer: Deadline | None = None
    mirrors: list[MirrorPolicy] | None = None  # the mirror policies drawn for this request


class _RetryBudget:
    """The cluster's max_retries circuit breaker: a retry holds one slot from the decision to
    retry until that retry's attempt is over (Envoy counts retries in flight)."""

    __slots__ = ("breaker", "holding", "runtime")

    def __init__(self, runtime: Any) -> None:
        self.runtime = runtime  # the breaker is looked up only when a retry is considered
        self.holding = False
        self.breaker: Any = None

    def acquire(self) -> bool:
        self.release()  # the previous retry, if any, is over
        if self.breaker is None:
            if not hasattr(self.runtime, "circuit_breaker"):
                return True
            self.breaker = self.runtime.circuit_breaker()
        self.holding = self.breaker.try_acquire(Resource.RETRIES)
        return self.holding

    def release(self) -> None:
        if self.holding:
            self.breaker.release(Resource.RETRIES)
            self.holding = False


class _BodyReplay:
    """The request body as sent so far, kept for a retry while the retry policy is on and the
    body fits the buffer limit (Envoy router.cc decodeData: past `retry_shadow_buffer_limit_`
    it counts `retry_or_shadow_abandoned` and gives up retrying this request)."""

    __slots__ = ("_runtime", "buffering", "channel", "chunks", "limit", "overflowed", "retries",
                 "route_timer", "shadows", "size")

    def __init__(self, channel: BodyChannel, retries: RetryState, limit: int,
                 runtime: Any = None, route_timer: Deadline | None = None) -> None:
        self.channel = channel
        self.route_timer = route_timer
        self.retries = retries
        self.limit = limit
        self._runtime = runtime  # its retry_or_shadow_abandoned counter, looked up on use
        self.chunks: list[bytes] = []
        self.size = 0
        self.buffering = retries.policy is not None
        self.overflowed = False
        self.shadows: Shadows | None = None  # mirrors fed each chunk read, once

    @property
    def replayable(self) -> bool:
        return not self.overflowed

    def _keep(self, data: bytes) -> None:
        if not self.buffering:
            return
        if self.size + len(data) > self.limit:
            self.buffering = False
            self.overflowed = True
            self.chunks.clear()
            self.retries.abandon()
            _count(self._runtime, "retry_or_shadow_abandoned")
            return
        self.chunks.append(data)
        self.size += len(data)

    async def pump(self, upstream: UpstreamStream, stream: HttpStream) -> None:
        for chunk in self.chunks:
            await upstream.send_data(chunk, end_stream=False)
        while True:
            data = await self.channel.read()
            if data is None:
                if self.route_timer is not None:
                    self.route_timer.start()
                if self.shadows is not None:
                    self.shadows.end(self.channel.trailers)
                break
            stream.touch()
            stream.bytes_received += len(data)
            self._keep(data)
            if self.shadows is not None:
                await self.shadows.feed(data)
            await upstream.send_data(data, end_stream=False)
        if self.channel.trailers is not None:
            await upstream.send_trailers(self.channel.trailers)
        else:
            await upstream.send_data(b"", end_stream=True)

    async def buffer_during(self, delay: float, stream: HttpStream) -> bool:
        """Wait out a retry back-off while still taking in the body (Envoy keeps decoding
        during the back-off); False when the body outgrew the buffer meanwhile."""
        try:
            async with asyncio.timeout(delay):
                while not self.overflowed:
                    data = await self.channel.read()
                    if data is None:
                        if self.route_timer is not None:
                            self.route_timer.start()
                        if self.shadows is not None:
                            self.shadows.end(self.channel.trailers)
                        await asyncio.sleep(delay)  # body complete: just wait
                        break
                    stream.touch()
                    stream.bytes_received += len(data)
                    self._keep(data)
                    if self.shadows is not None:
                        await self.shadows.feed(data)
        except TimeoutError:
            pass
        return not self.overflowed


class Router:
    def __init__(self, cluster_manager: Any, pools: PoolManager, *,
                 suppress_envoy_headers: bool = False, rng: random.Random | None = None,
                 observability: Any = None) -> None:
        self.cluster_manager = cluster_manager
        self.observability = observability
        self.pools = pools
        self.suppress_envoy_headers = suppress_envoy_headers
        self.rng = rng or random.Random()
        self.shadow_writer = ShadowWriter(cluster_manager, pools, rng=self.rng,
                                          suppress_envoy_headers=suppress_envoy_headers)

    def handle(self, stream: HttpStream, config: RouteConfig | None,
               downstream: Downstream) -> Awaitable[None]:
        """The work for this request, to await (a plain function returning the coroutine that
        does it: one coroutine layer less on every resumption of the stream's task)."""
        route = stream.route
        if route is None or config is None:
            stream.set_flag("NR")
            return downstream.send_local_reply(LocalReply(404, details="route_not_found"))
        action = route.action
        if isinstance(action, ForwardAction):
            return self._forward(stream, config, action, downstream)
        if isinstance(action, DirectResponseAction):
            return downstream.send_local_reply(LocalReply(action.status, action.body.decode(
                "utf-8", "replace"), details="direct_response"))
        assert isinstance(action, RedirectAction)
        return downstream.send_local_reply(_redirect(action, stream.request, route))

    # --- planning ------------------------------------------------------------------------------

    def _plan(self, stream: HttpStream, config: RouteConfig,
              action: ForwardAction) -> _Plan | LocalReply:
        request = stream.request
        # The random value matters only for weighted_clusters: drawn only then, unless a
        # filter already asked for the route's cluster (routing.route_cluster).
        if action.cluster:
            cluster_name, entry = action.cluster, None
        else:
            cluster_name, entry = stream.state.get(CLUSTER_PICK) or select_cluster(
                action, request, self.rng.randrange(1 << 30))
        runtime = self.cluster_manager.get(cluster_name) if cluster_name else None
        stream.upstream_cluster = cluster_name
        if runtime is None:
            stream.set_flag("NC")
            return LocalReply(action.cluster_not_found_response_code,
                              details="cluster_not_found")
        assert stream.route is not None and stream.virtual_host is not None
        if entry is None:
            levels = route_levels(config, stream.virtual_host, stream.route)
        else:  # a weighted cluster's own mutations are the most specific level
            levels = ordered_levels([entry.mutations, stream.route.mutations,
                                     stream.virtual_host.mutations, config.mutations],
                                    config.most_specific_header_mutations_wins)
        head = _upstream_head(request, stream.route, action,
                              entry.host_rewrite_literal if entry else "",
                              self.suppress_envoy_headers)
        grpc_timeout = action.max_grpc_timeout is not None and request.is_grpc()
        timeout = _global_timeout(action, request) if grpc_timeout else action.timeout or None
        # Envoy's FilterUtility::finalTimeout, before the route's header mutations: the upstream
        # learns the timeout it has (the per-try one first) in x-envoy-expected-rq-timeout-ms
        # and, under max_grpc_timeout, in a rewritten grpc-timeout.
        per_try = action.retry_policy.per_try_timeout if action.retry_policy else None
        expected = per_try or timeout
        if expected:
            if not self.suppress_envoy_headers:
                head.headers.set("x-envoy-expected-rq-timeout-ms", _milliseconds_text(expected))
            if grpc_timeout:
                head.headers.set("grpc-timeout", grpc_timeout_text(expected))
        apply_request_mutations(head.headers, levels, stream)
        if not action.hash_policies:
            plan = _Plan(action, runtime, head, None, None, timeout, levels)
        else:
            hashed = compute_hash(action.hash_policies, request, stream.trusted_client_address,
                                  _address_text(stream.remote_address))
            plan = _Plan(action, runtime, head, hashed.key, hashed.set_cookie, timeout, levels)
        # mirror_policies() inline: route, else virtual host, else route configuration.
        policies = action.mirror_policies or stream.virtual_host.mirror_policies \
            or config.mirror_policies
        if policies:  # Envoy draws them in decodeHeaders, before the first attempt
            plan.mirrors = self.shadow_writer.active_policies(policies, head)
        return plan

    # --- forwarding ----------------------------------------------------------------------------

    async def _forward(self, stream: HttpStream, config: RouteConfig, action: ForwardAction,
                       downstream: Downstream) -> None:
        plan = self._plan(stream, config, action)
        if isinstance(plan, LocalReply):
            await downstream.send_local_reply(plan)
            return
        stream.state["response_levels"] = plan.response_levels
        deadline = None
        if plan.timeout:
            # Envoy: the route timeout runs "between the point at which the entire downstream
            # request (i.e. end-of-stream) has been processed and when the upstream response
            # has been completely processed" (route_components.proto, RouteAction.timeout).
            # A request whose body is still coming (an upload, a WebSocket tunnel) starts the
            # clock when its body ends; a tunnel the client never half-closes has none.
            deadline = downstream.deadline(plan.timeout, started=downstream.body.ended)
            if not downstream.body.ended:
                plan.route_timer = deadline
        try:
            await self._attempts(stream, plan, downstream)
        except asyncio.CancelledError:
            if deadline is None or not deadline.timed_out():
                raise
            stream.set_flag("UT")
            _count(plan.runtime, "upstream_rq_timeout")
            if downstream.head_sent:
                downstream.reset()
            else:
                plan.runtime.charge_code(504)  # Envoy onResponseTimeout
                await downstream.send_local_reply(LocalReply(
                    504, "upstream request timeout", details="response_timeout",
                    grpc_status=GRPC_DEADLINE_EXCEEDED))
        finally:
            if deadline is not None:
                deadline.disarm()

    async def _attempts(self, stream: HttpStream, plan: _Plan, downstream: Downstream) -> None:
        retry_policy = plan.action.retry_policy
        if retry_policy is None and stream.virtual_host is not None:
            retry_policy = stream.virtual_host.retry_policy
        # Without a policy the state is never changed: one shared instance serves.
        retries = RetryState(retry_policy, self.rng) if retry_policy else _NO_RETRIES
        replay = _BodyReplay(downstream.body, retries,
                             _retry_buffer_limit(stream, downstream) if retry_policy else 0,
                             plan.runtime, plan.route_timer)
        tried: list[Any] = []
        budget = _RetryBudget(plan.runtime)
        try:
            while True:
                excluded = tried if retry_policy and retry_policy.avoid_previous_hosts else ()
                host = plan.runtime.choose_host(
                    LbContext(hash_key=plan.hash_key, excluded=excluded,
                              host_selection_retry_max_attempts=(
                                  retry_policy.host_selection_retry_max_attempts
                                  if retry_policy else 1))
                    if plan.hash_key is not None or excluded else _NO_PREFERENCE)
                if host is None:
                    stream.set_flag("UH")
                    await downstream.send_local_reply(LocalReply(
                        503, "no healthy upstream", details="no_healthy_upstream"))
                    return
                if plan.mirrors and not tried:  # with the first upstream request, as Envoy
                    replay.shadows = self._start_shadows(stream, plan, downstream)
                tried.append(host)
                stream.attempt_count += 1
                stream.upstream_host = host.address_text
                stream.upstream_address = host.address_port
                failed: _AttemptFailed | None = None
                try:
                    outcome = await self._one_attempt(stream, plan, host, replay, retries,
                                                      downstream, budget)
                except _AttemptFailed as error:
                    failed, outcome = error, "failed"
                retry_wanted = failed is not None and replay.replayable \
                    and retries.should_retry_failure(failed.failure)
                if outcome == "retry" or (retry_wanted and budget.acquire()):
                    _count(plan.runtime, "upstream_rq_retry")
                    if not await replay.buffer_during(retries.next_backoff(), stream):
                        # Envoy: the body outgrew the buffer with no attempt in flight.
                        await downstream.send_local_reply(LocalReply(
                            507, BUFFER_LIMIT_TEXT,
                            details="request_payload_exceeded_retry_buffer_limit"))
                        return
                    continue
                if failed is None:
                    return  # the response went downstream
                # Envoy sets flags for the attempt that is answered, not for retried ones, in
                # this order: why no retry follows (RetryStatus NoOverflow: UO, or
                # NoRetryLimitExceeded: URX), then the failure itself (onUpstreamAbort).
                if retry_wanted:
                    stream.set_flag("UO")
                elif retries.would_retry_failure(failed.failure):
                    stream.set_flag("URX")
                stream.set_flag(failed.flag)
                # Envoy router.cc chargeUpstreamAbort / onPerTryTimeoutCommon: the code of
                # the local reply counts for the cluster once no retry follows (also when no
                # request reached the host); a retried failure counts nothing.
                plan.runtime.charge_code(failed.status)
                headers = Headers()
                if failed.failure == "overflow" and not self.suppress_envoy_headers:
                    # Envoy router.cc onUpstreamAbort: a request dropped by a circuit
                    # breaker says so (x-envoy-overloaded, router filter docs).
                    headers.set("x-envoy-overloaded", "true")
                await downstream.send_local_reply(failed.reply(
                    headers, retried=stream.attempt_count > 1,
                    informational=stream.informational_received))
                return
        finally:
            budget.release()
            if replay.shadows is not None:
                replay.shadows.finish(downstream.body)

    def _start_shadows(self, stream: HttpStream, plan: _Plan,
                       downstream: Downstream) -> Shadows | None:
        assert plan.mirrors
        body = downstream.body
        return self.shadow_writer.start(
            stream, plan.mirrors, plan.head, plan.timeout,
            _retry_buffer_limit(stream, downstream),
            end_stream=body.exhausted and body.trailers is None)

    async def _one_attempt(self, stream: HttpStream, plan: _Plan, host: Any,
                           replay: _BodyReplay, retries: RetryState,
                           downstream: Downstream, budget: _RetryBudget) -> str:
        """One try on `host`. The pool applies the max_pending_requests, max_connections and
        max_requests circuit breakers (Envoy's conn_pool_base.cc); overflow fails it UO."""
        runtime = plan.runtime
        per_try = retries.policy.per_try_timeout if retries.policy else None
        try:
            upstream = self.pools.try_new_stream(runtime, host) \
                or await self.pools.new_stream(runtime, host)
        except ConnectFailedError as error:
            # Envoy onPoolFailure: the transport's words go to the access log too.
            stream.upstream_transport_failure_reason = error.transport_failure
            raise _AttemptFailed("connect_failure", error.reset_reason,
                                 error.transport_failure) from error
        except PoolOverflowError as error:
            raise _AttemptFailed("overflow", ResetReason.OVERFLOW) from error
        runtime.request_started(host)
        started = time.monotonic()
        status: int | None = None
        attempt_flag = ""
        pump: asyncio.Task[None] | None = None
        head = plan.head
        if plan.action.auto_host_rewrite and str(getattr(host, "hostname", "")):
            # Envoy: the chosen host's hostname (strict_dns / logical_dns clusters only).
            head = replace(head, headers=head.headers.copy(), authority=host.hostname)
        end_stream = downstream.body.exhausted and not replay.chunks \
            and downstream.body.trailers is None
        if end_stream and plan.route_timer is not None:
            plan.route_timer.start()  # the body ended while we connected
        if end_stream and head.method in ("POST", "PUT", "PATCH") \
                and "content-length" not in head.headers:
            # Envoy states an empty body explicitly for methods that usually carry one.
            head = replace(head, headers=head.headers.copy())
            head.headers.set("content-length", "0")
        client_span = None
        server_span = stream.state.get("span")
        if server_span is not None:
            if server_span.spawns_client_spans:
                client_span = server_span.start_client_span(
                    cluster=stream.upstream_cluster, upstream_host=stream.upstream_host,
                    method=head.method, path=head.path, authority=head.authority)
                head = replace(head, headers=head.headers.copy())  # a span id per attempt
                injected = client_span.inject_headers()
            else:  # the SERVER span is the parent of every attempt: set on the router's copy
                injected = server_span.inject_headers()
            for name, value in injected:
                head.headers.set(name, value)
        try:
            if not upstream.send_head_nowait(head, end_stream=end_stream):
                await upstream.send_head(head, end_stream=end_stream)
            if not end_stream:
                pump = asyncio.ensure_future(replay.pump(upstream, stream))
            try:
                if per_try:
                    async with asyncio.timeout(per_try):
                        response = await self._await_head(upstream, stream)
                else:
                    # _await_head inline (the common case): one coroutine less per request.
                    while True:
                        event = upstream.next_event_nowait() or await upstream.next_event()
                        if type(event) is ResponseReceived:
                            response = event
                            break
                        _raise_if_reset(event, stream)
            except TimeoutError:
                upstream.reset()
                _count(runtime, "upstream_rq_per_try_timeout")
                runtime.request_finished(host, http_status=504, charge_code=False)
                status = -1
                raise _AttemptFailed("per_try_timeout", None) from None
            status = response.head.status
            if retries.policy is not None:
                grpc_status = _grpc_status(response.head.headers)
                if retries.should_retry_status(status, grpc_status) and replay.replayable:
                    if budget.acquire():
                        upstream.reset()
                        # Envoy router.cc onUpstreamHeaders: a retried response feeds outlier
                        # detection but charges no upstream_rq_<code> / upstream_rq_completed.
                        runtime.request_finished(host, http_status=status, charge_code=False)
                        if pump is not None:
                            pump.cancel()
                        return "retry"
                    stream.set_flag("UO")  # Envoy RetryStatus::NoOverflow: max_retries said no
                elif retries.would_retry_status(status, grpc_status):
                    stream.set_flag("URX")
            await self._stream_response(stream, plan, upstream, response, started, downstream)
            runtime.request_finished(host, http_status=status)
            return "done"
        except BaseException as error:
            upstream.reset()
            if isinstance(error, _AttemptFailed):
                attempt_flag = error.flag  # the attempt's own (Envoy: its upstream span's)
            if status is None:
                # No response head: the code is charged by whoever answers (_attempts,
                # _forward), once, as Envoy does.
                runtime.request_finished(host, http_status=503, charge_code=False)
            elif status > 0:
                # Cut off after the response head (route timeout, downstream reset): the
                # request still ends, with the status Envoy charged at the head.
                runtime.request_finished(host, http_status=status)
            raise
        finally:
            self._attempt_finished(stream, client_span, head, status, started, attempt_flag)
            if pump is not None and not pump.done():
                pump.cancel()
            if pump is not None:
                (pumped,) = await asyncio.gather(pump, return_exceptions=True)
                _log_pump_failure(pumped)

    def _attempt_finished(self, stream: HttpStream, client_span: Any, head: RequestHead,
                          status: int | None, started: float, attempt_flag: str) -> None:
        duration = time.monotonic() - started
        code = status if status is not None and status > 0 else None
        if client_span is not None and client_span.spawned:  # else nothing to end
            flags = tuple(stream.response_flags)
            if attempt_flag and attempt_flag not in flags:
                flags += (attempt_flag,)
            client_span.finish(status_code=code, response_flags=flags, duration=duration)
        if self.observability is not None:
            self.observability.upstream_attempt_finished(
                duration=duration, method=head.method, status_code=code,
                cluster=stream.upstream_cluster, upstream_host=stream.upstream_host)

    async def _await_head(self, upstream: UpstreamStream,
                          stream: HttpStream) -> ResponseReceived:
        while True:
            event = await upstream.next_event()
            if type(event) is ResponseReceived:
                return event
            _raise_if_reset(event, stream)

    async def _stream_response(self, stream: HttpStream, plan: _Plan, upstream: UpstreamStream,
                               response: ResponseReceived, started: float,
                               downstream: Downstream) -> None:
        head = response.head
        if not self.suppress_envoy_headers:
            elapsed_ms = int((time.monotonic() - started) * 1000)
            head.headers.set("x-envoy-upstream-service-time", str(elapsed_ms))
        if plan.set_cookie:
            head.headers.add("set-cookie", plan.set_cookie)
        stream.response_details = "via_upstream"
        await downstream.send_response(head, end_stream=response.end_stream)
        if response.end_stream:
            upstream.release()
            return
        while True:
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
                    return
            elif isinstance(event, TrailersEvent):
                stream.response_trailers = event.trailers
                await downstream.send_trailers(event.trailers)
            elif isinstance(event, StreamEnded):
                if stream.response_trailers is None:
                    await downstream.send_data(b"", end_stream=True)
                upstream.release()
                return
            elif isinstance(event, StreamReset):
                # A truncated or reset answer must not look complete: the downstream stream
                # is reset too (HTTP/1.1: the connection closes), as Envoy onUpstreamAbort.
                reason = upstream_reset.reason_of(event)
                stream.set_flag(upstream_reset.flag_of(reason))
                stream.response_details = upstream_reset.details(reason,
                                                                 response_started=True)
                downstream.reset()
                return


def _log_pump_failure(outcome: object) -> None:
    """The request body pump ends with the attempt. A reset downstream body or a closed
    connection is how an early end looks from there; anything else is a bug, and is logged
    rather than lost."""
    if isinstance(outcome, Exception) and not isinstance(outcome, StreamResetError | OSError):
        log.error("request body pump failed", exc_info=outcome)


def _raise_if_reset(event: object, stream: HttpStream) -> None:
    """A reset before the response head fails the attempt (a 1xx is only noted)."""
    if type(event) is InformationalReceived:
        stream.informational_received = True
    elif isinstance(event, StreamReset):
        refused = event.error_code == ErrorCodes.REFUSED_STREAM
        raise _AttemptFailed("refused_stream" if refused else "reset",
                             upstream_reset.reason_of(event))


def _retry_buffer_limit(stream: HttpStream, downstream: Downstream) -> int:
    """How much request body may be kept for retries: the route's, else the virtual host's
    per_request_buffer_limit_bytes, else the stream's buffer limit, which is the listener's
    per_connection_buffer_limit_bytes (1 MiB by default) (route_components.proto,
    listener.proto; Envoy router.cc `retry_shadow_buffer_limit_`)."""
    limit = request_buffer_limit(stream.route, stream.virtual_host)
    return int(downstream.body.high_watermark) if limit is None else limit


def _counter(runtime: Any, name: str) -> Any:
    """The cluster's counter `name` (None for runtimes without stats, as in unit tests)."""
    stats = getattr(runtime, "stats", None)
    return None if stats is None else stats.counter(getattr(runtime, "prefix", "") + name)


def _count(runtime: Any, name: str) -> None:
    counter = _counter(runtime, name)
    if counter is not None:
        counter.inc()


def _grpc_status(headers: Headers) -> int | None:
    value = headers.get("grpc-status")
    return int(value) if value is not None and value.isdigit() else None


def _global_timeout(action: ForwardAction, request: RequestHead) -> float | None:
    """A gRPC request's timeout under max_grpc_timeout (None: none), as Envoy 1.40 computes
    it (FilterUtility::finalTimeout, checked in tests/conformance/http): the grpc-timeout
    header, none or 0 meaning infinity; grpc_timeout_offset subtracted only when smaller than
    it; then capped at max_grpc_timeout unless that is 0. The route `timeout` is not used."""
    grpc = parse_grpc_timeout(request.headers.get("grpc-timeout")) or 0.0
    offset = action.grpc_timeout_offset
    if offset and offset < grpc:
        grpc -= offset
    cap = action.max_grpc_timeout or 0.0
    if cap and (not grpc or grpc > cap):
        grpc = cap
    return grpc or None


_MS_TEXT: dict[float, str] = {}


def _milliseconds_text(seconds: float) -> str:
    """Whole milliseconds as text, remembered per configured timeout (a handful)."""
    text = _MS_TEXT.get(seconds)
    if text is None:
        text = str(int(seconds * 1000))
        if len(_MS_TEXT) < 256:  # grpc-timeout values come from clients
            _MS_TEXT[seconds] = text
    return text


def _address_text(address: tuple[str, int]) -> str:
    return f"{address[0]}:{address[1]}"


def _matched_prefix_length(route: Route) -> int | None:
    """How much of the path prefix_rewrite replaces: the matched prefix or path."""
    if route.match.path_kind in ("prefix", "path", "path_separated_prefix"):
        return len(route.match.path)
    return None


def _rewrite_path(path: str, route: Route, prefix_rewrite: str | None,
                  regex_rewrite: RegexRewrite | None) -> str:
    only, sep, query = path.partition("?")
    length = _matched_prefix_length(route)
    if prefix_rewrite is not None and length is not None:
        return prefix_rewrite + path[length:]
    if regex_rewrite is not None:
        return regex_rewrite.apply(only) + sep + query
    return path


def _upstream_head(request: RequestHead, route: Route, action: ForwardAction,
                   entry_host_rewrite: str, suppress_envoy_headers: bool) -> RequestHead:
    path = _rewrite_path(request.path, route, action.prefix_rewrite, action.regex_rewrite)
    headers = request.headers.copy()
    if path != request.path and not suppress_envoy_headers:
        headers.set("x-envoy-original-path", request.path)
    authority = entry_host_rewrite or action.host_rewrite_literal or request.authority
    if action.host_rewrite_header:
        authority = request.headers.get(action.host_rewrite_header) or authority
    if authority != request.authority and not suppress_envoy_headers:
        headers.set("x-envoy-original-host", request.authority)
    return RequestHead(method=request.method, path=path, authority=authority,
                       scheme=request.scheme, headers=headers, protocol=request.protocol,
                       upgrade=request.upgrade)


def _redirect(action: RedirectAction, request: RequestHead, route: Route) -> LocalReply:
    scheme = action.scheme or request.scheme
    authority = request.authority
    host, port = authority, ""
    if ":" in authority and not authority.endswith("]"):
        host, _, port = authority.rpartition(":")
    if action.host:
        host = action.host
    if action.port:
        port = str(action.port)
    # Envoy drops a port that is the default of the old or the new scheme.
    if port in ("80", "443") and (scheme != request.scheme or
                                  (scheme, port) in (("http", "80"), ("https", "443"))):
        port = ""
    path, _, query = request.path.partition("?")
    if action.path:
        path, _, new_query = action.path.partition("?")
        query = new_query if "?" in action.path else query
    else:
        path = _rewrite_path(path, route, action.prefix_rewrite, action.regex_rewrite)
    if action.strip_query:
        query = ""
    location = f"{scheme}://{host}{':' + port if port else ''}{path}{'?' + query if query else ''}"
    # Envoy's router sends redirects as direct responses (details direct_response).
    return LocalReply(action.response_code, headers=Headers([("location", location)]),
                      details="direct_response")
