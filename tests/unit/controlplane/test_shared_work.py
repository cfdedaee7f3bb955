"""Work done once for many streams (issue 18, fan-out): the encoded SotW response of equal
views, the parse of identical requests and the name sets they carry. Counted, not timed."""

from __future__ import annotations

from envoy.service.discovery.v3 import discovery_pb2

import controlplane.protocol.requests as requests_module
from controlplane.cache import ResourceCache
from controlplane.observe import Observer
from controlplane.protocol.events import Push
from controlplane.protocol.requests import RequestParser, requested_names
from controlplane.protocol.sotw import SotwStream
from controlplane.server import DiscoveryServer
from protos.loader import parse_any_resource
from protos.registry import CLUSTER, CLUSTER_LOAD_ASSIGNMENT
from tests.unit.controlplane.builders import cluster, endpoints, request

STREAMS = 40
NAMES = tuple(f"svc-{index}" for index in range(30))


def shared_cache() -> ResourceCache:
    cache = ResourceCache()
    cache.put_resources(CLUSTER, {name: parse_any_resource(cluster(name)) for name in NAMES})
    cache.put_resources(CLUSTER_LOAD_ASSIGNMENT, {
        name: parse_any_resource(endpoints(name, 8000 + index))
        for index, name in enumerate(NAMES)})
    return cache


def grouped_cache() -> ResourceCache:
    """Every node its own view: one own cluster on top of the shared ones."""
    cache = shared_cache()
    with cache.transaction():
        for index in range(STREAMS):
            cache.set_view(f"node-{index}", own={CLUSTER: {
                "inbound": parse_any_resource(cluster("inbound", f"{index + 1}s"))}})
    return cache


def wire(message: discovery_pb2.DiscoveryRequest) -> bytes:
    return message.SerializeToString()


def converge(server: DiscoveryServer, parser: RequestParser) -> list[list[bytes]]:
    """STREAMS streams subscribing CDS then EDS and ACKing both, their requests parsed by
    `parser` from bytes as gRPC hands them over; each stream's response bodies."""
    bodies = []
    for index in range(STREAMS):
        stream = SotwStream(server.cache.snapshot_for)
        sent = []
        first = request(CLUSTER, node_id=f"node-{index}")
        for message in (first, request(CLUSTER_LOAD_ASSIGNMENT, NAMES)):
            for push in [a for a in stream.receive(parser.parse(wire(message)), 0)
                         if isinstance(a, Push)]:
                sent.append(server.encode(push))
                names = NAMES if push.type_url == CLUSTER_LOAD_ASSIGNMENT else ()
                stream.receive(parser.parse(wire(request(
                    push.type_url, names, nonce=push.nonce, version=push.version))), 0)
        bodies.append(sent)
    return bodies


def test_equal_views_send_one_joined_response_object_to_every_stream():
    cache = shared_cache()
    server = DiscoveryServer(cache, Observer(cache))
    bodies = converge(server, RequestParser(discovery_pb2.DiscoveryRequest))
    # Two joins per distinct response (the first sighting is not kept), not one per stream.
    assert server.encoder.joined == 2 * 2
    for position in range(2):
        later = {id(sent[position]) for sent in bodies[1:]}
        assert len(later) == 1
    cds = discovery_pb2.DiscoveryResponse.FromString(bodies[-1][0])
    eds = discovery_pb2.DiscoveryResponse.FromString(bodies[-1][1])
    assert (cds.type_url, cds.nonce, len(cds.resources)) == (CLUSTER, "1", len(NAMES))
    assert (eds.type_url, eds.nonce, len(eds.resources)) == (
        CLUSTER_LOAD_ASSIGNMENT, "2", len(NAMES))
    assert bodies[0] == bodies[-1]


def test_views_of_their_own_keep_no_response_bytes():
    cache = grouped_cache()
    server = DiscoveryServer(cache, Observer(cache))
    bodies = converge(server, RequestParser(discovery_pb2.DiscoveryRequest))
    assert len({sent[0] for sent in bodies}) == STREAMS  # every CDS response differs
    assert server.encoder.memo_held == len(bodies[-1][1])  # only the equal EDS one is kept


def test_identical_requests_are_parsed_once_and_their_names_set_built_once(monkeypatch):
    built = []
    real = requests_module.shared_names

    def counting(names):
        built.append(1)
        return real(names)

    monkeypatch.setattr(requests_module, "shared_names", counting)
    cache = shared_cache()
    server = DiscoveryServer(cache, Observer(cache))
    parser = RequestParser(discovery_pb2.DiscoveryRequest)
    converge(server, parser)
    # Per stream its first request (it names the node); shared: the EDS request and the two
    # ACKs, parsed once for all streams.
    assert parser.parsed == STREAMS + 3
    assert len(built) == STREAMS + 3


def test_a_parsed_request_is_the_same_object_and_is_not_modified_by_a_stream():
    parser = RequestParser(discovery_pb2.DiscoveryRequest)
    data = wire(request(CLUSTER_LOAD_ASSIGNMENT, NAMES))
    first, second = parser.parse(data), parser.parse(bytes(data))
    assert first is second
    assert requested_names(first) is requested_names(second)
    cache = shared_cache()
    for index in range(3):
        stream = SotwStream(cache.snapshot_for)
        stream.receive(parser.parse(wire(request(CLUSTER, node_id=f"n{index}"))), 0)
        stream.receive(first, 0)
        assert stream.subscriptions[CLUSTER_LOAD_ASSIGNMENT].names is requested_names(first)
    assert first.SerializeToString() == data


def test_the_parse_memo_is_bounded():
    parser = RequestParser(discovery_pb2.DiscoveryRequest, limit=4)
    for index in range(10):
        parser.parse(wire(request(CLUSTER, (f"n{index}",))))
    assert len(parser._parsed) == 4
    parser.parse(wire(request(CLUSTER, ("n0",))))
    assert parser.parsed == 11


def test_a_partial_update_is_one_set_and_one_response_for_every_stream_making_the_move():
    cache = shared_cache()
    server = DiscoveryServer(cache, Observer(cache), partial_updates=True)
    parser = RequestParser(discovery_pb2.DiscoveryRequest)
    streams = []
    for index in range(STREAMS):
        stream = SotwStream(cache.snapshot_for, partial_updates=True)
        for message in (request(CLUSTER, node_id=f"node-{index}"),
                        request(CLUSTER_LOAD_ASSIGNMENT, NAMES)):
            for push in [a for a in stream.receive(parser.parse(wire(message)), 0)
                         if isinstance(a, Push)]:
                names = NAMES if push.type_url == CLUSTER_LOAD_ASSIGNMENT else ()
                stream.receive(parser.parse(wire(request(
                    push.type_url, names, nonce=push.nonce, version=push.version))), 0)
        streams.append(stream)
    cache.put_resources(CLUSTER_LOAD_ASSIGNMENT, {
        "svc-3": parse_any_resource(endpoints("svc-3", 9999))})
    joined = server.encoder.joined
    updates = [push for stream in streams for push in stream.snapshot_changed(1)
               if isinstance(push, Push)]
    assert len(updates) == STREAMS
    assert len({id(push.resources) for push in updates}) == 1  # one set for all
    assert [item.name for item in updates[0].resources] == ["svc-3"]
    bodies = [server.encode(push) for push in updates]  # kept: ids stay theirs
    assert server.encoder.joined - joined == 2
    assert len({id(body) for body in bodies}) == 2


def test_the_server_writes_the_shared_response_object():
    """DiscoveryServer.write (what each stream awaits) sends the kept bytes, not a copy."""
    import asyncio

    class Context:
        def __init__(self) -> None:
            self.written: list[bytes] = []

        async def write(self, body: bytes) -> None:
            self.written.append(body)

    cache = shared_cache()
    server = DiscoveryServer(cache, Observer(cache))
    contexts = [Context() for _ in range(4)]

    async def run() -> None:
        for index, context in enumerate(contexts):
            stream = SotwStream(cache.snapshot_for)
            for push in [a for a in stream.receive(request(CLUSTER, node_id=f"n{index}"), 0)
                         if isinstance(a, Push)]:
                await server.write(context, push)  # type: ignore[arg-type]
    asyncio.run(run())
    assert server.encoder.joined == 2
    assert contexts[1].written[0] is contexts[2].written[0] is contexts[3].written[0]
    assert contexts[0].written[0] == contexts[3].written[0]
    assert server.pacer.budget.used == 0  # every write gave its bytes back


def test_equal_delta_responses_are_one_object_too():
    from envoy.config.core.v3 import base_pb2

    from controlplane.protocol.delta import DeltaStream
    from controlplane.protocol.events import DeltaPush

    cache = shared_cache()
    server = DiscoveryServer(cache, Observer(cache))
    bodies = []
    for index in range(STREAMS):
        stream = DeltaStream(cache.snapshot_for)
        first = discovery_pb2.DeltaDiscoveryRequest(
            type_url=CLUSTER, node=base_pb2.Node(id=f"node-{index}"))
        [push] = [a for a in stream.receive(first, 0) if isinstance(a, DeltaPush)]
        bodies.append(server.encode(push))
    assert server.encoder.joined == 2
    assert len({id(body) for body in bodies[1:]}) == 1
    parsed = discovery_pb2.DeltaDiscoveryResponse.FromString(bodies[-1])
    assert (parsed.nonce, len(parsed.resources)) == ("1", len(NAMES))
    assert bodies[0] == bodies[-1]


def test_a_delta_first_sync_is_planned_once_for_every_stream_with_that_scope(monkeypatch):
    """The plan of a first sync (nothing held) depends on the content and the scope alone:
    made once, the same resources tuple for every stream; a stream holding something, or
    asking for another scope, gets its own."""
    from envoy.config.core.v3 import base_pb2

    from controlplane.protocol.delta import DeltaStream
    from controlplane.protocol.events import DeltaPush

    cache = shared_cache()
    made = []
    original = DeltaStream._make_plan

    def counted(self, subscription, typed):  # type: ignore[no-untyped-def]
        made.append(subscription.type_url)
        return original(self, subscription, typed)

    monkeypatch.setattr(DeltaStream, "_make_plan", counted)

    def first_push(index: int, names: tuple[str, ...]) -> DeltaPush:
        stream = DeltaStream(cache.snapshot_for)
        subscribe = discovery_pb2.DeltaDiscoveryRequest(
            type_url=CLUSTER_LOAD_ASSIGNMENT, node=base_pb2.Node(id=f"node-{index}"),
            resource_names_subscribe=names)
        [push] = [a for a in stream.receive(subscribe, 0) if isinstance(a, DeltaPush)]
        return push

    pushes = [first_push(index, NAMES) for index in range(STREAMS)]
    assert made == [CLUSTER_LOAD_ASSIGNMENT]
    assert len({id(push.resources) for push in pushes}) == 1
    assert len(pushes[0].resources) == len(NAMES)
    other = first_push(STREAMS, NAMES[:3])  # another scope: planned for itself
    assert len(made) == 2 and len(other.resources) == 3


def test_known_versions_get_answers_like_a_mapping_without_raising():
    from controlplane.protocol.known import KnownVersions

    cache = shared_cache()
    base = cache.shared(CLUSTER)
    known = KnownVersions()
    assert known.get("svc-1") is None and known.get("svc-1", "x") == "x"
    known.rebase(base)
    resource = base.get("svc-1")
    assert resource is not None and known.get("svc-1") == resource.version
    known["svc-1"] = "v9"
    del known["svc-2"]
    assert known.get("svc-1") == "v9" and known.get("svc-2") is None
    assert known.get("svc-2", "gone") == "gone" and "svc-2" not in known
    assert known.get("nowhere") is None
    assert dict(known.items())["svc-3"] == base.get("svc-3").version  # type: ignore[union-attr]
