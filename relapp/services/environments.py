"""Read model of the environments page: per environment what runs, its decision, lock, freeze,
drift, an unknown state, any deploy in progress, and what the next environment does not run yet;
and "Mark verified", which ends an environment's unknown state."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select, update

from ..domain import changelog as cl
from ..domain.pipeline import Role
from ..exceptions import Conflict, Forbidden, ServiceError
from ..extensions import db
from ..models import Decision, Deployment, Environment, Project, Release, User
from . import audit
from . import releases as release_service
from .accounts import has_role
from .deployments import active_deployment, current_deployment, may_deploy
from .projects import get_environment, pick_project, projects

TOP_ENTRIES = 5
NOTE_MAX = 500


def unknown_label(env: Environment) -> str | None:
    """"unknown: last deploy abandoned" while nobody knows what runs in the environment."""
    return f"unknown: {env.unknown_reason}" if env.unknown_reason else None


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
    unknown: str | None = None  # "unknown: last deploy abandoned"
    can_verify: bool = False  # may the viewer mark it verified (it is unknown, they may deploy)


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
            can_change=can_change, unknown=unknown_label(env),
            can_verify=bool(env.unknown_reason and actor is not None
                            and getattr(actor, "is_authenticated", False)
                            and may_deploy(actor, env))))
    return rows


def environment_row(project: Project, env_name: str, actor: Any = None) -> EnvRow:
    """One environment's row, as the page shows it (after a lock or freeze changed it)."""
    return next(row for row in environments_overview(project, actor) if row.env.name == env_name)


def environments_page(project_key: str | None, actor: Any = None) -> EnvironmentsPage:
    """The page of the project named in ?project= (else the first project; None when none)."""
    project = pick_project(project_key)
    return EnvironmentsPage(project=project, projects=projects(),
                            rows=environments_overview(project, actor) if project else [])


def mark_verified(project: Project, env_name: str, actor: User, note: str | None = None) -> Environment:
    """End an environment's unknown state: someone who may deploy there checked what runs.

    Audited as `environment.verify` with the reason and time it was unknown since, and the note.
    """
    env = get_environment(project, env_name)
    if not may_deploy(actor, env):
        raise Forbidden(f"Only someone who may deploy to {env.name} may mark it verified; you "
                        f"are {actor.role}.")
    if note is not None and not isinstance(note, str):
        raise ServiceError("The note must be text.", code="invalid_field")
    note = (note or "").strip()
    if len(note) > NOTE_MAX:
        raise ServiceError(f"The note is {len(note)} characters long; keep it to {NOTE_MAX}.",
                           code="invalid_field")
    reason, since = env.unknown_reason, env.unknown_since
    # Fenced: a second click (or someone else's) finds nothing left to verify.
    changed = db.session.execute(update(Environment).where(
        Environment.id == env.id, Environment.unknown_reason.is_not(None))
        .values(unknown_reason=None, unknown_since=None)).rowcount
    if not changed or reason is None:
        db.session.rollback()
        raise Conflict(f"{env.name} is not in an unknown state; there is nothing to verify.",
                       code="not_unknown")
    audit.record(actor, "environment.verify", project_id=project.id,
                 target=f"environment:{project.key}/{env.name}",
                 before={"unknown_reason": reason,
                         "unknown_since": since.isoformat() if since else None},
                 after={"unknown_reason": None}, detail=note)
    db.session.commit()
    db.session.refresh(env)
    return env
