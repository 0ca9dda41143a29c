"""The reaper: ends deployments nobody will finish, and hands lost work back to Redis.

A running deploy holds a lease its job renews every few seconds. When the worker dies (kill -9,
a lost machine) the lease runs out and the reaper fails the deployment as abandoned, which frees
the environment (the partial unique index only covers queued and running rows). A deploy handed
to a CD system or a person waits until `waiting_until`; after that it fails as timed out. Every
write is fenced by the attempt it saw, so a reaper never overwrites a newer run.

Detection bound: lease (RELAPP_LEASE_SECONDS, 60 s) + reaper interval (RELAPP_REAPER_INTERVAL,
15 s) = 75 s after the last heartbeat at the default settings.

An abandoned deploy may have changed its environment halfway: the environment is marked unknown
("last deploy abandoned") in the same transaction, until a successful deploy there or someone
marks it verified. What the deploy's command started may still run (its direct child dies with
the work-horse, PR_SET_PDEATHSIG, but not what it left in the background): the deploy job recorded
the command's process group and host, and the reaper on that host stops the group (SIGTERM, then
SIGKILL) once the deployment has ended, then clears the record. It signals a group only when it
recognises it as the deploy's (`drivers.command.stop_recorded_group`: never its own group, only a
group whose session the command started and whose processes carry the deploy's RELAPP_* marker),
so a process-group number reused since by someone else is left alone.
"""

from __future__ import annotations

import logging
import socket
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select, update

from ..drivers.command import process_marker, stop_recorded_group
from ..extensions import db, in_write_transaction
from ..models import Deployment, Environment, Job, Project, Release, utcnow
from . import audit
from .deployments import append_log, lease_seconds
from .queue import relay, requeue_lost

log = logging.getLogger(__name__)
REAPER = "reaper"
ABANDONED = "last deploy abandoned"  # Environment.unknown_reason after an abandoned deploy


@dataclass
class ReapReport:
    """What one reaper pass did."""

    abandoned: list[int] = field(default_factory=list)
    timed_out: list[int] = field(default_factory=list)
    orphaned: list[int] = field(default_factory=list)
    # deployment id -> what became of its recorded process group ("stopped", "killed", ...)
    stopped: dict[int, str] = field(default_factory=dict)
    requeued: int = 0
    relayed: int = 0

    def __bool__(self) -> bool:
        return bool(self.abandoned or self.timed_out or self.orphaned or self.stopped
                    or self.requeued or self.relayed)


def _fail_row(deployment_id: int, attempt: int, job_id: int | None, environment_id: int,
              release_id: int, message: str, action: str, was: str, unknown: bool,
              fence: list[Any]) -> bool:
    now = utcnow()
    project_id = db.session.scalar(select(Release.project_id).where(Release.id == release_id))
    changed = db.session.execute(update(Deployment).where(
        Deployment.id == deployment_id, Deployment.attempt == attempt,
        Deployment.status == was, *fence).values(
        status="failed", message=message, finished_at=now, lease_until=None,
        waiting_until=None)).rowcount
    if not changed:
        return False  # it moved on meanwhile (finished, renewed): not ours to touch
    if job_id is not None:
        db.session.execute(update(Job).where(Job.id == job_id, Job.status.in_(("queued", "running")))
                           .values(status="failed", error=message, finished_at=now))
    after = {"status": "failed", "attempt": attempt, "message": message}
    if unknown:
        # It may have changed the environment halfway: nobody knows what runs there now.
        db.session.execute(update(Environment).where(Environment.id == environment_id)
                           .values(unknown_reason=ABANDONED, unknown_since=now))
        after["environment"] = f"unknown: {ABANDONED}"
    audit.record(REAPER, action, project_id=project_id, target=f"deployment:{deployment_id}",
                 before={"status": was, "attempt": attempt}, after=after)
    return True


# A line for a job's log: (job id, line, the deployment's event or None, the job's error or None)
Note = tuple[int | None, str, dict[str, Any] | None, str | None]


def _fail(deployment: Deployment, message: str, action: str, notes: list[Note], *, was: str,
          unknown: bool = False, fence: list[Any] | None = None) -> bool:
    """Fail one deployment fenced by the attempt and status we saw (and `fence`, conditions
    that must still hold, such as a lease still expired); fail its job too; with `unknown`,
    mark its environment unknown in the same transaction. Its log line goes to `notes`."""
    deployment_id, job_id = deployment.id, deployment.job_id
    if not in_write_transaction(_fail_row, deployment_id, deployment.attempt, job_id,
                                deployment.environment_id, deployment.release_id, message,
                                action, was, unknown, fence or []):
        return False
    notes.append((job_id, f"{REAPER}: {message}",
                  {"type": "deployment", "deployment": deployment_id, "status": "failed"},
                  message))
    return True


def _announce(notes: list[Note]) -> None:
    """Write the pass's log lines once every record is written: someone who reads a reaper's
    line finds the state it reports."""
    from ..joblog import publish

    for job_id, line, event, error in notes:
        try:
            append_log(job_id, line, event)
            if job_id is not None and error is not None:
                publish(job_id, {"type": "status", "status": "failed", "error": error})
        except Exception:  # the record is written; the live feed is best effort
            db.session.rollback()
            log.exception("reaper: could not log %r to job %s", line, job_id)


def _stamp(moment: datetime | None) -> str:
    return moment.isoformat(timespec="seconds") if moment else "an unknown time"


def _clear_group(deployment_id: int, pgid: int) -> None:
    db.session.execute(update(Deployment).where(
        Deployment.id == deployment_id, Deployment.process_group == pgid)
        .values(process_group=None, process_host=None))


_SAID = {"stopped": "stopped the deploy's processes (SIGTERM)",
         "killed": "killed the deploy's processes (SIGKILL: they outlived SIGTERM)"}


def stop_leftover_processes(notes: list[Note] | None = None) -> dict[int, str]:
    """Stop the recorded process group of each deployment on this host that has ended (the
    reaper failed it, or its job died before clearing the record), then clear the record.

    Running deployments are left alone: their job still supervises the command. Groups are
    signalled only when recognisably the deploy's (see the module's docstring). Log lines go to
    `notes` when given, else straight to the job's log.
    """
    pending: list[Note] = [] if notes is None else notes
    host = socket.gethostname()
    rows = db.session.execute(
        select(Deployment.id, Deployment.job_id, Deployment.process_group, Project.key,
               Environment.name)
        .join(Environment, Environment.id == Deployment.environment_id)
        .join(Project, Project.id == Environment.project_id)
        .where(Deployment.process_group.is_not(None), Deployment.process_host == host,
               Deployment.status.not_in(("queued", "running")))
        .order_by(Deployment.id)).all()
    db.session.commit()  # hold no transaction (SQLite: no lock) through the grace period
    done: dict[int, str] = {}
    for deployment_id, job_id, pgid, project_key, env_name in rows:
        outcome = stop_recorded_group(pgid, process_marker(deployment_id, project_key, env_name))
        in_write_transaction(_clear_group, deployment_id, pgid)
        done[deployment_id] = outcome
        if outcome in _SAID:
            log.warning("reaper: deployment %s: %s (process group %s)", deployment_id,
                        _SAID[outcome], pgid)
            pending.append((job_id, f"{REAPER}: {_SAID[outcome]}", None, None))
        elif outcome in ("not ours", "refused"):
            log.warning("reaper: deployment %s: process group %s is no longer the deploy's "
                        "(%s); left alone", deployment_id, pgid, outcome)
    if notes is None:
        _announce(pending)
    return done


def reap(now: datetime | None = None) -> ReapReport:
    """One pass: fail abandoned and timed-out deployments, then requeue and relay lost jobs."""
    now = now or utcnow()
    report = ReapReport()
    notes: list[Note] = []
    expired = db.session.scalars(select(Deployment).where(
        Deployment.status == "running", Deployment.lease_until.is_not(None),
        Deployment.lease_until < now).order_by(Deployment.id)).all()
    for deployment in expired:
        message = (f"abandoned: the worker stopped reporting (lease expired at "
                   f"{_stamp(deployment.lease_until)})")
        if _fail(deployment, message, "deploy.abandoned", notes, was="running", unknown=True,
                 fence=[Deployment.lease_until < now]):
            report.abandoned.append(deployment.id)

    waited = db.session.scalars(select(Deployment).where(
        Deployment.status == "running", Deployment.waiting_until.is_not(None),
        Deployment.waiting_until < now).order_by(Deployment.id)).all()
    for deployment in waited:
        kind = (deployment.environment.driver or {}).get("kind")
        who = "someone to mark it done" if kind == "manual" else "the CD system to report back"
        message = f"timed out waiting for {who} (waited until {_stamp(deployment.waiting_until)})"
        if _fail(deployment, message, "deploy.timed_out", notes, was="running",
                 fence=[Deployment.waiting_until < now]):
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
        if _fail(deployment, message, "deploy.abandoned", notes, was="queued"):
            report.orphaned.append(deployment.id)
    db.session.commit()
    report.stopped = stop_leftover_processes(notes)
    _announce(notes)

    report.requeued = requeue_lost()
    report.relayed = relay()
    if report:
        log.info("reaper: %s", report)
    return report
