"""The fault suite's own parts: a redis-server only one test uses (so it may be stopped, restarted
or flushed), real worker processes with short leases, slow or hanging git remotes, and bounded
waits. Every wait has a deadline; none is a speed check."""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from redis import Redis
from sqlalchemy import select

from relapp.extensions import db
from relapp.models import Job, Release
from tests.conftest import ROOT, free_port, git
from tests.processes import alive, kill_tree, wait_for

LEASE = "2"
INTERVAL = "0.5"


class PrivateRedis:
    """A redis-server of this test alone on a free loopback port, with or without persistence
    (an append-only file in its folder), that can be stopped and started again on the same port."""

    def __init__(self, folder: Path, *, persistent: bool = False) -> None:
        self.folder = folder
        self.folder.mkdir(parents=True, exist_ok=True)
        self.persistent = persistent
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        from relapp.embedded import executable

        persistence = (["--appendonly", "yes", "--appendfsync", "always", "--save", ""]
                       if self.persistent else ["--appendonly", "no", "--save", ""])
        self.proc = subprocess.Popen([executable(), "--port", str(self.port), "--bind", "127.0.0.1",
                                      "--dir", str(self.folder), "--maxmemory-policy", "noeviction",
                                      *persistence],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for("the private redis-server to answer", self.answers, deadline=20)

    def answers(self) -> bool:
        try:
            return bool(Redis.from_url(self.url, socket_connect_timeout=0.5).ping())
        except Exception:  # noqa: BLE001 - not up (yet)
            return False

    def stop(self) -> None:
        """SIGTERM: redis-server shuts down cleanly (an append-only file is complete)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(timeout=20)
        self.proc = None

    def restart(self) -> None:
        self.stop()
        self.start()

    def client(self) -> Redis:
        return Redis.from_url(self.url)


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[Callable[..., PrivateRedis]]:
    """Start a private redis-server: `private_redis(persistent=False)`; all are stopped after."""
    started: list[PrivateRedis] = []

    def start(*, persistent: bool = False) -> PrivateRedis:
        server = PrivateRedis(tmp_path / f"redis-{len(started)}", persistent=persistent)
        server.start()
        started.append(server)
        return server

    yield start
    for server in started:
        if server.proc is not None and server.proc.poll() is None:
            server.proc.kill()
            server.proc.wait(timeout=20)


def use_redis(app: Any, url: str) -> None:
    """Point the test's app at another Redis (its cached client and queue are dropped)."""
    app.config["REDIS_URL"] = url
    app.extensions.pop("relapp.redis", None)
    app.extensions.pop("relapp.queue", None)


# -- worker processes ------------------------------------------------------------------------


def fault_env(worker_env: dict[str, str], **more: str) -> dict[str, str]:
    """The worker's environment with short leases and a fast maintenance pass."""
    return {**worker_env, "RELAPP_LEASE_SECONDS": LEASE, "RELAPP_REAPER_INTERVAL": INTERVAL, **more}


def start_worker(env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    """`python worker.py` (with its maintenance companion), in a session of its own."""
    handle = log.open("ab")
    return subprocess.Popen([sys.executable, str(ROOT / "worker.py")], cwd=ROOT, env=env,
                            start_new_session=True, stdout=handle, stderr=subprocess.STDOUT)


def stop_worker(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        kill_tree(proc)


def processes_mentioning(text: str) -> list[int]:
    """Pids of the processes whose command line mentions `text` (a remote's path)."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes().replace(b"\0", b" ")
        except OSError:
            continue
        if text.encode() in cmdline and alive(int(entry)):
            found.append(int(entry))
    return found


# -- git remotes that are slow, hang, or count -------------------------------------------------

# A pre-receive hook that writes its pid, then waits while the gate file exists (at most
# `limit` seconds, so a failed test leaves nothing behind for long); every accepted tag push is
# counted by the post-receive hook, one line per pushed tag.
GATED = """#!/bin/sh
echo $$ > "{marker}"
n=0
while [ -e "{gate}" ] && [ $n -lt {limit} ]; do sleep 0.1; n=$((n+1)); done
exit 0
"""
COUNT = """#!/bin/sh
while read old new ref; do
  case "$ref" in refs/tags/*) echo "$ref $new" >> "{counter}";; esac
done
"""


class Remote:
    """A bare remote with a gate on its pushes and a count of the tags pushed to it."""

    def __init__(self, origin: Path) -> None:
        self.origin = origin
        self.gate = origin / "gate"
        self.marker = origin / "hook.pid"
        self.counter = origin / "tags-pushed"
        self._hook("post-receive", COUNT.format(counter=self.counter))

    def _hook(self, name: str, text: str) -> None:
        hook = self.origin / "hooks" / name
        hook.write_text(text)
        hook.chmod(hook.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)

    def hold(self, limit_seconds: float = 60) -> None:
        """Pushes wait in the pre-receive hook until `release()` (or `limit_seconds`)."""
        self.marker.unlink(missing_ok=True)
        self.gate.touch()
        self._hook("pre-receive", GATED.format(marker=self.marker, gate=self.gate,
                                              limit=int(limit_seconds * 10)))

    def release(self) -> None:
        self.gate.unlink(missing_ok=True)

    def hook_pid(self) -> int | None:
        """The pid of the pre-receive hook once a push reached it."""
        try:
            text = self.marker.read_text().strip()
        except OSError:
            return None
        return int(text) if text else None

    def pushed_tags(self) -> list[str]:
        """`refs/tags/<name> <object>` for every tag push the remote accepted."""
        return self.counter.read_text().splitlines() if self.counter.exists() else []

    def tag(self, name: str) -> tuple[str, str] | None:
        """(object type, peeled commit) of a tag on the remote."""
        out = git("for-each-ref", f"refs/tags/{name}",
                  "--format=%(objecttype) %(*objectname) %(objectname)", cwd=self.origin)
        if not out:
            return None
        kind, peeled, obj = out.split(" ")
        return kind, peeled or obj

    def idle(self) -> bool:
        """No git process works on this remote any more."""
        return not processes_mentioning(str(self.origin))


# -- reading the record -------------------------------------------------------------------------


def job_row(job_id: int) -> dict[str, Any]:
    """A job's columns, read in a transaction closed at once (SQLite: the workers must write)."""
    db.session.expire_all()
    row = db.session.execute(select(Job.__table__).where(Job.__table__.c.id == job_id)).one()._asdict()
    db.session.commit()
    return row


def release_row(project_key: str, version: str) -> dict[str, Any]:
    from relapp.models import Project

    db.session.expire_all()
    row = db.session.execute(select(Release.__table__).join(Project, Project.id == Release.project_id)
                             .where(Project.key == project_key, Release.version == version)).one()._asdict()
    db.session.commit()
    return row


def jobs_of(project_key: str, version: str) -> list[dict[str, Any]]:
    from relapp.models import Project

    db.session.expire_all()
    rows = [r._asdict() for r in db.session.execute(
        select(Job.__table__).join(Release, Release.id == Job.release_id)
        .join(Project, Project.id == Release.project_id)
        .where(Project.key == project_key, Release.version == version).order_by(Job.id))]
    db.session.commit()
    return rows
