"""Read model of the kanban: a column per stage (cut, then each environment), with the cards of
the releases that matter now."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import joinedload, selectinload

from ..domain.pipeline import Role
from ..extensions import db
from ..models import Deployment, Job, Project, Release
from . import deployments as deploys
from .accounts import has_role
from .cards import Card, card_for, current_releases, newest_lines
from .environments import unknown_label
from .projects import pick_project, projects
from .train_report import next_cut


@dataclass
class Column:
    """One stage of the pipeline: cut, then each environment."""

    name: str
    title: str
    cards: list[Card] = field(default_factory=list)
    hidden: int = 0
    unknown: str | None = None  # "unknown: last deploy abandoned" (an environment's column)


MOVING = 20  # releases being tagged the board shows beyond the newest


def _moving_ids(project: Project, current: dict[str, int]) -> set[int]:
    """Releases still moving, wherever they are in history: what runs in an environment, what
    is being deployed (one per environment at most) and what is being tagged (its tag or hotfix
    job queued or running, read on the jobs' status index; a failed one shows among the newest)."""
    env_ids = [env.id for env in project.environments]
    active = db.session.scalars(select(Deployment.release_id).where(
        Deployment.environment_id.in_(env_ids), Deployment.status.in_(deploys.ACTIVE)))
    tagging = db.session.scalars(select(Job.release_id).where(
        Job.status.in_(("queued", "running")), Job.kind.in_(("tag_release", "hotfix")),
        Job.project_id == project.id, Job.release_id.is_not(None)).limit(MOVING))
    return {*current.values(), *active, *(i for i in tagging if i is not None)}


def board(project: Project, *, actor: Any = None, limit: int = 60,
          show_all: bool = False) -> list[Column]:
    """Columns cut, then each environment in order, with the cards of the releases that matter.

    The board reads the newest `limit` releases by version and the releases still moving
    (running somewhere, being deployed, being tagged), in a fixed number of bounded queries
    whatever the history holds. A release is retired from the board (unless `show_all`) when a
    later-made, higher release reached the same stage or a further one, and nothing about it is
    live: it runs nowhere, has no deploy in flight or failed, and its tag job is done.
    """
    columns = [Column("cut", "Cut")] + [Column(env.name, env.name.upper(),
                                               unknown=unknown_label(env))
                                        for env in project.environments]
    by_name = {column.name: column for column in columns}
    rank = {column.name: index for index, column in enumerate(columns)}
    current = current_releases(project)
    # Ids first (a top-N on the version index), then the rows by primary key: an OR of the two
    # sets in one query would make PostgreSQL scan every release of the project.
    newest = db.session.scalars(
        select(Release.id).where(Release.project_id == project.id)
        .order_by(Release.major.desc(), Release.minor.desc(), Release.patch.desc(),
                  Release.id.desc()).limit(limit)).all()
    ids = sorted({*newest, *_moving_ids(project, current)})
    # The creator is joined (not a second query that would run only when someone cut one).
    releases = sorted(db.session.scalars(
        select(Release).where(Release.project_id == project.id, Release.id.in_(ids))
        .options(selectinload(Release.deployments), selectinload(Release.decisions),
                 joinedload(Release.created_by))).all(),
        key=lambda r: (r.major, r.minor, r.patch, r.id), reverse=True)
    pending_ids = [r.id for r in releases if r.state != "tagged"]
    jobs: dict[int, Job] = {}
    for job in db.session.scalars(select(Job).where(
            Job.release_id.in_(pending_ids), Job.kind.in_(("tag_release", "hotfix")))
            .order_by(Job.id)):
        if job.release_id is not None:
            jobs[job.release_id] = job  # the newest wins
    active_jobs = [d.job_id for r in releases for d in r.deployments
                   if d.status in deploys.ACTIVE and d.job_id is not None]
    lines = newest_lines(active_jobs)
    # Rank -> the highest id of a tagged release seen there so far, newest version first.
    seen: dict[int, int] = {}
    for release in releases:
        card = card_for(project, release, actor=actor, current=current,
                        job=jobs.get(release.id), last_lines=lines, find_job=False)
        column = by_name.get(card.stage, columns[0])
        here = rank.get(card.stage, 0)
        live = bool(card.runs_in or card.active or card.failed or release.state != "tagged")
        superseded = any(i > release.id for r, i in seen.items() if r >= here)
        if release.state == "tagged":
            seen[here] = max(seen.get(here, 0), release.id)
        if superseded and not live and not show_all:
            column.hidden += 1
            continue
        column.cards.append(card)
    return columns


@dataclass
class BoardPage:
    """The board page: the chosen project, the picker's projects, the columns and the train's
    next scheduled cut."""

    project: Project | None
    projects: list[Project]
    columns: list[Column]
    show_all: bool
    next_cut: datetime | None
    can_cut: bool  # may the viewer cut a release


def board_page(project_key: str | None, *, actor: Any = None, show_all: bool = False) -> BoardPage:
    """The board of the project named in ?project= (else the first project; None when none)."""
    project = pick_project(project_key)
    can_cut = has_role(actor, Role.ENGINEER)
    if project is None:
        return BoardPage(project=None, projects=projects(), columns=[], show_all=show_all,
                         next_cut=None, can_cut=can_cut)
    return BoardPage(project=project, projects=projects(),
                     columns=board(project, actor=actor, show_all=show_all), show_all=show_all,
                     next_cut=next_cut(project)[0], can_cut=can_cut)
