"""Nothing is lost to a crash: a killed worker's deploy ends as abandoned and can be retried, a deploy
asked while Redis is down runs once when it is back, and a stale attempt cannot write."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from redis import Redis
from rq import Queue
from sqlalchemy import select, update

from relapp.extensions import db
from relapp.models import AuditEvent, Deployment, Job, JobLogLine, utcnow
from relapp.services.deployments import finish, report_status
from relapp.services.queue import relay
from relapp.services.reaper import reap
from tests.conftest import ROOT, run_worker_burst
from tests.processes import alive, kill_tree, tree_of, wait_for

from .conftest import command_driver

# Short so the suite stays quick; CRASH_TEST_LEASE=60 CRASH_TEST_INTERVAL=15 measures the defaults.
LEASE = os.environ.get("CRASH_TEST_LEASE", "3")
INTERVAL = os.environ.get("CRASH_TEST_INTERVAL", "1")


def reload(deployment_id: int) -> SimpleNamespace:
    """The deployment's columns as plain values, read in a transaction that is closed at once:
    with SQLite every transaction holds the write lock, and the worker processes must write."""
    db.session.expire_all()
    row = db.session.execute(select(Deployment.__table__).where(
        Deployment.__table__.c.id == deployment_id)).one()._asdict()
    db.session.commit()
    return SimpleNamespace(**row)


def log_of(job_id: int) -> list[str]:
    lines = list(db.session.scalars(select(JobLogLine.line).where(JobLogLine.job_id == job_id)
                                    .order_by(JobLogLine.seq)))
    db.session.commit()
    return lines


def start_worker(env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    """A real, long-running worker (not --burst) with its maintenance thread, in its own session."""
    handle = log.open("ab")
    return subprocess.Popen([sys.executable, str(ROOT / "worker.py")], cwd=ROOT, start_new_session=True,
                            env={**env, "RELAPP_LEASE_SECONDS": LEASE, "RELAPP_REAPER_INTERVAL": INTERVAL},
                            stdout=handle, stderr=subprocess.STDOUT)


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        kill_tree(proc)


@contextmanager
def running_command_deploy(shop: Any, worker_env: dict[str, str], tmp_path: Path, *, steps: int,
                           delay: float) -> Iterator[tuple[subprocess.Popen[bytes], int, int, int]]:
    """Release 1.0.0 deploying to qa on a real worker, past its second step: yields the worker, the
    deployment's and job's ids and the deploy command's pid; the worker is killed on the way out."""
    shop.release("1.0.0")
    shop.env("qa").driver = command_driver(shop.root, DEPLOY_STEPS=str(steps), DEPLOY_DELAY=str(delay),
                                           DEPLOY_PIDFILE=str(shop.root / "deploy.pid"))
    db.session.commit()
    deployment_id = shop.deploy("1.0.0", "qa").get_json()["deployment"]["id"]
    db.session.commit()
    worker = start_worker(worker_env, tmp_path / "worker.log")
    try:
        job_id = reload(deployment_id).job_id
        wait_for("the deploy to be running",
                 lambda: any(f"step 2/{steps}" in line for line in log_of(job_id)))
        yield worker, deployment_id, job_id, int((shop.root / "deploy.pid").read_text())
    finally:
        stop(worker)


def test_a_deploy_killed_with_its_worker_ends_abandoned_frees_qa_and_can_be_retried(
        shop, worker_env, tmp_path):
    shop.release("1.0.0")
    shop.env("qa").driver = command_driver(shop.root, DEPLOY_STEPS="60", DEPLOY_DELAY="0.5")
    db.session.commit()
    deployment_id = shop.deploy("1.0.0", "qa").get_json()["deployment"]["id"]
    db.session.commit()
    first = start_worker(worker_env, tmp_path / "worker1.log")
    second = None
    try:
        job_id = reload(deployment_id).job_id
        wait_for("the deploy to be running", lambda: reload(deployment_id).status == "running"
                 and any("step 2/60" in line for line in log_of(job_id)))
        killed = kill_tree(first)
        killed_at = time.monotonic()
        assert len(killed) >= 3  # worker, work-horse, deploy command
        wait_for("every killed process to be gone", lambda: not any(alive(pid) for pid in killed),
                 deadline=10)

        second = start_worker(worker_env, tmp_path / "worker2.log")
        wait_for("the reaper", lambda: reload(deployment_id).status == "failed")
        detected = time.monotonic() - killed_at
        print(f"\nabandon detection: {detected:.1f} s after kill -9 "
              f"(lease {LEASE} s, reaper every {INTERVAL} s, plus the new worker's start-up); "
              f"bound at the defaults: 60 s lease + 15 s interval = 75 s")

        deployment = reload(deployment_id)
        assert deployment.message.startswith(
            "abandoned: the worker stopped reporting (lease expired at ")
        assert deployment.lease_until is None and deployment.finished_at is not None
        job = db.session.get(Job, job_id)
        assert job.status == "failed" and job.error.startswith("abandoned")
        event = db.session.scalar(select(AuditEvent).where(AuditEvent.action == "deploy.abandoned"))
        assert event.actor == "reaper" and event.target == f"deployment:{deployment_id}"
        assert event.before == {"status": "running", "attempt": 1}
        db.session.commit()
        # The reaper adds its line to the job's log just after committing the failure.
        wait_for("the reaper's log line",
                 lambda: any(line.startswith("reaper: abandoned") for line in log_of(job_id)))

        # qa is free again, and a retry runs to the end on the surviving worker.
        shop.env("qa").driver = command_driver(shop.root)
        db.session.commit()
        retry = shop.deploy("1.0.0", "qa")
        assert retry.status_code == 202, retry.get_json()
        assert retry.get_json()["deployment"]["previous_version"] is None
        retry_id = retry.get_json()["deployment"]["id"]
        db.session.commit()  # the request's last read must not hold SQLite's write lock
        wait_for("the retry", lambda: reload(retry_id).status in ("succeeded", "failed"))
        assert reload(retry_id).status == "succeeded", reload(retry_id).message
        assert (shop.root / "state" / "qa").read_text() == "v1.0.0\n"
        assert (shop.root / "state" / "runs.log").read_text() == "qa v1.0.0\n"  # the killed run never finished
    finally:
        stop(first)
        if second is not None:
            stop(second)


def test_a_paused_worker_cannot_write_after_its_lease_was_reaped(shop, worker_env, tmp_path):
    """The stale attempt: a work-horse frozen past its lease resumes and its result is refused."""
    with running_command_deploy(shop, worker_env, tmp_path, steps=40, delay=0.25) as (
            worker, deployment_id, job_id, command):
        horse = next(pid for pid in tree_of(worker.pid) if command in tree_of(pid) and pid != command
                     and pid != worker.pid)
        for pid in (horse, command):
            os.kill(pid, signal.SIGSTOP)
        try:
            # The worker's maintenance companion still runs and reaps the lapsed lease.
            wait_for("the reaper", lambda: reload(deployment_id).status == "failed")
        finally:
            for pid in (command, horse):
                os.kill(pid, signal.SIGCONT)
        wait_for("the stale attempt to give up",
                 lambda: any(line.startswith("rejected: attempt 1 no longer owns")
                             for line in log_of(job_id)))
        deployment = reload(deployment_id)
        assert deployment.status == "failed" and deployment.attempt == 1
        assert deployment.message.startswith("abandoned")
        assert not (shop.root / "state" / "qa").exists()  # the resumed run was stopped, not finished
        wait_for("the deploy command to be stopped", lambda: not alive(command), deadline=30)


def test_writes_fenced_with_an_old_attempt_are_rejected(shop):
    from relapp.jobs.deploy import Lease, claim

    shop.release("1.0.0")
    deployment_id = shop.deploy("1.0.0", "qa").get_json()["deployment"]["id"]
    assert claim(deployment_id, 60) == 1
    assert claim(deployment_id, 60) is None  # a second delivery of the same job does nothing
    first = Lease(deployment_id, 1, 60)
    first.next = 0
    assert first() is False  # renewed
    db.session.execute(update(Deployment).where(Deployment.id == deployment_id)
                       .values(lease_until=utcnow() - timedelta(seconds=1)))
    db.session.commit()
    assert reap().abandoned == [deployment_id]
    assert reap().abandoned == []

    # Whatever queues it again (an operator, a redelivery), the next run is attempt 2.
    db.session.execute(update(Deployment).where(Deployment.id == deployment_id).values(status="queued"))
    db.session.commit()
    assert claim(deployment_id, 60) == 2
    project_id = shop.project.id
    assert finish(deployment_id, 1, "succeeded", "late news from attempt 1", actor="worker",
                  action="deploy.finish", project_id=project_id) is False
    first.next = 0
    assert first() is True and first.reason == "lost"
    with pytest.raises(Exception, match="is on attempt 2, not 1"):
        report_status(db.session.get(Deployment, deployment_id), "failed", attempt=1, message="late", actor="cd:qa")
    assert reload(deployment_id).status == "running"
    assert finish(deployment_id, 2, "succeeded", "attempt 2 done", actor="worker",
                  action="deploy.finish", project_id=project_id) is True
    deployment = reload(deployment_id)
    assert (deployment.status, deployment.attempt, deployment.message) == ("succeeded", 2, "attempt 2 done")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class DedicatedRedis:
    """A Redis only this test uses, so stopping it disturbs nobody: the embedded binary on a Unix
    socket for the embedded backend, a redis-server on a free loopback port for the server one."""

    def __init__(self, backend: str, folder: Path) -> None:
        self.backend, self.folder = backend, folder
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self.url = ""

    def start(self) -> None:
        from relapp.embedded import ensure_server, executable

        if self.backend == "embedded":
            self.url = ensure_server(self.folder)
            return
        self.proc = subprocess.Popen([executable(), "--port", str(self.port), "--bind", "127.0.0.1",
                                      "--save", "", "--appendonly", "no",
                                      "--maxmemory-policy", "noeviction"],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.url = f"redis://127.0.0.1:{self.port}/0"
        wait_for("redis", self._ping, deadline=15)

    def _ping(self) -> bool:
        try:
            return bool(Redis.from_url(self.url, socket_connect_timeout=0.5).ping())
        except Exception:  # noqa: BLE001 - not up yet
            return False

    def stop(self) -> None:
        from relapp.embedded import stop_server

        if self.backend == "embedded":
            stop_server(self.folder)
        elif self.proc is not None:
            self.proc.terminate()
            self.proc.wait(timeout=15)
            self.proc = None
        wait_for("redis to stop", lambda: not self._ping(), deadline=15)


def use_redis(app: Any, url: str) -> None:
    app.config["REDIS_URL"] = url
    app.extensions.pop("relapp.redis", None)
    app.extensions.pop("relapp.queue", None)


def test_a_deploy_asked_while_redis_is_down_is_accepted_and_runs_once_when_it_is_back(
        app, shop, backend, worker_env, tmp_path):
    redis = DedicatedRedis(backend["name"], tmp_path / "redis")
    redis.start()
    try:
        use_redis(app, redis.url)
        redis.stop()
        shop.release("1.0.0")
        response = shop.deploy("1.0.0", "qa")
        assert response.status_code == 202, response.get_json()
        data = response.get_json()
        assert data["deployment"]["status"] == "queued" and data["job"]["enqueued"] is False
        job = db.session.get(Job, data["job"]["id"])
        assert job.enqueued_at is None  # still in the outbox
        assert relay(older_than=0) == 0  # Redis still down: nothing handed over, nothing lost

        redis.start()
        use_redis(app, redis.url)
        assert relay(older_than=0) == 1
        assert relay(older_than=0) == 0  # exactly once
        queue = Queue(app.config["RQ_QUEUE"] + "-deploy", connection=Redis.from_url(redis.url))
        assert queue.count == 1
        db.session.commit()
        result = run_worker_burst({**worker_env, "REDIS_URL": redis.url})
        assert result.returncode == 0, result.stderr[-3000:]
        deployment = reload(data["deployment"]["id"])
        assert deployment.status == "succeeded", deployment.message
        assert (shop.root / "state" / "runs.log").read_text() == "qa v1.0.0\n"
        assert log_of(job.id).count("step 1/3: deploying v1.0.0 to qa") == 1
    finally:
        redis.stop()


def test_cancelling_a_running_command_deploy_stops_its_processes_and_frees_qa(shop, worker_env, tmp_path):
    with running_command_deploy(shop, worker_env, tmp_path, steps=200, delay=0.2) as (
            _worker, deployment_id, job_id, command):
        marked = shop.post(f"/api/v1/deployments/{deployment_id}/status", "erin", {"status": "succeeded"})
        assert marked.status_code == 409 and "cancel it to stop it" in marked.get_json()["detail"]
        response = shop.post(f"/api/v1/deployments/{deployment_id}/cancel", "rita")
        assert response.status_code == 200
        # "running" until its job has stopped; a fast worker may stop it before this answer is read.
        assert response.get_json()["deployment"]["status"] in ("running", "cancelled")
        assert response.get_json()["deployment"]["cancel_requested"] is True
        db.session.commit()
        wait_for("the cancel", lambda: reload(deployment_id).status == "cancelled")
        assert not alive(command)
        assert not (shop.root / "state" / "qa").exists()
        assert "relapp: stop requested; stopping the process group." in log_of(job_id)
        actions = db.session.scalars(select(AuditEvent.action).where(
            AuditEvent.target == f"deployment:{deployment_id}").order_by(AuditEvent.id)).all()
        db.session.commit()
        assert actions == ["deploy.request", "deploy.start", "deploy.cancel_request", "deploy.finish"]
        assert shop.deploy("1.0.0", "qa").status_code == 202
        db.session.commit()


def test_a_queued_deploy_whose_job_ended_without_it_is_failed_by_the_reaper(shop):
    shop.release("1.0.0")
    deployment_id = shop.deploy("1.0.0", "qa").get_json()["deployment"]["id"]
    job_id = reload(deployment_id).job_id
    db.session.execute(update(Job).where(Job.id == job_id).values(status="failed", error="crashed"))
    db.session.commit()
    assert reap().orphaned == [deployment_id]
    deployment = reload(deployment_id)
    assert deployment.status == "failed"
    assert deployment.message == "abandoned: its job ended before the deploy started"
    assert shop.deploy("1.0.0", "qa").status_code == 202
