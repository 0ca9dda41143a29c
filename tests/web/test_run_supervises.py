"""`make run` supervises (issue 9, finding 6): a child that dies (the worker, the web server, the
embedded Redis server) is started again and the restart is said on stderr with its name and how
it ended; only SIGTERM (or Ctrl-C) to `make run` stops everything, and then nothing is left.

Real processes: `python -m relapp.run` on the embedded default (what `make run` is), with its own
instance folder and port, killed piece by piece with SIGKILL.
"""

from __future__ import annotations

import http.client
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from relapp import run
from tests.conftest import ROOT, free_port, wait_until_serving
from tests.processes import alive


def _children(pid: int) -> dict[int, str]:
    """Every descendant of `pid` now: {pid: command line}."""
    parents: dict[int, int] = {}
    commands: dict[int, str] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode().strip()
        except OSError:
            continue
        parents[int(entry.name)] = int(stat.rpartition(")")[2].split()[1])
        commands[int(entry.name)] = command
    found: dict[int, str] = {}
    frontier = [pid]
    while frontier:
        parent = frontier.pop()
        for child, ppid in parents.items():
            if ppid == parent and child not in found:
                found[child] = commands[child]
                frontier.append(child)
    return found


def _direct(proc: subprocess.Popen[Any], needle: str) -> int | None:
    """The pid of `make run`'s own child whose command line holds `needle`."""
    for pid, command in _children(proc.pid).items():
        try:
            ppid = int(Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[1])
        except OSError:
            continue
        if ppid == proc.pid and needle in command:
            return pid
    return None


def _wait_for(what: str, check: Any, seconds: float, log: Path) -> Any:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.2)
    pytest.fail(f"{what} did not happen within {seconds} s; log:\n{log.read_text()[-4000:]}")


@pytest.fixture
def make_run(tmp_path: Path) -> Iterator[dict[str, Any]]:
    """`python -m relapp.run` as `make run` starts it, on a free port; stopped (killed if need
    be) after the test."""
    instance = tmp_path / "instance"
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("DATABASE_URL", "REDIS_URL", "TEST_", "RELAPP_CONFIG"))}
    port = free_port()
    env.update({"RELAPP_INSTANCE": str(instance), "PORT": str(port), "RELAPP_DEMO": "1",
                "PYTHONUNBUFFERED": "1"})
    log = tmp_path / "run.log"
    with log.open("wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "relapp.run"], cwd=ROOT, env=env,
                                stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        assert wait_until_serving(url, proc, 120, pause=0.3), log.read_text()[-3000:]
        yield {"proc": proc, "url": url, "port": port, "instance": instance, "log": log, "env": env}
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
        from relapp.embedded import stop_server

        stop_server(instance / "redis")


def _token(env: dict[str, str]) -> str:
    out = subprocess.run([sys.executable, "-m", "flask", "--app", "relapp", "token", "create", "admin"],
                         cwd=ROOT, env=env, check=True, capture_output=True, text=True, timeout=120)
    return out.stdout.strip().splitlines()[-1]


def _deploy_runs(url: str, token: str, version: str, log: Path) -> None:
    """Ask for a deploy of `version` to qa and wait until the worker has run it."""
    headers = {"Authorization": f"Bearer {token}"}
    answer = httpx.post(f"{url}/api/v1/projects/demo/releases/{version}/deployments",
                        json={"environment": "qa"}, headers=headers, timeout=60)
    assert answer.status_code == 202, answer.text
    deployment = answer.json()["deployment"]["id"]

    def finished() -> str | None:
        status = httpx.get(f"{url}/api/v1/deployments/{deployment}", headers=headers,
                           timeout=30).json()["deployment"]["status"]
        return status if status in ("succeeded", "failed", "cancelled") else None

    assert _wait_for(f"deployment {deployment}", finished, 120, log) == "succeeded"


def _ping_job_runs(instance: Path, value: str, log: Path, queue: str = "relapp-git") -> None:
    """A job through the embedded Redis: the worker serving `queue` picks it up and runs it."""
    from redis import Redis
    from rq import Queue

    from relapp.embedded import url_for_folder

    connection = Redis.from_url(url_for_folder(instance / "redis"))
    job = Queue(queue, connection=connection).enqueue("relapp.jobs.ping", value)
    _wait_for(f"the ping job {value!r}", lambda: job.get_status(refresh=True) == "finished", 60, log)
    assert job.return_value()["echo"] == value
    connection.close()


def test_a_dead_child_is_restarted_and_only_sigterm_stops_everything(make_run):
    proc, url, log = make_run["proc"], make_run["url"], make_run["log"]
    token = _token(make_run["env"])
    versions = [r["version"] for r in httpx.get(f"{url}/api/v1/projects/demo/releases",
                                                headers={"Authorization": f"Bearer {token}"},
                                                timeout=30).json()["releases"]]
    assert versions

    # make run's own gunicorn answers its refusals in problem+json (finding 8).
    conn = http.client.HTTPConnection("127.0.0.1", make_run["port"], timeout=30)
    conn.request("GET", "/api/v1/" + "a" * 5000)
    refused = conn.getresponse()
    assert refused.status == 414 and refused.getheader("Content-Type") == "application/problem+json"
    assert "longer than the 4094 bytes" in json.loads(refused.read())["detail"]

    # One worker per kind of work, each a child of its own (issue 10); only the `schedule` one
    # has a maintenance companion.
    workers = {kind: _direct(proc, f"worker.py --queues {kind}") for kind in ("git", "deploy", "schedule")}
    assert None not in workers.values(), _children(proc.pid)
    owners = [command.split()[-1] for command in _children(proc.pid).values() if "--maintain" in command]
    assert owners == [str(workers["schedule"])]

    # The git worker dies: the web server still answers, a new one runs the next git job.
    worker = workers["git"]
    assert worker is not None
    os.kill(worker, signal.SIGKILL)
    assert httpx.get(f"{url}/login", timeout=30).status_code == 200
    _wait_for("a new git worker", lambda: (_direct(proc, "worker.py --queues git") or worker) != worker, 60, log)
    assert f"relapp run: worker (git) (pid {worker}) was killed by SIGKILL; starting it again in" \
        in log.read_text()
    _ping_job_runs(make_run["instance"], "after the worker died", log)

    # The web server dies: it comes back on the same port.
    web = _direct(proc, "gunicorn")
    assert web is not None
    os.kill(web, signal.SIGKILL)
    _wait_for("the web server's restart", lambda: (_direct(proc, "gunicorn") or web) != web, 60, log)
    assert wait_until_serving(url, proc, 60, pause=0.3), log.read_text()[-3000:]
    assert f"relapp run: web server (gunicorn) (pid {web}) was killed by SIGKILL" in log.read_text()

    # The embedded Redis server dies: it comes back, and web and worker use it again.
    pidfile = make_run["instance"] / "redis" / "redis.pid"
    redis = int(pidfile.read_text())
    os.kill(redis, signal.SIGKILL)
    _wait_for("the embedded Redis server's restart",
              lambda: "the embedded Redis server started again" in log.read_text(), 60, log)
    assert f"relapp run: the embedded Redis server (pid {redis}) is gone" in log.read_text()
    assert int(pidfile.read_text()) != redis
    _ping_job_runs(make_run["instance"], "after Redis died", log)
    # A deploy asked through the web: web and worker both reach the new Redis.
    _deploy_runs(url, token, versions[0], log)

    # SIGTERM stops every process make run started, the embedded Redis server too; status 0.
    everything = set(_children(proc.pid)) | {int(pidfile.read_text())}
    assert len(everything) >= 7  # gunicorn master and worker, three workers, companion, Redis
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=90) == 0
    left = [pid for pid in everything if alive(pid)]
    assert not left, (left, log.read_text()[-3000:])
    assert "SIGTERM received; stopping the web server, the workers and the embedded Redis server" \
        in log.read_text()


def test_a_crash_loop_backs_off(capsys):
    """A child that dies at once is started again after 0.5 s, then 1 s, then 2 s …"""
    child = run.Child("flaky", [sys.executable, "-c", "import sys; sys.exit(3)"])
    child.start()
    started = child.pid
    deadline = time.monotonic() + 30
    said = ""
    while time.monotonic() < deadline and "again in 2 s" not in said:
        child.check(time.monotonic())
        said += capsys.readouterr().err
        time.sleep(0.05)
    child.stop()
    assert f"relapp run: flaky (pid {started}) exited with status 3; starting it again in 0.5 s" in said
    assert "exited with status 3; starting it again in 1 s" in said
    assert "exited with status 3; starting it again in 2 s" in said
    assert said.count("relapp run: flaky started again") == 2
    assert [run.backoff(n) for n in (1, 2, 3, 4, 7, 8, 20)] == [0.5, 1, 2, 4, 30, 30, 30]
    assert run.how_it_ended(-signal.SIGKILL) == "was killed by SIGKILL"
