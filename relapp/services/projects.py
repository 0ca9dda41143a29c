"""Projects, environments and teams from the configuration file, and lookups by key."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from sqlalchemy import func, select

from ..domain import changelog
from ..domain.secretmask import redact_urls
from ..drivers import DriverConfigError, build_driver
from ..exceptions import NotFound, ServiceError
from ..extensions import db
from ..models import Deployment, Environment, Project, Team, User
from ..settings import ProjectSettings, SettingsError, load, unset_variables
from . import audit

PROJECT_FIELDS = {
    "name": "name", "remote_url": "remote", "main_branch": "main_branch",
    "tag_template": "tag_template", "release_branch_template": "release_branch_template",
    "baseline_version": "baseline", "issue_key_pattern": "issue_key_pattern",
    "issue_url_template": "issue_url_template", "pr_url_template": "pr_url_template",
    "timezone": "timezone", "train_cron": "train_cron",
    "remote_credentials_env": "remote_credentials_env",
}


def load_settings(path: str | Path) -> tuple[ProjectSettings, ...]:
    """Read and check a configuration file, each driver table built as a deploy builds it (so a
    bad one is named by line and key before anything is written)."""
    return load(path, check_driver=build_driver)


def settings_warnings(projects: tuple[ProjectSettings, ...]) -> list[str]:
    """One sentence per secret variable the configuration names that this process lacks."""
    return unset_variables(projects, os.environ)


def _check(projects: tuple[ProjectSettings, ...]) -> None:
    """What `parse` checks only when asked, checked again before any write: every driver table
    builds, and no team or environment name is given twice in a project."""
    for p_index, settings in enumerate(projects):
        path = f"projects[{p_index}]"
        for kind, names in (("environment", [env.name for env in settings.environments]),
                            ("team", [team.name for team in settings.teams])):
            twice = sorted({name for name in names if names.count(name) > 1})
            if twice:
                raise SettingsError(f"{path}: {kind} '{twice[0]}' of project {settings.key} is "
                                    "defined twice; give each a name of its own.")
        for e_index, env in enumerate(settings.environments):
            try:
                build_driver(env.driver)
            except DriverConfigError as exc:
                where = f"{path}.environments[{e_index}].driver" + (f".{exc.key}" if exc.key else "")
                raise SettingsError(f"{where}: {exc}") from None


def _env_values(position: int, env: Any) -> dict[str, Any]:
    return {
        "position": position, "requires_go_from": env.requires_go_from,
        "deploy_roles": list(env.deploy_roles), "decide_roles": list(env.decide_roles),
        "separation_of_duties": env.separation_of_duties, "driver": env.driver,
        "version_url": env.version_url,
    }


def _shown(values: dict[str, str]) -> dict[str, str]:
    """Project values as the audit keeps them: a remote URL never with its credentials."""
    return {k: redact_urls(v) for k, v in values.items()}


def _apply(row: Any, values: dict[str, Any]) -> dict[str, tuple[Any, Any]]:
    changes = {}
    for attr, value in values.items():
        old = getattr(row, attr)
        if old != value:
            changes[attr] = (old, value)
            setattr(row, attr, value)
    return changes


def sync_settings(projects: tuple[ProjectSettings, ...], *, actor: User | str | None = "cli") -> list[str]:
    """Load parsed settings into the database idempotently; return one line per change made."""
    _check(projects)
    changes: list[str] = []
    try:
        for settings in projects:
            project = db.session.scalar(select(Project).where(Project.key == settings.key))
            values = {attr: getattr(settings, name) for attr, name in PROJECT_FIELDS.items()}
            values["ignore_tags"] = list(settings.ignore_tags)
            # None keeps the built-in legacy forms; a list (even empty) replaces them.
            values["legacy_tags"] = None if settings.legacy_tags is None else list(settings.legacy_tags)
            if project is None:
                project = Project(key=settings.key, **values)
                db.session.add(project)
                db.session.flush()
                changes.append(f"project {settings.key}: created")
                audit.record(actor, "project.create", project_id=project.id, target=f"project:{settings.key}", after=_shown({k: str(v) for k, v in values.items()}))
            else:
                diff = _apply(project, values)
                if diff:
                    changes.append(f"project {settings.key}: changed {', '.join(sorted(diff))}")
                    audit.record(actor, "project.update", project_id=project.id, target=f"project:{settings.key}",
                                 before=_shown({k: str(v[0]) for k, v in diff.items()}), after=_shown({k: str(v[1]) for k, v in diff.items()}))
            existing = {env.name: env for env in db.session.scalars(select(Environment).where(Environment.project_id == project.id))}
            # Park positions first so re-ordering never trips over itself.
            for position, env_settings in enumerate(settings.environments):
                env = existing.pop(env_settings.name, None)
                values = _env_values(position, env_settings)
                if env is None:
                    db.session.add(Environment(project_id=project.id, name=env_settings.name, **values))
                    changes.append(f"environment {settings.key}/{env_settings.name}: created")
                    audit.record(actor, "environment.create", project_id=project.id, target=f"environment:{settings.key}/{env_settings.name}", after={k: v for k, v in values.items() if k != "driver"})
                else:
                    diff = _apply(env, values)
                    if diff:
                        changes.append(f"environment {settings.key}/{env.name}: changed {', '.join(sorted(diff))}")
                        audit.record(actor, "environment.update", project_id=project.id, target=f"environment:{settings.key}/{env.name}",
                                     before={k: v[0] for k, v in diff.items() if k != "driver"}, after={k: v[1] for k, v in diff.items() if k != "driver"},
                                     detail="driver changed" if "driver" in diff else "")
            for name, env in existing.items():
                used = db.session.scalar(select(func.count()).select_from(Deployment).where(Deployment.environment_id == env.id))
                if used:
                    raise ServiceError(f"Environment {settings.key}/{name} has {used} deployments and cannot be removed; keep it in the file.")
                db.session.delete(env)
                changes.append(f"environment {settings.key}/{name}: removed")
                audit.record(actor, "environment.delete", project_id=project.id, target=f"environment:{settings.key}/{name}")
            teams = {team.name: team for team in db.session.scalars(select(Team).where(Team.project_id == project.id))}
            for team_settings in settings.teams:
                team = teams.pop(team_settings.name, None)
                if team is None:
                    db.session.add(Team(project_id=project.id, name=team_settings.name, paths=list(team_settings.paths)))
                    changes.append(f"team {settings.key}/{team_settings.name}: created")
                elif team.paths != list(team_settings.paths):
                    team.paths = list(team_settings.paths)
                    changes.append(f"team {settings.key}/{team.name}: changed paths")
            for name, team in teams.items():
                db.session.delete(team)
                changes.append(f"team {settings.key}/{name}: removed")
        if changes:
            audit.record(actor, "config.sync", detail="\n".join(changes))
        db.session.commit()
    except Exception:
        db.session.rollback()
        raise
    return changes


def pr_url(project: Project, pr: int) -> str | None:
    """The link of a PR number, only for an http(s) template with {pr} (the changelog's rule)."""
    return changelog.pr_url(project.pr_url_template, pr)


def issue_url(project: Project, key: str) -> str | None:
    """The tracker link for an issue key, only for an http(s) template with {key}."""
    template = project.issue_url_template or ""
    if not template.startswith(("https://", "http://")) or "{key}" not in template:
        return None
    return template.replace("{key}", key)


def get_project(key: str) -> Project:
    """The project with this key, or NotFound with a sentence."""
    project = db.session.scalar(select(Project).where(Project.key == key)) if key and len(key) <= 64 else None
    if project is None:
        raise NotFound(f"There is no project '{key[:64]}'. See GET /api/v1/projects for the list.")
    return project


def get_environment(project: Project, name: str) -> Environment:
    """The project's environment with this name, or NotFound naming the ones that exist."""
    for env in project.environments:
        if env.name == name:
            return env
    names = ", ".join(env.name for env in project.environments)
    raise NotFound(f"Project {project.key} has no environment '{str(name)[:64]}'; it has: {names}.")


def projects() -> list[Project]:
    """Every project by key (for the project pickers)."""
    return list(db.session.scalars(select(Project).order_by(Project.key)))


def pick_project(key: str | None) -> Project | None:
    """The project named in ?project=, else the first one, else None."""
    if key:
        return get_project(key)
    return db.session.scalar(select(Project).order_by(Project.id))
