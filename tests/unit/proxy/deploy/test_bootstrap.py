"""`pointsman sidecar`'s bootstrap: what the flags become, read back by the sidecar's own
bootstrap translator and by the control plane's node identity (docs/mesh.md)."""

from __future__ import annotations

import json

import pytest
from envoy.config.bootstrap.v3 import bootstrap_pb2
from envoy.config.core.v3 import base_pb2

from controlplane.mesh.compile.node import node_identity
from controlplane.mesh.load import load_objects
from controlplane.mesh.resolve import resolve
from protos.loader import parse_message
from proxy.bootstrap import translate_bootstrap
from proxy.deploy.bootstrap import build_bootstrap, parse_address
from proxy.deploy.sidecar import main, parse_args, spec_from_args

MESH = """
apiVersion: v1
kind: Service
metadata: {name: api, namespace: shop}
spec: {ports: [{port: 8080, targetPort: 9080, appProtocol: http}]}
"""


def _spec(*flags: str):  # type: ignore[no-untyped-def]
    return spec_from_args(parse_args(["--service", "api", *flags]))


def test_flags_become_the_node_the_control_plane_reads() -> None:
    spec = _spec("-n", "shop", "--instance-ip", "10.0.0.7", "--app-ip", "127.0.0.2",
                 "--outbound-ip", "127.0.0.3", "--server", "cp.mesh:18000")
    bootstrap = build_bootstrap(spec)
    message = parse_message(bootstrap, bootstrap_pb2.Bootstrap)
    node = node_identity(parse_message(bootstrap["node"], base_pb2.Node),
                         resolve(load_objects(MESH, "mesh.yaml")))
    assert node is not None
    assert (node.id, node.kind, node.namespace, node.name) == (
        "api-10.0.0.7", "Service", "shop", "api")
    assert (node.instance_ip, node.app_ip, node.outbound_ip) == (
        "10.0.0.7", "127.0.0.2", "127.0.0.3")
    translated = translate_bootstrap(message, source="flags")
    assert translated.ads is not None and translated.ads.target == "cp.mesh:18000"
    assert translated.ads.lds and translated.ads.cds and not translated.ads.delta
    assert translated.admin_address == ("127.0.0.1", 15000)
    assert message.static_resources.clusters[0].type == message.static_resources.clusters[
        0].STRICT_DNS  # a name needs DNS


def test_ip_servers_are_static_and_delta_is_delta() -> None:
    bootstrap = build_bootstrap(_spec("--instance-ip", "10.0.0.7", "--server", "10.0.0.1:1",
                                      "--server", "10.0.0.2:2", "--delta"))
    cluster = bootstrap["static_resources"]["clusters"][0]
    assert cluster["type"] == "STATIC"
    assert len(cluster["load_assignment"]["endpoints"][0]["lb_endpoints"]) == 2
    translated = translate_bootstrap(parse_message(bootstrap, bootstrap_pb2.Bootstrap))
    assert translated.ads is not None and translated.ads.delta


def test_a_gateway_has_no_sidecar_addresses() -> None:
    metadata = build_bootstrap(_spec("--gateway"))["node"]["metadata"]
    assert metadata == {"namespace": "default", "kind": "Gateway"}


@pytest.mark.parametrize("flags, message", [
    (("--server", "nohost"), "--server: 'nohost' is not HOST:PORT"),
    (("--server", "h:99999"), "--server: 'h:99999' is not HOST:PORT"),
    (("--admin", ":1"), "--admin: ':1' is not HOST:PORT"),
    (("--instance-ip", "api"), "--instance-ip: 'api' is not an IP address"),
    (("--app-ip", "1.2.3"), "--app-ip: '1.2.3' is not an IP address"),
])
def test_bad_flags_are_named(flags: tuple[str, ...], message: str,
                             capsys: pytest.CaptureFixture[str]) -> None:
    # the last --instance-ip given wins (argparse), so a bad one replaces the good one
    assert main(["--service", "api", "--instance-ip", "10.0.0.1", *flags]) == 2
    assert capsys.readouterr().err.strip() == f"pointsman sidecar: {message}"


def test_print_bootstrap_writes_json(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--service", "api", "--instance-ip", "10.0.0.1", "--print-bootstrap"]) == 0
    assert json.loads(capsys.readouterr().out)["node"]["cluster"] == "api"


def test_ipv6_addresses() -> None:
    assert parse_address("[::1]:15000", "--admin") == ("::1", 15000)


def test_a_join_token_travels_as_grpc_metadata(tmp_path) -> None:  # type: ignore[no-untyped-def]
    (tmp_path / "token").write_text("s3cret\n")
    bootstrap = build_bootstrap(_spec("--instance-ip", "10.0.0.7", "--join-token",
                                      str(tmp_path / "token")))
    service = bootstrap["dynamic_resources"]["ads_config"]["grpc_services"][0]
    assert service["initial_metadata"] == [{"key": "x-pointsman-join-token",
                                            "value": "s3cret"}]
    assert "s3cret" not in json.dumps(bootstrap["node"])  # not in node metadata (logged)
    translated = translate_bootstrap(parse_message(bootstrap, bootstrap_pb2.Bootstrap))
    assert translated.ads is not None
    assert translated.ads.metadata == (("x-pointsman-join-token", "s3cret"),)
    (tmp_path / "empty").write_text("")
    with pytest.raises(ValueError, match="--join-token"):
        _spec("--instance-ip", "10.0.0.7", "--join-token", str(tmp_path / "empty"))


def test_xds_over_tls_trusts_the_mesh_root(tmp_path) -> None:  # type: ignore[no-untyped-def]
    import datetime

    from controlplane.ca import CertificateAuthority

    root = CertificateAuthority.create_root(datetime.datetime.now(datetime.UTC))
    (tmp_path / "root.pem").write_bytes(root.trust_bundle)
    bootstrap = build_bootstrap(_spec("--instance-ip", "10.0.0.7", "--xds-ca",
                                      str(tmp_path / "root.pem"), "--xds-name", "cp.mesh"))
    translated = translate_bootstrap(parse_message(bootstrap, bootstrap_pb2.Bootstrap))
    assert translated.ads is not None and translated.ads.tls is not None
    assert translated.ads.tls.sni == "cp.mesh"
    assert translated.ads.tls.validation.trusted_ca == root.trust_bundle
def test_a_workload_carries_its_labels_and_named_ports() -> None:
    spec = spec_from_args(parse_args([
        "--workload", "echo-v1", "-n", "shop", "--label", "app=echo", "--label", "version=v1",
        "--port", "http=8080", "--instance-ip", "10.0.0.7", "--outbound-ip", "127.0.0.3"]))
    bootstrap = build_bootstrap(spec)
    node = node_identity(parse_message(bootstrap["node"], base_pb2.Node),
                         resolve(load_objects(MESH, "mesh.yaml")))
    assert node is not None
    assert (node.id, node.kind, node.name, node.namespace) == (
        "echo-v1-10.0.0.7", "Workload", "echo-v1", "shop")
    assert node.labels == (("app", "echo"), ("version", "v1"))
    assert node.ports == (("http", 8080),)


@pytest.mark.parametrize("flags, message", [
    (("--service", "api", "--label", "app=echo"),
     "--label and --port describe a workload: give --workload NAME"),
    (("--workload", "w", "--label", "app"), "--label: 'app' is not KEY=VALUE"),
    (("--workload", "w", "--label", "app=a b"), "--label: 'app=a b' is not KEY=VALUE"),
    (("--workload", "w", "--port", "http=0"), "--port: 'http=0' is not NAME=NUMBER"),
    (("--workload", "w", "--port", "8080"), "--port: '8080' is not NAME=NUMBER"),
])
def test_bad_workload_flags_are_named(flags: tuple[str, ...], message: str,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--instance-ip", "10.0.0.1", *flags]) == 2
    assert message in capsys.readouterr().err


def test_run_hands_the_workload_flags_to_its_sidecar() -> None:
    from proxy.deploy.run import parse_args as run_args
    from proxy.deploy.run import sidecar_argv
    args, command = run_args(["--workload", "echo-v1", "--label", "app=echo", "--port",
                              "http=8080", "--instance-ip", "10.0.0.7", "--", "app"])
    argv = sidecar_argv(args)
    assert command == ["app"]
    assert argv[argv.index("--workload") + 1] == "echo-v1" and "--service" not in argv
    assert argv[argv.index("--label") + 1] == "app=echo"
    assert argv[argv.index("--port") + 1] == "http=8080"
    spec = spec_from_args(parse_args(argv[argv.index("sidecar") + 1:]))
    assert (spec.kind, spec.labels, spec.ports) == ("Workload", (("app", "echo"),),
                                                    (("http", 8080),))


def test_run_hands_the_xds_identity_flags_to_its_sidecar(tmp_path) -> None:
    """`pointsman run --join-token --xds-ca --ca-server`: the sidecar it starts gets them (it
    trades the token for its xDS client certificate, docs/mesh-security.md)."""
    from proxy.deploy.run import parse_args as run_args
    from proxy.deploy.run import sidecar_argv
    from proxy.deploy.sidecar import wants_certificate

    (tmp_path / "t").write_text("token")
    (tmp_path / "r.pem").write_text("root")
    args, _ = run_args(["--service", "beta", "--join-token", str(tmp_path / "t"), "--xds-ca",
                        str(tmp_path / "r.pem"), "--ca-server", "10.0.0.5:18002",
                        "--trust-domain", "mesh.example", "--", "app"])
    argv = sidecar_argv(args)
    sidecar = parse_args(argv[argv.index("sidecar") + 1:])
    assert wants_certificate(sidecar)
    assert (sidecar.ca_server, sidecar.trust_domain) == ("10.0.0.5:18002", "mesh.example")
