"""Pages: me — who I am, my API tokens (create, shown once; revoke), my password, signing out
everywhere, and the users list for admins."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, current_app, flash, redirect, render_template, request, url_for
from flask_login import current_user, login_required, logout_user

from ..auth import has_role, sign_in
from ..domain.pipeline import Role
from ..exceptions import ServiceError
from ..services import accounts

bp = Blueprint("users", __name__)


def _page(new_token: str | None = None, new_name: str | None = None) -> Any:
    users = accounts.all_users() if has_role(current_user, Role.ADMIN) else []
    html = render_template("users/me.html", tokens=accounts.tokens_of(current_user), users=users,
                           new_token=new_token, new_name=new_name)
    # The page may carry a fresh token: keep it out of every cache.
    return html, 200, {"Cache-Control": "no-store"}


@bp.get("/me")
@login_required
def me() -> Any:
    """My name, role and API tokens; admins also see every user."""
    return _page()


@bp.post("/me/tokens")
@login_required
def create_token() -> Any:
    """Make an API token for me and show it this once."""
    name = (request.form.get("name") or "").strip()
    if not name:
        raise ServiceError("Give the token a name that says where it is used, e.g. 'CI'.", code="missing_field")
    _row, token = accounts.create_token(current_user.username, name, actor=current_user)
    return _page(new_token=token, new_name=name)


@bp.post("/me/tokens/<int:token_id>/revoke")
@login_required
def revoke_token(token_id: int) -> Any:
    """Revoke one of my API tokens; it stops working at once."""
    row = accounts.revoke_token(current_user, token_id)
    flash(f"Token '{row.name}' ({row.prefix}…) is revoked.", "success")
    return redirect(url_for("users.me"), code=303)


@bp.post("/me/sessions/end")
@login_required
def end_sessions() -> Any:
    """Sign out everywhere: every session and remember cookie of mine stops working at once."""
    me = current_user._get_current_object()
    accounts.end_sessions(me, actor=me, reason="signed out everywhere")
    logout_user()
    flash("Signed out everywhere: every browser must sign in again.", "info")
    return redirect(url_for("auth.login"), code=303)


@bp.post("/me/password")
@login_required
def change_password() -> Any:
    """Change my password; my other sessions end, this browser stays signed in."""
    new = request.form.get("new_password") or ""
    if new != (request.form.get("confirm_password") or ""):
        raise ServiceError("The new password and its confirmation differ; nothing was changed.",
                           code="invalid_field")
    me = current_user._get_current_object()
    accounts.change_password(me, request.form.get("current_password") or "", new)
    remembered = current_app.config.get("REMEMBER_COOKIE_NAME", "remember_token") in request.cookies
    sign_in(me, remember=remembered)
    flash("Password changed; your other sessions are signed out.", "success")
    return redirect(url_for("users.me"), code=303)
