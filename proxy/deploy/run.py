"""`pointsman run --service NAME [sidecar flags] [--app-port PORT] -- COMMAND ARGS...`: the
sidecar and the application beside it, in the right order.

Start: the sidecar (`python -m proxy.deploy sidecar`, the same flags) first; the application
only once the sidecar's admin `/ready` answers 200 (its listeners are warm, so the
application's first outbound call finds them) and, with `--app-port`, `run` reports the
application ready when it accepts connections there; the sidecar then also probes that port
(`--readiness-port`, unless given otherwise or `--proxy envoy`) and the control plane makes it
an endpoint only while the application accepts connections. The application's environment gets
`POINTSMAN_OUTBOUND_IP` (call `http://SERVICE:PORT` at that address, docs/deploy.md) and
`POINTSMAN_ADMIN`.

Stop (SIGTERM or SIGINT to `run`): the sidecar gets SIGTERM and drains (its ADS stream ends,
so the control plane stops sending callers here; listeners stop accepting; HTTP/1.1 answers
`connection: close`, HTTP/2 sends GOAWAY; in-flight requests finish, bounded by
`--shutdown-drain-s`) while the application keeps serving them; then the application gets
SIGTERM (SIGKILL after `--app-stop-s`), and `run` exits. If the application exits on its own,
the sidecar is drained and `run` exits with the application's status; if the sidecar exits,
the application is stopped and `run` exits 1.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal
import sys
import urllib.request

from protos.cli_help import DefaultsHelpFormatter, version
from proxy.deploy.bootstrap import parse_address
from proxy.deploy.sidecar import add_sidecar_arguments, readiness_probe

log = logging.getLogger("pointsman.run")


def parse_args(argv: list[str]) -> tuple[argparse.Namespace, list[str]]:
    before, command = (argv[:argv.index("--")], argv[argv.index("--") + 1:]) \
        if "--" in argv else (argv, [])
    parser = argparse.ArgumentParser(
        prog="pointsman run", formatter_class=DefaultsHelpFormatter,
        usage="pointsman run (--service NAME | --workload NAME) [options] -- COMMAND [ARGS...]",
        description="start a sidecar, then the application once the sidecar is ready; on "
                    "SIGTERM drain the sidecar, then stop the application")
    add_sidecar_arguments(parser)
    parser.add_argument("--app-port", type=int, metavar="PORT",
                        help="wait until the application accepts connections at "
                             "APP_IP:PORT before reporting it ready, and probe it there "
                             "(--readiness-port PORT) so that it is an endpoint only while "
                             "it does")
    parser.add_argument("--ready-timeout-s", type=float, default=60.0,
                        help="how long the sidecar (then the application) may take to be ready")
    parser.add_argument("--app-stop-s", type=float, default=10.0,
                        help="after SIGTERM, how long the application may take to exit "
                             "before SIGKILL")
    parser.add_argument("--version", action="version", version=version())
    args = parser.parse_args(before)
    if not command:
        parser.error("the application's command is missing: ... -- COMMAND [ARGS...]")
    return args, command


def sidecar_argv(args: argparse.Namespace) -> list[str]:
    """`python -m proxy.deploy sidecar` with the sidecar flags `run` was given."""
    who = ["--workload", args.workload] if args.workload else ["--service", args.service]
    argv = [sys.executable, "-m", "proxy.deploy", "sidecar", *who,
            "--namespace", args.namespace, "--app-ip", args.app_ip,
            "--outbound-ip", args.outbound_ip, "--admin", args.admin, "--proxy", args.proxy,
            "--log-level", args.log_level, "--shutdown-drain-s", str(args.shutdown_drain_s)]
    for server in args.server or []:
        argv += ["--server", server]
    for flag, value in (("--instance-ip", args.instance_ip), ("--node-id", args.node_id),
                        ("--join-token", args.join_token), ("--xds-ca", args.xds_ca),
                        ("--xds-name", args.xds_name), ("--xds-cert", args.xds_cert),
                        ("--xds-key", args.xds_key), ("--ca-server", args.ca_server)):
        if value:
            argv += [flag, str(value)]
    argv += ["--trust-domain", args.trust_domain]
    argv += ["--gateway"] if args.gateway else []
    argv += ["--delta"] if args.delta else []
    argv += readiness_argv(args)
    for label in args.label:
        argv += ["--label", label]
    for port in args.port:
        argv += ["--port", port]
    return argv


def readiness_argv(args: argparse.Namespace) -> list[str]:
    """The probe flags: --app-port turns it on for that port (not with --proxy envoy, which
    cannot report it; an explicit --readiness-port is refused there by the sidecar)."""
    port = args.readiness_port
    if port is None and args.app_port and args.proxy != "envoy" and not args.gateway:
        port = args.app_port
    if port is None:
        return ["--readiness-path", args.readiness_path] if args.readiness_path else []
    argv = ["--readiness-port", str(port), "--readiness-period-s", str(args.readiness_period_s),
            "--readiness-failure-threshold", str(args.readiness_failure_threshold)]
    return argv + (["--readiness-path", args.readiness_path] if args.readiness_path else [])


def main(argv: list[str]) -> int:
    args, command = parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="[%(asctime)s][%(process)d][%(levelname)s][%(name)s] %(message)s")
    try:
        admin = parse_address(args.admin, "--admin")
        readiness_probe(args)  # the sidecar's own check, before anything starts
    except ValueError as error:
        print(f"pointsman run: {error}", file=sys.stderr)
        return 2
    return asyncio.run(Supervisor(args, command, admin).run())


class Supervisor:
    """The two child processes and the order they start and stop in."""

    def __init__(self, args: argparse.Namespace, command: list[str],
                 admin: tuple[str, int]) -> None:
        self.args = args
        self.command = command
        self.admin = admin
        self.stop = asyncio.Event()
        self.sidecar: asyncio.subprocess.Process | None = None
        self.app: asyncio.subprocess.Process | None = None

    def __repr__(self) -> str:
        return (f"Supervisor({self.args.service}, sidecar={_pid(self.sidecar)}, "
                f"app={_pid(self.app)})")

    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, self.stop.set)
        try:
            return await self._lifecycle()
        finally:  # whatever happened, no child outlives `run`
            await _kill(self.app)
            await _kill(self.sidecar)

    async def _lifecycle(self) -> int:
        self.sidecar = await asyncio.create_subprocess_exec(*sidecar_argv(self.args))
        log.info("sidecar started (pid %d), waiting for it to be ready", self.sidecar.pid)
        if not await self._until(self._sidecar_ready, self.sidecar, "the sidecar"):
            await self._stop_sidecar()
            return 1
        self.app = await asyncio.create_subprocess_exec(*self.command, env=self._app_env())
        log.info("sidecar ready; application started (pid %d): %s", self.app.pid,
                 " ".join(self.command))
        if self.args.app_port and await self._until(self._app_listening, self.app,
                                                     "the application"):
            log.info("application ready on %s:%d", self.args.app_ip, self.args.app_port)
        return await self._serve()

    async def _serve(self) -> int:
        assert self.sidecar is not None and self.app is not None
        app_exit = asyncio.ensure_future(self.app.wait())
        sidecar_exit = asyncio.ensure_future(self.sidecar.wait())
        stop = asyncio.ensure_future(self.stop.wait())
        await asyncio.wait({app_exit, sidecar_exit, stop}, return_when=asyncio.FIRST_COMPLETED)
        stop.cancel()
        if sidecar_exit.done():
            log.error("the sidecar exited (%d): stopping the application", sidecar_exit.result())
            await self._stop_app()
            return 1
        if app_exit.done():
            log.info("the application exited (%d): draining the sidecar", app_exit.result())
            await self._stop_sidecar()
            return int(app_exit.result())
        log.info("stopping: draining the sidecar (at most %.1fs), then the application",
                 self.args.shutdown_drain_s)
        await self._stop_sidecar()
        await self._stop_app()
        log.info("stopped")
        return 0

    async def _until(self, check: object, process: asyncio.subprocess.Process,
                     what: str) -> bool:
        """Poll `check` until true; False (logged) if `process` exits, a stop signal comes or
        --ready-timeout-s passes."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.args.ready_timeout_s
        while process.returncode is None and not self.stop.is_set():
            if await check():  # type: ignore[operator]
                return True
            if loop.time() >= deadline:
                log.error("%s is not ready after %.0fs", what, self.args.ready_timeout_s)
                return False
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.stop.wait(), 0.1)
        if process.returncode is not None:
            log.error("%s exited (%d) before it was ready", what, process.returncode)
        return False

    async def _sidecar_ready(self) -> bool:
        url = f"http://{_host(self.admin[0])}:{self.admin[1]}/ready"
        return await asyncio.to_thread(_status_is_200, url)

    async def _app_listening(self) -> bool:
        try:
            _reader, writer = await asyncio.open_connection(self.args.app_ip, self.args.app_port)
        except OSError:
            return False
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
        return True

    def _app_env(self) -> dict[str, str]:
        return {**os.environ, "POINTSMAN_SERVICE": self.args.service or self.args.workload,
                "POINTSMAN_OUTBOUND_IP": self.args.outbound_ip,
                "POINTSMAN_ADMIN": f"{_host(self.admin[0])}:{self.admin[1]}"}

    async def _stop_sidecar(self) -> None:
        # the sidecar bounds its own drain; the margin covers its start-up and exporters
        await _terminate(self.sidecar, self.args.shutdown_drain_s + 10.0, "sidecar")

    async def _stop_app(self) -> None:
        await _terminate(self.app, self.args.app_stop_s, "application")


async def _terminate(process: asyncio.subprocess.Process | None, grace: float,
                     what: str) -> None:
    if process is None or process.returncode is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        process.send_signal(signal.SIGTERM)
    try:
        await asyncio.wait_for(process.wait(), grace)
    except TimeoutError:
        log.warning("the %s did not exit %.1fs after SIGTERM: SIGKILL", what, grace)
        await _kill(process)


async def _kill(process: asyncio.subprocess.Process | None) -> None:
    if process is None or process.returncode is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        process.kill()
    await process.wait()


def _status_is_200(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1.0) as response:
            return bool(response.status == 200)
    except OSError:
        return False


def _host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def _pid(process: asyncio.subprocess.Process | None) -> int | None:
    return None if process is None else process.pid
