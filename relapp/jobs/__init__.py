"""RQ job functions: they take ids, re-load rows, are idempotent, and write data, never HTML.

Every job row runs through `run(job_id)`: it claims the row (queued → running) with a
compare-and-set so a job handed to Redis twice runs once, then calls the handler of its kind.
Every write of a job runs in a retried write transaction (`in_write_transaction`): on SQLite it
takes the write lock up front, and a busy database is waited for and tried again, never a crash.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from flask import Flask, current_app, has_app_context
from sqlalchemy import update

from ..extensions import CONTENDED, db, in_write_transaction
from ..joblog import JobLog, publish
from ..models import Job, utcnow

log = logging.getLogger(__name__)

Handler = Callable[[Any, Any], None]
HANDLERS: dict[str, str] = {
    "tag_release": "relapp.jobs.git:tag_release",
    "hotfix": "relapp.jobs.git:make_hotfix",
    "deploy": "relapp.jobs.deploy:deploy",
}


class JobFailed(Exception):
    """A job ends as failed with this sentence (shown to people, so no secrets, no traceback)."""


def own_connections() -> None:
    """Give this process database connections of its own (in the current app context).

    A work-horse forked by RQ inherits the worker's pooled connections; two processes talking on
    one socket corrupt both. The first call in a new process drops the inherited pool without
    closing its connections (closing would end the parent's sessions too); later calls in the
    same process do nothing.
    """
    app = current_app._get_current_object()  # type: ignore[attr-defined]
    if app.extensions.get("relapp.pid") != os.getpid():
        db.engine.dispose(close=False)
        app.extensions["relapp.pid"] = os.getpid()


@contextmanager
def job_context() -> Iterator[Flask]:
    """A fresh app context of the running app for one job: its own session, removed at the end.

    The app comes from the context the worker (or a test) pushed; jobs never build it.
    """
    if not has_app_context():
        raise RuntimeError("relapp jobs run inside the app context that worker.py pushes; "
                           "start the worker with `python worker.py`.")
    app: Flask = current_app._get_current_object()  # type: ignore[attr-defined]
    contended = CONTENDED.set(True)  # requests and other jobs write meanwhile
    try:
        with app.app_context():
            yield app
    finally:
        CONTENDED.reset(contended)


def _handler(kind: str) -> Handler:
    import importlib

    module, _, name = HANDLERS[kind].partition(":")
    return getattr(importlib.import_module(module), name)  # type: ignore[no-any-return]


def run(job_id: int) -> str:
    """Claim and run one job row; a second delivery of the same job does nothing."""
    with job_context():
        if not in_write_transaction(_claim, job_id):
            return "skipped: not queued"
        job = db.session.get(Job, job_id)
        assert job is not None
        joblog = JobLog(job.id)
        db.session.commit()  # no read snapshot held into the handler (SQLite would refuse its writes)
        publish(job.id, {"type": "status", "status": "running"})
        try:
            _handler(job.kind)(job, joblog)
        except JobFailed as exc:
            db.session.rollback()
            _finish(job_id, "failed", str(exc))
            joblog.write(f"failed: {exc}")
            return "failed"
        except Exception as exc:
            db.session.rollback()
            log.exception("job %s crashed", job_id)
            _finish(job_id, "failed", f"Unexpected error ({exc.__class__.__name__}); see the worker log.")
            joblog.write(f"failed: unexpected error ({exc.__class__.__name__})")
            return "failed"
        _finish(job_id, "succeeded", None)
        return "succeeded"


def _claim(job_id: int) -> bool:
    return bool(db.session.execute(
        update(Job).where(Job.id == job_id, Job.status == "queued")
        .values(status="running", attempt=Job.attempt + 1, started_at=utcnow())).rowcount)


def _end(job_id: int, status: str, error: str | None) -> None:
    db.session.execute(update(Job).where(Job.id == job_id, Job.status == "running")
                       .values(status=status, error=error, finished_at=utcnow()))


def _finish(job_id: int, status: str, error: str | None) -> None:
    db.session.rollback()
    in_write_transaction(_end, job_id, status, error)
    publish(job_id, {"type": "status", "status": status, "error": error})


def ping(value: Any) -> dict[str, Any]:
    """A trivial job that proves the queue and a worker work: it echoes its argument."""
    return {"echo": value, "pid": os.getpid()}
