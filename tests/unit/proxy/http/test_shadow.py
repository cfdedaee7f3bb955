"""Mirroring pieces without sockets: the shadow authority, which policies fire, and how a
shadow's body follows the request's (back-pressure, the end, cancellation)."""

from __future__ import annotations

import asyncio
import random

import pytest

from proxy.codec.headers import Headers
from proxy.http.body import BodyChannel
from proxy.http.shadow import Shadows, ShadowStream, ShadowWriter, shadow_authority
from proxy.model.route import MirrorPolicy
from tests.unit.proxy.http.routes import request


@pytest.mark.parametrize(("authority", "policy", "expected"), [
    ("app.test", MirrorPolicy(cluster="m"), "app.test-shadow"),
    ("app.test:8080", MirrorPolicy(cluster="m"), "app.test-shadow:8080"),
    ("[::1]:99", MirrorPolicy(cluster="m"), "[::1]-shadow:99"),
    ("[::1]", MirrorPolicy(cluster="m"), "[::1]-shadow"),
    ("app.test:8080", MirrorPolicy(cluster="m", disable_shadow_host_suffix_append=True),
     "app.test:8080"),
    ("app.test", MirrorPolicy(cluster="m", host_rewrite_literal="x.test"), "x.test"),
])
def test_shadow_authority(authority: str, policy: MirrorPolicy, expected: str) -> None:
    assert shadow_authority(authority, policy) == expected


def test_policies_fire_with_their_fraction_and_never_for_connect() -> None:
    writer = ShadowWriter(None, None, rng=random.Random(7))  # type: ignore[arg-type]
    always, never = MirrorPolicy(cluster="a"), MirrorPolicy(cluster="b", numerator=0)
    quarter = MirrorPolicy(cluster="c", numerator=25)
    assert writer.active_policies((always, never), request()) == [always]
    assert writer.active_policies((always,), request(method="CONNECT")) == []
    fired = sum(bool(writer.active_policies((quarter,), request())) for _ in range(4000))
    assert 800 < fired < 1200


async def test_a_full_shadow_holds_the_request_body_back() -> None:
    shadow = ShadowStream(limit=10)
    shadows = Shadows([shadow])
    await shadows.feed(b"12345")  # under the limit: no wait
    feeding = asyncio.ensure_future(shadows.feed(b"x" * 20))
    await asyncio.sleep(0.01)
    assert not feeding.done()  # over the limit until the shadow's sender takes it
    assert await shadow.body.read() == b"12345"
    assert await shadow.body.read() == b"x" * 20
    await asyncio.wait_for(feeding, 1)


async def test_finish_completes_shadows_from_what_arrived_or_cancels_them() -> None:
    downstream = BodyChannel()
    downstream.push(b"abc")
    downstream.end(Headers([("grpc-status", "0")]))
    complete = ShadowStream(limit=100)
    Shadows([complete]).finish(downstream)
    assert complete.complete and await complete.body.read() == b"abc"
    assert await complete.body.read() is None and complete.body.trailers is not None

    partial = BodyChannel()
    partial.push(b"only part")
    cut = ShadowStream(limit=100)
    cut.task = asyncio.ensure_future(asyncio.sleep(10))
    Shadows([cut]).finish(partial)
    await asyncio.sleep(0)
    assert cut.task.cancelled() and cut.body.reset
