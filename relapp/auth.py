"""Who is asking: session users for pages, bearer tokens for the API, and role checks."""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any, TypeVar

from flask import Flask, abort, current_app, request
from flask_login import current_user
from sqlalchemy import select

from .extensions import db, login_manager
from .models import ROLES, ApiToken, User, utcnow
from .security import token_hash

F = TypeVar("F", bound=Callable[..., Any])

ROLE_RANK = {role: rank for rank, role in enumerate(ROLES)}


def has_role(user: Any, minimum: str) -> bool:
    """True when the user's role is at least `minimum` in viewer < qa < engineer < release < admin."""
    role = getattr(user, "role", None)
    return role in ROLE_RANK and ROLE_RANK[role] >= ROLE_RANK[minimum]


def user_from_token(header: str | None) -> User | None:
    """The active user owning a valid, unrevoked, unexpired bearer token, or None."""
    if not header or not header.startswith("Bearer "):
        return None
    token = header[len("Bearer "):].strip()
    if not token or len(token) > 200:
        return None
    row = db.session.scalar(select(ApiToken).where(ApiToken.token_hash == token_hash(token)))
    if row is None or row.revoked_at is not None:
        return None
    if row.expires_at is not None and row.expires_at <= utcnow():
        return None
    if not row.user.active or (row.user.is_demo and not current_app.config["RELAPP_DEMO"]):
        return None
    row.last_used_at = utcnow()
    db.session.commit()
    return row.user


def role_required(minimum: str) -> Callable[[F], F]:
    """Refuse (403) a signed-in user whose role is below `minimum`; checked on the server."""

    def decorator(view: F) -> F:
        @wraps(view)
        def wrapped(*args: Any, **kwargs: Any) -> Any:
            if not current_user.is_authenticated:
                return login_manager.unauthorized()
            if not has_role(current_user, minimum):
                abort(403, description=f"This needs the {minimum} role or higher.")
            return view(*args, **kwargs)

        return wrapped  # type: ignore[return-value]

    return decorator


def init_app(app: Flask) -> None:
    """Register the Flask-Login loaders."""

    @login_manager.user_loader
    def load_user(user_id: str) -> User | None:
        # The API is authenticated by bearer tokens only (it is CSRF-exempt): a session cookie
        # is never an API credential.
        if request.path.startswith("/api/"):
            return None
        try:
            user = db.session.get(User, int(user_id))
        except ValueError:
            return None
        if user is None or not user.active:
            return None
        # Demo users exist only in demo mode.
        return None if user.is_demo and not current_app.config["RELAPP_DEMO"] else user

    @login_manager.request_loader
    def load_from_request(req: Any) -> User | None:
        # Bearer tokens are for the API only; pages use the session cookie.
        if not request.path.startswith("/api/"):
            return None
        return user_from_token(req.headers.get("Authorization"))
