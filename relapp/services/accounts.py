"""Users and API tokens: who may sign in (by password, session or API token), what a role allows,
and the tokens a user makes and revokes."""

from __future__ import annotations

import logging
import secrets
from datetime import timedelta
from typing import Any

from flask import current_app
from sqlalchemy import or_, select, update
from sqlalchemy.exc import DBAPIError

from ..domain.pipeline import Role
from ..exceptions import NotFound, ServiceError
from ..extensions import SQLITE_IMMEDIATE, db, get_passwords, in_write_transaction
from ..models import ROLES, ApiToken, User, utcnow
from ..security import new_token, token_hash
from . import audit

log = logging.getLogger(__name__)

ROLE_RANK = {role.value: rank for rank, role in enumerate(Role)}  # Role lists the lowest first
# A token's last use is recorded to this resolution: one write a minute per token at most.
TOKEN_USE_RESOLUTION = timedelta(minutes=1)
# How long that bookkeeping write waits for a lock before it is skipped (ms).
TOKEN_USE_LOCK_WAIT_MS = 2000


def has_role(user: Any, minimum: str) -> bool:
    """True when the user's role is at least `minimum` in viewer < qa < engineer < release < admin."""
    role = getattr(user, "role", None)
    return role in ROLE_RANK and ROLE_RANK[role] >= ROLE_RANK[minimum]


def may_sign_in(user: User | None) -> bool:
    """True for an active user; demo users exist only in demo mode."""
    return bool(user is not None and user.active
                and (not user.is_demo or current_app.config["RELAPP_DEMO"]))


def authenticate(username: str, password: str) -> User | None:
    """The user with this username and password, if they may sign in; else None, with the same
    password-hashing effort whether the name or the password was wrong."""
    passwords = get_passwords()
    user = db.session.scalar(select(User).where(User.username == username)) if username else None
    stored = user.password_hash if user else None
    # The check takes argon2's time (and waits its turn, see security.Passwords): no transaction
    # is held meanwhile (on SQLite a POST's holds the write lock from its first read).
    db.session.commit()
    if not (passwords.verify(stored, password) and may_sign_in(user)):
        return None
    assert user is not None and stored is not None
    if passwords.needs_rehash(stored):
        # Made with other argon2 parameters (an older default): brought to today's on sign-in,
        # unless the password changed meanwhile.
        in_write_transaction(_renew_hash, user.id, stored, passwords.hash(password))
    return user


def _renew_hash(user_id: int, old: str, new: str) -> None:
    db.session.execute(update(User).where(User.id == user_id, User.password_hash == old)
                       .values(password_hash=new))


def session_id(user: User) -> str:
    """What a session and a remember cookie carry for this sign-in (Flask-Login's alternative
    id): the user's id, their session version, and a random part so every sign-in's remember
    cookie differs. Rotating the version (end_sessions) makes every earlier one worthless."""
    return f"{user.id}:{user.session_version or 0}:{secrets.token_urlsafe(6)}"


def session_user(sid: str) -> User | None:
    """The user a session or remember cookie names, while its session version is current and
    they may still sign in; None for anything else (an ended session, an old-style id)."""
    parts = str(sid).split(":")
    if len(parts) != 3 or not parts[0].isdigit() or not parts[1].isdigit() or len(parts[0]) > 18:
        return None
    user = db.session.get(User, int(parts[0]))
    if user is None or (user.session_version or 0) != int(parts[1]):
        return None
    return user if may_sign_in(user) else None


def end_sessions(user: User, *, actor: User | str | None, reason: str) -> None:
    """End every session of `user` at once, in every browser, remember cookies included (their
    session version rotates); audited. The caller signs the current browser in anew if needed."""
    before = user.session_version or 0
    user.session_version = before + 1
    audit.record(actor, "user.sessions.end", target=f"user:{user.username}",
                 before={"session_version": before}, after={"session_version": before + 1},
                 detail=reason)
    db.session.commit()


def _check_password(password: str) -> None:
    if len(password) < 4:
        raise ServiceError("A password needs at least 4 characters.")


def change_password(user: User, current: str, new: str) -> None:
    """A user changes their own password (the current one is checked); every other session of
    theirs ends."""
    stored = user.password_hash
    db.session.commit()  # no transaction held through argon2 (see authenticate)
    if not get_passwords().verify(stored, current):
        raise ServiceError("The current password is wrong; nothing was changed.", code="wrong_password")
    _check_password(new)
    _set_password(user, new, actor=user)


def set_password(username: str, new: str, *, actor: User | str | None = "cli") -> User:
    """An admin sets a user's password (`flask --app relapp users set-password`); every session
    of theirs ends."""
    user = db.session.scalar(select(User).where(User.username == username))
    if user is None:
        raise NotFound(f"There is no user named '{username}'.")
    _check_password(new)
    _set_password(user, new, actor=actor)
    return user


def _set_password(user: User, new: str, *, actor: User | str | None) -> None:
    db.session.commit()  # no transaction held through argon2 (see authenticate)
    password_hash = get_passwords().hash(new)
    user.password_hash = password_hash
    # Never the hash, nor the password, in the audit: only that it changed.
    audit.record(actor, "user.password.change", target=f"user:{user.username}")
    end_sessions(user, actor=actor, reason="password changed")


def token_user(token: str) -> User | None:
    """The user owning a valid, unrevoked, unexpired API token, if they may sign in; records the
    token's last use."""
    if not token or len(token) > 200:
        return None
    row = db.session.scalar(select(ApiToken).where(ApiToken.token_hash == token_hash(token)))
    if row is None or row.revoked_at is not None:
        return None
    if row.expires_at is not None and row.expires_at <= utcnow():
        return None
    if not may_sign_in(row.user):
        return None
    user = row.user
    _note_token_use(row.id, row.last_used_at)
    return user


def _note_token_use(token_id: int, last_used: Any) -> None:
    """Record a token's use, at most once a minute, in a short write transaction of its own.

    The request's transaction only read (the token); it is ended first, so it never turns into
    a write (on SQLite a read that upgrades fails at once under another writer's lock). The
    write itself takes the lock up front (BEGIN IMMEDIATE) on a connection of its own, waits a
    short while for it, and is skipped when it cannot have it: bookkeeping never fails a request.
    """
    now = utcnow()
    if last_used is not None and now - last_used < TOKEN_USE_RESOLUTION:
        return
    if db.session.new or db.session.dirty or db.session.deleted:
        return  # the request already changed something: recorded on a later use
    db.session.commit()
    # Guarded in SQL as well: of two concurrent first uses in a minute, one writes.
    stmt = (update(ApiToken).where(ApiToken.id == token_id)
            .where(or_(ApiToken.last_used_at.is_(None),
                       ApiToken.last_used_at <= now - TOKEN_USE_RESOLUTION))
            .values(last_used_at=now))
    try:
        with db.engine.connect() as conn:
            # SQLite: wait a short while for the write lock, not the app's long busy timeout
            # (set on the driver's connection, which begins no transaction; put back after).
            raw = conn.connection.dbapi_connection if db.engine.dialect.name == "sqlite" else None
            waited = raw.execute("PRAGMA busy_timeout").fetchone()[0] if raw is not None else 0
            if raw is not None:
                raw.execute(f"PRAGMA busy_timeout={TOKEN_USE_LOCK_WAIT_MS}")
            immediate = SQLITE_IMMEDIATE.set(True)
            try:
                with conn.begin():
                    if raw is None:  # PostgreSQL: as short a wait for the token's row lock
                        conn.exec_driver_sql(f"SET LOCAL lock_timeout = {TOKEN_USE_LOCK_WAIT_MS}")
                    conn.execute(stmt)
            finally:
                SQLITE_IMMEDIATE.reset(immediate)
                if raw is not None:
                    raw.execute(f"PRAGMA busy_timeout={int(waited)}")
    except DBAPIError as exc:
        log.info("API token %s: its last use was not recorded this time (%s)", token_id,
                 type(exc.orig).__name__)


def tokens_of(user: User) -> list[ApiToken]:
    """A user's API tokens, newest first (revoked ones included, marked)."""
    return list(db.session.scalars(select(ApiToken).where(ApiToken.user_id == user.id)
                                   .order_by(ApiToken.id.desc())))


def all_users() -> list[User]:
    """Every user, for the admin's list."""
    return list(db.session.scalars(select(User).order_by(User.username)))


def create_user(username: str, password: str, role: str, *, display_name: str = "",
                is_demo: bool = False, actor: User | str | None = "cli") -> User:
    """Create a user with a hashed password."""
    username = username.strip()
    if not username or len(username) > 64 or not username.replace("-", "").replace("_", "").replace(".", "").isalnum():
        raise ServiceError("A username is 1-64 letters, digits, '.', '-' or '_'.")
    if role not in ROLES:
        raise ServiceError(f"Unknown role '{role}'; roles are {', '.join(ROLES)}.")
    _check_password(password)
    if db.session.scalar(select(User).where(User.username == username)):
        raise ServiceError(f"A user named '{username}' already exists.", status=409)
    user = User(username=username, password_hash=get_passwords().hash(password), role=role,
                display_name=display_name, is_demo=is_demo)
    db.session.add(user)
    db.session.flush()
    audit.record(actor, "user.create", target=f"user:{username}", after={"role": role})
    db.session.commit()
    return user


def create_token(username: str, name: str = "", *, actor: User | str | None = "cli") -> tuple[ApiToken, str]:
    """Make an API token for a user; the token is returned once and only its hash is kept."""
    user = db.session.scalar(select(User).where(User.username == username))
    if user is None:
        raise NotFound(f"There is no user named '{username}'.")
    token = new_token()
    row = ApiToken(user_id=user.id, name=name[:120], token_hash=token_hash(token), prefix=token[:8])
    db.session.add(row)
    audit.record(actor, "token.create", target=f"user:{username}", after={"name": row.name, "prefix": row.prefix})
    db.session.commit()
    return row, token


def revoke_token(user: User, token_id: int) -> ApiToken:
    """Revoke one of the user's API tokens (an admin may revoke anyone's); audited, idempotent."""
    row = db.session.get(ApiToken, token_id)
    if row is None or (row.user_id != user.id and user.role != Role.ADMIN):
        raise NotFound(f"You have no API token {token_id}.")
    if row.revoked_at is None:
        row.revoked_at = utcnow()
        audit.record(user, "token.revoke", target=f"user:{row.user.username}",
                     before={"name": row.name, "prefix": row.prefix, "revoked": False},
                     after={"name": row.name, "prefix": row.prefix, "revoked": True})
        db.session.commit()
    return row
