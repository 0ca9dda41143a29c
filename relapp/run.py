"""`make run`: set up the database and the demo, sync RELAPP_CONFIG, then run and supervise the web
server, one worker per kind of work (git, deploy, schedule) and the embedded Redis until Ctrl-C
or SIGTERM.

Supervision: a child that dies (the web server, a worker — the `schedule` one with its maintenance
companion and RQ's scheduler —, the embedded Redis server) is started again and the restart is said
on stderr with the child's name and how it ended. A child that dies within STABLE_SECONDS of its
start waits before the next start, 0.5 s doubling to 30 s, so a crash loop does not spin; one that
ran longer than that restarts after 0.5 s again. Only Ctrl-C or SIGTERM to `make run` stops
everything: the web server first (no new requests), then the workers, the embedded Redis last.

Each child runs in a process group of its own, so a child's leftovers (gunicorn's workers, the
worker's work-horse and companion) go with it, and Ctrl-C reaches `make run` alone, which stops
the children in order. Each child also gets SIGTERM if `make run` itself is killed
(PR_SET_PDEATHSIG). The embedded Redis server runs daemonized (relapp.embedded: any process of
the instance may start it), so it is watched through its pid file and a ping.
"""

from __future__ import annotations

import ctypes
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from flask import Flask

ROOT = Path(__file__).resolve().parent.parent

TICK = 0.25  # seconds between two looks at the children
STABLE_SECONDS = 30.0  # a child up this long is healthy again: its next restart waits 0.5 s
FIRST_DELAY = 0.5
MAX_DELAY = 30.0
STOP_SECONDS = 10.0  # how long a child may take to stop on SIGTERM before it is killed
PING_EVERY = 1.0  # seconds between two pings of the embedded Redis server
# A Redis server that runs but has not answered a ping for this long is killed and started again
# (its data is lost then: the maintenance companion hands committed work to it again).
REDIS_SILENT_SECONDS = 20.0

PR_SET_PDEATHSIG = 1


def say(message: str) -> None:
    print(f"relapp run: {message}", file=sys.stderr, flush=True)


def how_it_ended(returncode: int) -> str:
    """`exited with status 3`, or `was killed by SIGKILL`."""
    if returncode < 0:
        try:
            name = signal.Signals(-returncode).name
        except ValueError:
            name = f"signal {-returncode}"
        return f"was killed by {name}"
    return f"exited with status {returncode}"


def backoff(quick_deaths: int) -> float:
    """Seconds to wait before the next start after this many deaths in a row, each within
    STABLE_SECONDS of its start: 0.5, 1, 2, 4 … at most 30."""
    return float(min(MAX_DELAY, FIRST_DELAY * 2 ** max(0, quick_deaths - 1)))


def _die_with_parent(parent: int) -> None:
    """In the child before exec: SIGTERM when `make run` dies, even by SIGKILL."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    if os.getppid() != parent:  # the parent died before prctl took effect
        os.kill(os.getpid(), signal.SIGTERM)


def _kill_group(pgid: int, sig: signal.Signals) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


class Child:
    """A supervised process: its command, the running process, and its restart bookkeeping."""

    def __init__(self, name: str, argv: list[str]) -> None:
        self.name = name
        self.argv = argv
        self.proc: subprocess.Popen[bytes] | None = None
        self.started = 0.0
        self.quick_deaths = 0
        self.restart_at: float | None = None

    def start(self) -> None:
        parent = os.getpid()
        # preexec_fn is unsafe only in a process with threads; `make run` starts none.
        self.proc = subprocess.Popen(self.argv, cwd=ROOT, start_new_session=True,
                                     preexec_fn=lambda: _die_with_parent(parent))  # noqa: PLW1509
        self.started = time.monotonic()
        self.restart_at = None

    def check(self, now: float) -> None:
        """Notice a death (say it, sweep its group, plan the restart) or restart when due."""
        if self.restart_at is not None:
            if now >= self.restart_at:
                self.start()
                say(f"{self.name} started again (pid {self.pid})")
            return
        if self.proc is None or self.proc.poll() is None:
            return
        pid, returncode = self.proc.pid, self.proc.returncode
        # What it left behind (gunicorn's workers, the work-horse, the companion) goes too: an
        # orphaned web worker would keep the port, an orphaned horse a deploy.
        _kill_group(pid, signal.SIGKILL)
        self.quick_deaths = 0 if now - self.started >= STABLE_SECONDS else self.quick_deaths
        self.quick_deaths += 1
        delay = backoff(self.quick_deaths)
        self.restart_at = now + delay
        say(f"{self.name} (pid {pid}) {how_it_ended(returncode)}; starting it again in {delay:g} s")

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    def stop(self) -> None:
        """SIGTERM, up to STOP_SECONDS to finish, then SIGKILL; its whole group in the end."""
        proc, self.restart_at = self.proc, None
        if proc is None:
            return
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=STOP_SECONDS)
            except subprocess.TimeoutExpired:
                say(f"{self.name} (pid {proc.pid}) did not stop within {STOP_SECONDS:g} s; killing it")
                proc.kill()
                proc.wait()
        _kill_group(proc.pid, signal.SIGKILL)


class EmbeddedRedis:
    """The embedded Redis server, daemonized by relapp.embedded: watched through its pid file and
    a ping; its exit status is not ours to read (it is not our child)."""

    name = "the embedded Redis server"

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.quick_deaths = 0
        self.started = time.monotonic()
        self.restart_at: float | None = None
        self.next_ping = 0.0
        self.answered = self.started
        self.pid = self._read_pid()

    def _read_pid(self) -> int | None:
        from relapp.embedded import server_pid

        return server_pid(self.folder)

    def check(self, now: float) -> None:
        from relapp.embedded import EmbeddedRedisError, ensure_server, is_answering, process_alive

        if self.restart_at is not None:
            if now < self.restart_at:
                return
            try:
                ensure_server(self.folder)
            except EmbeddedRedisError as exc:
                self._died(now, f"could not be started again ({exc})")
                return
            self.started = self.answered = time.monotonic()
            self.restart_at = None
            self.pid = self._read_pid()
            say(f"{self.name} started again (pid {self.pid})")
            return
        if self.pid is not None and not process_alive(self.pid):
            self._died(now, "is gone (a daemon: its exit status is not known to make run)")
            return
        if now < self.next_ping:
            return
        self.next_ping = now + PING_EVERY
        if is_answering(self.folder):
            self.answered = now
            self.pid = self._read_pid() or self.pid  # another process of the instance may have started it
            return
        if now - self.answered >= REDIS_SILENT_SECONDS:
            if self.pid is not None:
                _kill_pid(self.pid)
            self._died(now, f"runs but has not answered for {REDIS_SILENT_SECONDS:g} s; it was killed")

    def _died(self, now: float, how: str) -> None:
        self.quick_deaths = 0 if now - self.started >= STABLE_SECONDS else self.quick_deaths
        self.quick_deaths += 1
        delay = backoff(self.quick_deaths)
        self.restart_at = now + delay
        say(f"{self.name} (pid {self.pid}) {how}; starting it again in {delay:g} s")


def _kill_pid(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def port_is_free(port: int) -> bool:
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def web_command(port: str) -> list[str]:
    """gunicorn as `make run` starts it: production's configuration file (relapp.gunicorn_conf:
    its hooks keep the metrics folder of its workers), gevent with problem+json refusals
    (relapp.gunicorn_worker), gunicorn's default request limits, RELAPP_CONFIG emptied and
    RELAPP_START_CHECKED set so its start hook neither syncs again nor spends a process on checks
    the workers run too (prepare synced; in production mode the hook checks anyway), and no
    control socket (one path per user: two starts would share it)."""
    return [sys.executable, "-m", "gunicorn", "--config", "python:relapp.gunicorn_conf",
            "--env", "RELAPP_CONFIG=", "--env", "RELAPP_START_CHECKED=1", "--bind", f"127.0.0.1:{port}",
            "--worker-class", "relapp.gunicorn_worker.ProblemGeventWorker",
            "--worker-connections", "1000", "--workers", "1", "--timeout", "120", "--graceful-timeout", "5",
            "--access-logfile", "-", "--no-control-socket", "relapp.wsgi:app"]


def main() -> int:
    """Start the embedded Redis (if no REDIS_URL), upgrade the database, make the demo, sync
    RELAPP_CONFIG (a bad file: its sentence on stderr, exit status 1), then run and supervise
    web and workers until Ctrl-C or SIGTERM (exit status 0)."""
    os.environ.setdefault("RELAPP_DEMO", "1")
    embedded = not os.environ.get("REDIS_URL")
    port = os.environ.get("PORT", "5000")
    from relapp import create_app
    from relapp.extensions import QUEUE_KINDS

    app = create_app()
    os.environ["REDIS_URL"] = app.config["REDIS_URL"]
    try:
        prepare(app)
    except BaseException:  # a failed set-up (a bad RELAPP_CONFIG: exit 1) leaves no Redis behind
        _stop_embedded_redis(app, embedded)
        raise
    if not port.isdigit() or not port_is_free(int(port)):
        say(f"port {port} is in use (or not a port number); pick another, e.g. PORT=8000 make run.")
        _stop_embedded_redis(app, embedded)
        return 1
    python = sys.executable
    # Stopped in this order: the web server first, so no request starts work nobody will do.
    # One worker per kind of work (its own queue), so a slow deploy never holds up a tag; the
    # `schedule` one also runs RQ's scheduler and the maintenance companion.
    children = [Child("web server (gunicorn)", web_command(port)),
                *(Child(f"worker ({kind})", [python, "worker.py", "--queues", kind])
                  for kind in QUEUE_KINDS)]
    redis = EmbeddedRedis(Path(app.config["RELAPP_EMBEDDED_REDIS"])) if embedded else None

    stopping: list[int] = []

    def stop(signum: int, _frame: object) -> None:
        stopping.append(signum)

    # Also when started from a script, where SIGINT may arrive ignored: Ctrl-C stops everything.
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    for child in children:
        child.start()
    print(f"\nrelapp runs on http://127.0.0.1:{port}", flush=True)
    if app.config["RELAPP_DEMO"]:
        print("Demo users: admin, release, engineer, qa, viewer — password: demo", flush=True)
    print("Stop with Ctrl-C.\n", flush=True)
    try:
        while not stopping:
            now = time.monotonic()
            if redis is not None:  # first: the others need it
                redis.check(now)
            for child in children:
                if not stopping:
                    child.check(now)
            time.sleep(TICK)
        say(f"{signal.Signals(stopping[0]).name} received; stopping the web server, the workers"
            + (" and the embedded Redis server." if embedded else "."))
    finally:
        # A second Ctrl-C while stopping must not leave children behind.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        for child in children:
            child.stop()
        _stop_embedded_redis(app, embedded)
    return 0


def prepare(app: Flask) -> None:
    """Everything before the processes start: the embedded Redis, the schema, the start-up
    checks (a production-mode refusal stops `make run` here, once, instead of its children
    refusing and being restarted with back-off), the demo (with RELAPP_DEMO) and then
    RELAPP_CONFIG's projects beside it, synced here once: the web server's start hook neither
    syncs nor checks again."""
    from flask_migrate import upgrade

    from relapp.cli import ensure_demo, sync_at_start
    from relapp.extensions import ensure_embedded_redis
    from relapp.startup import check_start

    with app.app_context():
        ensure_embedded_redis()
        upgrade(directory=str(ROOT / "migrations"))
        check_start(app, "make run")
        if app.config["RELAPP_DEMO"]:
            ensure_demo(app)
    sync_at_start(app)


def _stop_embedded_redis(app: Flask, embedded: bool) -> None:
    """Stop the embedded Redis server this start began (unless RELAPP_KEEP_REDIS is set)."""
    if embedded and not os.environ.get("RELAPP_KEEP_REDIS"):
        from relapp.embedded import stop_server

        stop_server(Path(app.instance_path) / "redis")


if __name__ == "__main__":
    sys.exit(main())
