"""Pages: environments — what runs where, for managers; lock and freeze for release managers."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote, urlencode

from flask import Blueprint, current_app, flash, redirect, render_template, request, url_for
from flask_login import current_user, login_required

from ..auth import role_required
from ..exceptions import ServiceError
from ..services import deployments, reports
from ..services.projects import get_project

bp = Blueprint("environments", __name__)


@bp.app_template_global()
def release_href(project_key: str, version: str, since: str | None = None) -> str:
    """The release page's address (through its endpoint once that exists)."""
    query = f"?{urlencode({'since': since})}" if since else ""
    if "releases.show" in current_app.view_functions:
        return url_for("releases.show", project=project_key, version=version) + query
    return f"/releases/{quote(project_key, safe='')}/{quote(version, safe='')}{query}"


def _render(project: Any, rows: list[reports.EnvRow], fragment: str | None = None) -> Any:
    context = {"project": project, "projects": reports.projects(), "rows": rows}
    if fragment == "all":
        html = render_template("environments/_environments.html", **context)
    elif fragment is not None:
        row = next(r for r in rows if r.env.name == fragment)
        html = render_template("environments/_env.html", row=row, **context)
    else:
        html = render_template("environments/index.html", **context)
    return html, 200, {"Vary": "HX-Request"}


@bp.get("/environments")
@login_required
def index() -> Any:
    """Per environment: version, since when, by whom, QA state, lock, drift, and what the next lacks."""
    project = reports.pick_project(request.args.get("project"))
    rows = reports.environments_overview(project) if project else []
    fragment = "all" if request.headers.get("HX-Request") and request.headers.get("HX-Target") == "environments" else None
    return _render(project, rows, fragment)


def _change(project_key: str, env_name: str, what: str) -> Any:
    project = get_project(project_key)
    action = request.form.get("action", "")
    reason = request.form.get("reason")
    if what == "lock":
        if action not in ("lock", "unlock"):
            raise ServiceError("Choose 'lock' or 'unlock'.", code="invalid_field")
        env = deployments.set_lock(project, env_name, current_user, locked=action == "lock", reason=reason)
        message = f"{env.name} is locked: {env.lock_reason}" if env.locked else f"{env.name} is unlocked."
    else:
        if action not in ("freeze", "unfreeze"):
            raise ServiceError("Choose 'freeze' or 'unfreeze'.", code="invalid_field")
        env = deployments.set_freeze(project, env_name, current_user, frozen=action == "freeze", reason=reason)
        message = f"{env.name} is frozen: {env.freeze_reason}" if env.frozen else f"{env.name} is unfrozen."
    if request.headers.get("HX-Request"):
        html, status, headers = _render(project, reports.environments_overview(project), env.name)
        return html, status, {**headers, "HX-Trigger": "environments-changed"}
    flash(message, "success")
    return redirect(url_for("environments.index", project=project.key), code=303)


@bp.post("/environments/<project_key>/<env_name>/lock")
@login_required
@role_required("release")
def lock(project_key: str, env_name: str) -> Any:
    """Lock (with a reason) or unlock an environment; release managers and admins only."""
    return _change(project_key, env_name, "lock")


@bp.post("/environments/<project_key>/<env_name>/freeze")
@login_required
@role_required("release")
def freeze(project_key: str, env_name: str) -> Any:
    """Freeze (with a reason) or unfreeze an environment; release managers and admins only."""
    return _change(project_key, env_name, "freeze")
