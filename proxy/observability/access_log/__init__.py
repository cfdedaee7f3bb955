"""Envoy access logs: format strings, JSON formats, and the file/stdout/OTLP sinks."""
