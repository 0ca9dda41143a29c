"""The release train: on a project's cron (in its time zone), cut from main and deploy to the first
environment, or record a skipped run with the reason when nothing changed since the last release.

Scheduling is RQ's own: each slot is one scheduled RQ job with a deterministic id
(`train-<project>-<slot epoch>`), put on the queue's ScheduledJobRegistry only if that id does not
exist yet, so a config sync, a worker start and another worker asking for the same slot schedule it
once. Running is claimed in the database: the first thing a tick does is insert the slot's
`TrainRun` under its unique (project, slot) constraint, so a slot runs at most once however many
schedulers, workers or deliveries see it. A tick that dies after its claim leaves the slot claimed
("running") rather than risking a second cut; the next slot runs normally.

A cut goes through the same path as a person's (`releases.cut`: a job row committed, then handed
to the queue). The tick records the run as "tagging" and ends; when the tag job ends it calls
`after_cut`, which moves the run on (tagging → cut, or failed) with a compare-and-set and deploys
the tagged release to the first environment. No worker waits for another.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import CroniterError, croniter  # type: ignore[import-untyped]
from flask import current_app
from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError

from ..domain.pipeline import Role
from ..exceptions import Conflict, ServiceError
from ..extensions import db, write_transaction
from ..models import Environment, Project, Release, TrainRun, User, utcnow
from . import audit
from .deployments import request_deploy
from .drift import schedule_once
from .releases import cut

log = logging.getLogger(__name__)

ACTOR = "relapp-train"
# A tick that arrives this much before its slot (clock skew between hosts) waits for the slot.
EARLY_SECONDS = 300
TICK_TIMEOUT = 1800
_MAX_DETAIL = 2000


@dataclass(frozen=True)
class TickResult:
    """What one tick (or the end of its cut's tag job) did: its outcome ('tagging': the cut is
    queued and the train goes on when its tag job ends; 'cut', 'skipped', 'failed', 'already-ran',
    'ignored', 'early') and a sentence."""

    outcome: str
    detail: str
    release_id: int | None = None
    deployment_id: int | None = None


# -- slots ------------------------------------------------------------------------------------


def _zone(project: Project) -> ZoneInfo:
    try:
        return ZoneInfo(project.timezone or "UTC")
    except (ZoneInfoNotFoundError, ValueError):
        return ZoneInfo("UTC")


def _fixed_hours(expr: str) -> bool:
    """True when the cron names fixed hours (e.g. `0 10 * * MON`), not `*` or `*/n`."""
    fields = expr.split()
    return len(fields) == 5 and not fields[1].startswith("*")


def _second_of_repeated_hour(local: datetime, zone: ZoneInfo) -> bool:
    """True when a local wall time happens twice (clocks go back) and this is the second time."""
    naive = local.replace(tzinfo=None)
    first = naive.replace(fold=0, tzinfo=zone).utcoffset()
    second = naive.replace(fold=1, tzinfo=zone).utcoffset()
    return first != second and local.utcoffset() == second


def next_slot(project: Project, after: datetime) -> datetime | None:
    """The first train slot strictly after `after`, as an aware UTC datetime; None without a train.

    The cron is read in the project's time zone, so "0 10 * * MON" is 10:00 Berlin time in
    winter and in summer. When clocks go back, a fixed-hour cron (like `30 2 * * *`) runs once,
    at the first of the two 02:30s, as cron itself does; when clocks go forward over a slot,
    croniter moves it to the first minute that exists.
    """
    expr = (project.train_cron or "").strip()
    if not expr:
        return None
    if after.tzinfo is None:
        after = after.replace(tzinfo=UTC)
    zone = _zone(project)
    try:
        it = croniter(expr, after.astimezone(zone))
        for _ in range(1000):
            local: datetime = it.get_next(datetime)
            if _fixed_hours(expr) and _second_of_repeated_hour(local, zone):
                continue
            slot = local.astimezone(UTC)
            if slot > after:
                return slot
    except (CroniterError, ValueError, KeyError):
        log.warning("project %s has an unusable train cron %r", project.key, expr)
    return None


def upcoming(project: Project) -> datetime | None:
    """The next scheduled cut (aware UTC) for the board, or None when the project has no train."""
    return next_slot(project, utcnow())


def job_id(project: Project, slot: datetime) -> str:
    """The deterministic RQ job id of one slot: the same slot is never scheduled twice."""
    return f"train-{project.key}-{int(slot.timestamp())}"


def schedule(project: Project, *, after: datetime | None = None) -> datetime | None:
    """Schedule the project's next slot on RQ's scheduler (idempotent); return the slot."""
    slot = next_slot(project, after or utcnow())
    if slot is None:
        return None
    schedule_once("relapp.jobs.schedule.train_tick", (project.id, slot.isoformat()), slot,
                  job_id(project, slot), timeout=TICK_TIMEOUT)
    return slot


def schedule_all() -> dict[str, datetime | None]:
    """Schedule the next slot of every project with a train (worker start, config sync)."""
    projects = db.session.scalars(select(Project).where(Project.train_cron.is_not(None))
                                  .order_by(Project.key)).all()
    return {project.key: schedule(project) for project in projects}


# -- one tick ---------------------------------------------------------------------------------


def _misfire_seconds() -> float:
    """A slot whose tick runs this much later than planned (workers were down) is skipped with a
    notice instead of cutting at a surprising time (RELAPP_TRAIN_MISFIRE_SECONDS, 1 h)."""
    return float(current_app.config["RELAPP_TRAIN_MISFIRE_SECONDS"])


def _local(project: Project, slot: datetime) -> str:
    return slot.astimezone(_zone(project)).strftime("%Y-%m-%d %H:%M %Z")


def _claim(project: Project, slot: datetime) -> bool:
    """Insert the slot's run; False when another tick claimed it first (unique project+slot)."""
    try:
        with write_transaction():
            db.session.add(TrainRun(project_id=project.id, slot=slot, outcome="running", detail=""))
    except IntegrityError:
        return False
    return True


def _settle(project: Project, slot: datetime, outcome: str, detail: str, *,
            release_id: int | None = None, action: str | None = None,
            after: dict[str, Any] | None = None) -> None:
    """Record the run's outcome (and an audit event) in one transaction."""
    detail = detail[:_MAX_DETAIL]
    with write_transaction():
        values: dict[str, Any] = {"outcome": outcome, "detail": detail}
        if release_id is not None:
            values["release_id"] = release_id
        db.session.execute(update(TrainRun).where(TrainRun.project_id == project.id,
                                                  TrainRun.slot == slot).values(**values))
        if action is not None:
            audit.record(ACTOR, action, project_id=project.id, target=f"project:{project.key}",
                         after={"slot": slot.isoformat(), "outcome": outcome, **(after or {})},
                         detail=detail)


def _system_actor() -> User:
    """The train as the deploy gates see it: a transient admin named relapp-train, never saved.

    `request_deploy` takes a User; this one has no id, so the deployment and its job record no
    requester and the audit event names `relapp-train`.
    """
    return User(username=ACTOR, display_name="relapp release train", role=Role.ADMIN, active=True)


def tick(project_id: int, slot: datetime) -> TickResult:
    """Run one slot once: claim it and queue a cut from main (its tag job carries the train on to
    the first environment), or skip."""
    project = db.session.get(Project, project_id)
    if project is None:
        return TickResult("ignored", f"There is no project {project_id}.")
    if slot.tzinfo is None:
        slot = slot.replace(tzinfo=UTC)
    slot = slot.astimezone(UTC)
    # A slot left over from an older cron (the configuration changed) is not this train's.
    if next_slot(project, slot - timedelta(seconds=1)) != slot:
        schedule(project)  # make sure the current cron's own next slot is on the scheduler
        return TickResult("ignored", f"{slot.isoformat()} is not a slot of project {project.key}'s "
                                     f"train ({project.train_cron or 'no train'}).")
    now = utcnow()
    if slot - now > timedelta(seconds=EARLY_SECONDS):
        # This job's own id still exists while it runs, so the retry gets an id of its own.
        schedule_once("relapp.jobs.schedule.train_tick", (project.id, slot.isoformat()), slot,
                      f"{job_id(project, slot)}-early-{int(now.timestamp())}", timeout=TICK_TIMEOUT)
        return TickResult("early", f"The {_local(project, slot)} train is not due yet.")
    if not _claim(project, slot):
        return TickResult("already-ran", f"The {_local(project, slot)} train already ran.")
    try:
        return _run(project, slot, now)
    except Exception as exc:  # a claimed slot must end with a sentence, never stay "running"
        log.exception("train tick of %s at %s crashed", project.key, slot.isoformat())
        db.session.rollback()
        detail = (f"The {_local(project, slot)} train failed with an unexpected error "
                  f"({exc.__class__.__name__}); see the worker log.")
        _settle(project, slot, "failed", detail, action="train.failed")
        return TickResult("failed", detail)
    finally:
        db.session.rollback()
        project = db.session.get(Project, project_id)
        if project is not None:
            schedule(project, after=max(slot, utcnow()))


def _run(project: Project, slot: datetime, now: datetime) -> TickResult:
    when = _local(project, slot)
    late = (now - slot).total_seconds()
    if late > _misfire_seconds():
        detail = (f"The {when} train was skipped: no worker ran it until "
                  f"{_local(project, now)}, and a late cut would surprise people.")
        _settle(project, slot, "skipped", detail, action="train.skipped")
        return TickResult("skipped", detail)
    try:
        release, _job = cut(project, None, reason=f"release train {when}")
    except Conflict as exc:
        if exc.code != "nothing_new":
            detail = f"The {when} train could not cut: {exc.detail}"
            _settle(project, slot, "failed", detail, action="train.failed")
            return TickResult("failed", detail)
        detail = f"The {when} train was skipped: {exc.detail}"
        _settle(project, slot, "skipped", detail, action="train.skipped")
        return TickResult("skipped", detail)
    except ServiceError as exc:
        detail = f"The {when} train could not cut: {exc.detail}"
        _settle(project, slot, "failed", detail, action="train.failed")
        return TickResult("failed", detail)
    release_id, version = release.id, release.version
    detail = f"The {when} train cut {version}; its deploy follows once the tag is pushed."
    _settle(project, slot, "tagging", detail, release_id=release_id, action="train.cut",
            after={"version": version})
    # The tag job was queued before this run named its release: if it already ended, its call
    # to after_cut found no run waiting, so carry on here (the compare-and-set lets one win).
    return after_cut(release_id, tag_job_ended=False) or TickResult("tagging", detail, release_id)


def _advance(project: Project, run: TrainRun, outcome: str, detail: str, *,
             action: str | None = None, after: dict[str, Any] | None = None) -> bool:
    """Move a run waiting for its tag job on (compare-and-set); False when someone else did."""
    detail = detail[:_MAX_DETAIL]
    with write_transaction():
        moved = db.session.execute(update(TrainRun).where(
            TrainRun.id == run.id, TrainRun.outcome == "tagging").values(
            outcome=outcome, detail=detail)).rowcount
        if moved and action is not None:
            audit.record(ACTOR, action, project_id=project.id, target=f"project:{project.key}",
                         after={"slot": run.slot.isoformat(), "outcome": outcome, **(after or {})},
                         detail=detail)
    return bool(moved)


def after_cut(release_id: int, *, tag_job_ended: bool = True) -> TickResult | None:
    """Carry on the train run that cut this release, now that its tag job ended: deploy the tagged
    release to the first environment, or record why nothing was deployed.

    Called by the tag job when it ends (whatever the outcome) and by the tick itself; None when
    no run waits for this release, or (`tag_job_ended=False`) when its tag job is still going.
    """
    db.session.rollback()  # see what the tag job committed, not an older snapshot
    run = db.session.scalar(select(TrainRun).where(TrainRun.release_id == release_id,
                                                   TrainRun.outcome == "tagging"))
    release = db.session.get(Release, release_id)
    if run is None or release is None:
        return None
    if release.state == "pending" and not tag_job_ended:
        return None
    project, slot = release.project, run.slot
    when, version = _local(project, slot), release.version
    try:
        return _deploy_cut(run, project, release, when)
    except Exception as exc:  # a run must end with a sentence, never stay "tagging"
        log.exception("train of %s: carrying on after the cut of %s crashed", project.key, version)
        db.session.rollback()
        detail = (f"The {when} train cut {version}, but going on from there failed with an "
                  f"unexpected error ({exc.__class__.__name__}); see the worker log.")
        _settle(project, slot, "failed", detail, release_id=release_id, action="train.failed",
                after={"version": version})
        return TickResult("failed", detail, release_id)


def _deploy_cut(run: TrainRun, project: Project, release: Release, when: str) -> TickResult | None:
    release_id, version, slot = release.id, release.version, run.slot
    if release.state != "tagged":
        detail = (f"The {when} train cut {version}, but tagging it did not succeed "
                  f"({release.state}); nothing was deployed.")
        if not _advance(project, run, "failed", detail, action="train.failed", after={"version": version}):
            return None
        return TickResult("failed", detail, release_id)
    first = db.session.scalar(select(Environment).where(Environment.project_id == project.id)
                              .order_by(Environment.position).limit(1))
    if first is None:
        detail = f"The {when} train cut {version}; the project has no environment to deploy it to."
        return TickResult("cut", detail, release_id) if _advance(project, run, "cut", detail) else None
    if not _advance(project, run, "cut", f"The {when} train cut {version}; deploying it to {first.name}."):
        return None
    try:
        deployment = request_deploy(project, release, first.name, _system_actor())
    except ServiceError as exc:
        db.session.rollback()
        detail = f"The {when} train cut {version}; the deploy to {first.name} was refused: {exc.detail}"
        _settle(project, slot, "cut", detail, release_id=release_id, action="train.deploy_refused",
                after={"version": version, "environment": first.name})
        return TickResult("cut", detail, release_id)
    detail = f"The {when} train cut {version} and queued its deploy to {first.name}."
    _settle(project, slot, "cut", detail, release_id=release_id)
    return TickResult("cut", detail, release_id, deployment.id)


def runs(project: Project, limit: int = 20) -> list[TrainRun]:
    """The project's latest train runs, newest first (for the train page)."""
    return list(db.session.scalars(select(TrainRun).where(TrainRun.project_id == project.id)
                                   .order_by(TrainRun.slot.desc()).limit(limit)))
