"""Background work with the database as the record: a job row is committed first, handed to Redis
after the commit, and a relay hands over whatever never reached Redis (an outbox)."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from redis.exceptions import RedisError
from rq.exceptions import DuplicateJobError
from sqlalchemy import select, update

from ..exceptions import NotFound
from ..extensions import db, get_queue
from ..joblog import LogLine, lines
from ..models import Deployment, Job, User, utcnow

log = logging.getLogger(__name__)

JOB_TIMEOUT = {"tag_release": 600, "hotfix": 900, "deploy": 3600}


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
        get_queue().enqueue("relapp.jobs.run", job.id, job_id=job.rq_id, unique=True,
                            job_timeout=JOB_TIMEOUT.get(job.kind, 600), result_ttl=3600,
                            failure_ttl=7 * 24 * 3600)
    except DuplicateJobError:
        pass  # already handed over by another relay: the same job is not enqueued twice
    except (RedisError, OSError) as exc:
        log.warning("job %s stays in the outbox: Redis unavailable (%s)", job.id, exc.__class__.__name__)
        return False
    db.session.execute(update(Job).where(Job.id == job.id, Job.enqueued_at.is_(None)).values(enqueued_at=utcnow()))
    db.session.commit()
    return True


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


def requeue_lost(*, limit: int = 100) -> int:
    """Jobs marked enqueued whose RQ job vanished (Redis flushed or restarted empty) go back to the outbox."""
    from rq.job import Job as RQJob

    queue = get_queue()
    rows = db.session.scalars(select(Job).where(Job.status == "queued", Job.enqueued_at.is_not(None))
                              .order_by(Job.id).limit(limit)).all()
    count = 0
    try:
        for job in rows:
            if not RQJob.exists(job.rq_id, connection=queue.connection):
                db.session.execute(update(Job).where(Job.id == job.id, Job.status == "queued").values(enqueued_at=None))
                count += 1
    except (RedisError, OSError):
        db.session.rollback()
        return 0
    db.session.commit()
    return count
