"""The commit listener rings the doorbell after a commit, once per commit, never for a rolled-back
change; bulk UPDATEs ring as ORM changes do; job and deployment status reach the job's own log
stream; a real RQ work-horse rings too."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import update

from relapp.extensions import db, get_queue, in_write_transaction
from relapp.models import Deployment, Environment, Job, Release, utcnow
from relapp.services import live
from tests.conftest import run_worker_burst

from .conftest import doorbell, job_feed


def test_an_orm_change_rings_once_after_its_commit(rows):
    before = len(doorbell())
    release = db.session.get(Release, rows.release)
    env = db.session.get(Environment, rows.environment)
    release.state = "tagged"
    env.locked, env.lock_reason = True, "audit week"
    db.session.flush()
    assert len(doorbell()) == before  # flushed, not committed: nothing rung yet
    db.session.commit()
    rung = doorbell()[before:]
    assert [data for _id, data in rung] == [
        {"topics": sorted([f"project:{rows.project}", f"release:{rows.release}"])}]


def test_a_rolled_back_change_rings_nothing(rows):
    before = len(doorbell())
    db.session.get(Release, rows.release).state = "failed"
    db.session.flush()
    db.session.rollback()

    def fails() -> None:
        db.session.get(Release, rows.release).state = "failed"
        db.session.flush()
        raise RuntimeError("no")

    with pytest.raises(RuntimeError):
        in_write_transaction(fails)
    db.session.commit()  # a later empty commit does not ring what was rolled back
    assert len(doorbell()) == before
    assert db.session.get(Release, rows.release).state == "pending"


def test_a_bulk_update_rings_and_feeds_the_job_stream(rows):
    before, fed = len(doorbell()), len(job_feed(rows.job))

    def start() -> None:
        db.session.execute(update(Deployment).where(Deployment.id == rows.deployment)
                           .values(status="running", message="rolling"))
        db.session.execute(update(Job).where(Job.id.in_([rows.job]))
                           .values(status="running", started_at=utcnow()))

    in_write_transaction(start)
    rung = doorbell()[before:]
    assert [data for _id, data in rung] == [{"topics": sorted(
        [f"project:{rows.project}", f"release:{rows.release}", f"job:{rows.job}"])}]
    assert job_feed(rows.job)[fed:] == [
        {"type": "deployment", "deployment": rows.deployment, "status": "running",
         "message": "rolling"},
        {"type": "status", "status": "running", "error": None}]


def test_what_no_page_shows_rings_nothing(rows):
    before = len(doorbell())

    def renew() -> None:  # a lease renewal, as the deploy job does every few seconds
        db.session.execute(update(Deployment).where(Deployment.id == rows.deployment)
                           .values(lease_until=utcnow() + timedelta(seconds=60)))
        db.session.execute(update(Job).where(Job.id == rows.job).values(enqueued_at=utcnow()))

    in_write_transaction(renew)
    # A fenced UPDATE that changed no row rings nothing either.
    in_write_transaction(lambda: db.session.execute(update(Release).where(
        Release.id == rows.release, Release.state == "no such state").values(state="failed")))
    assert len(doorbell()) == before


def test_notify_waits_for_the_commit_and_rings_at_once_outside_a_transaction(rows):
    before = len(doorbell())
    db.session.get(Release, rows.release)  # a transaction is open
    live.notify("project:99")
    assert len(doorbell()) == before
    db.session.commit()
    assert doorbell()[-1][1] == {"topics": ["project:99"]}
    live.notify("release:7", "job:8")  # no transaction open now
    assert doorbell()[-1][1] == {"topics": ["job:8", "release:7"]}
    db.session.get(Release, rows.release)
    live.notify("project:100")
    db.session.rollback()
    assert doorbell()[-1][1] == {"topics": ["job:8", "release:7"]}


def test_a_redis_outage_loses_the_doorbell_not_the_write(app, rows, tmp_path, caplog):
    app.config["REDIS_URL"] = f"unix://{tmp_path}/no-redis.sock"
    app.extensions.pop("relapp.redis", None)
    db.session.get(Release, rows.release).state = "tagged"
    db.session.commit()
    db.session.expire_all()
    assert db.session.get(Release, rows.release).state == "tagged"
    assert "live doorbell not rung" in caplog.text


def test_a_job_in_a_real_work_horse_rings_after_its_commit(rows, worker_env: dict[str, Any]):
    before = len(doorbell())
    get_queue("git").enqueue("tests.live.jobs.tag_it", rows.release)
    result = run_worker_burst(worker_env)
    assert result.returncode == 0, result.stderr[-2000:]
    assert {"topics": sorted([f"project:{rows.project}", f"release:{rows.release}"])} in [
        data for _id, data in doorbell()[before:]]
