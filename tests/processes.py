"""Processes of the fault tests, read from /proc: a process tree whatever sessions its members
moved to, whether a pid is alive, a bounded wait, and the kill -9 of a whole tree."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

DEADLINE = 90.0  # the longest a wait may take before the test gives up (never a speed check)


def wait_for(what: str, check: Callable[[], Any], deadline: float = DEADLINE,
             pause: float = 0.1) -> Any:
    """Poll `check` until it returns something true; fail the test after `deadline` seconds."""
    give_up = time.monotonic() + deadline
    while time.monotonic() < give_up:
        value = check()
        if value:
            return value
        time.sleep(pause)
    raise AssertionError(f"gave up waiting for {what}")


def children() -> dict[int, list[int]]:
    """Every process's children, by parent pid."""
    tree: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_bytes()
        except OSError:
            continue
        fields = stat[stat.rfind(b")") + 2:].split()
        tree.setdefault(int(fields[1]), []).append(int(entry))
    return tree


def tree_of(pid: int) -> list[int]:
    """The process and all its descendants, whatever group or session they moved to (RQ's
    work-horse takes a session of its own, and so does every git or deploy command relapp
    starts)."""
    tree, out, todo = children(), [], [pid]
    while todo:
        current = todo.pop()
        out.append(current)
        todo.extend(tree.get(current, []))
    return out


def alive(pid: int) -> bool:
    """True while the process exists and is not a zombie."""
    try:
        state = Path(f"/proc/{pid}/stat").read_bytes()
    except OSError:
        return False
    return state[state.rfind(b")") + 2:].split()[0] not in (b"Z", b"X")


def kill_tree(proc: subprocess.Popen[bytes]) -> list[int]:
    """kill -9 a process and everything it started: the machine, or the cgroup, died. Returns
    the pids killed."""
    pids = tree_of(proc.pid)
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    proc.wait(timeout=30)
    return pids
