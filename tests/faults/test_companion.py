"""The worker's maintenance companion (reaper, relay, requeue) is started again when it dies:
without it, abandoned deploys and lost jobs would wait for a worker restart."""

from __future__ import annotations

import os
import signal
from pathlib import Path
from typing import Any

from tests.processes import alive, children, wait_for

from .conftest import fault_env, start_worker, stop_worker


def companions(worker_pid: int) -> list[int]:
    """The worker's children that run `worker.py --maintain`."""
    found = []
    for pid in children().get(worker_pid, []):
        try:
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"--maintain" in argv and alive(pid):
            found.append(pid)
    return found


def test_a_killed_companion_is_started_again_by_its_worker(app: Any, worker_env: dict[str, str],
                                                          tmp_path: Path) -> None:
    log = tmp_path / "worker.log"
    worker = start_worker(fault_env(worker_env), log)
    try:
        first = wait_for("the companion", lambda: companions(worker.pid))
        assert len(first) == 1
        os.kill(first[0], signal.SIGKILL)
        again = wait_for("a new companion", lambda: [pid for pid in companions(worker.pid)
                                                     if pid != first[0]])
        assert len(again) == 1 and not alive(first[0])
        assert worker.poll() is None  # the worker lives on
        wait_for("the restart in the log", lambda: "starting it again" in log.read_text())
        # The new companion works: it ends with its worker, like the first one would have.
        worker.send_signal(signal.SIGTERM)
        worker.wait(timeout=60)
        wait_for("the companion to end with its worker", lambda: not alive(again[0]))
    finally:
        stop_worker(worker)
