"""Background work with the database as the record: a job row is committed first, handed to Redis
after the commit, and a relay hands over whatever never reached Redis (an outbox)."""

from __future__ import annotations

import logging
import os
import socket
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from flask import current_app
from redis.exceptions import RedisError
from rq.exceptions import DuplicateJobError, NoSuchJobError
from sqlalchemy import select, update

from ..exceptions import NotFound
from ..extensions import db, get_queue, get_redis, in_write_transaction
from ..joblog import JobLog, LogLine, lines, publish
from ..models import ACTIVE_DEPLOY_STATES, Deployment, Job, Release, User, utcnow

log = logging.getLogger(__name__)

JOB_TIMEOUT = {"tag_release": 600, "hotfix": 900, "deploy": 3600}
# The audit action that records a release failed by its job, per job kind.
RELEASE_JOBS = {"tag_release": "release.tag_failed", "hotfix": "release.hotfix_failed"}


def queue_kind(job_kind: str) -> str:
    """The queue (extensions.QUEUE_KINDS) a job row of this kind travels on: deploys on their
    own, every other job row (tag, hotfix: git work) on `git`."""
    return "deploy" if job_kind == "deploy" else "git"


@dataclass(frozen=True)
class JobLogPage:
    """A job, the deployment it runs (if any), and a page of its log lines."""

    job: Job
    deployment_id: int | None
    lines: list[LogLine]
    more: bool


def get_job(job_id: int) -> Job:
    """The job with this id, or NotFound with a sentence."""
    job = db.session.get(Job, job_id)
    if job is None:
        raise NotFound(f"There is no job {job_id}.")
    return job


def job_log(job_id: int, *, after: int = 0, limit: int) -> JobLogPage:
    """A job with its log lines after sequence number `after`, at most `limit` of them."""
    job = get_job(job_id)
    found = lines(job_id, after)
    deployment_id = db.session.scalar(select(Deployment.id).where(Deployment.job_id == job_id))
    return JobLogPage(job, deployment_id, found[:limit], len(found) > limit)


FINISHED = ("succeeded", "failed", "cancelled")


@dataclass(frozen=True)
class StreamState:
    """What a job's live stream follows: the job and, for a deploy, its deployment. A deploy
    handed to a CD system or a person ends its job at the hand-off while the deployment goes on,
    so the stream ends only when both have ended, with the deployment's status."""

    status: str
    error: str | None
    deployment_id: int | None = None
    deployment_status: str | None = None
    deployment_message: str | None = None

    @property
    def ended(self) -> bool:
        """True when nothing more will be written to this job's log by its run."""
        return self.status in FINISHED and (self.deployment_id is None or self.deployment_status in FINISHED)

    @property
    def outcome(self) -> tuple[str, str | None]:
        """The final status and error: the deployment's when the job ran one, else the job's."""
        if self.deployment_status is None:
            return self.status, self.error
        if self.deployment_status == "succeeded":
            return "succeeded", None
        return self.deployment_status, self.deployment_message or self.error


def stream_state(job_id: int) -> StreamState:
    """The job's and its deployment's status as the record says now (the read is ended at once:
    a stream lives for minutes and must not hold a snapshot)."""
    row = db.session.execute(select(Job.status, Job.error).where(Job.id == job_id)).one()
    deployment = db.session.execute(select(Deployment.id, Deployment.status, Deployment.message)
                                    .where(Deployment.job_id == job_id).order_by(Deployment.id.desc())
                                    .limit(1)).first()
    db.session.rollback()
    if deployment is None:
        return StreamState(row.status, row.error)
    return StreamState(row.status, row.error, deployment.id, deployment.status, deployment.message)


def create_job(kind: str, *, project_id: int | None = None, release_id: int | None = None,
               payload: dict[str, Any] | None = None, requested_by: User | None = None) -> Job:
    """Add a queued job to the current transaction (it is enqueued by `dispatch` after commit)."""
    job = Job(kind=kind, status="queued", project_id=project_id, release_id=release_id,
              payload=payload or {}, requested_by_id=requested_by.id if requested_by else None)
    db.session.add(job)
    db.session.flush()
    return job


def dispatch(job: Job) -> bool:
    """Hand a committed job to Redis; False (and a log line) when Redis cannot take it now."""
    try:
        get_queue(queue_kind(job.kind)).enqueue("relapp.jobs.run", job.id, job_id=job.rq_id, unique=True,
                            job_timeout=JOB_TIMEOUT.get(job.kind, 600), result_ttl=3600,
                            failure_ttl=7 * 24 * 3600)
    except DuplicateJobError:
        pass  # already handed over by another relay: the same job is not enqueued twice
    except (RedisError, OSError) as exc:
        log.warning("job %s stays in the outbox: Redis unavailable (%s)", job.id, exc.__class__.__name__)
        return False
    in_write_transaction(_mark_enqueued, job.id)
    return True


def _mark_enqueued(job_id: int) -> None:
    db.session.execute(update(Job).where(Job.id == job_id, Job.enqueued_at.is_(None)).values(enqueued_at=utcnow()))


def relay(*, older_than: float = 2.0, limit: int = 100) -> int:
    """Enqueue committed jobs that never reached Redis; return how many were handed over."""
    cutoff = utcnow() - timedelta(seconds=older_than)
    pending = db.session.scalars(select(Job).where(Job.status == "queued", Job.enqueued_at.is_(None),
                                                   Job.created_at <= cutoff).order_by(Job.id).limit(limit)).all()
    count = 0
    for job in pending:
        if not dispatch(job):
            break
        count += 1
    return count


# What RQ says of a job row's RQ job (see `_rq_state`).
MISSING, WAITING, LIVE, DEAD = "missing", "waiting", "live", "dead"
DONE_IN_RQ = ("finished", "failed", "stopped", "canceled")


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process: alive
    return True


def _worker_alive(connection: Any, name: str) -> bool:
    """Whether the RQ worker `name` still lives: on this machine its pid answers; elsewhere its
    heartbeat key has not expired (RQ lets it lapse about a minute after the worker stops)."""
    key = f"rq:worker:{name}"
    pid, host = connection.hmget(key, "pid", "hostname")
    if pid is None:
        # Gone when its heartbeat lapsed; a key without a pid is a live worker whose registration
        # Redis lost (flushed, restarted empty): its next heartbeat made the key again.
        return bool(connection.exists(key))
    if (host.decode() if isinstance(host, bytes) else host) == socket.gethostname():
        return _pid_alive(int(pid))
    return True


def _rq_state(connection: Any, rq_id: str) -> str:
    """MISSING (Redis lost it), WAITING (queued or scheduled in RQ), LIVE (started by a worker
    that lives) or DEAD (RQ is done with it, or the worker that started it is gone)."""
    from rq.job import Job as RQJob
    from rq.job import JobStatus

    try:
        rq_job = RQJob.fetch(rq_id, connection=connection)
    except NoSuchJobError:
        return MISSING
    status = rq_job.get_status(refresh=False)
    if status is None:
        return MISSING
    if status in DONE_IN_RQ:
        return DEAD
    if status != JobStatus.STARTED:
        return WAITING
    names = {e.worker_name for e in rq_job.get_executions() if e.worker_name}
    if rq_job.worker_name:
        names.add(rq_job.worker_name)
    return LIVE if any(_worker_alive(connection, name) for name in names) else DEAD


def _forget(connection: Any, rq_id: str) -> None:
    """Delete an RQ job RQ is done with (and its registry entries), so its id can be reused."""
    from rq.job import Job as RQJob

    try:
        RQJob.fetch(rq_id, connection=connection).delete()
    except NoSuchJobError:
        pass


def requeue_lost(*, limit: int = 100, now: datetime | None = None) -> int:
    """Hand lost jobs back, so no job waits or runs forever; return how many were handled.

    - A queued job whose RQ job vanished (Redis flushed or restarted empty), or that RQ dropped
      (its worker died before the job began) goes back to the outbox, and the relay enqueues it.
    - A running job whose worker is gone (killed, its machine lost) ends as failed with a
      sentence, and a tag or hotfix job's release is failed so that it can be retried: the git
      work may be half done, and the jobs are idempotent, so a person's retry finishes it. A
      running job whose RQ job Redis lost cannot be judged by RQ (its worker may well be alive
      and finish it): it ends only once it has outlived its own RQ timeout. A deploy job whose
      deployment is still active is left to the deployment reaper (leases).
    """
    connection = get_redis()
    now = now or utcnow()
    count = 0
    try:
        rows = db.session.scalars(select(Job).where(Job.status == "queued", Job.enqueued_at.is_not(None))
                                  .order_by(Job.id).limit(limit)).all()
        lost_queued = []
        for job in rows:
            state = _rq_state(connection, job.rq_id)
            if state == DEAD:
                _forget(connection, job.rq_id)  # free its id for the new hand-over
            if state in (MISSING, DEAD):
                lost_queued.append(job.id)
        db.session.commit()
        if lost_queued:
            count += in_write_transaction(_back_to_outbox, lost_queued)
        grace = timedelta(seconds=float(current_app.config.get("RELAPP_LEASE_SECONDS") or 60))
        running = db.session.scalars(select(Job).where(
            Job.status == "running", Job.started_at < now - grace,
            ~select(Deployment.id).where(Deployment.job_id == Job.id,
                                         Deployment.status.in_(ACTIVE_DEPLOY_STATES)).exists())
            .order_by(Job.id).limit(limit)).all()
        lost = []
        for job in running:
            state = _rq_state(connection, job.rq_id)
            overran = job.started_at is not None and \
                now - job.started_at > timedelta(seconds=JOB_TIMEOUT.get(job.kind, 600) + 60)
            if state == DEAD or (state == MISSING and overran):
                lost.append((job.id, job.attempt, state))
        db.session.commit()
    except (RedisError, OSError):
        db.session.rollback()
        return count
    for job_id, attempt, state in lost:
        reason = ("its worker stopped while it ran" if state == DEAD
                  else "it ran past its time limit and Redis no longer knows it")
        if _fail_lost(job_id, attempt, f"The job was lost: {reason}; retry it."):
            count += 1
    return count


def _back_to_outbox(job_ids: list[int]) -> int:
    """Queued jobs Redis lost wait for the relay again (unless they moved on meanwhile)."""
    return int(db.session.execute(update(Job).where(Job.id.in_(job_ids), Job.status == "queued")
                                  .values(enqueued_at=None)).rowcount)


def _end_lost(job_id: int, attempt: int, sentence: str) -> bool:
    """One write transaction: the lost job failed (fenced by the attempt seen), its release too."""
    from . import audit

    changed = db.session.execute(update(Job).where(
        Job.id == job_id, Job.status == "running", Job.attempt == attempt).values(
        status="failed", error=sentence, finished_at=utcnow())).rowcount
    if not changed:
        return False
    job = db.session.get(Job, job_id)
    assert job is not None
    release_id = (job.payload or {}).get("release_id") if job.kind in RELEASE_JOBS else None
    if release_id is not None and db.session.execute(update(Release).where(
            Release.id == release_id, Release.state == "pending").values(state="failed")).rowcount:
        release = db.session.get(Release, release_id)
        assert release is not None
        audit.record("relapp", RELEASE_JOBS[job.kind], project_id=release.project_id,
                     target=f"release:{release.project.key}/{release.version}", detail=sentence)
    return True


def _fail_lost(job_id: int, attempt: int, sentence: str) -> bool:
    """End one lost running job as failed, with a log line and a status event for its stream."""
    if not in_write_transaction(_end_lost, job_id, attempt, sentence):
        return False
    log.warning("job %s: %s", job_id, sentence)
    try:
        joblog = JobLog(job_id)
        db.session.commit()  # end JobLog's read before its line takes the write lock
        joblog.write(f"failed: {sentence}")
        publish(job_id, {"type": "status", "status": "failed", "error": sentence})
    except Exception:  # the record is written; the live feed is best effort
        db.session.rollback()
        log.exception("could not log the end of lost job %s", job_id)
    return True
