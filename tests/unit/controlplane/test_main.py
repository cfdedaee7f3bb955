from __future__ import annotations

import pytest

from controlplane.main import is_loopback, parse_args, split_address


def test_defaults():
    args = parse_args(["--resources", "x.yaml"])
    assert args.listen == "127.0.0.1:18000" and args.admin is None and args.tls_cert is None


def test_plaintext_beyond_loopback_is_refused_unless_asked(capsys):
    with pytest.raises(SystemExit):
        parse_args(["--resources", "x", "--listen", "0.0.0.0:18000"])
    assert "clear text" in capsys.readouterr().err
    assert parse_args(["--resources", "x", "--listen", "0.0.0.0:1", "--allow-plaintext"])
    assert parse_args(["--resources", "x", "--listen", "10.0.0.1:1", "--tls-cert", "c",
                       "--tls-key", "k"])


def test_tls_options_go_together():
    with pytest.raises(SystemExit):
        parse_args(["--resources", "x", "--tls-cert", "c"])
    with pytest.raises(SystemExit):
        parse_args(["--resources", "x", "--client-ca", "ca"])


def test_workers_with_mesh_is_refused_by_name(capsys):
    with pytest.raises(SystemExit):
        parse_args(["--mesh", "m.yaml", "--workers", "2"])
    assert "--workers N with --mesh is not supported yet" in capsys.readouterr().err
    assert parse_args(["--mesh", "m.yaml", "--workers", "1"]).workers == 1


def test_addresses():
    assert split_address("[::1]:80") == ("::1", 80)
    assert is_loopback("::1") and is_loopback("localhost") and is_loopback("127.0.0.2")
    assert not is_loopback("0.0.0.0") and not is_loopback("example.com")


def test_check_validates_and_summarises(tmp_path, capsys):
    from controlplane.main import main
    from tests.unit.controlplane.test_files import GOOD, write

    good = write(tmp_path / "good.yaml", GOOD)
    assert main(["--resources", str(good), "--check"]) == 0
    assert "(shared): 0 secrets, 1 clusters, 1 endpoints, 1 listeners, 1 routes" in (
        capsys.readouterr().out)
    bad = write(tmp_path / "bad.yaml", GOOD[:3])
    assert main(["--resources", str(bad), "--check"]) == 1
    assert "RouteConfiguration 'main'" in capsys.readouterr().err


def test_xds_requires_client_certificates_with_tls_off_loopback(capsys):
    """docs/mesh-security.md, "The xDS trust model": --tls off loopback is mutual TLS; on
    loopback it stays server TLS (a sidecar proves itself with its join token)."""
    from controlplane.main import xds_mutual_tls

    off = parse_args(["--mesh", "m", "--ca-cert", "c", "--ca-key", "k", "--tls",
                      "--listen", "10.0.0.5:18000", "--ca-listen", "10.0.0.5:18002"])
    assert xds_mutual_tls(off) and off.ca_listen == "10.0.0.5:18002"
    assert xds_mutual_tls(parse_args(["--mesh", "m", "--ca-cert", "c", "--ca-key", "k",
                                      "--tls", "--listen", "0.0.0.0:18000"]))
    on = parse_args(["--mesh", "m", "--ca-cert", "c", "--ca-key", "k", "--tls"])
    assert not xds_mutual_tls(on)
    assert not xds_mutual_tls(parse_args(["--resources", "x", "--listen", "10.0.0.1:1",
                                          "--tls-cert", "c", "--tls-key", "k"]))
    with pytest.raises(SystemExit):
        parse_args(["--mesh", "m", "--ca-listen", "127.0.0.1:18002"])
    assert "--ca-listen needs --tls" in capsys.readouterr().err


def test_xds_transport_is_native_for_plaintext_and_grpcio_for_tls(capsys):
    assert parse_args(["--resources", "x"]).xds_transport == "native"
    assert parse_args(["--resources", "x", "--tls-cert", "c",
                       "--tls-key", "k"]).xds_transport == "grpcio"
    assert parse_args(["--mesh", "m", "--ca-cert", "c", "--ca-key", "k",
                       "--tls"]).xds_transport == "grpcio"
    assert parse_args(["--resources", "x", "--xds-transport", "grpcio"]).xds_transport == "grpcio"
    with pytest.raises(SystemExit):
        parse_args(["--resources", "x", "--tls-cert", "c", "--tls-key", "k",
                    "--xds-transport", "native"])
    assert "--xds-transport native serves plaintext only" in capsys.readouterr().err
