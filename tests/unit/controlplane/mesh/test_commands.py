"""`pointsman analyze` and `pointsman explain`: output and exit codes usable in scripts."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from controlplane.commands import analyze, explain
from tests.unit.controlplane.mesh.helpers import SERVICES, route

MESH = SERVICES + route("""
rules:
- matches: [{path: {value: /v2}}]
  backendRefs: [{name: api-v2, port: 8080}]
- backendRefs: [{name: api-v1, port: 8080}]
""")


@pytest.fixture
def mesh_file(tmp_path: Path) -> Path:
    path = tmp_path / "mesh.yaml"
    path.write_text(MESH)
    return path


def test_analyze_exit_codes(mesh_file: Path, tmp_path: Path,
                            capsys: pytest.CaptureFixture[str]) -> None:
    assert analyze.main(["-f", str(mesh_file)]) == 0
    broken = tmp_path / "broken.yaml"
    broken.write_text(MESH.replace("name: api-v2, port", "name: ghost, port"))
    assert analyze.main(["-f", str(broken)]) == 1
    out = capsys.readouterr().out
    assert f"{broken}:" in out and "BackendNotFound" in out
    warned = tmp_path / "warned.yaml"
    warned.write_text(MESH.replace("appProtocol: http}]}\n---\napiVersion: v1\nkind: Service\n"
                                   "metadata: {name: api}", "}]}\n---\napiVersion: v1\nkind: "
                                   "Service\nmetadata: {name: api}", 1))
    assert analyze.main(["-f", str(warned)]) == 0
    assert analyze.main(["-f", str(tmp_path / "missing.yaml")]) == 2
    assert analyze.main(["-f", str(broken), "-o", "json"]) == 1
    [finding] = json.loads(capsys.readouterr().out)
    assert finding["reason"] == "BackendNotFound" and finding["line"] > 0


def test_explain_exit_codes_and_json(mesh_file: Path,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    assert explain.main(["-f", str(mesh_file), "--from", "web", "GET",
                         "http://api:8080/v2/x"]) == 0
    text = capsys.readouterr().out
    assert "HTTPRoute default/r rule 0 match 0" in text and "default/api-v2" in text
    assert explain.main(["-f", str(mesh_file), "--from", "web", "GET",
                         "http://nobody:8080/", "-o", "json"]) == 1
    assert json.loads(capsys.readouterr().out)["status"] == 404
    assert explain.main(["-f", str(mesh_file), "--from", "ghost", "GET", "http://api/"]) == 2
    assert explain.main(["-f", str(mesh_file), "--from", "web", "GET", "http://api/",
                         "-H", "nocolon"]) == 2


def test_explain_from_a_spiffe_id(mesh_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    allow = """---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: v2}
spec:
  rules: [{from: [{source: {principals: [cluster.local/ns/default/sa/web]}}]}]
"""
    mesh_file.write_text(MESH + allow)
    argv = ["-f", str(mesh_file), "GET", "http://api:8080/v2/x"]
    assert explain.main(["--from", "spiffe://cluster.local/ns/default/sa/web", *argv]) == 0
    assert "admission:      allowed over mTLS (PERMISSIVE): ALLOW policy rule " \
           "ns[default]-policy[v2]-rule[0]" in capsys.readouterr().out
    assert explain.main(["--from", "spiffe://cluster.local/ns/default/sa/api", *argv]) == 1
    assert "denied over mTLS" in capsys.readouterr().out
    assert explain.main(["--from", "web", "--no-mtls", *argv]) == 1
    assert explain.main(["--from", "spiffe://other/ns/default/sa/web", *argv]) == 2


def test_the_pointsman_command_dispatches_the_verbs(mesh_file: Path) -> None:
    pointsman = str(Path(sys.executable).with_name("pointsman"))  # the installed command
    result = subprocess.run([pointsman, "explain", "-f",
                             str(mesh_file), "--from", "web", "GET", "http://api:8080/"],
                            capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
    assert "Outcome:        forwarded" in result.stdout
    binary = subprocess.run([pointsman, "analyze", "-f", "-"], input=b"kind: \xff\xfe\n",
                            capture_output=True, check=False)
    assert binary.returncode == 1 and b"not UTF-8" in binary.stdout
    helped = subprocess.run([pointsman, "analyze", "--help"],
                            capture_output=True, text=True, check=False)
    assert helped.returncode == 0 and "exit status" in helped.stdout
