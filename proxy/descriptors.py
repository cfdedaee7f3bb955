"""File descriptors: the process limit, and spare descriptors for when it is reached.

Envoy raises the soft RLIMIT_NOFILE to the hard limit at start (envoyproxy/envoy#39660; Envoy
1.40 started under `prlimit --nofile=256:4096` runs with 4096), and so does
`raise_descriptor_limit`.

At the limit accept() fails with EMFILE and the connection stays in the kernel's backlog.
Envoy 1.40 leaves it there: measured with `prlimit --nofile=64:64` and the descriptors held by
idle connections, a new connection and the admin `/ready` both time out until descriptors
free up. Pointsman keeps spare descriptors instead (libuv's "EMFILE trick"):

- a data-plane listener that hits the limit closes the listeners' spare, accepts the waiting
  connection and closes it at once (a clean refusal: the client reads EOF), counts it in
  `listener.<name>.downstream_global_cx_overflow` (Envoy's stat for connections refused over
  a global limit), and takes the spare back;
- the admin server keeps a spare of its own and serves its connection with it, so `/ready`,
  `/stats` and the rest stay reachable while the data plane is at the limit.
"""

from __future__ import annotations

import errno
import logging
import os
import resource

log = logging.getLogger(__name__)

# accept() errors that mean "out of descriptors or memory", not "this connection failed".
RESOURCE_ERRORS = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})


def raise_descriptor_limit() -> tuple[int, int]:
    """Raise the soft RLIMIT_NOFILE to the hard limit, as Envoy does; returns (soft, hard)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == hard or (soft == resource.RLIM_INFINITY):
        return soft, hard
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    except (OSError, ValueError) as error:  # e.g. a hard limit above the kernel's nr_open
        log.warning("cannot raise the file descriptor limit from %d to %d: %s", soft, hard,
                    error)
        return soft, hard
    return hard, hard


class SpareDescriptor:
    """One descriptor held open (on /dev/null) to be given back when the process is out of
    them: `release()` frees it for one accept, `restore()` takes it again."""

    def __init__(self) -> None:
        self._fd: int | None = None
        self.restore()

    def __repr__(self) -> str:
        return f"SpareDescriptor({'held' if self.held else 'released'})"

    @property
    def held(self) -> bool:
        return self._fd is not None

    def release(self) -> bool:
        """Close the spare; False when there was none to give."""
        if self._fd is None:
            return False
        os.close(self._fd)
        self._fd = None
        return True

    def restore(self) -> None:
        """Hold a spare again (retried by the next call while descriptors are short)."""
        if self._fd is not None:
            return
        try:
            self._fd = os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)
        except OSError:
            self._fd = None

    def close(self) -> None:
        self.release()


_listener_spare: SpareDescriptor | None = None


def listener_spare() -> SpareDescriptor:
    """The spare shared by every data-plane listener of this process."""
    global _listener_spare
    if _listener_spare is None:
        _listener_spare = SpareDescriptor()
    return _listener_spare
