"""Observability for the sidecar and the control plane: the only package importing OpenTelemetry.

- `request_info`: the record the data path fills in per request (the narrow hook).
- `access_log`: Envoy format strings / JSON formats, file, stdout and OTLP sinks.
- `tracing`: HttpConnectionManager.tracing -> a Tracer with server/client spans, W3C and B3.
- `metrics`: OpenTelemetry metrics (request duration histograms, connections, bytes, ...).
- `prometheus`: Prometheus text exposition of `proxy.stats.Stats` (admin /stats/prometheus).
- `controlplane`: tracing/metrics around an xDS push.
"""
