"""The demo project (real generated repository, bare remote, users) with its legacy tags adopted
and one release cut and tagged through a real RQ worker, for the board's page tests."""

from __future__ import annotations

import re
from typing import Any

import pytest
from sqlalchemy import func, select

from relapp.extensions import db
from relapp.models import Decision, Deployment, Job, Release, User
from relapp.services import adoption
from relapp.services import releases as svc
from relapp.services.projects import get_project
from tests.conftest import (
    Demo,
    signed_in,  # noqa: F401 - re-exported for the folder's tests
    work_queue,
)

HOSTILE = ("<img src=x onerror=alert(1)>", "<div hx-get=/x hx-trigger=load>")


def user(name: str) -> User:
    """A demo user row."""
    return db.session.scalar(select(User).where(User.username == name))


def counts() -> dict[str, int]:
    """Row counts of what the board's actions write."""
    return {model.__name__: db.session.scalar(select(func.count()).select_from(model))
            for model in (Release, Job, Deployment, Decision)}


def token(client: Any, path: str = "/") -> str:
    """The CSRF token of a page the client sees."""
    page = client.get(path).get_data(as_text=True)
    return re.search(r'name="csrf-token" content="([^"]+)"', page).group(1)


def column_of(html: str, version: str) -> str | None:
    """The stage of the board column whose cards include `version`."""
    for match in re.finditer(r'<section class="column" id="column-([a-z0-9_-]+)"(.*?)</section>', html, re.DOTALL):
        if f'data-version="{version}"' in match.group(2):
            return match.group(1)
    return None


@pytest.fixture
def released(app: Any, demo_project: Demo) -> Demo:
    """Demo with 0.9.0–1.2.0 adopted and 1.3.0 cut by erin and tagged (the demo's command
    drivers deploy in a few seconds)."""
    project = get_project("demo")
    adoption.adopt_into_db("demo")
    svc.cut(project, user("erin"))
    work_queue()
    assert svc.get_release(project, "1.3.0").state == "tagged"
    return demo_project


@pytest.fixture(autouse=True)
def _service_context(service_context: Any) -> None:
    """Service-level tests call services directly: each test that uses the app runs in its context."""
