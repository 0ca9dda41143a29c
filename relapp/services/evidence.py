"""Read model of a release's printable evidence: tag, commit, changelog, decisions, deploys,
hotfixes and jobs, in the order they happened."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select

from ..domain import changelog as cl
from ..exceptions import ServiceError
from ..extensions import db
from ..models import Decision, Deployment, Job, Project, Release
from . import releases as release_service


@dataclass
class Evidence:
    """Everything one release's evidence page prints."""

    project: Project
    release: Release
    changelog: cl.Changelog | None
    since: Release | None
    changelog_error: str | None
    decisions: list[Decision]
    deployments: list[Deployment]
    hotfixes: list[Release]
    jobs: list[Job]


def evidence(project: Project, version: str) -> Evidence:
    """The release record: tag, commit, changelog, decisions, deploys, hotfixes, who cut it."""
    release = release_service.get_release(project, version)
    log: cl.Changelog | None = None
    since: Release | None = None
    error = None
    try:
        log, since = release_service.changelog(project, release)
    except ServiceError as exc:
        error = exc.detail
    decisions = list(db.session.scalars(select(Decision).where(Decision.release_id == release.id)
                                        .order_by(Decision.created_at, Decision.id)))
    deployments = list(db.session.scalars(select(Deployment).where(Deployment.release_id == release.id)
                                          .order_by(Deployment.created_at, Deployment.id)))
    jobs = list(db.session.scalars(select(Job).where(Job.release_id == release.id).order_by(Job.id)))
    return Evidence(project, release, log, since, error, decisions, deployments,
                    release_service.hotfixes_of(release), jobs)
