"""PostgreSQL drops its connections (pg_terminate_backend on every backend of the test's own
database) in the middle of a request and in the middle of a job: the request answers 503
problem+json with nothing half-written and the next one succeeds (pool_pre_ping); the job's
write transaction is run again and the job ends as if nothing happened.

The drop happens at a chosen statement (a SQLAlchemy cursor event on the app's engine calls
pg_terminate_backend from a connection of its own), so the test is exact, not a race."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from sqlalchemy import create_engine, event, func, select, text
from sqlalchemy.pool import NullPool

from relapp.extensions import db
from relapp.models import AuditEvent, Job, Release
from tests.conftest import _truncate_postgres, git, work_queue

pytestmark = pytest.mark.skipif(not os.environ.get("TEST_DATABASE_URL"),
                                reason="pg_terminate_backend needs PostgreSQL (TEST_DATABASE_URL)")


@pytest.fixture
def backend(request: pytest.FixtureRequest, tmp_path: Any) -> dict[str, str]:
    """PostgreSQL and the server's Redis only: there is no connection to drop in SQLite."""
    database = request.getfixturevalue("postgres_url")
    _truncate_postgres(database)
    return {"name": "server", "database": database, "redis": request.getfixturevalue("server_redis_url")}


@contextmanager
def drop_connections_at(url: str, statement: str) -> Iterator[list[int]]:
    """While inside: the first time the app's engine is about to run a statement starting with
    `statement`, every other backend of this database is terminated (the statement then runs on
    a dead connection). Yields the list of terminated pids."""
    admin = create_engine(url, poolclass=NullPool, isolation_level="AUTOCOMMIT")
    killed: list[int] = []

    def before(conn: Any, cursor: Any, sql: str, params: Any, context: Any, many: bool) -> None:
        if killed or not sql.lstrip().upper().startswith(statement):
            return
        with admin.connect() as own:
            # Two steps: the pids of this database first, then each one ended. (A WHERE with
            # pg_terminate_backend in it may run it on rows of other databases before the filter.)
            pids = own.scalars(text("SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
                                    "AND pid <> pg_backend_pid()")).all()
            for pid in pids:
                if own.scalar(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid}):
                    killed.append(pid)

    engine = db.engine
    event.listen(engine, "before_cursor_execute", before)
    try:
        yield killed
    finally:
        event.remove(engine, "before_cursor_execute", before)
        admin.dispose()


def counts() -> dict[str, int]:
    db.session.rollback()
    found = {model.__name__: db.session.scalar(select(func.count()).select_from(model))
             for model in (Release, Job, AuditEvent)}
    db.session.rollback()
    return found


def test_a_dropped_connection_mid_request_answers_503_or_succeeds_and_writes_nothing_half(
        app, demo_project, backend) -> None:
    client = app.test_client()
    before = counts()
    with drop_connections_at(backend["database"], "INSERT INTO JOBS") as killed:
        answer = client.post("/api/v1/projects/demo/releases", json={"ref": "main"},
                             headers=demo_project.headers())
    assert killed, "no backend was terminated"
    assert "Traceback" not in answer.get_data(as_text=True)
    if answer.status_code == 503:
        assert answer.mimetype == "application/problem+json" and answer.get_json()["status"] == 503
        # The release row was inserted before the drop, in the same transaction: none is left.
        assert counts() == before
        answer = client.post("/api/v1/projects/demo/releases", json={"ref": "main"},
                             headers=demo_project.headers())
    # Answered at once (its transaction run again) or on the next request: one cut, one job.
    assert answer.status_code == 202, answer.get_json()
    assert answer.get_json()["version"] == "1.3.0"  # a refused attempt took no number
    after = counts()
    assert (after["Release"], after["Job"]) == (before["Release"] + 1, before["Job"] + 1)
    assert after["AuditEvent"] > before["AuditEvent"]
    # Every pooled connection was ended too: the next request gets a live one (pool_pre_ping).
    with drop_connections_at(backend["database"], "SELECT") as killed_again:
        listed = client.get("/api/v1/projects", headers=demo_project.headers())
    assert killed_again and listed.status_code in (200, 503)
    assert client.get("/api/v1/projects", headers=demo_project.headers()).status_code == 200


def test_a_dropped_connection_mid_job_is_retried_and_the_job_ends_once(app_ctx, demo_project, backend) -> None:
    client = app_ctx.test_client()
    answer = client.post("/api/v1/projects/demo/releases", json={"ref": "main"},
                         headers=demo_project.headers())
    assert answer.status_code == 202, answer.get_json()
    job_id, version = answer.get_json()["job"]["id"], answer.get_json()["version"]
    head = git("rev-parse", "main", cwd=demo_project.origin)
    # The drop hits the tag job's write of its outcome, after the tag was pushed.
    with drop_connections_at(backend["database"], "UPDATE RELEASES") as killed:
        work_queue()
    assert killed, "no backend was terminated"
    db.session.rollback()
    job = db.session.get(Job, job_id)
    release = db.session.scalar(select(Release).where(Release.version == version))
    assert job is not None and release is not None
    assert (job.status, job.attempt, job.error) == ("succeeded", 1, None)
    assert release.state == "tagged"
    assert demo_project.remote_tag(f"v{version}") == ("tag", head)
    # The next request works on a fresh connection.
    assert client.get("/api/v1/projects", headers=demo_project.headers()).status_code == 200
