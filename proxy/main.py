"""`pointsman proxy -c BOOTSTRAP [--concurrency N] [--log-level L] [--drain-time-s S]
[--shutdown-drain-s S]`.

Reads an Envoy v3 bootstrap (the same file starts real Envoy), refuses unsupported config with
a message naming the field (exit 1), then serves until SIGTERM / SIGINT. With
`--shutdown-drain-s S` the signal first drains: the ADS stream ends, listeners stop accepting,
HTTP/1.1 connections answer `connection: close`, HTTP/2 ones get GOAWAY, and in-flight requests
finish for at most S seconds (Envoy and the default, 0, stop at once). With
`--concurrency N > 1` the work runs in N worker processes (proxy.workers).

Any error before the sidecar serves ends the process with exit status 1 and one line on stderr,
`pointsman proxy: <what, naming the field or the address and its setting>`, never a traceback:
config refused by the translators, a static listener whose network filter cannot be created (an
inline route naming an unknown cluster), an address in use (`admin.address`, `listener 'x'
address`). Static listeners are built and bound before "started" is logged. An exception in a
task of the server (proxy.tasks) ends the process the same way, at any time.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from pathlib import Path
from typing import Any

from protos.cli_help import DefaultsHelpFormatter, version
from protos.errors import ConfigError
from proxy.admin import AdminServer
from proxy.bootstrap import Bootstrap, load_bootstrap
from proxy.descriptors import raise_descriptor_limit
from proxy.listeners.manager import DEFAULT_DRAIN_TIMEOUT
from proxy.process import first_of, install_uvloop, tune_garbage_collector

log = logging.getLogger("proxy")


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="pointsman proxy",
                                     description="the Pointsman sidecar (Envoy v3 bootstrap)",
                                     formatter_class=DefaultsHelpFormatter)
    parser.add_argument("-c", "--config-path", required=True, type=Path,
                        help="Envoy v3 bootstrap file (YAML or JSON)")
    parser.add_argument("--concurrency", type=int, default=1,
                        help="worker processes sharing the listeners (SO_REUSEPORT)")
    parser.add_argument("--log-level", "-l", default="info",
                        choices=["trace", "debug", "info", "warn", "warning", "error",
                                 "critical", "off"], help="log level")
    parser.add_argument("--version", action="version", version=version())
    parser.add_argument("--drain-time-s", type=float, default=DEFAULT_DRAIN_TIMEOUT,
                        help="how long connections of an updated or removed listener may run")
    parser.add_argument("--shutdown-drain-s", type=float, default=0.0,
                        help="on SIGTERM/SIGINT: stop accepting and let in-flight requests "
                             "finish for at most this long (0: stop at once, as Envoy does)")
    return parser.parse_args(argv)


def _configure_logging(level: str) -> None:
    names = {"trace": "DEBUG", "warn": "WARNING", "off": "CRITICAL"}
    logging.basicConfig(level=names.get(level, level.upper()), stream=sys.stderr,
                        format="[%(asctime)s][%(process)d][%(levelname)s][%(name)s] %(message)s")


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    _configure_logging(args.log_level)
    try:
        bootstrap = load_bootstrap(args.config_path)
    except ConfigError as error:
        print(f"pointsman proxy: {error}", file=sys.stderr)
        return 1
    if args.concurrency < 1:
        print("pointsman proxy: --concurrency must be at least 1", file=sys.stderr)
        return 2
    if args.concurrency > 1 and args.shutdown_drain_s > 0:
        print("pointsman proxy: --shutdown-drain-s needs --concurrency 1", file=sys.stderr)
        return 2
    raise_descriptor_limit()
    try:
        if args.concurrency > 1:
            from proxy.workers import run_workers

            return run_workers(args.config_path, bootstrap, args.concurrency,
                               drain_timeout=args.drain_time_s)
        install_uvloop()
        return asyncio.run(serve(bootstrap, drain_timeout=args.drain_time_s,
                                 shutdown_drain=args.shutdown_drain_s))
    except (ConfigError, OSError) as error:  # a static listener, an address in use
        print(f"pointsman proxy: {error}", file=sys.stderr)
        return 1


async def serve(bootstrap: Bootstrap, *, drain_timeout: float,
                shutdown_drain: float = 0.0) -> int:
    from proxy.server import Server, ServerAdminSource

    server = Server(bootstrap, drain_timeout=drain_timeout)
    admin = None
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    try:
        if bootstrap.admin_address is not None:
            admin = AdminServer(ServerAdminSource(server), bootstrap.admin_address)
            await admin.start()
        await server.start()
        tune_garbage_collector()
        log.info("pointsman proxy started (node %s)", bootstrap.node.id or "-")
        if await first_of(stop, server.failed) is server.failed:
            print(f"pointsman proxy: {server.failure}", file=sys.stderr)
            return 1
        if shutdown_drain > 0:
            await shut_down_gracefully(server, shutdown_drain)
    finally:
        if admin is not None:
            await admin.close()
        await server.close()
    return 0


async def shut_down_gracefully(server: Any, grace: float) -> None:
    """Stop taking new work and let what is in flight finish, bounded by `grace` (Envoy's
    draining, arch_overview/operations/draining, applied at shutdown as well)."""
    loop = asyncio.get_running_loop()
    started = loop.time()
    log.info("shutting down: draining listeners for at most %.1fs", grace)
    await server.drain(grace)
    log.info("drained in %.2fs", loop.time() - started)

