"""RQ job ids are unique per installation: two relapps with databases of their own, sharing one
Redis, both hand over their job 1 of the same kind, and both run it."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from redis import Redis
from rq import Queue
from sqlalchemy import select, text

from relapp import create_app
from relapp.extensions import db, get_queue
from relapp.joblog import stream_key
from relapp.models import Installation, Job, JobLogLine, Project, Release
from relapp.services.queue import create_job, dispatch
from tests.conftest import work_queue


def tagged_release_job() -> Job:
    """Job 1 of this database: a tag job whose release is tagged already (it runs and says so)."""
    project = Project(key="shop", name="Shop", remote_url="/nowhere.git")
    db.session.add(project)
    db.session.flush()
    release = Release(project_id=project.id, version="1.0.0", major=1, minor=0, patch=0, kind="minor",
                      tag="v1.0.0", sha="a" * 40, state="tagged")
    db.session.add(release)
    db.session.flush()
    job = create_job("tag_release", project_id=project.id, release_id=release.id,
                     payload={"release_id": release.id})
    db.session.commit()
    return job


def outcome(job_id: int) -> tuple[str, int, list[str]]:
    db.session.rollback()
    job = db.session.get(Job, job_id)
    assert job is not None
    lines = list(db.session.scalars(select(JobLogLine.line).where(JobLogLine.job_id == job_id)))
    return job.status, job.attempt, lines


def test_two_installations_sharing_one_redis_both_run_their_job_1(
        app: Any, backend: dict[str, str], sqlite_template: Path, tmp_path: Path) -> None:
    # The second installation: its own database (a migrated SQLite file with an id of its own),
    # the same Redis, its own queue.
    other_db = tmp_path / "other.sqlite3"
    shutil.copy(sqlite_template, other_db)
    other = create_app({**{k: app.config[k] for k in ("TESTING", "SECRET_KEY", "RELAPP_DEMO")},
                        "SQLALCHEMY_DATABASE_URI": f"sqlite:///{other_db}", "REDIS_URL": backend["redis"],
                        "RQ_QUEUE": app.config["RQ_QUEUE"] + "-other",
                        "RELAPP_REPOS_DIR": str(tmp_path / "other-repos"),
                        "INSTANCE_PATH": str(tmp_path)})
    with other.app_context():
        with db.engine.begin() as conn:  # a copied database would share the template's id
            conn.execute(text("UPDATE installation SET uid = 'b0b0b0b0'"))
        job_b = tagged_release_job()
        id_b, rq_b = job_b.id, job_b.rq_id
        assert dispatch(job_b) is True
    with app.app_context():
        job_a = tagged_release_job()
        id_a, rq_a = job_a.id, job_a.rq_id
        uid_a = db.session.scalar(select(Installation.uid))
        assert dispatch(job_a) is True  # Redis refused job 1 here before (DuplicateJobError, swallowed)
        assert uid_a and uid_a != "b0b0b0b0"

    assert id_a == id_b == 1
    assert rq_a == f"relapp-{uid_a}-tag_release-1" and rq_b == "relapp-b0b0b0b0-tag_release-1"
    redis = Redis.from_url(backend["redis"])
    assert Queue(app.config["RQ_QUEUE"] + "-git", connection=redis).job_ids == [rq_a]
    assert Queue(other.config["RQ_QUEUE"] + "-git", connection=redis).job_ids == [rq_b]

    # Each installation's worker runs its own job 1 against its own database.
    for application in (app, other):
        with application.app_context():
            work_queue()
            assert outcome(1) == ("succeeded", 1, ["v1.0.0 is already tagged; nothing to do"])
            assert get_queue("git").count == 0
            db.session.remove()

    # Their live logs live apart in Redis too: job 1's line of one is never streamed by the other.
    keys = []
    for application in (app, other):
        with application.app_context():
            keys.append(stream_key(1))
            assert [fields[b"data"] for _id, fields in redis.xrange(stream_key(1))][-1:] != []
    assert keys == [f"relapp:{uid_a}:joblog:1", "relapp:b0b0b0b0:joblog:1"]
    lines_seen = [[json.loads(fields[b"data"])["line"] for _id, fields in redis.xrange(key)
                   if json.loads(fields[b"data"]).get("type") == "line"] for key in keys]
    assert lines_seen == [["v1.0.0 is already tagged; nothing to do"]] * 2
    with other.app_context():
        db.engine.dispose()
