"""UpstreamStream bookkeeping shared by the pools: what an abandoned exchange gives back."""

from __future__ import annotations

from proxy.codec.events import DataReceived, ResponseReceived, StreamEnded
from proxy.codec.headers import Headers, ResponseHead
from proxy.upstream.host import Host
from proxy.upstream.pools.base import UpstreamStream


class RecordingStream(UpstreamStream):
    def __init__(self) -> None:
        super().__init__(Host("127.0.0.1", 1))
        self.credited: list[int] = []

    def consumed(self, event: DataReceived) -> None:
        self.credited.append(event.flow_controlled_length)


def test_return_unread_credits_every_queued_data_event() -> None:
    stream = RecordingStream()
    stream.deliver(ResponseReceived(1, ResponseHead(200, Headers()), False))
    stream.deliver(DataReceived(1, b"x" * 10, False, 10))
    stream.deliver(DataReceived(1, b"y" * 5, False, 7))
    stream.deliver(StreamEnded(1))
    stream.return_unread()
    assert stream.credited == [10, 7]
    assert stream.next_event_nowait() is None
