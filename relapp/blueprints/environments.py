"""Pages: environments — what runs where, for managers; lock and freeze for release managers;
"Mark verified" for whoever may deploy to an environment left unknown by an abandoned deploy."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote, urlencode

from flask import Blueprint, current_app, flash, redirect, render_template, request, url_for
from flask_login import current_user, login_required
from htmx_flask import make_response

from ..auth import role_required
from ..domain.pipeline import Role
from ..exceptions import ServiceError
from ..services import deployments
from ..services.environments import environment_row, environments_page, mark_verified
from ..services.projects import get_project
from ..templating import render_page

bp = Blueprint("environments", __name__)


@bp.app_template_global()
def release_href(project_key: str, version: str, since: str | None = None) -> str:
    """The release page's address (through its endpoint once that exists)."""
    query = f"?{urlencode({'since': since})}" if since else ""
    if "releases.show" in current_app.view_functions:
        return url_for("releases.show", project=project_key, version=version) + query
    return f"/releases/{quote(project_key, safe='')}/{quote(version, safe='')}{query}"


@bp.get("/environments")
@login_required
def index() -> Any:
    """Per environment: version, since when, by whom, QA state, lock, drift, and what the next lacks."""
    page = environments_page(request.args.get("project"), actor=current_user)
    return render_page("environments/index.html", "environments", page=page, project=page.project)


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
    if request.htmx:
        html = render_template("environments/_env.html", project=project,
                               row=environment_row(project, env.name, actor=current_user))
        return make_response(html, trigger="environments-changed")
    flash(message, "success")
    return redirect(url_for("environments.index", project=project.key), code=303)


@bp.post("/environments/<project_key>/<env_name>/lock")
@login_required
@role_required(Role.RELEASE)
def lock(project_key: str, env_name: str) -> Any:
    """Lock (with a reason) or unlock an environment; release managers and admins only."""
    return _change(project_key, env_name, "lock")


@bp.post("/environments/<project_key>/<env_name>/freeze")
@login_required
@role_required(Role.RELEASE)
def freeze(project_key: str, env_name: str) -> Any:
    """Freeze (with a reason) or unfreeze an environment; release managers and admins only."""
    return _change(project_key, env_name, "freeze")


@bp.post("/environments/<project_key>/<env_name>/verify")
@login_required
def verify(project_key: str, env_name: str) -> Any:
    """Mark an environment verified (with an optional note): it runs what its last successful
    deploy recorded, whatever an abandoned deploy did. Anyone who may deploy there; audited."""
    project = get_project(project_key)
    env = mark_verified(project, env_name, current_user, note=request.form.get("note"))
    if request.htmx:
        html = render_template("environments/_env.html", project=project,
                               row=environment_row(project, env.name, actor=current_user))
        return make_response(html, trigger="environments-changed")
    flash(f"{env.name} is marked verified.", "success")
    return redirect(url_for("environments.index", project=project.key), code=303)
