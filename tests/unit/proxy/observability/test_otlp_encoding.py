"""The hand-written OTLP encoder decodes with the generated opentelemetry-proto classes."""

from __future__ import annotations

from google.protobuf.internal.encoder import _VarintBytes
from hypothesis import given
from hypothesis import strategies as st
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.trace.v1.trace_pb2 import ScopeSpans, Span

from proxy.observability.request_info import HeaderMap, RequestInfo
from proxy.observability.tracing.otlp import (
    SpanRecord,
    encode_request,
    encode_resource,
    encode_scope,
    varint,
)
from proxy.observability.tracing.span_encoder import ServerSpanEncoder, request_shape

values = st.one_of(st.text(max_size=40), st.booleans(),
                   st.integers(min_value=-(2**63), max_value=2**63 - 1),
                   st.floats(allow_nan=False))


@given(attributes=st.dictionaries(st.text(min_size=1, max_size=20), values, max_size=8),
       name=st.text(max_size=30), trace_id=st.integers(1, 2**128 - 1),
       span_id=st.integers(1, 2**64 - 1), parent=st.integers(0, 2**64 - 1),
       start=st.integers(0, 2**63), error=st.booleans(), tracestate=st.text(max_size=20))
def test_round_trip(attributes: dict[str, object], name: str, trace_id: int, span_id: int,
                    parent: int, start: int, error: bool, tracestate: str) -> None:
    record = SpanRecord(trace_id, span_id, parent, name, 3, start, start + 5,
                        attributes=attributes, error=error, tracestate=tracestate)  # type: ignore[arg-type]
    request = ExportTraceServiceRequest.FromString(encode_request(
        encode_resource([("service.name", "svc")]), encode_scope("pointsman", "1"), [record]))
    [resource_spans] = request.resource_spans
    assert resource_spans.resource.attributes[0].value.string_value == "svc"
    [scope_spans] = resource_spans.scope_spans
    assert (scope_spans.scope.name, scope_spans.scope.version) == ("pointsman", "1")
    [span] = scope_spans.spans
    assert int.from_bytes(span.trace_id, "big") == trace_id
    assert int.from_bytes(span.span_id, "big") == span_id
    assert span.parent_span_id == (parent.to_bytes(8, "big") if parent else b"")
    assert (span.name, span.kind, span.trace_state) == (name, 3, tracestate)
    assert (span.start_time_unix_nano, span.end_time_unix_nano) == (start, start + 5)
    assert span.status.code == (2 if error else 0)
    decoded = {kv.key: getattr(kv.value, kv.value.WhichOneof("value")) for kv in span.attributes}
    assert decoded == attributes


texts = st.text(max_size=30)


@given(trace_id=st.integers(1, 2**128 - 1), span_id=st.integers(1, 2**64 - 1),
       parent=st.integers(0, 2**64 - 1), tracestate=texts, name=texts,
       start=st.integers(0, 2**62), duration=st.integers(0, 2**30),
       method=texts, path=texts, authority=texts, protocol=st.sampled_from(
           ["HTTP/1.0", "HTTP/1.1", "HTTP/2", "x"]),
       code=st.one_of(st.none(), st.integers(100, 599)),
       flags=st.lists(st.sampled_from(["UF", "URX", "NR"]), max_size=2).map(tuple),
       route=texts, cluster=texts, upstream=texts,
       client=st.one_of(st.none(), st.tuples(texts, st.integers(0, 65535))),
       sizes=st.tuples(st.integers(0, 2**40), st.integers(0, 2**40)),
       headers=st.dictionaries(st.sampled_from(["user-agent", "x-request-id", "x-tenant"]),
                               st.text(min_size=1, max_size=40)))
def test_server_span_encoder_round_trip(trace_id: int, span_id: int, parent: int,
                                        tracestate: str, name: str, start: int, duration: int,
                                        method: str, path: str, authority: str, protocol: str,
                                        code: int | None, flags: tuple[str, ...], route: str,
                                        cluster: str, upstream: str,
                                        client: tuple[str, int] | None,
                                        sizes: tuple[int, int], headers: dict[str, str]) -> None:
    """The hand-built SERVER span bytes, decoded by the official opentelemetry-proto Span."""
    info = RequestInfo(start_time=0, method=method, path=path, authority=authority,
                       protocol=protocol, response_code=code, response_flags=flags,
                       route_name=route, upstream_cluster=cluster, upstream_host=upstream,
                       downstream_remote_address=client, bytes_received=sizes[0],
                       bytes_sent=sizes[1], request_headers=HeaderMap(headers.items()))
    encoder = ServerSpanEncoder(16, [("team", "mesh")])
    header_tags = [("tenant", headers["x-tenant"])] if "x-tenant" in headers else []
    for _ in range(2):  # the second time from the caches
        ids = trace_id.to_bytes(16, "big") + span_id.to_bytes(8, "big")
        span = Span.FromString(encoder.encode(ids, parent, tracestate, name, start,
                                              start + duration, info, header_tags))
        as_field = encoder.encode_field(ids, parent, tracestate, name, start, start + duration,
                                        info, header_tags)
        assert list(ScopeSpans.FromString(as_field).spans) == [span]
        if not header_tags:  # the HCM's span-only path: same bytes from the request's shape
            shaped = encoder.encode_shaped_field(ids, parent, tracestate, name, start,
                                                 start + duration, request_shape(info),
                                                 lambda: info, info.request_headers)
            assert shaped == as_field
        assert int.from_bytes(span.trace_id, "big") == trace_id
        assert int.from_bytes(span.span_id, "big") == span_id
        assert span.parent_span_id == (parent.to_bytes(8, "big") if parent else b"")
        assert (span.name, span.kind, span.trace_state) == (name, 2, tracestate)
        assert (span.start_time_unix_nano, span.end_time_unix_nano) == (start, start + duration)
        error = code is None or code >= 500
        assert span.status.code == (2 if error else 0) and span.flags == 1
        attributes = {kv.key: getattr(kv.value, kv.value.WhichOneof("value"))
                      for kv in span.attributes}
        assert len(attributes) == len(span.attributes)  # no key twice
        just_path, _, query = path.partition("?")
        expected: dict[str, object] = {
            "http.request.method": method or "_OTHER", "url.path": just_path[:16],
            "url.scheme": "http", "server.address": authority, "network.protocol.name": "http",
            "network.protocol.version": {"HTTP/1.0": "1.0", "HTTP/1.1": "1.1",
                                         "HTTP/2": "2"}.get(protocol, protocol),
            "component": "proxy", "response_flags": ",".join(flags) or "-",
            "http.request.body.size": sizes[0], "http.response.body.size": sizes[1],
            "team": "mesh"}
        optional = {"url.query": query, "http.route": route, "upstream_cluster": cluster,
                    "upstream_address": upstream, "user_agent.original": headers.get("user-agent"),
                    "guid:x-request-id": headers.get("x-request-id"),
                    "tenant": headers.get("x-tenant")}
        expected.update({key: value for key, value in optional.items() if value})
        if code is not None:
            expected["http.response.status_code"] = code
        if client is not None:
            expected["client.address"], expected["client.port"] = client
        if error:
            expected["error.type"] = str(code or "no_response")
        assert attributes == expected


@given(value=st.one_of(st.integers(0, 2**16), st.integers(0, 2**64 - 1)))
def test_varint_matches_protobufs_own_encoder(value: int) -> None:
    assert varint(value) == _VarintBytes(value)
