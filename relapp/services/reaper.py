"""The reaper: ends deployments nobody will finish, and hands lost work back to Redis.

A running deploy holds a lease its job renews every few seconds. When the worker dies (kill -9,
a lost machine) the lease runs out and the reaper fails the deployment as abandoned, which frees
the environment (the partial unique index only covers queued and running rows). A deploy handed
to a CD system or a person waits until `waiting_until`; after that it fails as timed out. Every
write is fenced by the attempt it saw, so a reaper never overwrites a newer run.

Detection bound: lease (RELAPP_LEASE_SECONDS, 60 s) + reaper interval (RELAPP_REAPER_INTERVAL,
15 s) = 75 s after the last heartbeat at the default settings.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import select, update

from ..extensions import db
from ..models import Deployment, Job, Release, utcnow
from . import audit
from .deployments import append_log, lease_seconds
from .queue import relay, requeue_lost

log = logging.getLogger(__name__)
REAPER = "reaper"


@dataclass
class ReapReport:
    """What one reaper pass did."""

    abandoned: list[int] = field(default_factory=list)
    timed_out: list[int] = field(default_factory=list)
    orphaned: list[int] = field(default_factory=list)
    requeued: int = 0
    relayed: int = 0

    def __bool__(self) -> bool:
        return bool(self.abandoned or self.timed_out or self.orphaned or self.requeued
                    or self.relayed)


def _fail(deployment: Deployment, message: str, action: str, *, was: str) -> bool:
    """Fail one deployment fenced by the attempt and status we saw; fail its job too."""
    now = utcnow()
    deployment_id, attempt, job_id = deployment.id, deployment.attempt, deployment.job_id
    project_id = db.session.scalar(select(Release.project_id).where(
        Release.id == deployment.release_id))
    changed = db.session.execute(update(Deployment).where(
        Deployment.id == deployment_id, Deployment.attempt == attempt,
        Deployment.status == was).values(
        status="failed", message=message, finished_at=now, lease_until=None,
        waiting_until=None)).rowcount
    if not changed:
        db.session.rollback()  # it moved on meanwhile (finished, renewed): not ours to touch
        return False
    if job_id is not None:
        db.session.execute(update(Job).where(Job.id == job_id, Job.status.in_(("queued", "running")))
                           .values(status="failed", error=message, finished_at=now))
    audit.record(REAPER, action, project_id=project_id, target=f"deployment:{deployment_id}",
                 before={"status": was, "attempt": attempt},
                 after={"status": "failed", "attempt": attempt, "message": message})
    db.session.commit()
    try:
        append_log(job_id, f"{REAPER}: {message}",
                   {"type": "deployment", "deployment": deployment_id, "status": "failed"})
        if job_id is not None:
            from ..joblog import publish

            publish(job_id, {"type": "status", "status": "failed", "error": message})
    except Exception:  # the record is written; the live feed is best effort
        db.session.rollback()
        log.exception("reaper: could not log the end of deployment %s", deployment_id)
    return True


def _stamp(moment: datetime | None) -> str:
    return moment.isoformat(timespec="seconds") if moment else "an unknown time"


def reap(now: datetime | None = None) -> ReapReport:
    """One pass: fail abandoned and timed-out deployments, then requeue and relay lost jobs."""
    now = now or utcnow()
    report = ReapReport()
    expired = db.session.scalars(select(Deployment).where(
        Deployment.status == "running", Deployment.lease_until.is_not(None),
        Deployment.lease_until < now).order_by(Deployment.id)).all()
    for deployment in expired:
        message = (f"abandoned: the worker stopped reporting (lease expired at "
                   f"{_stamp(deployment.lease_until)})")
        if _fail(deployment, message, "deploy.abandoned", was="running"):
            report.abandoned.append(deployment.id)

    waited = db.session.scalars(select(Deployment).where(
        Deployment.status == "running", Deployment.waiting_until.is_not(None),
        Deployment.waiting_until < now).order_by(Deployment.id)).all()
    for deployment in waited:
        kind = (deployment.environment.driver or {}).get("kind")
        who = "someone to mark it done" if kind == "manual" else "the CD system to report back"
        message = f"timed out waiting for {who} (waited until {_stamp(deployment.waiting_until)})"
        if _fail(deployment, message, "deploy.timed_out", was="running"):
            report.timed_out.append(deployment.id)

    # A queued deployment whose job already ended (it crashed before claiming it), or whose job
    # was claimed longer than a lease ago without the deployment being claimed (the worker died
    # in between), would hold its environment forever.
    stale = now - timedelta(seconds=lease_seconds())
    orphans = db.session.scalars(select(Deployment).join(Job, Job.id == Deployment.job_id).where(
        Deployment.status == "queued",
        (Job.status.in_(("succeeded", "failed", "cancelled")))
        | ((Job.status == "running") & (Job.started_at < stale))).order_by(Deployment.id)).all()
    for deployment in orphans:
        message = "abandoned: its job ended before the deploy started"
        if _fail(deployment, message, "deploy.abandoned", was="queued"):
            report.orphaned.append(deployment.id)
    db.session.commit()

    report.requeued = requeue_lost()
    report.relayed = relay()
    if report:
        log.info("reaper: %s", report)
    return report
