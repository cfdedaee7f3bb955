"""AccessLog protos -> configs and the file sink (buffered, written off the caller's thread)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from protos.errors import ConfigError
from protos.loader import parse_message
from proxy.observability.access_log.config import translate_access_logs
from proxy.observability.access_log.format import JsonFormatter, TextFormatter
from proxy.observability.access_log.sinks import AccessLogger, build_sink
from proxy.observability.request_info import RequestInfo
from proxy.stats import Stats

HCM = "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3."


def access_logs(entries: list[dict[str, Any]]) -> Any:
    from envoy.extensions.filters.network.http_connection_manager.v3 import (
        http_connection_manager_pb2 as hcm,
    )
    message = parse_message({"stat_prefix": "x", "access_log": entries},
                            hcm.HttpConnectionManager)
    return message.access_log


FILE = "type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog"
STDOUT = "type.googleapis.com/envoy.extensions.access_loggers.stream.v3.StdoutAccessLog"
OTLP = ("type.googleapis.com/"
        "envoy.extensions.access_loggers.open_telemetry.v3.OpenTelemetryAccessLogConfig")


def test_file_with_text_format_source_and_default_stdout() -> None:
    configs = translate_access_logs(access_logs([
        {"name": "f", "typed_config": {"@type": FILE, "path": "/tmp/x.log", "log_format": {
            "text_format_source": {"inline_string": "%RESPONSE_CODE%\n"}}}},
        {"name": "s", "typed_config": {"@type": STDOUT}},
    ]))
    assert configs[0].kind == "file" and configs[0].path == "/tmp/x.log"
    assert isinstance(configs[0].formatter, TextFormatter)
    assert configs[0].formatter.render(RequestInfo(start_time=0, response_code=200)) == "200\n"
    assert configs[1].kind == "stdout"
    line = configs[1].formatter.render(RequestInfo(start_time=0))  # type: ignore[union-attr]
    assert line.startswith("[1970-01-01T00:00:00.000Z]") and line.endswith('"-"\n')


def test_json_format_with_sort_properties() -> None:
    configs = translate_access_logs(access_logs([
        {"typed_config": {"@type": FILE, "path": "/tmp/y.log", "log_format": {
            "json_format": {"z": "%PROTOCOL%", "a": "%RESPONSE_CODE%"},
            "json_format_options": {"sort_properties": True}}}}]))
    formatter = configs[0].formatter
    assert isinstance(formatter, JsonFormatter)
    text = formatter.render(RequestInfo(start_time=0, protocol="HTTP/1.1", response_code=201))
    assert text == '{"a":201,"z":"HTTP/1.1"}\n'


def test_filter_is_rejected_by_name() -> None:
    with pytest.raises(ConfigError) as caught:
        translate_access_logs(access_logs([
            {"filter": {"status_code_filter": {"comparison": {
                "op": "GE", "value": {"default_value": 400, "runtime_key": "k"}}}},
             "typed_config": {"@type": STDOUT}}]))
    assert caught.value.field == "access_log[0].filter"


def test_bad_operator_names_the_field_path() -> None:
    with pytest.raises(ConfigError) as caught:
        translate_access_logs(access_logs([
            {"typed_config": {"@type": FILE, "path": "/tmp/z", "log_format": {
                "text_format": "%WHAT%"}}}]))
    assert caught.value.field == "access_log[0].typed_config.log_format.text_format"
    assert "WHAT" in str(caught.value)


def test_otlp_logger_translates_target_body_and_attributes() -> None:
    configs = translate_access_logs(access_logs([{"typed_config": {
        "@type": OTLP,
        "common_config": {"log_name": "otel", "transport_api_version": "V3",
                          "grpc_service": {"envoy_grpc": {"cluster_name": "collector"}}},
        "body": {"string_value": "%REQ(:METHOD)% %RESPONSE_CODE%"},
        "attributes": {"values": [{"key": "cluster", "value": {
            "string_value": "%UPSTREAM_CLUSTER%"}}]},
    }}]))
    otlp = configs[0].otlp
    assert otlp is not None and otlp.target.cluster_name == "collector"
    info = RequestInfo(start_time=0, method="GET", response_code=200, upstream_cluster="c")
    assert otlp.body is not None and otlp.body.render(info) == "GET 200"
    assert otlp.attributes[0][0] == "cluster"
    assert otlp.target.endpoint(lambda name: ("127.0.0.1", 4317)) == "127.0.0.1:4317"
    with pytest.raises(ConfigError, match="collector"):
        otlp.target.endpoint(lambda name: None)


def test_file_sink_writes_in_batches_off_the_caller(tmp_path: Path) -> None:
    path = tmp_path / "access.log"
    configs = translate_access_logs(access_logs([{"typed_config": {
        "@type": FILE, "path": str(path),
        "log_format": {"json_format": {"code": "%RESPONSE_CODE%", "path": "%REQ(:PATH)%"}}}}]))
    logger = AccessLogger([build_sink(configs[0], stats=Stats())])
    for index in range(100):
        logger.log(RequestInfo(start_time=0, response_code=200, path=f"/{index}"))
    assert logger.flush()
    lines = path.read_text().splitlines()
    assert [json.loads(line)["path"] for line in lines] == [f"/{i}" for i in range(100)]
    logger.close()


def test_no_access_logs_is_falsy_and_cheap() -> None:
    logger = AccessLogger([])
    assert not logger
    logger.log(RequestInfo(start_time=0))


def otlp_entry(common: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"typed_config": {"@type": OTLP, "common_config": {
        "log_name": "otel", "grpc_service": {"envoy_grpc": {"cluster_name": "collector"}},
        **common}, **extra}}


def test_otlp_buffer_size_bytes_zero_flushes_every_entry() -> None:
    [default] = translate_access_logs(access_logs([otlp_entry({})]))
    assert default.otlp is not None and default.otlp.max_batch == 512
    [unbatched] = translate_access_logs(access_logs([otlp_entry({"buffer_size_bytes": 0})]))
    assert unbatched.otlp is not None and unbatched.otlp.max_batch == 1


@pytest.mark.parametrize(("entry", "field"), [
    (otlp_entry({"buffer_size_bytes": 4096}), "common_config.buffer_size_bytes"),
    (otlp_entry({"grpc_stream_retry_policy": {"num_retries": 3}}),
     "common_config.grpc_stream_retry_policy"),
    (otlp_entry({}, stat_prefix="otel."), "stat_prefix"),
    (otlp_entry({"grpc_service": {"envoy_grpc": {"cluster_name": "c",
                                                 "skip_envoy_headers": True}}}),
     "common_config.grpc_service.envoy_grpc.skip_envoy_headers"),
])
def test_otlp_unimplemented_fields_are_refused_by_name(entry: dict[str, Any], field: str) -> None:
    with pytest.raises(ConfigError) as caught:
        translate_access_logs(access_logs([entry]))
    assert caught.value.field == f"access_log[0].typed_config.{field}"
