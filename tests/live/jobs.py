"""A function the tests hand to a real RQ worker: it changes a release the way a job does."""

from __future__ import annotations

from sqlalchemy import update

from relapp.extensions import db, in_write_transaction
from relapp.jobs import job_context
from relapp.models import Release


def _tag(release_id: int) -> None:
    db.session.execute(update(Release).where(Release.id == release_id).values(state="tagged"))


def tag_it(release_id: int) -> str:
    """Mark a release tagged in a retried write transaction, inside the job's app context."""
    with job_context():
        in_write_transaction(_tag, release_id)
    return "tagged"
