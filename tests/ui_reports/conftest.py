"""Fixtures for the report pages: the demo project with a known release history written as rows."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select

from relapp.extensions import db
from relapp.models import Decision, Deployment, Project, Release, User
from tests.conftest import (
    Demo,
    git,
    signed_in,  # noqa: F401 - re-exported for the folder's tests
)

# A Wednesday, so the week buckets in the tests are known.
NOW = datetime(2026, 3, 18, 12, 0, tzinfo=UTC)

# version, kind, days before NOW: cut, then first success in qa, beta, prod (None: not yet).
HISTORY = (
    ("1.3.0", "minor", 40, (38, 33, 28)),
    ("1.4.0", "minor", 30, (29, 24, 21)),
    ("1.4.1", "hotfix", 19, (18.5, 18.25, 18)),
    ("1.5.0", "minor", 16, (15, 9, 5)),
    ("1.6.0", "minor", 8, (7, 2, None)),
    ("1.7.0", "minor", 2, (1, None, None)),
)


@dataclass
class History:
    """The seeded project and its rows by version."""

    demo: Demo
    project: Project
    releases: dict[str, Release]
    users: dict[str, User]
    now: datetime


def seed_history(demo: Demo, now: datetime = NOW) -> History:
    """Write HISTORY as release, deployment and decision rows on real commits of the demo repo."""
    project = db.session.scalar(select(Project).where(Project.key == "demo"))
    assert project is not None
    users = {u.username: u for u in db.session.scalars(select(User))}
    envs = list(project.environments)
    shas = git("rev-list", "--first-parent", "--reverse", "main", cwd=demo.origin).split()
    releases: dict[str, Release] = {}
    previous = db.session.scalar(select(Release).where(Release.project_id == project.id).order_by(
        Release.major.desc(), Release.minor.desc(), Release.patch.desc()).limit(1))
    for index, (version, kind, cut_days, reached) in enumerate(HISTORY):
        major, minor, patch = (int(p) for p in version.split("."))
        cut_at = now - timedelta(days=cut_days)
        release = Release(project_id=project.id, version=version, major=major, minor=minor, patch=patch,
                          kind=kind, source="cut", tag=f"v{version}", sha=shas[200 + 15 * index],
                          state="tagged", follows_id=previous.id if previous and kind != "hotfix" else None,
                          base_id=releases["1.4.0"].id if kind == "hotfix" else None,
                          created_by_id=users["erin"].id, created_at=cut_at,
                          tagged_at=cut_at + timedelta(minutes=2))
        db.session.add(release)
        db.session.flush()
        for env, days in zip(envs, reached, strict=True):
            if days is None:
                continue
            finished = now - timedelta(days=days)
            db.session.add(Deployment(
                release_id=release.id, environment_id=env.id, status="succeeded",
                requested_by_id=users["rita" if env.name == "prod" else "erin"].id,
                created_at=finished - timedelta(minutes=5), started_at=finished - timedelta(minutes=4),
                finished_at=finished, message="deployed"))
            decider = users["rita" if env.name == "prod" else "quinn"]
            if env.name == "qa" and version == "1.5.0":
                db.session.add(Decision(release_id=release.id, environment_id=env.id, decision="no-go",
                                        comment="Refunds are rounded wrong", bugs=["PAY-12", "PAY-13"],
                                        by_id=decider.id, created_at=finished + timedelta(hours=2)))
            db.session.add(Decision(release_id=release.id, environment_id=env.id, decision="go",
                                    comment=f"{env.name} looks good", bugs=[], by_id=decider.id,
                                    created_at=finished + timedelta(hours=20)))
        if kind != "hotfix":
            previous = release
        releases[version] = release
    # A failed prod deploy of 1.5.0 before the good one: it counts nowhere.
    db.session.add(Deployment(release_id=releases["1.5.0"].id, environment_id=envs[2].id, status="failed",
                              requested_by_id=users["rita"].id, created_at=now - timedelta(days=6),
                              started_at=now - timedelta(days=6), finished_at=now - timedelta(days=6),
                              message="health check failed"))
    project.train_cron = "0 9 * * MON"
    db.session.commit()
    return History(demo, project, releases, users, now)


@pytest.fixture
def history(demo_project: Demo) -> History:
    """The demo project with the seeded release history."""
    return seed_history(demo_project)


@pytest.fixture(autouse=True)
def _service_context(service_context: Any) -> None:
    """Service-level tests call services directly: each test that uses the app runs in its context."""
