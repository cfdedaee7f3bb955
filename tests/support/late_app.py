"""`python -m tests.support.late_app NAME HOST PORT DELAY STOPFILE`: an application that starts
listening only DELAY seconds after it starts (an EchoBackend, tests.support.http_backends, on
HOST:PORT) and stops listening, without exiting, once STOPFILE exists: what a readiness probe
is for (`pointsman run --app-port` tests). Prints `late-app NAME listening` and `late-app NAME
stopped listening`; exits on SIGTERM."""

from __future__ import annotations

import signal
import sys
import threading
import time
from pathlib import Path

from tests.support.http_backends import EchoBackend


def main(argv: list[str]) -> int:
    name, host, port, delay, stop_file = (argv[0], argv[1], int(argv[2]), float(argv[3]),
                                          Path(argv[4]))
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    if stop.wait(delay):
        return 0
    with EchoBackend(name, host=host, port=port):
        print(f"late-app {name} listening", flush=True)
        while not stop.is_set() and not stop_file.exists():
            time.sleep(0.05)
    print(f"late-app {name} stopped listening", flush=True)
    stop.wait()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
