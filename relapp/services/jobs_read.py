"""Reads of a job for its page and its live stream: the row, its status, and its stored log lines.

The stream's reads end their transaction at once: a stream lives for minutes, and an open read
would hold SQLite's snapshot (and, once it wrote, the write lock) all that time.
"""

from __future__ import annotations

from sqlalchemy import select

from ..exceptions import NotFound
from ..extensions import db
from ..joblog import LogLine, lines
from ..models import Job


def get_job(job_id: int) -> tuple[Job, list[LogLine]]:
    """A job and its stored log lines, or NotFound."""
    job = db.session.get(Job, job_id)
    if job is None:
        raise NotFound(f"There is no job {job_id}.")
    return job, list(lines(job_id))


def ensure_job(job_id: int) -> None:
    """NotFound unless the job exists (checked before a stream starts)."""
    found = db.session.get(Job, job_id) is not None
    db.session.rollback()
    if not found:
        raise NotFound(f"There is no job {job_id}.")


def job_status(job_id: int) -> tuple[str, str | None]:
    """The job's status and error, as the record says now."""
    row = db.session.execute(select(Job.status, Job.error).where(Job.id == job_id)).one()
    db.session.rollback()
    return row.status, row.error


def log_after(job_id: int, after: int) -> list[LogLine]:
    """The job's stored log lines after line number `after`."""
    found = list(lines(job_id, after))
    db.session.rollback()
    return found
