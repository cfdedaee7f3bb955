"""How the mesh compiler scales with Services: resolve, compile one sidecar, compile many,
one route changed, and the bytes one sidecar receives.

    .venv/bin/python tests/bench/mesh_compile.py [--services 1000] [--namespaces 10]
                                                  [--sidecars 100] [--mtls]

`--mtls` compiles with a mesh identity (automatic mTLS: docs/mesh-security.md).

The mesh: N HTTP Services spread over the namespaces, one HTTPRoute per Service (a canary
split and a path rule), a BackendTrafficPolicy per Service (retry, health check). Figures are
wall-clock on this machine (shared, loaded: look at the ratios more than the absolutes).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from controlplane.mesh import load_objects, resolve
from controlplane.mesh.compile.compiler import MeshCompiler
from controlplane.mesh.compile.memo import Endpoints, Workload
from controlplane.mesh.compile.node import MeshNode
from controlplane.mesh.identity import MeshIdentity


def mesh_text(services: int, namespaces: int, variant: str = "") -> str:
    parts = []
    for index in range(services):
        namespace = f"ns{index % namespaces}"
        parts.append(f"""apiVersion: v1
kind: Service
metadata: {{name: svc{index}, namespace: {namespace}}}
spec: {{ports: [{{name: http, port: 8080, appProtocol: http}}]}}
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {{name: svc{index}, namespace: {namespace}}}
spec:
  parentRefs: [{{group: "", kind: Service, name: svc{index}, port: 8080}}]
  rules:
  - matches: [{{path: {{value: /v2{variant if index == 0 else ''}}}}}]
    backendRefs: [{{name: svc{index}, port: 8080, weight: 90}},
                  {{name: svc{(index + 1) % services}, namespace: ns{(index + 1) % namespaces},
                    port: 8080, weight: 10}}]
  - backendRefs: [{{name: svc{index}, port: 8080}}]
---
apiVersion: gateway.envoyproxy.io/v1alpha1
kind: BackendTrafficPolicy
metadata: {{name: svc{index}, namespace: {namespace}}}
spec:
  targetRefs: [{{group: "", kind: Service, name: svc{index}}}]
  retry: {{numRetries: 2}}
  healthCheck: {{active: {{type: HTTP, http: {{path: /healthz}}}}}}
""")
    return "---\n".join(parts)


def timed(what: str, action):  # type: ignore[no-untyped-def]
    start = time.perf_counter()
    result = action()
    print(f"{what:<52} {time.perf_counter() - start:8.3f} s")
    return result


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--services", type=int, default=1000)
    parser.add_argument("--namespaces", type=int, default=10)
    parser.add_argument("--sidecars", type=int, default=100)
    parser.add_argument("--mtls", action="store_true", help="compile with a mesh identity")
    args = parser.parse_args()
    text = mesh_text(args.services, args.namespaces)
    objects = timed(f"load {args.services * 3} objects", lambda: load_objects(text, "bench"))
    mesh = timed("resolve", lambda: resolve(objects))
    compiler = MeshCompiler(mesh, identity=MeshIdentity() if args.mtls else None)
    nodes = [MeshNode(f"n{index}", "Service", f"svc{index}", f"ns{index % args.namespaces}",
                      "10.0.0.1", "127.0.0.1", "127.0.0.2") for index in range(args.sidecars)]
    first = timed("compile the first sidecar (cold)", lambda: compiler.compile_node(nodes[0]))
    timed("warm: a sidecar of every namespace (off the loop)", lambda: compiler.warm([]))
    timed(f"compile {args.sidecars} sidecars (warm)",
          lambda: [compiler.compile_node(node) for node in nodes])
    sizes = {type_url.rsplit(".", 1)[-1]: len(items)
             for type_url, items in first.resources.items()}
    print(f"one sidecar: {sizes}, {first.size() / 1024:.0f} KiB")
    changed = load_objects(mesh_text(args.services, args.namespaces, "x"), "bench")
    new_mesh = timed("resolve after one route changed", lambda: resolve(changed))
    forked = compiler.fork(new_mesh)
    timed("prepare the new mesh (off the loop: fork, warm)", lambda: forked.warm(nodes))
    forked.update(endpoints=compiler.endpoints)  # as MeshCache.set_mesh: none came meanwhile
    compiler = forked
    timed(f"then {args.sidecars} sidecars' resources (on the loop)",
          lambda: [compiler.compile_node(node) for node in nodes])
    print("units rebuilt:", dict(compiler.memo.built))
    endpoints = Endpoints()
    endpoints.by_service = {("ns1", "svc1"): ("10.0.0.9",)}
    compiler.update(endpoints=endpoints)
    timed("one sidecar registered: recompile the first sidecar",
          lambda: compiler.compile_node(nodes[0]))
    timed(f"  ... and the other {args.sidecars - 1}",
          lambda: [compiler.compile_node(node) for node in nodes[1:]])
    workload_registered(compiler, endpoints, nodes)


def workload_registered(compiler: MeshCompiler, endpoints: Endpoints,
                        nodes: list[MeshNode]) -> None:
    """A workload (`pointsman sidecar --workload`) registering: its address is a virtual host
    on every HTTP outbound port (compile/pods.py), so every namespace's route tables change;
    no Service selects it here (the bench's Services have no selector)."""
    with_workload = Endpoints()
    with_workload.by_service = endpoints.by_service
    with_workload.workloads = {"ns1": (Workload("w", "10.0.1.1", (("app", "w"),)),)}
    compiler.update(endpoints=with_workload)
    timed("one workload registered: recompile the first sidecar",
          lambda: compiler.compile_node(nodes[0]))
    timed(f"  ... and the other {len(nodes) - 1}",
          lambda: [compiler.compile_node(node) for node in nodes[1:]])


if __name__ == "__main__":
    main()
