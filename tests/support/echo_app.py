"""`python -m tests.support.echo_app NAME HOST PORT [H2C_PORT]`: EchoBackends
(tests.support.http_backends; HTTP/1.1 on PORT, h2c on H2C_PORT) as an application process,
for `pointsman run` tests.

At start it prints one line, `echo-app NAME started; sidecar /ready: STATUS`, STATUS being
what the sidecar's admin (`POINTSMAN_ADMIN`, set by `pointsman run`) answered at that moment,
so a test sees the start order; it prints `echo-app NAME stopping` on SIGTERM."""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading

from tests.support.http_backends import EchoBackend
from tests.support.processes import http_get


def main(argv: list[str]) -> int:
    name, host, port = argv[0], argv[1], int(argv[2])
    admin = os.environ.get("POINTSMAN_ADMIN")
    try:
        ready = str(http_get(f"http://{admin}/ready")[0]) if admin else "no POINTSMAN_ADMIN"
    except OSError as error:
        ready = f"unreachable ({error})"
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    backends = [EchoBackend(name, host=host, port=port)]
    if len(argv) > 3:
        backends.append(EchoBackend(name, host=host, port=int(argv[3]), http2=True))
    with contextlib.ExitStack() as stack:
        for backend in backends:
            stack.enter_context(backend)
        print(f"echo-app {name} started; sidecar /ready: {ready}", flush=True)
        stop.wait()
        print(f"echo-app {name} stopping", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
