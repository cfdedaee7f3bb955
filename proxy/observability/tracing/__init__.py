"""Tracing: HttpConnectionManager.tracing -> Tracer (server/client spans), W3C and B3 headers."""
