"""`envoy.filters.http.router`: forwards a routed request upstream (Envoy `router.cc`).

Per request: execute direct_response/redirect locally; otherwise plan the request
(proxy.http.forward_plan: cluster, rewrites, header mutations, timeouts, hash key, mirrors),
then run attempts, each an `UpstreamRequest` (proxy.http.upstream_request) on a host the
cluster picks (excluding tried hosts when the retry policy says so). What follows an attempt
is the retry policy's decision (proxy.http.retry: retry after a back-off, answer locally, or
the response went downstream); the body is kept for replay while it fits the retry buffer and
retries hold the cluster's max_retries budget (proxy.http.replay). The route timeout bounds
the whole exchange, `per_try_timeout` each attempt. Local failures answer with Envoy's texts
and response flags: UH (no healthy upstream), UF (connect failure), UO (overflow), UC/UR
(reset), UT (timeout), URX (retries exhausted), NC (no cluster). Mirror policies start their
shadow requests with the first attempt and are fed the body as the attempt reads it
(`proxy.http.shadow`).
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable
from typing import Any, Protocol

from proxy.codec.headers import Headers
from proxy.http.deadline import Deadline
from proxy.http.filter import HttpStream, LocalReply
from proxy.http.forward_plan import ForwardPlan, Planner
from proxy.http.local_reply import GRPC_DEADLINE_EXCEEDED
from proxy.http.redirect import redirect_reply
from proxy.http.replay import BodyReplay, RetryBudget, count
from proxy.http.retry import (
    DONE,
    Answer,
    Done,
    Responded,
    Retry,
    RetryState,
    retriable_header,
)
from proxy.http.shadow import Shadows, ShadowWriter
from proxy.http.upstream_request import (
    AttemptFailed,
    Downstream,
    UpstreamRequest,
    pool_failure,
)
from proxy.model.route import (
    DirectResponseAction,
    ForwardAction,
    RedirectAction,
    RouteConfig,
    request_buffer_limit,
)
from proxy.upstream.lb.base import LbContext
from proxy.upstream.pools import ConnectFailedError, PoolManager, PoolOverflowError

_NO_PREFERENCE = LbContext()  # no hash key, no excluded host (never mutated)
_NO_RETRIES = RetryState(None)
_NO_BUDGET = RetryBudget(None)  # without a retry policy nothing is ever acquired

BUFFER_LIMIT_TEXT = "exceeded request buffer limit while retrying upstream"
# Envoy: the body outgrew the retry buffer with no attempt in flight.
_BUFFER_LIMIT_REPLY = LocalReply(507, BUFFER_LIMIT_TEXT,
                                 details="request_payload_exceeded_retry_buffer_limit")


class RouterDownstream(Downstream, Protocol):
    """What the router needs of the stream it serves, beyond writing to it."""

    def deadline(self, seconds: float, *, started: bool = True) -> Deadline:
        """A deadline on the stream's task (the route timeout), running now or from start()."""
        ...


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
        self.planner = Planner(cluster_manager, self.rng, suppress_envoy_headers,
                               self.shadow_writer)

    def handle(self, stream: HttpStream, config: RouteConfig | None,
               downstream: RouterDownstream) -> Awaitable[None]:
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
        return downstream.send_local_reply(redirect_reply(action, stream.request, route))

    # --- the exchange, within the route timeout -----------------------------------------------

    async def _forward(self, stream: HttpStream, config: RouteConfig, action: ForwardAction,
                       downstream: RouterDownstream) -> None:
        plan = self.planner.plan(stream, config, action)
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
            await self._timed_out(stream, plan, downstream)
        finally:
            if deadline is not None:
                deadline.disarm()

    async def _timed_out(self, stream: HttpStream, plan: ForwardPlan,
                         downstream: Downstream) -> None:
        """The route timeout (Envoy onResponseTimeout): 504, or a reset once answering."""
        stream.set_flag("UT")
        count(plan.runtime, "upstream_rq_timeout")
        if downstream.head_sent:
            downstream.reset()
            return
        plan.runtime.charge_code(504)
        await downstream.send_local_reply(LocalReply(
            504, "upstream request timeout", details="response_timeout",
            grpc_status=GRPC_DEADLINE_EXCEEDED))

    # --- attempts ------------------------------------------------------------------------------

    async def _attempts(self, stream: HttpStream, plan: ForwardPlan,
                        downstream: Downstream) -> None:
        retries, replay, budget = self._retry_state(stream, plan, downstream)
        tried: list[Any] = []
        try:
            while True:
                host = self._choose_host(plan, tried)
                if host is None:
                    stream.set_flag("UH")
                    await downstream.send_local_reply(LocalReply(
                        503, "no healthy upstream", details="no_healthy_upstream"))
                    return
                if plan.mirrors and not tried:  # with the first upstream request, as Envoy
                    replay.shadows = self._start_shadows(stream, plan, downstream)
                _attempt_started(stream, host, tried)
                decision: Retry | Answer | Done
                try:
                    decision = await self._attempt(stream, plan, host, replay, retries,
                                                   budget, downstream)
                except AttemptFailed as failed:
                    decision = retries.after_failure(failed.outcome,
                                                     replayable=replay.replayable, budget=budget)
                    if type(decision) is Answer:
                        await self._answer_failure(stream, plan, failed, decision, downstream)
                        return
                if type(decision) is not Retry:
                    return  # the response went downstream
                count(plan.runtime, "upstream_rq_retry")
                if not await replay.buffer_during(decision.backoff, stream):
                    await downstream.send_local_reply(_BUFFER_LIMIT_REPLY)
                    return
        finally:
            if budget.holding:
                budget.release()
            if replay.shadows is not None:
                replay.shadows.finish(downstream.body)

    def _retry_state(self, stream: HttpStream, plan: ForwardPlan,
                     downstream: Downstream) -> tuple[RetryState, BodyReplay, RetryBudget]:
        policy = plan.retry_policy
        # Without a policy the state is never changed: one shared instance serves.
        retries = RetryState(policy, self.rng) if policy else _NO_RETRIES
        replay = BodyReplay(downstream.body, retries,
                            _retry_buffer_limit(stream, downstream) if policy else 0,
                            plan.runtime, plan.route_timer)
        return retries, replay, RetryBudget(plan.runtime) if policy else _NO_BUDGET

    def _choose_host(self, plan: ForwardPlan, tried: list[Any]) -> Any:
        policy = plan.retry_policy
        excluded = tried if policy is not None and policy.avoid_previous_hosts else ()
        if plan.hash_key is None and not excluded:
            return plan.runtime.choose_host(_NO_PREFERENCE)
        return plan.runtime.choose_host(LbContext(
            hash_key=plan.hash_key, excluded=excluded,
            host_selection_retry_max_attempts=(
                policy.host_selection_retry_max_attempts if policy is not None else 1)))

    async def _attempt(self, stream: HttpStream, plan: ForwardPlan, host: Any,
                       replay: BodyReplay, retries: RetryState, budget: RetryBudget,
                       downstream: Downstream) -> Retry | Done:
        """One try on `host`: its decision once the response head came (and, unless retried,
        went downstream with its body); AttemptFailed without a head. The pool applies the
        max_pending_requests, max_connections and max_requests circuit breakers (Envoy's
        conn_pool_base.cc); overflow fails the attempt UO."""
        try:
            upstream = self.pools.try_new_stream(plan.runtime, host) \
                or await self.pools.new_stream(plan.runtime, host)
        except (ConnectFailedError, PoolOverflowError) as error:
            raise pool_failure(error, stream) from error
        request = UpstreamRequest(stream, plan, host, upstream)
        try:
            await request.send(downstream.body, replay)
            response = await request.response_head(plan.per_try_timeout)
            decision = DONE if retries.policy is None else retries.after_response(
                Responded(response.head.status, _grpc_status(response.head.headers),
                          retriable_header(retries.policy, response.head)),
                replayable=replay.replayable, budget=budget)
            if isinstance(decision, Retry):
                request.retried(response.head.status)
                return decision
            for flag in decision.flags:
                stream.set_flag(flag)
            await request.forward(response, downstream)
            return decision
        except BaseException as error:
            request.abandon(error)
            raise
        finally:
            await request.finish(self.observability)

    async def _answer_failure(self, stream: HttpStream, plan: ForwardPlan,
                              failed: AttemptFailed, decision: Answer,
                              downstream: Downstream) -> None:
        """A failed attempt no retry follows. Envoy sets flags for the attempt that is
        answered, not for retried ones (onUpstreamAbort), and charges the code of the local
        reply for the cluster once (chargeUpstreamAbort / onPerTryTimeoutCommon; also when no
        request reached the host); a retried failure counts nothing."""
        for flag in decision.flags:
            stream.set_flag(flag)
        plan.runtime.charge_code(failed.status)
        headers = Headers()
        if failed.failure == "overflow" and not self.suppress_envoy_headers:
            # Envoy router.cc onUpstreamAbort: a request dropped by a circuit breaker says so
            # (x-envoy-overloaded, router filter docs).
            headers.set("x-envoy-overloaded", "true")
        await downstream.send_local_reply(failed.reply(
            headers, retried=stream.attempt_count > 1,
            informational=stream.informational_received))

    def _start_shadows(self, stream: HttpStream, plan: ForwardPlan,
                       downstream: Downstream) -> Shadows | None:
        assert plan.mirrors
        body = downstream.body
        return self.shadow_writer.start(
            stream, plan.mirrors, plan.head, plan.timeout,
            _retry_buffer_limit(stream, downstream),
            end_stream=body.exhausted and body.trailers is None)


def _attempt_started(stream: HttpStream, host: Any, tried: list[Any]) -> None:
    tried.append(host)
    stream.attempt_count += 1
    stream.upstream_host = host.address_text
    stream.upstream_address = host.address_port


def _retry_buffer_limit(stream: HttpStream, downstream: Downstream) -> int:
    """How much request body may be kept for retries: the route's, else the virtual host's
    per_request_buffer_limit_bytes, else the stream's buffer limit, which is the listener's
    per_connection_buffer_limit_bytes (1 MiB by default) (route_components.proto,
    listener.proto; Envoy router.cc `retry_shadow_buffer_limit_`)."""
    limit = request_buffer_limit(stream.route, stream.virtual_host)
    return int(downstream.body.high_watermark) if limit is None else limit


def _grpc_status(headers: Headers) -> int | None:
    value = headers.get("grpc-status")
    return int(value) if value is not None and value.isdigit() else None
