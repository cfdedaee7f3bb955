"""What the benchmark scripts accept from a load generator: a run counts only when every
response was 2xx and the tool saw no error; otherwise `LoadError` stops the benchmark with the
tool's own figures in the message (each script's main turns it into a non-zero exit).

A proxy answering 503 (or resetting streams) is fast, and the raw req/s of such a run used to
be reported as throughput.
"""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Callable

WRK_NON_2XX = re.compile(r"Non-2xx or 3xx responses: (\d+)")
WRK_SOCKET_ERRORS = re.compile(
    r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)")
WRK_RATE = re.compile(r"Requests/sec:\s+([\d.]+)")
WRK_DONE = re.compile(r"(\d+) requests in ")
H2LOAD_REQUESTS = re.compile(r"requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, "
                             r"(\d+) failed, (\d+) errored, (\d+) timeout")
H2LOAD_STATUS = re.compile(r"status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx")
H2LOAD_RATE = re.compile(r"finished in [\d.]+\w+, ([\d.]+) req/s")


class LoadError(RuntimeError):
    """A load run had non-2xx answers or errors: its figures are not throughput."""


def _tail(completed: subprocess.CompletedProcess[str]) -> str:
    return (completed.stdout + completed.stderr).strip()[-1500:]


def wrk_requests_per_second(completed: subprocess.CompletedProcess[str]) -> float:
    """Requests/s of a wrk run in which every response was 2xx and no socket failed."""
    out = completed.stdout
    if completed.returncode != 0:
        raise LoadError(f"wrk exited with status {completed.returncode}:\n{_tail(completed)}")
    non_2xx = WRK_NON_2XX.search(out)
    if non_2xx is not None:
        raise LoadError(f"wrk: {non_2xx.group(1)} responses were not 2xx:\n{out}")
    errors = WRK_SOCKET_ERRORS.search(out)
    if errors is not None and any(int(count) for count in errors.groups()):
        raise LoadError(f"wrk: {errors.group(0)}:\n{out}")
    rate, done = WRK_RATE.search(out), WRK_DONE.search(out)
    if rate is None or done is None or int(done.group(1)) == 0:
        raise LoadError(f"wrk completed no request:\n{_tail(completed)}")
    return float(rate.group(1))


def h2load_requests_per_second(completed: subprocess.CompletedProcess[str],
                               requests: int) -> float:
    """Requests/s of an h2load run in which all `requests` were answered 2xx, none failed,
    errored or timed out (h2load exits 0 either way)."""
    out = completed.stdout
    counts, statuses = H2LOAD_REQUESTS.search(out), H2LOAD_STATUS.search(out)
    rate = H2LOAD_RATE.search(out)
    if completed.returncode != 0 or counts is None or statuses is None or rate is None:
        raise LoadError(f"h2load exited with status {completed.returncode} or printed no "
                        f"summary:\n{_tail(completed)}")
    _total, _started, _done, succeeded, failed, errored, timeout = map(int, counts.groups())
    two_xx = int(statuses.group(1))
    if failed or errored or timeout or succeeded != requests or two_xx != requests:
        raise LoadError(f"h2load: {counts.group(0)}; {statuses.group(0)} "
                        f"(all {requests} must be 2xx)")
    return float(rate.group(1))


def run_checked(main: Callable[[], int | None]) -> int:
    """Run a benchmark's main; a LoadError ends it with a clear message and status 1."""
    try:
        return main() or 0
    except LoadError as error:
        print(f"benchmark failed: {error}", file=sys.stderr)
        return 1
