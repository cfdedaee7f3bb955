"""`python -m proxy.deploy sidecar|run ...`: what `pointsman sidecar` and `pointsman run` run
(`pointsman run` starts its sidecar this way, without control-plane code)."""

import importlib
import sys

if len(sys.argv) < 2 or sys.argv[1] not in ("sidecar", "run"):
    print("usage: python -m proxy.deploy sidecar|run ARGS...", file=sys.stderr)
    sys.exit(2)
module = importlib.import_module(f"proxy.deploy.{sys.argv[1]}")
sys.exit(int(module.main(sys.argv[2:]) or 0))
