"""Rows for the live tests: a project with a release, an environment, and a deploy job with its
deployment, made directly (no git needed to ring a doorbell)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import pytest

from relapp.extensions import db, get_redis
from relapp.joblog import stream_key
from relapp.models import Deployment, Environment, Job, Project, Release
from relapp.services.accounts import create_user
from relapp.services.live import live_key


@dataclass
class Rows:
    project: int
    release: int
    environment: int
    job: int
    deployment: int


@pytest.fixture
def rows(app_ctx: Any) -> Rows:
    project = Project(key="shop", name="Shop", remote_url="/nowhere.git")
    release = Release(project=project, version="1.0.0", major=1, minor=0, patch=0, kind="minor",
                      tag="v1.0.0")
    env = Environment(project=project, name="qa", position=1)
    db.session.add_all([project, release, env])
    db.session.flush()
    job = Job(kind="deploy", status="queued", project_id=project.id, release_id=release.id,
              payload={})
    db.session.add(job)
    db.session.flush()
    deployment = Deployment(release=release, environment=env, job_id=job.id, status="queued")
    db.session.add(deployment)
    db.session.commit()
    create_user("vic", "pass", "viewer", display_name="Vic")
    return Rows(project.id, release.id, env.id, job.id, deployment.id)


def doorbell() -> list[tuple[str, dict[str, Any]]]:
    """The installation's live stream: (id, data) per entry."""
    return [(_text(entry_id), json.loads(fields[b"data"]))
            for entry_id, fields in get_redis().xrange(live_key())]


def job_feed(job_id: int) -> list[dict[str, Any]]:
    """The events of a job's Redis log stream."""
    return [json.loads(fields[b"data"]) for _id, fields in get_redis().xrange(stream_key(job_id))]


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
