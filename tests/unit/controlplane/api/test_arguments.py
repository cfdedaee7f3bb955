"""`pointsman controlplane` options of the mesh API: loopback by default; off loopback only
with mutual TLS or a token (and a token only over TLS unless --allow-plaintext)."""

from __future__ import annotations

import pytest

from controlplane.main import DEFAULT_STORE, parse_args


def refused(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    with pytest.raises(SystemExit) as exited:
        parse_args(list(argv))
    assert exited.value.code == 2
    return capsys.readouterr().err


def test_the_api_and_a_file_store_by_default() -> None:
    args = parse_args([])
    assert (args.store, args.api) == (DEFAULT_STORE, "127.0.0.1:18001")
    assert parse_args(["--resources", "x"]).store is None  # raw resources only, as before


def test_off_loopback_needs_credentials(capsys: pytest.CaptureFixture[str]) -> None:
    error = refused(capsys, "--store", "memory:", "--api", "0.0.0.0:18001")
    assert "--api 0.0.0.0:18001 is not loopback: give --client-ca" in error
    error = refused(capsys, "--store", "memory:", "--api", "10.1.2.3:1", "--api-token-file", "t")
    assert "a token needs TLS" in error
    assert parse_args(["--store", "memory:", "--api", "10.1.2.3:1", "--api-token-file", "t",
                       "--allow-plaintext"]).api_token_file is not None
    assert parse_args(["--store", "memory:", "--api", "10.1.2.3:1", "--tls-cert", "c",
                       "--tls-key", "k", "--client-ca", "ca"]).client_ca is not None


def test_store_urls_and_exclusive_options(capsys: pytest.CaptureFixture[str]) -> None:
    assert "unknown store" in refused(capsys, "--store", "redis://x:1")
    assert "--store and --mesh exclude each other" in refused(capsys, "--store", "memory:",
                                                              "--mesh", "m.yaml")
