"""CPU seconds and memory of a process and its descendants, from /proc (Linux)."""

from __future__ import annotations

import os
from pathlib import Path

TICKS = os.sysconf("SC_CLK_TCK")


def _stat(pid: int) -> list[str]:
    text = Path(f"/proc/{pid}/stat").read_text()
    return text[text.rindex(")") + 2:].split()  # fields from 3 (state) on


def descendants(root: int) -> list[int]:
    """`root` and every process below it."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parent = int(_stat(int(entry.name))[1])
            except (OSError, ValueError, IndexError):
                continue
            children.setdefault(parent, []).append(int(entry.name))
    found, queue = [], [root]
    while queue:
        pid = queue.pop()
        found.append(pid)
        queue.extend(children.get(pid, []))
    return found


def cpu_seconds(root: int) -> float:
    """User + system CPU of the tree (children that exited and were waited for included)."""
    total = 0
    for pid in descendants(root):
        try:
            fields = _stat(pid)
        except OSError:
            continue
        total += sum(int(value) for value in fields[11:15])  # utime stime cutime cstime
    return total / TICKS


def cpu_by_process(root: int) -> dict[int, float]:
    """CPU seconds of each process of the tree (a control plane's parent and workers)."""
    found = {}
    for pid in descendants(root):
        try:
            fields = _stat(pid)
        except OSError:
            continue
        found[pid] = sum(int(value) for value in fields[11:13]) / TICKS
    return found


def memory_kib(root: int, key: str = "VmRSS") -> int:
    """Sum of `key` (VmRSS now, VmHWM peak) over the tree, KiB."""
    total = 0
    for pid in descendants(root):
        try:
            lines = Path(f"/proc/{pid}/status").read_text().splitlines()
        except OSError:
            continue
        for line in lines:
            if line.startswith(f"{key}:"):
                total += int(line.split()[1])
    return total


def minor_faults(root: int) -> int:
    """Minor page faults of the tree (every thread of each process: /proc/PID/stat minflt)."""
    total = 0
    for pid in descendants(root):
        try:
            total += int(_stat(pid)[7])
        except (OSError, ValueError, IndexError):
            continue
    return total


def context_switches(root: int) -> int:
    """Voluntary + involuntary context switches of the threads alive now (threads that
    exited are not counted: a lower bound when thread pools shrink)."""
    total = 0
    for pid in descendants(root):
        try:
            tasks = list(Path(f"/proc/{pid}/task").iterdir())
        except OSError:
            continue
        for task in tasks:
            try:
                lines = (task / "status").read_text().splitlines()
            except OSError:
                continue
            total += sum(int(line.split()[1]) for line in lines
                         if line.startswith(("voluntary_ctxt_switches:",
                                             "nonvoluntary_ctxt_switches:")))
    return total
