"""The board costs what it shows: the same statements with 10 and 300 releases, columns bounded to
the newest releases plus the ones still moving, and an old release that runs somewhere still on it."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import insert, select

from relapp.extensions import db
from relapp.models import Deployment, Job, Release, utcnow
from relapp.services import board as board_svc
from relapp.services.projects import get_project
from tests.query_count import counting

from .conftest import column_of, signed_in


def add_old_releases(count):
    """`count` old tagged releases 0.0.<n> below the demo's, in bulk."""
    project = get_project("demo")
    sha = db.session.scalar(select(Release.sha).where(Release.project_id == project.id,
                                                      Release.sha.is_not(None)).limit(1))
    now = utcnow()
    db.session.execute(insert(Release), [
        {"project_id": project.id, "version": f"0.0.{n}", "major": 0, "minor": 0, "patch": n,
         "kind": "minor", "source": "cut", "tag": f"v0.0.{n}", "sha": sha, "state": "tagged",
         "details": {}, "created_at": now - timedelta(days=1000 - n)}
        for n in range(1, count + 1)])
    db.session.commit()


def cards_on(html):
    return html.count('<article class="card ')


def test_the_board_runs_the_same_statements_with_10_and_300_releases(app, released):
    client = signed_in(app, "vic")
    client.get("/?project=demo")  # warm-up: the session's first request reads its user
    assert db.session.scalar(select(db.func.count()).select_from(Release)) <= 10
    with counting() as small:
        html = client.get("/?project=demo").get_data(as_text=True)
    add_old_releases(300)
    with counting() as large:
        client.get("/?project=demo")
    assert len(large) == len(small)
    large_html = client.get("/?project=demo&all=1").get_data(as_text=True)
    # Even showing the retired ones, the board holds the newest 60 (plus what still moves).
    assert cards_on(large_html) <= 60 + 5 and cards_on(large_html) > cards_on(html)
    assert column_of(large_html, "0.0.1") is None


def test_an_old_release_that_runs_somewhere_stays_on_the_board(app, released):
    add_old_releases(300)
    project = get_project("demo")
    prod = next(env for env in project.environments if env.name == "prod")
    old = db.session.scalar(select(Release).where(Release.project_id == project.id, Release.version == "0.0.3"))
    db.session.add(Deployment(release_id=old.id, environment_id=prod.id, status="succeeded",
                              created_at=utcnow(), finished_at=utcnow(), message="rolled back by hand"))
    # An old release being tagged again (its tag job queued) is on the board too.
    tagging = db.session.scalar(select(Release).where(Release.project_id == project.id, Release.version == "0.0.5"))
    tagging.state = "pending"
    db.session.add(Job(kind="tag_release", status="queued", project_id=project.id, release_id=tagging.id))
    db.session.commit()
    columns = {c.name: c for c in board_svc.board(project)}
    assert "0.0.3" in [card.release.version for card in columns["prod"].cards]
    assert "0.0.5" in [card.release.version for card in columns["cut"].cards]
    assert sum(len(c.cards) + c.hidden for c in columns.values()) <= 62  # the newest 60 and the two
    html = signed_in(app, "vic").get("/?project=demo").get_data(as_text=True)
    assert column_of(html, "0.0.3") == "prod"
