"""The operability suite's parts: production-mode environments for real processes (gunicorn,
`python worker.py`), a private redis-server (tests/faults), and a gunicorn started as the
production units start it. Every wait has a deadline; none is a speed check."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import ROOT, free_port
from tests.faults.conftest import PrivateRedis, private_redis  # noqa: F401 - the fixture
from tests.processes import wait_for

# A real key: 64 characters, not a placeholder.
SECRET = "0123456789abcdef" * 4


def production_env(worker_env: dict[str, str], **more: str) -> dict[str, str]:
    """The test's database and Redis, production mode, a real secret key, no demo."""
    env = {**worker_env, "RELAPP_ENV": "production", "SECRET_KEY": SECRET, "RELAPP_DEMO": "0",
           "PYTHONUNBUFFERED": "1"}
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    env.update(more)
    return env


class Gunicorn:
    """`gunicorn -c python:relapp.gunicorn_conf relapp.wsgi:app` on a free loopback port, with
    its stdout (access log) and stderr (its own log, relapp's) in files."""

    def __init__(self, env: dict[str, str], folder: Path, workers: int = 2) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.out, self.err = folder / "gunicorn.out", folder / "gunicorn.err"
        self.argv = [sys.executable, "-m", "gunicorn", "-c", "python:relapp.gunicorn_conf",
                     "--workers", str(workers), "--bind", f"127.0.0.1:{self.port}",
                     "relapp.wsgi:app"]
        self.env = env
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> subprocess.Popen[bytes]:
        with self.out.open("ab") as out, self.err.open("ab") as err:
            self.proc = subprocess.Popen(self.argv, cwd=ROOT, env=self.env, stdout=out, stderr=err,
                                         start_new_session=True)
        return self.proc

    def serving(self) -> bool:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise AssertionError(f"gunicorn ended ({self.proc.returncode}):\n{self.err.read_text()[-3000:]}")
        try:
            return httpx.get(f"{self.url}/healthz", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    def worker_pids(self) -> list[int]:
        """The pids of gunicorn's web workers (the master's children)."""
        assert self.proc is not None
        out = subprocess.run(["ps", "-o", "pid=", "--ppid", str(self.proc.pid)], capture_output=True,
                             text=True, check=False).stdout
        return [int(p) for p in out.split()]

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=30)


@pytest.fixture
def gunicorn(tmp_path: Path) -> Iterator[Any]:
    """`gunicorn(env, workers=2)`: started and serving `/healthz`; stopped after the test."""
    started: list[Gunicorn] = []

    def start(env: dict[str, str], workers: int = 2) -> Gunicorn:
        server = Gunicorn(env, tmp_path, workers)
        started.append(server)
        server.start()
        wait_for("gunicorn to serve /healthz", server.serving, deadline=120, pause=0.3)
        return server

    yield start
    for server in started:
        server.stop()
