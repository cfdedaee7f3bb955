"""The management API's credentials: a bearer token (`--api-token-file`) is required of
every call once set, and with mutual TLS only a client with a certificate from the CA gets
in. Refused credentials are exit status 3 in the CLI, as an unreachable control plane."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from tests.integration.controlplane.certificates import make_certificates
from tests.support.meshapi import ApiControlPlane, pointsman

SERVICE = "apiVersion: v1\nkind: Service\nmetadata: {name: a}\nspec: {ports: [{port: 80}]}\n"


def test_a_token_is_required_once_set(tmp_path: Path) -> None:
    (tmp_path / "token").write_text("s3cret\n")
    (tmp_path / "wrong").write_text("guess\n")
    with ApiControlPlane("memory:", "--api-token-file", str(tmp_path / "token")) as cp:
        cp.wait_ready()
        denied = pointsman("apply", "-f", "-", stdin=SERVICE, server=cp.api)
        assert denied.returncode == 3 and "UNAUTHENTICATED" in denied.stderr
        wrong = pointsman("get", "svc", "--token-file", str(tmp_path / "wrong"), server=cp.api)
        assert wrong.returncode == 3
        allowed = pointsman("apply", "-f", "-", "--token-file", str(tmp_path / "token"),
                            stdin=SERVICE, server=cp.api)
        assert allowed.returncode == 0, allowed.stderr
        env = {**os.environ, "POINTSMAN_TOKEN": "s3cret"}
        listed = pointsman("get", "svc", server=cp.api, env=env)
        assert listed.returncode == 0 and listed.stdout.splitlines()[1].startswith("a ")


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command")
def test_mutual_tls_admits_clients_with_a_certificate(tmp_path: Path) -> None:
    make_certificates(tmp_path)
    tls = ("--tls-cert", str(tmp_path / "server.pem"), "--tls-key", str(tmp_path / "server.key"),
           "--client-ca", str(tmp_path / "ca.pem"))
    with ApiControlPlane("memory:", *tls) as cp:
        cp.wait_ready()
        client = ("--ca", str(tmp_path / "ca.pem"), "--cert", str(tmp_path / "client.pem"),
                  "--key", str(tmp_path / "client.key"))
        allowed = pointsman("apply", "-f", "-", *client, stdin=SERVICE, server=cp.api)
        assert allowed.returncode == 0, allowed.stderr
        no_certificate = pointsman("get", "svc", "--ca", str(tmp_path / "ca.pem"),
                                   server=cp.api)
        assert no_certificate.returncode == 3
        plain = pointsman("get", "svc", server=cp.api)
        assert plain.returncode == 3
