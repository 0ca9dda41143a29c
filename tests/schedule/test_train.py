"""The release train: DST-correct slots, one scheduled RQ job per slot, one run per slot, a cut from
main deployed to the first environment on the demo repository, and a skip with a notice."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from rq import SimpleWorker
from rq.registry import ScheduledJobRegistry
from rq.scheduler import RQScheduler
from sqlalchemy import func, select

from relapp.extensions import db, get_queue
from relapp.joblog import lines
from relapp.jobs import schedule as jobs
from relapp.models import (
    AuditEvent,
    Deployment,
    Environment,
    Job,
    Project,
    Release,
    TrainRun,
    rq_job_id,
    utcnow,
)
from relapp.services import train
from tests.conftest import work_queue


def berlin(cron: str) -> Project:
    return Project(key="p", name="P", remote_url="x", train_cron=cron, timezone="Europe/Berlin")


def slots(project: Project, start: datetime, count: int) -> list[str]:
    out, after = [], start
    for _ in range(count):
        after = train.next_slot(project, after)
        out.append(after.isoformat())
    return out


def test_monday_ten_is_ten_berlin_time_on_both_sides_of_each_dst_change():
    weekly = berlin("0 10 * * MON")
    assert slots(weekly, datetime(2026, 3, 20, tzinfo=UTC), 2) == [
        "2026-03-23T09:00:00+00:00", "2026-03-30T08:00:00+00:00"]  # CET, then CEST (29 March)
    assert slots(weekly, datetime(2026, 10, 20, tzinfo=UTC), 2) == [
        "2026-10-26T09:00:00+00:00", "2026-11-02T09:00:00+00:00"]  # CET again after 25 October
    assert slots(weekly, datetime(2026, 10, 19, 8, 0, tzinfo=UTC), 1) == ["2026-10-26T09:00:00+00:00"]
    assert train.next_slot(weekly, datetime(2026, 10, 19, 7, 59, tzinfo=UTC)).isoformat() == "2026-10-19T08:00:00+00:00"


def test_a_daily_slot_in_the_hour_that_repeats_or_vanishes_runs_once_that_day():
    daily = berlin("30 2 * * *")
    # 29 March: 02:30 does not exist; the slot moves to the first minute that does (03:00 CEST).
    assert slots(daily, datetime(2026, 3, 28, 0, 0, tzinfo=UTC), 3) == [
        "2026-03-28T01:30:00+00:00", "2026-03-29T01:00:00+00:00", "2026-03-30T00:30:00+00:00"]
    # 25 October: 02:30 happens twice; a fixed-hour train runs at the first one only.
    assert slots(daily, datetime(2026, 10, 24, 0, 0, tzinfo=UTC), 3) == [
        "2026-10-24T00:30:00+00:00", "2026-10-25T00:30:00+00:00", "2026-10-26T01:30:00+00:00"]
    # A wildcard-hour cron keeps every real half hour, the repeated ones included.
    half_hourly = berlin("*/30 * * * *")
    assert slots(half_hourly, datetime(2026, 10, 25, 0, 0, tzinfo=UTC), 3) == [
        "2026-10-25T00:30:00+00:00", "2026-10-25T01:00:00+00:00", "2026-10-25T01:30:00+00:00"]


def test_no_train_or_an_unusable_cron_has_no_slot():
    assert train.next_slot(berlin(""), datetime(2026, 1, 1, tzinfo=UTC)) is None
    assert train.next_slot(Project(key="p", train_cron=None, timezone="UTC"), datetime(2026, 1, 1, tzinfo=UTC)) is None
    assert train.next_slot(berlin("61 25 * * *"), datetime(2026, 1, 1, tzinfo=UTC)) is None


def set_train(cron: str | None) -> Project:
    project = db.session.scalar(select(Project).where(Project.key == "demo"))
    project.train_cron = cron
    db.session.commit()
    return project


def train_jobs() -> list[str]:
    return [i for i in ScheduledJobRegistry(queue=get_queue("schedule")).get_job_ids() if i.startswith(rq_job_id("train-"))]


def test_scheduling_the_same_slot_twice_gives_one_scheduled_rq_job(app, demo_project):
    project = set_train("0 10 * * MON")
    first = train.schedule(project)
    assert train.schedule(project) == first and train.upcoming(project) == first
    assert train.schedule_all() == {"demo": first}
    assert jobs.ensure_scheduled()["trains"] == {"demo": first.isoformat()}
    expected = rq_job_id(f"train-demo-{int(first.timestamp())}")
    assert train_jobs() == [expected]
    registry = ScheduledJobRegistry(queue=get_queue("schedule"))
    assert registry.get_scheduled_time(expected) == first
    local = first.astimezone(train._zone(project))
    assert (local.weekday(), local.hour, local.minute) == (0, 10, 0)
    assert train.upcoming(set_train(None)) is None


def tick(project: Project, slot: datetime) -> dict[str, Any]:
    """Run the tick job function as a worker would (its own app context and session), then, when
    it queued a cut, the tag job that carries the train on; the run as the train recorded it."""
    project_id = project.id
    db.session.rollback()  # the test's read snapshot must not hide what the tick writes
    result = jobs.train_tick(project_id, slot.isoformat())
    if result["outcome"] == "tagging":
        db.session.rollback()
        # In between, the run names its release and waits for the tag job: no worker waits.
        waiting = run_row(project, slot)
        assert (waiting.outcome, waiting.release_id) == ("tagging", result["release_id"])
        assert "deploy follows once the tag is pushed" in waiting.detail
        queue = get_queue("git")  # the tag job
        SimpleWorker([queue], connection=queue.connection).work(burst=True, max_jobs=1)
        db.session.rollback()
        run = run_row(project, slot)
        deployment = db.session.scalar(select(Deployment.id).where(Deployment.release_id == run.release_id))
        result = {"outcome": run.outcome, "detail": run.detail, "release_id": run.release_id,
                  "deployment_id": deployment}
    db.session.rollback()
    return result


def current_slot(project: Project) -> datetime:
    """The slot of a "* * * * *" train that began this minute (due, not missed)."""
    return train.next_slot(project, utcnow() - timedelta(minutes=1))


def run_row(project: Project, slot: datetime) -> TrainRun | None:
    return db.session.scalar(select(TrainRun).where(TrainRun.project_id == project.id, TrainRun.slot == slot))


def test_a_tick_cuts_from_main_and_deploys_to_the_first_environment_once_per_slot(app, demo_project):
    project = set_train("* * * * *")
    slot = current_slot(project)
    head = demo_project.commit_on_main("services/search/ranking.txt", "v2\n", "feat(search): better ranking")

    result = tick(project, slot)
    assert result["outcome"] == "cut", result
    release = db.session.get(Release, result["release_id"])
    assert (release.version, release.sha, release.state) == ("1.3.0", head, "tagged")
    assert demo_project.remote_tag("v1.3.0") == ("tag", head)
    deployment = db.session.get(Deployment, result["deployment_id"])
    assert deployment.environment.name == "qa" and deployment.status == "queued"
    assert deployment.requested_by_id is None
    run = run_row(project, slot)
    assert (run.outcome, run.release_id) == ("cut", release.id) and "queued its deploy to qa" in run.detail
    actors = {e.action: e.actor for e in db.session.scalars(select(AuditEvent))}
    assert actors["train.cut"] == "relapp-train" and actors["deploy.request"] == "relapp-train"
    # The following slot is on RQ's scheduler.
    following = train.next_slot(project, utcnow())
    assert rq_job_id(f"train-demo-{int(following.timestamp())}") in train_jobs()

    work_queue()  # the tag job's own delivery finds it done; the deploy runs for real
    db.session.expire_all()
    assert db.session.get(Deployment, deployment.id).status == "succeeded"

    again = tick(project, slot)
    assert again["outcome"] == "already-ran"
    assert db.session.scalar(select(func.count()).select_from(Release)) == 1
    assert db.session.scalar(select(func.count()).select_from(TrainRun)) == 1
    assert db.session.scalar(select(func.count()).select_from(Deployment)) == 1


def test_a_tick_with_nothing_new_records_a_skip_with_the_reason(app, demo_project):
    project = set_train("* * * * *")
    slot = current_slot(project)
    first = tick(project, (slot - timedelta(minutes=1)))
    assert first["outcome"] == "cut"
    work_queue()

    result = tick(project, slot)
    assert result["outcome"] == "skipped"
    assert "nothing" in result["detail"].lower() and "train was skipped" in result["detail"]
    run = run_row(project, slot)
    assert run.outcome == "skipped" and run.detail == result["detail"] and run.release_id is None
    notice = db.session.scalar(select(AuditEvent).where(AuditEvent.action == "train.skipped"))
    assert notice.actor == "relapp-train" and notice.detail == result["detail"]
    assert db.session.scalar(select(func.count()).select_from(Release)) == 1


def test_a_deploy_the_gates_refuse_is_recorded_and_the_cut_stands(app, demo_project):
    project = set_train("* * * * *")
    qa = db.session.scalar(select(Environment).where(Environment.name == "qa"))
    qa.locked, qa.lock_reason = True, "database migration"
    db.session.commit()
    result = tick(project, current_slot(project))
    assert result["outcome"] == "cut" and result["deployment_id"] is None
    assert "deploy to qa was refused" in result["detail"] and "database migration" in result["detail"]
    assert db.session.scalar(select(AuditEvent).where(AuditEvent.action == "train.deploy_refused")) is not None
    assert db.session.scalar(select(func.count()).select_from(Deployment)) == 0


def test_a_slot_of_an_older_cron_or_a_missed_slot_does_not_cut(app, demo_project):
    project = set_train("0 10 * * MON")
    stale = datetime(2026, 1, 6, 9, 0, tzinfo=UTC)  # a Tuesday: not a slot of this cron
    assert tick(project, stale)["outcome"] == "ignored"
    assert db.session.scalar(select(func.count()).select_from(TrainRun)) == 0

    missed = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)  # a Monday 10:00 Berlin, long gone
    result = tick(project, missed)
    assert result["outcome"] == "skipped" and "no worker ran it" in result["detail"]
    assert run_row(project, missed).outcome == "skipped"
    assert db.session.scalar(select(func.count()).select_from(Release)) == 0

    early = train.next_slot(project, utcnow() + timedelta(days=1))
    assert tick(project, early)["outcome"] == "early"
    assert run_row(project, early) is None
    assert any(i.startswith(rq_job_id(f"train-demo-{int(early.timestamp())}-early-")) for i in train_jobs())


def test_rqs_own_scheduler_moves_the_slot_to_the_queue_and_it_runs_once(app, demo_project):
    project = set_train("* * * * *")
    slot = train.schedule(project)
    job_id = rq_job_id(f"train-demo-{int(slot.timestamp())}")
    assert train_jobs() == [job_id]
    queue = get_queue("schedule")
    registry = ScheduledJobRegistry(queue=queue)
    # Let the slot come due without sleeping: its score moves into the past (as RQ's own tests do).
    queue.connection.zadd(registry.key, {job_id: int(utcnow().timestamp()) - 1})
    scheduler = RQScheduler([queue], connection=queue.connection)
    assert scheduler.acquire_locks() == {queue.name}
    scheduler.enqueue_scheduled_jobs()
    # A second worker's scheduler has nothing to move: the job left the registry.
    assert job_id not in registry.get_job_ids() and job_id in queue.get_job_ids()
    queue.enqueue("relapp.jobs.schedule.train_tick", project.id, slot.isoformat())  # a double delivery
    work_queue()

    runs = db.session.scalars(select(TrainRun)).all()
    assert [(r.slot, r.outcome) for r in runs] == [(slot, "cut")]
    assert [r.version for r in db.session.scalars(select(Release))] == ["1.3.0"]
    deployment = db.session.scalar(select(Deployment))
    assert deployment.environment.name == "qa" and deployment.status == "succeeded"
    following = train.next_slot(project, slot)
    assert rq_job_id(f"train-demo-{int(following.timestamp())}") in train_jobs()
    scheduler.release_locks()


def test_a_cut_whose_tag_cannot_be_pushed_deploys_nothing(app, demo_project):
    project = set_train("* * * * *")
    # The remote refuses every push, so the tag job fails after the cut was recorded.
    hook = demo_project.origin / "hooks" / "pre-receive"
    hook.write_text("#!/bin/sh\necho 'pushes are closed' >&2\nexit 1\n")
    hook.chmod(0o755)
    slot = current_slot(project)
    result = tick(project, slot)
    assert result["outcome"] == "failed" and "tagging it did not succeed" in result["detail"]
    assert result["deployment_id"] is None
    run = run_row(project, slot)
    assert run.outcome == "failed" and run.release_id == result["release_id"]
    assert db.session.scalar(select(func.count()).select_from(Deployment)) == 0
    assert db.session.scalar(select(AuditEvent).where(AuditEvent.action == "train.failed")) is not None


def test_a_real_burst_worker_runs_a_due_slot_in_its_forked_work_horse(app, demo_project, worker_env):
    from tests.conftest import run_worker_burst

    project = set_train("* * * * *")
    slot = train.schedule(project)
    job_id = rq_job_id(f"train-demo-{int(slot.timestamp())}")
    queue = get_queue("schedule")
    registry = ScheduledJobRegistry(queue=queue)
    queue.connection.zadd(registry.key, {job_id: int(utcnow().timestamp()) - 1})
    db.session.commit()
    # A burst worker started with_scheduler moves due jobs once on start (rq's worker code path).
    done = run_worker_burst(worker_env)
    assert done.returncode == 0, done.stderr[-2000:]
    db.session.rollback()
    run = run_row(project, slot)
    assert run is not None and run.outcome == "cut", done.stderr[-2000:]
    deployment = db.session.scalar(select(Deployment))
    assert deployment.environment.name == "qa" and deployment.status == "succeeded"
    assert demo_project.remote_tag("v1.3.0") is not None


def test_the_train_goes_on_once_when_the_tag_job_ends_whoever_asks(app, demo_project):
    project = set_train("* * * * *")
    slot = current_slot(project)
    db.session.rollback()
    result = jobs.train_tick(project.id, slot.isoformat())  # the tag job waits in the queue
    assert result["outcome"] == "tagging" and result["deployment_id"] is None
    release_id = result["release_id"]
    db.session.rollback()
    assert train.after_cut(release_id, tag_job_ended=False) is None  # still tagging: wait for it
    assert run_row(project, slot).outcome == "tagging"

    queue = get_queue("git")  # the tag job
    SimpleWorker([queue], connection=queue.connection).work(burst=True, max_jobs=1)
    db.session.rollback()
    run = run_row(project, slot)
    assert run.outcome == "cut" and "queued its deploy to qa" in run.detail
    tag_job = db.session.scalar(select(Job).where(Job.release_id == release_id, Job.kind == "tag_release"))
    assert tag_job.status == "succeeded"
    assert any(line.line.startswith("release train: ") and "queued its deploy to qa" in line.line
               for line in lines(tag_job.id))
    # A second delivery of the tag job, or anyone else asking, finds no run waiting.
    assert train.after_cut(release_id) is None
    assert db.session.scalar(select(func.count()).select_from(Deployment)) == 1


def test_jobs_run_only_in_the_app_context_the_worker_pushed():
    with pytest.raises(RuntimeError, match="worker.py"):
        jobs.train_tick(1, "2026-01-05T09:00:00+00:00")
