"""`--readiness-port` and friends (`pointsman sidecar`, `pointsman run --app-port`): what they
become in the bootstrap (node metadata `health_reports` and `readiness_probe`), read back by
the sidecar's bootstrap translator and the control plane; refused with --proxy envoy."""

from __future__ import annotations

import pytest
from envoy.config.bootstrap.v3 import bootstrap_pb2
from envoy.config.core.v3 import base_pb2

from controlplane.sources.readiness import reports_health
from protos.loader import parse_message
from proxy.bootstrap import translate_bootstrap
from proxy.deploy.bootstrap import build_bootstrap
from proxy.deploy.run import parse_args as run_args
from proxy.deploy.run import sidecar_argv
from proxy.deploy.sidecar import main, parse_args, spec_from_args
from proxy.readiness.probe import ProbeSettings


def bootstrap_of(*flags: str) -> dict:
    return build_bootstrap(spec_from_args(parse_args(
        ["--service", "api", "--instance-ip", "10.0.0.7", "--app-ip", "127.0.0.2", *flags])))


def test_the_probe_flags_reach_the_sidecar_and_the_control_plane() -> None:
    bootstrap = bootstrap_of("--readiness-port", "9080", "--readiness-path", "/healthz",
                             "--readiness-period-s", "0.5", "--readiness-failure-threshold", "2")
    translated = translate_bootstrap(parse_message(bootstrap, bootstrap_pb2.Bootstrap))
    assert translated.readiness == ProbeSettings("127.0.0.2", 9080, "/healthz", period=0.5,
                                                 failure_threshold=2)
    assert reports_health(parse_message(bootstrap["node"], base_pb2.Node))


def test_without_the_flag_nothing_is_reported() -> None:
    bootstrap = bootstrap_of()
    assert translate_bootstrap(parse_message(bootstrap, bootstrap_pb2.Bootstrap)).readiness \
        is None
    assert not reports_health(parse_message(bootstrap["node"], base_pb2.Node))


@pytest.mark.parametrize(("flags", "message"), [
    (("--readiness-port", "9080", "--proxy", "envoy"), "--proxy envoy cannot report"),
    (("--readiness-path", "/ready",), "--readiness-path needs --readiness-port"),
    (("--readiness-port", "70000",), "--readiness-port: 70000 is not a port"),
    (("--readiness-port", "80", "--readiness-period-s", "0"), "--readiness-period-s"),
    (("--readiness-port", "80", "--readiness-path", "ready"), "must start with /"),
])
def test_bad_probe_flags_are_named(flags: tuple[str, ...], message: str,
                                   capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--service", "api", "--instance-ip", "10.0.0.1", *flags]) == 2
    assert message in capsys.readouterr().err


def test_run_app_port_turns_the_probe_on_except_with_envoy() -> None:
    args, _ = run_args(["--service", "api", "--app-port", "9080", "--", "app"])
    argv = sidecar_argv(args)
    assert argv[argv.index("--readiness-port") + 1] == "9080"
    args, _ = run_args(["--service", "api", "--app-port", "9080", "--proxy", "envoy", "--",
                        "app"])
    assert "--readiness-port" not in sidecar_argv(args)  # Envoy cannot report it
    args, _ = run_args(["--service", "api", "--app-port", "9080", "--readiness-port", "9090",
                        "--", "app"])
    argv = sidecar_argv(args)
    assert argv[argv.index("--readiness-port") + 1] == "9090"
