"""Join tokens, end to end with real processes: `pointsman token create` makes one per
Service, the store keeps only its hash, a sidecar presenting it (gRPC metadata, from the
bootstrap's initial_metadata) gets its Service's SVID and serves mTLS; a sidecar with no
token, or a token for another Service, is refused (PERMISSION_DENIED, no secret); `pointsman
token revoke` closes the stream and the sidecar is refused from then on. The root CA is made
at the first start and kept in the store, mode 0600."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import grpc
import pytest

from tests.support.identity import MESH, client_context, https_get, now, sds_sidecar_bootstrap
from tests.support.meshapi import ApiControlPlane, pointsman
from tests.support.pointsman import Pointsman
from tests.support.ports import free_port


def eventually(check: Callable[[], bool], what: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.2)
    raise AssertionError(f"not {what} after {timeout}s")


def sidecar(stack: ExitStack, control_plane: ApiControlPlane, service: str, name: str,
            token: str | None) -> tuple[Pointsman, int]:
    inbound = free_port()
    bootstrap: dict[str, Any] = sds_sidecar_bootstrap(
        f"{name}-1", service, control_plane.port, address="127.0.0.1", inbound_port=inbound,
        outbound_port=free_port(), peer=("127.0.0.1", 9), peer_id="spiffe://x/y",
        instance_ip="127.0.0.2")
    if token is not None:
        bootstrap["dynamic_resources"]["ads_config"]["grpc_services"][0][
            "initial_metadata"] = [{"key": "x-pointsman-join-token", "value": token}]
    proxy = Pointsman(bootstrap, name=f"pointsman-{name}")
    stack.enter_context(proxy)
    return proxy, inbound


def secrets_held(proxy: Pointsman) -> set[str]:
    dump = json.loads(proxy.admin("/config_dump")[1])
    found = next(item for item in dump["configs"] if item["@type"].endswith(
        "SecretsConfigDump"))
    return {item["name"] for item in found["dynamic_active_secrets"]}


def test_join_tokens_admit_refuse_and_revoke(tmp_path: Path) -> None:
    state = tmp_path / "state"
    (tmp_path / "mesh.yaml").write_text(MESH)
    with ExitStack() as stack:
        control_plane = ApiControlPlane(f"file:{state}", "--require-join-token")
        stack.enter_context(control_plane)
        control_plane.wait_ready()
        applied = pointsman("apply", "-f", str(tmp_path / "mesh.yaml"),
                            server=control_plane.api)
        assert applied.returncode == 0, applied.stderr
        root = state / "secrets" / "ca-root"
        assert root.stat().st_mode & 0o777 == 0o600  # made at the first start, kept private
        created = pointsman("token", "create", "--service", "beta", server=control_plane.api)
        assert created.returncode == 0, created.stderr
        token = created.stdout.strip()
        assert token and token not in "".join(
            path.read_text(errors="replace") for path in state.rglob("*") if path.is_file())
        other = pointsman("token", "create", "--service", "alpha",
                          server=control_plane.api).stdout.strip()

        beta, inbound = sidecar(stack, control_plane, "beta", "beta", token)
        thief, _ = sidecar(stack, control_plane, "beta", "thief", other)  # alpha's token
        anonymous, _ = sidecar(stack, control_plane, "beta", "anonymous", None)
        beta.wait_ready()
        bundle = (root.read_bytes().split(b"-----BEGIN PRIVATE KEY-----")[0])
        svid_authority = _authority(root)
        context = client_context(bundle, svid_authority.issue("default", "c", now()), tmp_path)
        assert https_get(inbound, context) == (200, b"beta")
        eventually(lambda: "join token names default/alpha" in control_plane.output()
                   and "a join token is required" in control_plane.output(),
                   "the thief and the anonymous sidecar refused")
        for refused in (thief, anonymous):
            refused.wait_until(lambda proxy=refused: proxy.admin("/ready")[0] > 0,  # type: ignore[misc]
                               30, "serving its admin")
            assert secrets_held(refused) == set()
        assert thief.stat("control_plane.connected_state") == 0

        # FetchSecrets (unary SDS) is checked the same way.
        assert fetch_secrets(control_plane.port, "beta", token) == ["ROOTCA", "default"]
        for wrong in (other, None):
            with pytest.raises(grpc.RpcError) as refused_fetch:
                fetch_secrets(control_plane.port, "beta", wrong)
            assert refused_fetch.value.code() == grpc.StatusCode.PERMISSION_DENIED

        listed = pointsman("token", "list", server=control_plane.api)
        token_id = next(line.split()[0] for line in listed.stdout.splitlines()
                        if line.endswith(" beta"))
        revoked = pointsman("token", "revoke", token_id, server=control_plane.api)
        assert revoked.returncode == 0, revoked.stderr
        assert "1 streams closed" in revoked.stdout
        eventually(lambda: "unknown or revoked join token" in control_plane.output(),
                   "the revoked token refused on reconnection")
        assert beta.stat("control_plane.connected_state") == 0


def fetch_secrets(port: int, service: str, token: str | None) -> list[str]:
    from envoy.extensions.transport_sockets.tls.v3 import secret_pb2
    from envoy.service.discovery.v3 import discovery_pb2
    from envoy.service.secret.v3 import sds_pb2_grpc

    request = discovery_pb2.DiscoveryRequest(
        resource_names=["default", "ROOTCA"], type_url="type.googleapis.com/" +
        secret_pb2.Secret.DESCRIPTOR.full_name)
    request.node.id, request.node.cluster = f"{service}-fetch", service
    request.node.metadata.update({"instance_ip": "127.0.0.2", "outbound_ip": "127.0.0.3"})
    metadata = (("x-pointsman-join-token", token),) if token else ()
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        response = sds_pb2_grpc.SecretDiscoveryServiceStub(channel).FetchSecrets(
            request, metadata=metadata, timeout=10)
    names = []
    for packed in response.resources:
        secret = secret_pb2.Secret()
        packed.Unpack(secret)
        names.append(secret.name)
    return sorted(names)


def _authority(root: Path) -> Any:
    from controlplane.ca import CertificateAuthority

    certificate, marker, key = root.read_bytes().partition(b"-----BEGIN PRIVATE KEY-----")
    return CertificateAuthority.from_pem(certificate, marker + key)
