"""Read models of the live regions a page re-fetches when the /events doorbell names them: a
release page's state and side panel, and a job page's facts. They read what those regions show
and no more (no changelog, no git, no log lines), each list bounded. And the doorbell's newest
id when a page is rendered, where the page's stream starts (nothing between is missed)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from flask import current_app
from redis import Redis
from redis.exceptions import RedisError
from sqlalchemy.exc import SQLAlchemyError

from ..embedded import EmbeddedRedisError
from ..exceptions import NotFound, ServiceError
from ..extensions import db, get_redis
from ..models import Decision, Deployment, Job, Project, Release
from . import releases as rel
from .cards import Card, card_for
from .live import live_key
from .queue import StreamState, stream_state
from .releases_read import release_rows


@dataclass
class ReleaseRegions:
    """What a release page's live regions show (the names match the page's read model)."""

    project: Project
    release: Release
    since: Release | None
    card: Card
    deployments: list[Deployment]
    decisions: list[Decision]
    hotfixes: list[Release]
    jobs: list[Job]


def release_regions(project: Project, version: str, *, since: str | None = None,
                    actor: Any = None) -> ReleaseRegions:
    """The release's state (card, facts) and its deployments, decisions, hotfixes and jobs."""
    release = rel.get_release(project, version)
    start = None
    if since:
        try:
            start = rel.get_release(project, since)
        except ServiceError:  # not a version (400) or not the project's (404)
            start = None  # the page said so already, by the field; the region keeps its links plain
    rows = release_rows(release)  # as the release page reads them (releases_read)
    card = card_for(project, release, actor=actor)
    return ReleaseRegions(project=project, release=release, since=start, card=card,
                          deployments=rows.deployments, decisions=rows.decisions,
                          hotfixes=rows.hotfixes, jobs=rows.jobs)


@dataclass
class JobFacts:
    """A job page's facts: the job row and what its live stream follows."""

    job: Job
    followed: StreamState


def job_facts(job_id: int) -> JobFacts:
    """The job and its deployment's state, or NotFound."""
    if db.session.get(Job, job_id) is None:
        raise NotFound(f"There is no job {job_id}.")
    followed = stream_state(job_id)  # ends the read: the job is loaded afresh below
    job = db.session.get(Job, job_id)
    if job is None:
        raise NotFound(f"There is no job {job_id}.")
    return JobFacts(job=job, followed=followed)


def newest_change() -> str:
    """The doorbell's newest id as a page is rendered ("0-0" when it is empty): the page's
    /events stream starts after it, so a change made while the page loads is not missed. "" when
    Redis does not answer (the stream then starts from its own newest id)."""
    try:
        newest: Any = _quick_redis().xrevrange(live_key(), count=1)
    except (RedisError, OSError, EmbeddedRedisError, SQLAlchemyError):  # the uid is read once
        return ""
    if not newest:
        return "0-0"
    found = newest[0][0]
    return found.decode() if isinstance(found, bytes) else str(found)


QUICK_SECONDS = 0.25  # the longest a page waits for Redis to say where its stream starts
_QUICK = "relapp.live_regions.redis"


def _quick_redis() -> Any:
    """A client of the app's Redis with short timeouts (made once per app): a stalled Redis
    delays a page by a quarter second at most, instead of the queue client's ten."""
    client = current_app.extensions.get(_QUICK)
    if client is None:
        get_redis()  # starts the embedded server if it is the one in use
        client = Redis.from_url(current_app.config["REDIS_URL"],
                                socket_connect_timeout=QUICK_SECONDS, socket_timeout=QUICK_SECONDS)
        current_app.extensions[_QUICK] = client
    return client
