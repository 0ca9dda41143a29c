"""The deploy job: claim the deployment (a fenced compare-and-set), run its driver under a lease,
record the outcome only while this attempt still owns the deployment.

Only this job renews the lease (the work-horse's `Lease` calls, never the worker parent's
heartbeat), so a deploy is abandoned exactly when the process running it stops: the worker is
gone, or its work-horse was killed while the parent lives. A work-horse whose parent died stops
its command and lets the lease run out. The command's process group is recorded as it starts, for
the reaper to stop if the work-horse dies. Every read-then-write runs in a retried write
transaction (`in_write_transaction`).
"""

from __future__ import annotations

import logging
import os
import socket
import time
from datetime import timedelta
from typing import Any

from flask import current_app
from sqlalchemy import select, update
from sqlalchemy.exc import OperationalError

from relapp.drivers import (
    DeployContext,
    DriverConfigError,
    DriverResult,
    Outcome,
    build_driver,
    secrets_of,
)
from relapp.extensions import db, in_write_transaction
from relapp.joblog import publish
from relapp.jobs import JobFailed
from relapp.models import Deployment, Job, Release, utcnow
from relapp.services import audit
from relapp.services.deployments import finish, lease_seconds, wait_seconds, write_line

log = logging.getLogger(__name__)
WORKER = "worker"


class Lease:
    """`should_stop` for a driver: renews the lease (fenced by attempt) and notices a cancel, a
    lost lease, and the death of the worker that started this work-horse."""

    def __init__(self, deployment_id: int, attempt: int, seconds: float) -> None:
        """Watch one attempt of one deployment; renew every quarter lease (at most every 5 s)."""
        self.deployment_id = deployment_id
        self.attempt = attempt
        self.seconds = seconds
        self.every = max(0.5, min(5.0, seconds / 4))
        self.next = time.monotonic() + self.every
        self.parent = os.getppid()
        # "cancelled" | "lost" | "orphaned" once the driver must stop
        self.reason: str | None = None

    def __call__(self) -> bool:
        """True when the driver must stop: the deploy was cancelled, this attempt lost it, or
        the worker that forked this work-horse died (the work-horse was adopted)."""
        if self.reason is not None:
            return True
        if os.getppid() != self.parent:
            # Nobody supervises this work-horse any more: stop the command and renew nothing,
            # so the lease runs out and the reaper fails the deployment as abandoned.
            self.reason = "orphaned"
            return True
        if time.monotonic() < self.next:
            return False
        self.next = time.monotonic() + self.every
        try:
            renewed = db.session.execute(update(Deployment).where(
                Deployment.id == self.deployment_id, Deployment.attempt == self.attempt,
                Deployment.status == "running", Deployment.cancel_requested_at.is_(None))
                .values(lease_until=utcnow() + timedelta(seconds=self.seconds))).rowcount
            db.session.commit()
            if renewed:
                return False
            row = db.session.execute(select(Deployment.status, Deployment.attempt,
                                            Deployment.cancel_requested_at)
                                     .where(Deployment.id == self.deployment_id)).one()
            db.session.commit()
        except OperationalError:
            # The database blinked: keep deploying; if it stays away the lease runs out and the
            # reaper decides, and our final write is then refused by the attempt check.
            db.session.rollback()
            log.warning("deployment %s: lease renewal failed", self.deployment_id)
            self.next = time.monotonic() + min(1.0, self.every)  # try again soon, not in a quarter
            return False
        mine = row.status == "running" and row.attempt == self.attempt
        self.reason = "cancelled" if mine and row.cancel_requested_at is not None else "lost"
        return True


class SafeLog:
    """The job's log as the driver's `log` callback, robust to lines added by other processes."""

    def __init__(self, joblog: Any) -> None:
        """Wrap the JobLog that `run` made for this job."""
        self.joblog = joblog

    def __call__(self, line: str) -> None:
        """Store and publish one line."""
        write_line(self.joblog, line)


def _deployment_state(deployment_id: int) -> tuple[str, int]:
    row = db.session.execute(select(Deployment.status, Deployment.attempt)
                             .where(Deployment.id == deployment_id)).one()
    db.session.commit()
    return row.status, row.attempt


def _claim(deployment_id: int, lease: float) -> int | None:
    now = utcnow()
    claimed = db.session.execute(update(Deployment).where(
        Deployment.id == deployment_id, Deployment.status == "queued").values(
        status="running", attempt=Deployment.attempt + 1, started_at=now,
        lease_until=now + timedelta(seconds=lease), waiting_until=None, process_group=None,
        process_host=None)).rowcount
    if not claimed:
        return None
    return db.session.scalar(select(Deployment.attempt).where(Deployment.id == deployment_id))


def claim(deployment_id: int, lease: float) -> int | None:
    """Take a queued deployment (compare-and-set) with a lease; return the new attempt or None."""
    return in_write_transaction(_claim, deployment_id, lease)


class ProcessRecord:
    """`DeployContext.on_process`: records the command's process group and this host on the
    deployment (fenced by attempt) the moment it starts, so that the reaper can stop the group
    should this work-horse die; `forget()` clears the record once the driver has ended."""

    def __init__(self, deployment_id: int, attempt: int) -> None:
        """For one attempt of one deployment."""
        self.deployment_id = deployment_id
        self.attempt = attempt
        self.host = socket.gethostname()
        self.pgid: int | None = None

    def _set(self, pgid: int | None, host: str | None) -> None:
        db.session.execute(update(Deployment).where(
            Deployment.id == self.deployment_id, Deployment.attempt == self.attempt)
            .values(process_group=pgid, process_host=host))

    def __call__(self, pgid: int) -> None:
        """Record the group; a database that stays away only costs the reaper's help (the
        command's direct child still dies with the work-horse, PR_SET_PDEATHSIG)."""
        self.pgid = pgid
        try:
            in_write_transaction(self._set, pgid, self.host)
        except OperationalError:
            log.warning("deployment %s: could not record process group %s", self.deployment_id,
                        pgid)

    def forget(self) -> None:
        """Clear the record: the driver returned, so nothing of the command runs any more."""
        if self.pgid is None:
            return
        try:
            in_write_transaction(self._set, None, None)
        except OperationalError:  # the reaper clears it later (the group is gone)
            log.warning("deployment %s: could not clear its process group", self.deployment_id)


def deploy(job: Job, joblog: Any) -> None:
    """Run the deployment named in the job's payload, once, with a lease and a fencing token."""
    job_id = job.id
    deployment_id = int(job.payload["deployment_id"])
    joblog = SafeLog(joblog)
    # End the read that `run` left open: with SQLite every transaction holds the write lock,
    # and the log lines are written on their own connection.
    db.session.commit()
    lease = lease_seconds()
    attempt = claim(deployment_id, lease)
    if attempt is None:
        status, _ = _deployment_state(deployment_id)
        joblog(f"deployment {deployment_id} is {status}, not queued: nothing to do")
        return

    try:
        _run_claimed(job_id, deployment_id, attempt, lease, joblog)
    except JobFailed:
        raise
    except Exception as exc:
        # Anything that breaks after the claim (the database gone for longer than the retries)
        # ends this attempt at once, fenced: a deployment whose worker lives is never left
        # running to be reaped later as abandoned.
        db.session.rollback()
        log.exception("deployment %s: the deploy job broke after its claim", deployment_id)
        try:
            project_id = db.session.scalar(select(Release.project_id).join(
                Deployment, Deployment.release_id == Release.id).where(
                Deployment.id == deployment_id))
            finish(deployment_id, attempt, "failed",
                   f"The deploy job stopped unexpectedly ({exc.__class__.__name__}); deploy "
                   f"again.", actor=WORKER, action="deploy.finish", project_id=project_id)
        except Exception:  # still unreachable: the lease runs out and the reaper ends it
            db.session.rollback()
            log.exception("deployment %s: could not record its failure", deployment_id)
        raise


def _run_claimed(job_id: int, deployment_id: int, attempt: int, lease: float,
                 joblog: SafeLog) -> None:
    """Run a claimed attempt of a deployment: its start, its driver, its outcome."""
    deployment = db.session.get(Deployment, deployment_id)
    assert deployment is not None
    env, release = deployment.environment, deployment.release
    project = release.project
    settings = dict(env.driver or {})
    joblog.joblog.secrets = [s for s in secrets_of(settings) if len(s) >= 4]
    base = str(current_app.config.get("RELAPP_BASE_URL") or "").rstrip("/")
    record = ProcessRecord(deployment_id, attempt)
    ctx = DeployContext(deployment_id=deployment_id, attempt=attempt, project=project.key,
                        environment=env.name, version=release.version, tag=release.tag,
                        sha=release.sha or "",
                        callback_url=f"{base}/api/v1/deployments/{deployment_id}/status",
                        on_process=record)
    kind = str(settings.get("kind", ""))
    project_id, env_name = project.id, env.name
    detail = f"{release.version} to {env.name} with the {kind or 'unknown'} driver"
    in_write_transaction(audit.record, WORKER, "deploy.start", project_id=project_id,
                         target=f"deployment:{deployment_id}", before={"status": "queued"},
                         after={"status": "running", "attempt": attempt, "job": job_id},
                         detail=detail)
    publish(job_id, {"type": "deployment", "deployment": deployment_id, "status": "running",
                     "attempt": attempt})
    joblog(f"deploying {ctx.tag} ({ctx.version}) to {ctx.environment}: deployment "
           f"{deployment_id}, attempt {attempt}")

    guard = Lease(deployment_id, attempt, lease)
    try:
        driver = build_driver(settings)
    except DriverConfigError as exc:
        result = DriverResult(Outcome.FAILED, f"The {env_name} driver is misconfigured: {exc}")
        joblog(result.message)
    else:
        try:
            result = driver.run(ctx, joblog, guard)
        except Exception as exc:  # record a sentence; the deployment must end
            log.exception("deployment %s: driver crashed", deployment_id)
            db.session.rollback()
            result = DriverResult(Outcome.FAILED,
                                  f"The driver stopped unexpectedly ({exc.__class__.__name__}).")
            joblog(result.message)
        record.forget()
    _conclude(job_id, deployment_id, attempt, project_id, kind, guard, result, joblog)


def _rejected(deployment_id: int, attempt: int, joblog: Any) -> JobFailed:
    status, current = _deployment_state(deployment_id)
    joblog(f"rejected: attempt {attempt} no longer owns deployment {deployment_id} (it is "
           f"{status}, attempt {current}); this run's result was not recorded")
    return JobFailed(f"Attempt {attempt} of deployment {deployment_id} was superseded "
                     f"(it is {status}); its result was not recorded.")


def _conclude(job_id: int, deployment_id: int, attempt: int, project_id: int,
              kind: str, guard: Lease, result: DriverResult, joblog: Any) -> None:
    """Write the outcome, fenced by attempt; raise JobFailed when the deploy did not succeed."""
    db.session.rollback()
    if guard.reason == "lost":
        raise _rejected(deployment_id, attempt, joblog)
    if guard.reason == "orphaned":
        joblog("the worker that ran this deploy is gone: its command was stopped, and the "
               "deployment is left to end as abandoned when its lease runs out")
        raise JobFailed("The worker that ran this deploy died; the deploy was stopped.")
    if guard.reason == "cancelled":
        message = "cancelled: the deploy was stopped on request"
        if not finish(deployment_id, attempt, "cancelled", message, actor=WORKER,
                      action="deploy.finish", project_id=project_id):
            raise _rejected(deployment_id, attempt, joblog)
        publish(job_id, {"type": "deployment", "deployment": deployment_id, "status": "cancelled"})
        raise JobFailed("The deploy was cancelled on request.")

    if result.outcome is Outcome.WAITING:
        until = utcnow() + timedelta(seconds=wait_seconds(kind))
        if in_write_transaction(_hand_off, deployment_id, attempt, project_id, until,
                                result.message):
            joblog(f"waiting for a report until {until.isoformat(timespec='seconds')}")
            return
        status, current = _deployment_state(deployment_id)
        if current == attempt and status in ("succeeded", "failed", "cancelled"):
            # The CD system answered before the driver returned: its report stands.
            joblog(f"the deployment was already reported {status}")
            return
        raise _rejected(deployment_id, attempt, joblog)

    status = "succeeded" if result.outcome is Outcome.SUCCEEDED else "failed"
    # A success also ends the environment's unknown state (services.deployments.finish).
    if not finish(deployment_id, attempt, status, result.message, actor=WORKER,
                  action="deploy.finish", project_id=project_id):
        raise _rejected(deployment_id, attempt, joblog)
    publish(job_id, {"type": "deployment", "deployment": deployment_id, "status": status})
    joblog(f"deployment {deployment_id} {status}")
    if status == "succeeded":
        _check_drift_soon(deployment_id)
    if status == "failed":
        raise JobFailed(result.message or "The deploy failed.")


def _hand_off(deployment_id: int, attempt: int, project_id: int, until: Any,
              message: str) -> bool:
    """The deploy goes on elsewhere: no lease, a deadline for the report; False when stale."""
    handed = db.session.execute(update(Deployment).where(
        Deployment.id == deployment_id, Deployment.attempt == attempt,
        Deployment.status == "running").values(
        lease_until=None, waiting_until=until, message=message)).rowcount
    if handed:
        audit.record(WORKER, "deploy.wait", project_id=project_id,
                     target=f"deployment:{deployment_id}",
                     before={"status": "running", "attempt": attempt},
                     after={"status": "running", "waiting_until": until.isoformat()},
                     detail=message)
    return bool(handed)




def _check_drift_soon(deployment_id: int) -> None:
    """Compare what runs with what was recorded a few seconds after a successful deploy."""
    from redis.exceptions import RedisError

    from ..services import drift

    deployment = db.session.get(Deployment, deployment_id)
    if deployment is None:
        return
    try:
        drift.schedule_check(deployment.environment_id, delay=5)
    except (RedisError, OSError):
        pass  # the periodic drift tick checks it later
