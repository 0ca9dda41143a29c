"""Sign-in and sign-out."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from flask import Blueprint, current_app, flash, redirect, render_template, request, url_for
from flask_login import current_user, login_required, logout_user

from ..auth import sign_in
from ..extensions import limiter
from ..services.accounts import authenticate, end_sessions

bp = Blueprint("auth", __name__)


def _login_limit() -> str:
    return str(current_app.config["RATELIMIT_LOGIN"])


def _username_key() -> str:
    return "login-user:" + (request.form.get("username") or "").strip().lower()[:64]


def _safe_next(target: str | None) -> str:
    """Only same-site relative paths; anything else goes to the board."""
    if target:
        parts = urlsplit(target)
        if not parts.scheme and not parts.netloc and target.startswith("/") and not target.startswith("//") and "\\" not in target:
            return target
    return url_for("board.index")


@bp.route("/login", methods=["GET", "POST"])
@limiter.limit(_login_limit, methods=["POST"])
@limiter.limit(_login_limit, methods=["POST"], key_func=_username_key)
def login() -> Any:
    """Show the sign-in form, or sign a user in."""
    if request.method == "POST":
        username = (request.form.get("username") or "").strip()
        password = request.form.get("password") or ""
        user = authenticate(username, password)
        if user is not None:
            sign_in(user, remember=bool(request.form.get("remember")))
            return redirect(_safe_next(request.args.get("next")))
        flash("Wrong username or password.", "error")
        return render_template("auth/login.html", username=username), 401
    if current_user.is_authenticated:
        return redirect(_safe_next(request.args.get("next")))
    return render_template("auth/login.html", username="")


@bp.post("/logout")
@login_required
def logout() -> Any:
    """Sign out: the session ends on the server, so no copy of this browser's cookies (nor any
    other browser's session of this user) signs in again."""
    end_sessions(current_user._get_current_object(), actor=current_user._get_current_object(),
                 reason="signed out")
    logout_user()
    flash("Signed out.", "info")
    return redirect(url_for("auth.login"))
