"""Who is asking: session users for pages, bearer tokens for the API, and role checks.

A session (and a remember cookie) carries `accounts.session_id(user)`: the user's id, their
session version and a random part. Rotating the version (`accounts.end_sessions`: on sign-out,
on a password change, on "sign out everywhere") ends every session of the user on the server
side, whatever cookies a browser kept.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import TYPE_CHECKING, Any, TypeVar

from flask import Flask, abort, request, session
from flask_login import current_user, login_user

from .extensions import login_manager
from .services import accounts
from .services.accounts import has_role  # the role rule, re-exported for the views

if TYPE_CHECKING:
    from .models import User

F = TypeVar("F", bound=Callable[..., Any])


def user_from_token(header: str | None) -> User | None:
    """The active user owning a valid, unrevoked, unexpired bearer token, or None."""
    if not header or not header.startswith("Bearer "):
        return None
    return accounts.token_user(header[len("Bearer "):].strip())


def sign_in(user: User, *, remember: bool = False) -> None:
    """Sign this browser in as `user` with a session id of its own (see the module docstring)."""
    login_user(user, remember=remember)
    # Flask-Login keeps get_id() under "_user_id" and signs the remember cookie with it at the
    # end of the request: put the versioned id there (User.get_id stays the plain row id).
    session["_user_id"] = accounts.session_id(user)


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
    def load_user(sid: str) -> User | None:
        # The API is authenticated by bearer tokens only (it is CSRF-exempt): a session cookie
        # is never an API credential.
        if request.path.startswith("/api/"):
            return None
        return accounts.session_user(sid)

    @login_manager.request_loader
    def load_from_request(req: Any) -> User | None:
        # Bearer tokens are for the API only; pages use the session cookie.
        if not request.path.startswith("/api/"):
            return None
        return user_from_token(req.headers.get("Authorization"))
