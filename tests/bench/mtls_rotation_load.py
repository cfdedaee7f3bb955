"""Certificate rotation under load (a script, not a test): no request may be lost while the
mesh's SVIDs are renewed, for Pointsman and Envoy sidecars in the same run (issue 14).

    .venv/bin/python tests/bench/mtls_rotation_load.py [--seconds 20] [--lifetime 4]

The mesh of tests/bench/mesh_mtls_bench.py (`web`'s sidecar calling `api`'s sidecar over
automatic mTLS, an Envoy direct_response behind `api`), with the control plane issuing SVIDs
that live `--lifetime` seconds, renewed at half life: over `--seconds`, each sidecar takes a
new SVID and trust bundle every lifetime/2 s. Meanwhile wrk -t1 -c50 drives `web`'s outbound
listener (connections reused: the renewed certificates must not cut them) and 4 client threads
open new mTLS connections straight to `api`'s inbound port (each a handshake against the
certificate of the moment). A non-2xx answer, a socket error or a failed handshake ends the
run with exit status 1; printed: requests and new connections per second, and how many SDS
updates each sidecar applied (the renewals).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import threading
from contextlib import ExitStack
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from tests.bench.load_checks import LoadError, run_checked, wrk_requests_per_second  # noqa: E402
from tests.bench.mesh_mtls_bench import (  # noqa: E402
    MESH,
    app_backend,
    new_connections_per_second,
)
from tests.integration.controlplane.test_mesh import eventually  # noqa: E402
from tests.support.identity import client_context, now, write_ca  # noqa: E402
from tests.support.mesh import MeshControlPlane, request, start_sidecar  # noqa: E402

NETS = {"pointsman": "127.194", "envoy": "127.195"}


def sds_updates(proxy: Any) -> int:
    """SDS updates applied: Pointsman counts them per xDS type (`sds.update_success`, as its
    ADS client counts every type), Envoy per secret (`sds.default.update_success`)."""
    return int(max(proxy.stat("sds.update_success"), proxy.stat("sds.default.update_success")))


def measure(flavour: str, seconds: int, lifetime: int) -> dict[str, float]:
    net = NETS[flavour]
    with tempfile.TemporaryDirectory() as folder, ExitStack() as stack:
        path = Path(folder)
        (path / "mesh.yaml").write_text(MESH)
        authority, flags = write_ca(path)
        control_plane = MeshControlPlane(path / "mesh.yaml", *flags,
                                         "--cert-lifetime", f"{lifetime}s")
        stack.enter_context(control_plane)
        control_plane.wait_ready()
        app_backend(stack, f"{net}.3.2", 9080)
        web = start_sidecar(stack, flavour, control_plane, "web", 1, net)
        api = start_sidecar(stack, flavour, control_plane, "api", 2, net)
        for member in (web, api):
            member.proxy.wait_ready()
        eventually(lambda: request((web.outbound_ip, 8080), host="api")[0] == 200,
                   f"{flavour} web reaching api")
        updates_before = [sds_updates(member.proxy) for member in (web, api)]
        context = client_context(authority.trust_bundle,
                                 authority.issue("default", "web", now()), path)
        handshakes: dict[str, float] = {}
        errors: list[BaseException] = []

        def connect() -> None:
            try:
                handshakes["rate"] = new_connections_per_second(api.instance_ip, 8080,
                                                                context, seconds)
            except BaseException as error:
                errors.append(error)

        clients = threading.Thread(target=connect)
        clients.start()
        completed = subprocess.run(
            ["wrk", "-t1", "-c50", f"-d{seconds}s", "-H", "Host: api",
             f"http://{web.outbound_ip}:8080/"],
            capture_output=True, text=True, timeout=seconds + 60, check=False)
        clients.join()
        if errors:
            raise LoadError(f"{flavour}: {errors[0]}")
        rate = wrk_requests_per_second(completed)  # LoadError on any non-2xx or socket error
        renewals = [sds_updates(member.proxy) - before
                    for member, before in zip((web, api), updates_before, strict=True)]
        if min(renewals) < 2:
            raise LoadError(f"{flavour}: too few renewals during the run ({renewals}): "
                            "lengthen --seconds or shorten --lifetime")
        return {"rps": rate, "new_cx": handshakes["rate"], "web_sds": renewals[0],
                "api_sds": renewals[1]}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=int, default=20)
    parser.add_argument("--lifetime", type=int, default=4)
    args = parser.parse_args()
    print(f"{'sidecars':<10} {'req/s':>8} {'new mTLS cx/s':>14} {'SDS updates web/api':>20}")
    for flavour in ("pointsman", "envoy"):
        found = measure(flavour, args.seconds, args.lifetime)
        print(f"{flavour:<10} {found['rps']:>8.0f} {found['new_cx']:>14.0f} "
              f"{found['web_sds']:>9.0f} / {found['api_sds']:<8.0f}")
    print("no request, connection or handshake failed across the renewals")
    return 0


if __name__ == "__main__":
    sys.exit(run_checked(main))
