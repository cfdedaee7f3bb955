"""Request mirroring: RouteAction.request_mirror_policies, as Envoy 1.40's router sends
"shadow" requests (router.cc with streaming shadows, on since 1.33; shadow_writer_impl.cc;
the async client's AsyncStreamImpl).

For each policy of the route (else of its virtual host, else of the route configuration) the
request is mirrored with the policy's probability (`runtime_fraction`, 100% when unset), unless
it is a CONNECT. The shadow starts when the main request gets its first upstream host (none
when the route's cluster is missing or has no healthy host, as in Envoy); it goes to `cluster`,
or to the cluster the request's `cluster_header` names (none when absent or unknown). It
carries the headers the main request was sent with (route mutations,
x-envoy-expected-rq-timeout-ms; not the per-attempt ones), with:
- the authority `host_rewrite_literal`, or else `-shadow` appended to the host (before the
  port; not with `disable_shadow_host_suffix_append`);
- `x-envoy-internal: true` and this machine's address appended to x-forwarded-for, as
  Envoy's async client adds them (`send_internal`, `send_xff`);
- the trace context of a "mirror" child span when the request is traced (sampled as
  `trace_sampled` says, else as the request).
Its body streams alongside the main request's, chunk by chunk, through a buffer bounded like
the retry buffer: a shadow that cannot keep up holds the downstream back (Envoy hands the
shadow stream the router's watermark callbacks). When the main request ends before its body
did, shadows that have not had the whole body are cancelled (Envoy's onDestroy), after taking
what had already arrived. The answer is read and dropped; the route's timeout applies from
the end of the shadow's request. The cluster counts it like any request
(upstream_rq_total, upstream_rq_<code>); nothing of it reaches the downstream or its log.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from proxy.codec.events import DataReceived, ResponseReceived, StreamEnded, StreamReset
from proxy.codec.headers import Headers, RequestHead
from proxy.http import upstream_reset
from proxy.http.body import BodyChannel, StreamResetError
from proxy.http.filter import HttpStream
from proxy.http.request_headers import local_interface_address
from proxy.model.route import MirrorPolicy
from proxy.tasks import TaskSet
from proxy.upstream.lb.base import LbContext
from proxy.upstream.pools import ConnectFailedError, PoolManager, PoolOverflowError
from proxy.upstream.pools.base import UpstreamStream

log = logging.getLogger(__name__)

_NO_PREFERENCE = LbContext()


def shadow_authority(authority: str, policy: MirrorPolicy) -> str:
    """The shadow's authority (shadow_writer_impl.cc shadowAppendedHost): "-shadow" goes
    before the port, after an IPv6 literal's bracket."""
    if policy.host_rewrite_literal:
        return policy.host_rewrite_literal
    if policy.disable_shadow_host_suffix_append:
        return authority
    colon = authority.rfind(":")
    if colon == -1 or authority.endswith("]") or (
            authority.startswith("[") and colon < authority.rfind("]")):
        return f"{authority}-shadow"
    return f"{authority[:colon]}-shadow{authority[colon:]}"


def _append_xff(headers: Headers, address: str) -> None:
    """Envoy's Utility::appendXff: ",address" on the existing header, else a new one."""
    existing = headers.joined("x-forwarded-for")
    headers.set("x-forwarded-for", f"{existing},{address}" if existing else address)


class ShadowStream:
    """One mirrored request: its own task (owned by the ShadowWriter's TaskSet) sends what the
    router feeds into `body` and drops the answer."""

    __slots__ = ("_drained", "body", "task")

    def __init__(self, limit: int) -> None:
        self._drained = asyncio.Event()
        self._drained.set()
        self.body = BodyChannel(high_watermark=limit, on_pressure=self._pressure)
        self.task: asyncio.Task[None] | None = None

    def _pressure(self, on: bool) -> None:
        if on:
            self._drained.clear()
        else:
            self._drained.set()

    async def drained(self) -> None:
        await self._drained.wait()

    @property
    def complete(self) -> bool:
        """It has the whole request (so it outlives the main one)."""
        return self.body.ended

    def cancel(self) -> None:
        self.body.abort()
        self._drained.set()
        if self.task is not None and not self.task.done():
            self.task.cancel()


class Shadows:
    """The shadows of one request, fed its body by the router's body pump."""

    __slots__ = ("streams",)

    def __init__(self, streams: list[ShadowStream]) -> None:
        self.streams = streams

    async def feed(self, data: bytes) -> None:
        for shadow in self.streams:
            shadow.body.push(data)
        for shadow in self.streams:
            await shadow.drained()  # a shadow over its buffer holds the downstream back

    def end(self, trailers: Headers | None) -> None:
        for shadow in self.streams:
            shadow.body.end(trailers)

    def finish(self, downstream_body: BodyChannel) -> None:
        """The main request is over. Shadows still without their whole body take what has
        arrived; those it does not complete are cancelled (Envoy's onDestroy)."""
        if all(shadow.complete for shadow in self.streams):
            return
        while (data := downstream_body.read_nowait()) is not None:
            for shadow in self.streams:
                shadow.body.push(data)
        for shadow in self.streams:
            if shadow.complete:
                continue
            if downstream_body.exhausted:
                shadow.body.end(downstream_body.trailers)
            else:
                shadow.cancel()


class ShadowWriter:
    """Starts the shadows of requests (one per router, so per HCM); their tasks are its own."""

    def __init__(self, cluster_manager: Any, pools: PoolManager, *,
                 rng: random.Random | None = None, suppress_envoy_headers: bool = False,
                 local_address: Callable[[], str] = local_interface_address) -> None:
        self.cluster_manager = cluster_manager
        self.pools = pools
        self.rng = rng or random.Random()
        self.suppress_envoy_headers = suppress_envoy_headers
        self.local_address = local_address
        self.tasks = TaskSet("shadow requests")

    def active_policies(self, policies: tuple[MirrorPolicy, ...],
                        head: RequestHead) -> list[MirrorPolicy]:
        """The policies this request is mirrored by (Envoy's shouldShadow: random %
        denominator < numerator; never a CONNECT)."""
        if not policies or head.method == "CONNECT":
            return []
        return [policy for policy in policies
                if policy.numerator >= policy.denominator
                or self.rng.randrange(policy.denominator) < policy.numerator]

    def start(self, stream: HttpStream, policies: list[MirrorPolicy], head: RequestHead,
              timeout: float | None, limit: int, end_stream: bool) -> Shadows | None:
        streams = []
        for policy in policies:
            cluster = policy.cluster or stream.request.headers.get(policy.cluster_header) or ""
            runtime = self.cluster_manager.get(cluster) if cluster else None
            if runtime is None:
                log.debug("shadow cluster %r does not exist", cluster)
                continue
            shadow = ShadowStream(max(limit, 1))
            if end_stream:
                shadow.body.end()
            server_span = stream.state.get("span")
            span = server_span.start_mirror_span(cluster=cluster, sampled=policy.trace_sampled) \
                if server_span is not None else None
            shadow_head = self._head(policy, head, timeout, span)
            shadow.task = self.tasks.spawn(
                self._traced(shadow, runtime, shadow_head, timeout, span), name=f"to {cluster}")
            streams.append(shadow)
        return Shadows(streams) if streams else None

    def _head(self, policy: MirrorPolicy, head: RequestHead, timeout: float | None,
              span: Any) -> RequestHead:
        headers = head.headers.copy()
        if timeout and not self.suppress_envoy_headers:
            # The async client's router: its timeout is the route's global one.
            headers.set("x-envoy-expected-rq-timeout-ms", str(int(timeout * 1000)))
        headers.set("x-envoy-internal", "true")
        _append_xff(headers, self.local_address())
        if span is not None:
            for name, value in span.inject_headers():
                headers.set(name, value)
        return replace(head, authority=shadow_authority(head.authority, policy),
                       headers=headers)

    async def _traced(self, shadow: ShadowStream, runtime: Any, head: RequestHead,
                      route_timeout: float | None, span: Any) -> None:
        started = time.monotonic()
        status: int | None = None
        try:
            status = await self._run(shadow, runtime, head, route_timeout, span)
        finally:
            if span is not None:
                span.finish(status_code=status, duration=time.monotonic() - started)

    async def _run(self, shadow: ShadowStream, runtime: Any, head: RequestHead,
                   route_timeout: float | None, span: Any) -> int | None:
        """The shadow exchange; the status its answer had, or the one charged for it."""
        host = runtime.choose_host(_NO_PREFERENCE)
        if host is None:
            runtime.charge_code(503)  # the async client's router: no healthy upstream
            return 503
        if span is not None:
            span.set_attribute("upstream_address", host.address_text)
        try:
            upstream = self.pools.try_new_stream(runtime, host) \
                or await self.pools.new_stream(runtime, host)
        except (ConnectFailedError, PoolOverflowError):
            runtime.charge_code(503)  # as the router charges a failed attempt
            return 503
        runtime.request_started(host)
        answered: int | None = None
        charged: int | None = None
        try:
            answered = await _exchange(shadow, upstream, head, route_timeout)
        except TimeoutError:
            _count(runtime, "upstream_rq_timeout")
            charged = 504  # Envoy onResponseTimeout, the answer still awaited
        except _ShadowReset as reset:
            charged = reset.status
        except StreamResetError:
            pass  # the main request ended before the shadow had its whole body
        finally:
            if not upstream.finished:
                upstream.reset()
            if answered is not None:
                runtime.request_finished(host, http_status=answered)
            else:  # no answer: the router's rule for a failed attempt
                runtime.request_finished(host, http_status=503, charge_code=False)
                if charged is not None:
                    runtime.charge_code(charged)
        return answered or charged


class _ShadowReset(Exception):
    """The shadow's upstream reset before answering: the status the router would charge."""

    def __init__(self, status: int) -> None:
        super().__init__(status)
        self.status = status


async def _exchange(shadow: ShadowStream, upstream: UpstreamStream, head: RequestHead,
                    route_timeout: float | None) -> int:
    """Send the request as its body arrives, then read and drop the answer within the route
    timeout, counted from the end of the request; the answer's status."""
    body = shadow.body
    end_stream = body.exhausted and body.trailers is None
    if not upstream.send_head_nowait(head, end_stream=end_stream):
        await upstream.send_head(head, end_stream=end_stream)
    if not end_stream:
        while (data := await body.read()) is not None:
            await upstream.send_data(data, end_stream=False)
        if body.trailers is not None:
            await upstream.send_trailers(body.trailers)
        else:
            await upstream.send_data(b"", end_stream=True)
    async with asyncio.timeout(route_timeout):
        return await _drop_answer(upstream)


async def _drop_answer(upstream: UpstreamStream) -> int:
    status = 0
    while True:
        event = upstream.next_event_nowait() or await upstream.next_event()
        if type(event) is ResponseReceived:
            status = event.head.status
            if event.end_stream:
                break
        elif isinstance(event, DataReceived):
            upstream.consumed(event)
        elif isinstance(event, StreamEnded):
            break
        elif isinstance(event, StreamReset):
            if status:
                return status  # cut off after its head: charged as answered, as Envoy does
            raise _ShadowReset(upstream_reset.status_of(upstream_reset.reason_of(event)))
    upstream.release()
    return status


def _count(runtime: Any, name: str) -> None:
    stats = getattr(runtime, "stats", None)
    if stats is not None:
        stats.counter(getattr(runtime, "prefix", "") + name).inc()
