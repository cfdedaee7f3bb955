"""The hand-written OTLP encoder decodes with the generated opentelemetry-proto classes."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from proxy.observability.tracing.otlp import (
    SpanRecord,
    encode_request,
    encode_resource,
    encode_scope,
)

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
