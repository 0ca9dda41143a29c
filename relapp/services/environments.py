"""Read model of the environments page: per environment what runs, its decision, lock, freeze,
drift, any deploy in progress, and what the next environment does not run yet."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select

from ..domain import changelog as cl
from ..domain.pipeline import Role
from ..exceptions import ServiceError
from ..extensions import db
from ..models import Decision, Deployment, Environment, Project, Release
from . import releases as release_service
from .accounts import has_role
from .deployments import active_deployment, current_deployment
from .projects import pick_project, projects

TOP_ENTRIES = 5


def _plain_version(text: str | None) -> str:
    return (text or "").strip().removeprefix("v")


def _order(release: Release) -> tuple[int, int, int]:
    return (release.major, release.minor, release.patch)


@dataclass
class Behind:
    """What the next environment does not run yet, compared with this one."""

    next_env: str
    next_version: str | None
    state: str  # same | ahead | behind | empty | unknown
    count: int = 0
    entries: list[cl.ChangelogEntry] = field(default_factory=list)
    error: str | None = None


@dataclass
class EnvRow:
    """One environment on the environments page."""

    env: Environment
    current: Deployment | None
    decision: Decision | None
    active: Deployment | None
    drift: str | None
    behind: Behind | None
    can_change: bool = False  # may the viewer lock, unlock, freeze or unfreeze it


@dataclass
class EnvironmentsPage:
    """The environments page: the chosen project, the picker's projects, a row per environment."""

    project: Project | None
    projects: list[Project]
    rows: list[EnvRow]


def latest_decision(release: Release, env: Environment) -> Decision | None:
    """The decision that counts for a release in an environment: the latest one."""
    return db.session.scalar(select(Decision).where(
        Decision.release_id == release.id, Decision.environment_id == env.id)
        .order_by(Decision.created_at.desc(), Decision.id.desc()).limit(1))


def drift_of(env: Environment, current: Deployment | None) -> str | None:
    """'runs X, recorded Y' when the version the environment reports is not the recorded one."""
    if not env.observed_version:
        return None
    recorded = current.release.version if current else None
    if recorded is not None and _plain_version(env.observed_version) in (recorded, _plain_version(current.release.tag) if current else ""):
        return None
    return f"runs {env.observed_version}, recorded {recorded or 'nothing'}"


def _behind(project: Project, here: Deployment | None, nxt: Environment, there: Deployment | None) -> Behind:
    next_version = there.release.version if there else None
    if here is None:
        return Behind(nxt.name, next_version, "unknown")
    mine = here.release
    if there is None:
        return Behind(nxt.name, None, "empty")
    if there.release_id == mine.id:
        return Behind(nxt.name, next_version, "same")
    if _order(there.release) > _order(mine):
        return Behind(nxt.name, next_version, "ahead")
    result = Behind(nxt.name, next_version, "behind")
    try:
        log, _start = release_service.changelog(project, mine, since=there.release.version)
    except ServiceError as exc:
        result.error = exc.detail
        return result
    result.count = len(log.entries)
    result.entries = list(log.entries[:TOP_ENTRIES])
    return result


def environments_overview(project: Project, actor: Any = None) -> list[EnvRow]:
    """Per environment in promotion order: what runs, since when, by whom, its decision, lock,
    freeze, drift, any deploy in progress, and what the next environment lacks."""
    envs = list(project.environments)
    can_change = has_role(actor, Role.RELEASE)
    currents = [current_deployment(env) for env in envs]
    rows = []
    for index, env in enumerate(envs):
        current = currents[index]
        behind = None
        if index + 1 < len(envs):
            behind = _behind(project, current, envs[index + 1], currents[index + 1])
        rows.append(EnvRow(
            env=env, current=current,
            decision=latest_decision(current.release, env) if current else None,
            active=active_deployment(env), drift=drift_of(env, current), behind=behind,
            can_change=can_change))
    return rows


def environment_row(project: Project, env_name: str, actor: Any = None) -> EnvRow:
    """One environment's row, as the page shows it (after a lock or freeze changed it)."""
    return next(row for row in environments_overview(project, actor) if row.env.name == env_name)


def environments_page(project_key: str | None, actor: Any = None) -> EnvironmentsPage:
    """The page of the project named in ?project= (else the first project; None when none)."""
    project = pick_project(project_key)
    return EnvironmentsPage(project=project, projects=projects(),
                            rows=environments_overview(project, actor) if project else [])
