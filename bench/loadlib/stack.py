"""The stacks the load suite runs against, started and stopped by the bench itself.

- `production`: a fresh PostgreSQL database (created here, dropped at the end), a Redis database
  number of the bench's own (checked empty first, flushed at the end), `flask --app relapp db
  upgrade`, projects with generated repositories and bare remotes (relapp.demo's generator), the
  load users, gunicorn as the README starts it in production, and the workers.
- `make-run`: `python -m relapp.run` (SQLite, the embedded Redis, the demo project) with its own
  RELAPP_INSTANCE in a temporary folder and a free port.

Every process is started in a session of its own and its whole process group is killed at the
end, whatever happened; the temporary folder goes too.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
PYTHON = sys.executable
PG_ADMIN = "postgresql://postgres@127.0.0.1:5432/postgres"
PG_BASE = "postgresql://postgres@127.0.0.1:5432/"
REDIS_BASE = "redis://127.0.0.1:6379/"
USER_AGENT = "relapp-load/1"  # one for every client: sessions are bound to IP and user agent
# Every user comes from 127.0.0.1: the sign-in limit per IP (10 a minute) would refuse the burst.
LOGIN_LIMIT = "100000 per minute"
STEP_SECONDS = "0.1"  # the demo deploy's simulated step: deploys finish within about a second


class StackError(Exception):
    """The stack could not be started; the message says which step and why."""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def say(message: str) -> None:
    print(f"load: {message}", file=sys.stderr, flush=True)


@dataclass
class Stack:
    mode: str
    port: int
    env: dict[str, str]
    tmp: Path
    password: str = ""
    users: list[str] = field(default_factory=list)
    token: str = ""
    projects: dict[str, int] = field(default_factory=dict)  # key -> id
    origins: dict[str, Path] = field(default_factory=dict)  # key -> bare remote
    procs: list[tuple[str, subprocess.Popen[bytes]]] = field(default_factory=list)
    cleanups: list[Callable[[], None]] = field(default_factory=list)
    logs: list[Path] = field(default_factory=list)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, name: str, argv: list[str], log: str) -> subprocess.Popen[bytes]:
        path = self.tmp / log
        if path not in self.logs:
            self.logs.append(path)
        out = path.open("ab")
        proc = subprocess.Popen(argv, cwd=ROOT, env=self.env, stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)
        out.close()
        self.procs.append((name, proc))
        return proc

    def run(self, argv: list[str], what: str, timeout: float = 180) -> str:
        """A set-up command; its failure stops the bench with its output."""
        done = subprocess.run(argv, cwd=ROOT, env=self.env, capture_output=True, text=True,
                              timeout=timeout, check=False)
        if done.returncode != 0:
            raise StackError(f"{what} failed (status {done.returncode}):\n{done.stdout}{done.stderr}")
        return done.stdout

    def seed(self, users: int, config: Path | None = None) -> None:
        argv = [PYTHON, str(ROOT / "bench" / "loadlib" / "seed.py"), "--users", str(users),
                f"--password={self.password}",  # a password may start with "-"
                "--projects", ",".join(self.origins)]
        if config is not None:
            argv += ["--config", str(config)]
        found = json.loads(self.run(argv, "seeding projects and users"))
        self.users, self.token, self.projects = found["users"], found["token"], found["projects"]

    def wait_serving(self, path: str, timeout: float = 60) -> None:
        import httpx

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for name, proc in self.procs:
                if proc.poll() is not None:
                    raise StackError(f"{name} exited with status {proc.returncode} while starting; "
                                     f"see {self.logs[-1] if self.logs else 'its log'}:\n{self.tail()}")
            try:
                if httpx.get(self.base_url + path, timeout=2).status_code < 500:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.3)
        raise StackError(f"{self.base_url} did not answer within {timeout:g} s:\n{self.tail()}")

    def tail(self, lines: int = 30) -> str:
        out = []
        for path in self.logs:
            if path.exists():
                text = path.read_text(errors="replace").splitlines()[-lines:]
                out.append(f"--- {path.name}\n" + "\n".join(text))
        return "\n".join(out)

    def roots(self) -> list[tuple[str, int]]:
        """The processes whose trees the RSS sampler watches, by role."""
        return [(name, proc.pid) for name, proc in self.procs if proc.poll() is None]

    def release_id(self, key: str, version: str) -> int | None:
        """The database id of a release (its live topic is `release:<id>`)."""
        sql = ("SELECT r.id FROM releases r JOIN projects p ON p.id = r.project_id "
               "WHERE p.key = %s AND r.version = %s")
        if self.mode == "production":
            import psycopg

            with psycopg.connect(self.env["DATABASE_URL"]) as conn:
                row = conn.execute(sql, (key, version)).fetchone()
        else:
            path = Path(self.env["RELAPP_INSTANCE"]) / "relapp.sqlite3"
            with sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30) as conn:
                row = conn.execute(sql.replace("%s", "?"), (key, version)).fetchone()
        return int(row[0]) if row else None

    def stop(self) -> None:
        """SIGTERM to every process group, SIGKILL after 40 s (relapp.run stops its web server and
        workers, up to 10 s each, then its Redis); any Redis server left with our folder in its
        command line (the embedded one runs daemonized, outside every group); then the
        clean-ups, newest first."""
        for _name, proc in reversed(self.procs):
            _signal_group(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + 40
        for _name, proc in reversed(self.procs):
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                pass
            _signal_group(proc.pid, signal.SIGKILL)
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                say(f"process {proc.pid} did not end after SIGKILL")
        self._stop_embedded_redis()
        for cleanup in reversed(self.cleanups):
            try:
                cleanup()
            except Exception as exc:  # noqa: BLE001 - one failed clean-up must not skip the others
                say(f"clean-up failed: {exc}")


    def _stop_embedded_redis(self) -> None:
        import psutil

        for proc in psutil.process_iter(["pid", "cmdline"]):
            line = " ".join(proc.info["cmdline"] or [])
            if "redis-server" in line and str(self.tmp) in line:
                say(f"stopping the embedded Redis server {proc.pid} left by {self.mode}")
                proc.kill()


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def _base_env(tmp: Path, port: int) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("RELAPP_", "DATABASE_URL", "REDIS_URL", "SECRET_KEY", "TEST_"))}
    env.update({
        "PATH": f"{Path(PYTHON).parent}:{env.get('PATH', '')}",
        "RELAPP_INSTANCE": str(tmp / "instance"),
        "RELAPP_LOGIN_LIMIT": LOGIN_LIMIT,
        "RELAPP_DEMO_STEP_SECONDS": STEP_SECONDS,
        "RELAPP_BASE_URL": f"http://127.0.0.1:{port}",
        "PYTHONUNBUFFERED": "1",
        "PYTHONPATH": str(ROOT),  # config.py, for the seed script run from bench/loadlib
    })
    return env


def _project_toml(key: str, folder: Path) -> str:
    """relapp.demo's configuration for one generated repository, under another key, without the
    release train (a Monday-morning cut must not land in a run)."""
    from relapp import demo

    text = demo.config_text(folder)
    text = text.replace('key = "demo"', f'key = "{key}"', 1).replace('name = "Demo shop"', f'name = "Load {key}"', 1)
    return "\n".join(line for line in text.splitlines() if not line.startswith("train = ")) + "\n"


def start_production(*, users: int, projects: int, workers: int, redis_db: int, keep: bool) -> Stack:
    """PostgreSQL + Redis + gunicorn (2 gevent workers) + workers, as the README's production start."""
    import psycopg
    import redis

    sys.path.insert(0, str(ROOT))
    from relapp import demo

    tmp = Path(tempfile.mkdtemp(prefix="relapp-load-"))
    port = free_port()
    stack = Stack("production", port, _base_env(tmp, port), tmp, password=secrets.token_urlsafe(12))
    if not keep:
        stack.cleanups.append(lambda: shutil.rmtree(tmp, ignore_errors=True))
    try:
        client = redis.Redis.from_url(f"{REDIS_BASE}{redis_db}")
        if client.dbsize():
            raise StackError(f"Redis database {redis_db} is not empty; pick another with --redis-db.")
        stack.cleanups.append(lambda: (client.flushdb(), client.close()))
        name = f"relapp_load_{os.getpid()}_{secrets.token_hex(3)}"
        with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')

        def drop() -> None:
            with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

        stack.cleanups.append(drop)
        stack.env.update({
            "RELAPP_ENV": "production",
            "SECRET_KEY": secrets.token_hex(32),
            "DATABASE_URL": PG_BASE + name,
            "REDIS_URL": f"{REDIS_BASE}{redis_db}",
            "RELAPP_QUEUE": f"load{os.getpid()}",
        })
        t0 = time.monotonic()
        stack.run([PYTHON, "-m", "flask", "--app", "relapp", "db", "upgrade"], "flask db upgrade")
        os.environ["RELAPP_DEMO_STEP_SECONDS"] = STEP_SECONDS  # read by demo.config_text
        parts = []
        for n in range(1, projects + 1):
            key = f"p{n}"
            folder = tmp / "repos-src" / key
            demo.build(folder)
            stack.origins[key] = folder / "origin.git"
            parts.append(_project_toml(key, folder))
        config = tmp / "relapp.toml"
        config.write_text("\n".join(parts), encoding="utf-8")
        stack.env["RELAPP_CONFIG"] = str(config)
        stack.seed(users, config)
        say(f"production set-up: database {name}, Redis db {redis_db}, {projects} projects, "
            f"{len(stack.users)} users in {time.monotonic() - t0:.1f} s")
        stack.start("gunicorn", [PYTHON, "-m", "gunicorn", "-c", "python:relapp.gunicorn_conf",
                                 "--workers", "2", "--bind", f"127.0.0.1:{port}", "relapp.wsgi:app"],
                    "gunicorn.log")
        for argv in worker_commands(workers):
            stack.start("worker.py " + " ".join(argv[2:]), argv, "worker.log")
        stack.wait_serving("/login", timeout=120)
    except BaseException:
        stack.stop()
        raise
    return stack


def worker_commands(count: int) -> list[list[str]]:
    """One worker per queue kind when worker.py has `--queues`, else `count` plain workers."""
    text = (ROOT / "worker.py").read_text()
    if "--queues" in text:
        return [[PYTHON, "worker.py", "--queues", kind] for kind in ("git", "deploy", "schedule")]
    return [[PYTHON, "worker.py"] for _ in range(count)]


def start_make_run(*, users: int, keep: bool) -> Stack:
    """`python -m relapp.run`: the embedded default (SQLite, embedded Redis, the demo project)."""
    tmp = Path(tempfile.mkdtemp(prefix="relapp-load-run-"))
    port = free_port()
    stack = Stack("make-run", port, _base_env(tmp, port), tmp, password=secrets.token_urlsafe(12))
    stack.env["PORT"] = str(port)
    if not keep:
        stack.cleanups.append(lambda: shutil.rmtree(tmp, ignore_errors=True))
    try:
        t0 = time.monotonic()
        stack.start("relapp.run", [PYTHON, "-m", "relapp.run"], "run.log")
        stack.wait_serving("/login", timeout=120)
        stack.origins["demo"] = Path(stack.env["RELAPP_INSTANCE"]) / "demo" / "origin.git"
        stack.seed(users)
        say(f"make-run set-up: instance {stack.env['RELAPP_INSTANCE']}, port {port}, "
            f"{len(stack.users)} users in {time.monotonic() - t0:.1f} s")
    except BaseException:
        stack.stop()
        raise
    return stack


def add_commit(origin: Path, n: int) -> None:
    """One more commit on main in a bare remote, so that every cut has something new."""
    from relapp import gitops

    stamp = int(time.time())
    message = f"feat(payments): load bench change {n} (#{5000 + n})".encode()
    content = f"change {n} at {stamp}\n".encode()
    stream = (b"commit refs/heads/main\n"
              + f"author Load Bench <load@example.com> {stamp} +0000\n".encode()
              + f"committer Load Bench <load@example.com> {stamp} +0000\n".encode()
              + b"data %d\n" % len(message) + message + b"\n"
              + b"from refs/heads/main^0\n"
              + f"M 100644 inline services/payments/load-{n % 7}.txt\n".encode()
              + b"data %d\n" % len(content) + content + b"\n")
    gitops.fast_import(origin, stream)


def describe(stack: Stack) -> dict[str, Any]:
    return {"mode": stack.mode, "url": stack.base_url, "tmp": str(stack.tmp)}
