"""Is this installation alive, ready, and fit to start? Readiness for `/readyz` (the database and
Redis answer, the schema is at the migrations' head), and the start-up checks of the web server
and the worker (Redis's eviction policy; in production mode, no demo users and a real secret key).

Every check says what failed in words an operator acts on, and never raises.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from flask import current_app
from redis.exceptions import RedisError, ResponseError
from sqlalchemy import select, text
from sqlalchemy.exc import SQLAlchemyError

from ..extensions import db, get_passwords, get_redis

log = logging.getLogger(__name__)

# Secret keys that are examples, not secrets: refused in production mode, as is one shorter than
# MIN_SECRET_KEY characters (`python -c 'import secrets; print(secrets.token_hex(32))'` makes 64).
PLACEHOLDER_KEYS = frozenset({
    "secret", "secret-key", "secret_key", "secretkey", "changeme", "change-me", "change_me",
    "changethis", "change-this", "replace-me", "replaceme", "your-secret-key", "dev", "development",
    "test", "test-secret", "insecure", "default", "please-change-me", "xxx",
})
MIN_SECRET_KEY = 32
# The demo's users and password (relapp.demo.DEMO_USERS / DEMO_PASSWORD; the services may not
# import the app-level demo module, and these never change).
DEMO_USERNAMES = ("admin", "release", "engineer", "qa", "viewer")
DEMO_PASSWORD = "demo"


@dataclass(frozen=True)
class Check:
    """One readiness check: its name, whether it passed, and what failed (a clause)."""

    name: str
    ok: bool
    detail: str


def check_database() -> Check:
    """The database answers a `SELECT 1` on a connection of its own."""
    try:
        with db.engine.connect() as conn:
            conn.execute(text("SELECT 1"))
    except SQLAlchemyError as exc:
        return Check("database", False, f"the database cannot be reached ({_cause(exc)})")
    return Check("database", True, "reachable")


def check_redis() -> Check:
    """Redis answers a PING."""
    try:
        get_redis().ping()
    except (RedisError, OSError) as exc:
        return Check("redis", False, f"Redis cannot be reached ({exc.__class__.__name__})")
    return Check("redis", True, "reachable")


def script_heads() -> tuple[str, ...]:
    """The head revision(s) of the migrations shipped with this code, read once per process."""
    heads: tuple[str, ...] | None = current_app.extensions.get("relapp.migration_heads")
    if heads is None:
        from alembic.script import ScriptDirectory

        directory = current_app.extensions["migrate"].directory
        heads = tuple(sorted(ScriptDirectory(str(Path(directory))).get_heads()))
        current_app.extensions["relapp.migration_heads"] = heads
    return heads


def check_migrations() -> Check:
    """The database's alembic revision is the head of the migrations this code ships."""
    try:
        with db.engine.connect() as conn:
            current = tuple(sorted(conn.scalars(text("SELECT version_num FROM alembic_version"))))
    except SQLAlchemyError as exc:
        return Check("migrations", False,
                     f"the schema version cannot be read ({_cause(exc)}); run "
                     "`flask --app relapp db upgrade`")
    heads = script_heads()
    if current != heads:
        at = ", ".join(current) or "no revision"
        return Check("migrations", False,
                     f"the database is at {at}, not at the migrations' head {', '.join(heads)}; "
                     "run `flask --app relapp db upgrade`")
    return Check("migrations", True, f"at head {', '.join(heads)}")


def readiness() -> list[Check]:
    """Every readiness check, in order; migrations only when the database answered."""
    database = check_database()
    checks = [database, check_redis()]
    checks.append(check_migrations() if database.ok
                  else Check("migrations", False, "the schema version was not read"))
    return checks


def not_ready_sentence(checks: list[Check]) -> str:
    """One sentence naming every failed check: `Not ready: Redis cannot be reached (…).`"""
    failed = [c.detail for c in checks if not c.ok and c.detail != "the schema version was not read"]
    if len(failed) > 1:
        failed = [", ".join(failed[:-1]) + " and " + failed[-1]]
    return f"Not ready: {failed[0]}." if failed else "Ready."


def _cause(exc: BaseException) -> str:
    orig = getattr(exc, "orig", None)
    return (orig or exc).__class__.__name__


# -- start-up checks ---------------------------------------------------------------------------


def eviction_warning() -> str | None:
    """A sentence when Redis may evict relapp's keys (maxmemory-policy is not noeviction), or
    when that could not be checked (managed Redis often refuses CONFIG GET); None when fine."""
    try:
        answer: dict[Any, Any] = get_redis().config_get("maxmemory-policy")  # type: ignore[assignment]
    except ResponseError as exc:
        return (f"Redis's maxmemory-policy could not be checked (CONFIG GET was refused: {exc}); "
                "make sure it is noeviction, or Redis may evict queued jobs under memory pressure.")
    except (RedisError, OSError) as exc:
        return (f"Redis's maxmemory-policy could not be checked (Redis cannot be reached: "
                f"{exc.__class__.__name__}).")
    policy = answer.get("maxmemory-policy") or answer.get(b"maxmemory-policy")
    if isinstance(policy, bytes):
        policy = policy.decode()
    if policy is None:
        return "Redis's maxmemory-policy could not be checked (CONFIG GET returned nothing)."
    if policy != "noeviction":
        return (f"Redis's maxmemory-policy is {policy}, not noeviction: under memory pressure "
                "Redis may evict queued jobs, schedules and live streams; set "
                "`maxmemory-policy noeviction` in redis.conf.")
    return None


def secret_key_refusal(secret_key: str | None) -> str | None:
    """Why this SECRET_KEY may not be used in production mode, or None."""
    if not secret_key:
        return ("SECRET_KEY is not set (a key generated into the instance folder differs per "
                f"machine); set a random one of {MIN_SECRET_KEY} characters or more, e.g. from "
                "`python -c 'import secrets; print(secrets.token_hex(32))'`.")
    if secret_key.strip().lower() in PLACEHOLDER_KEYS:
        return (f"SECRET_KEY is a well-known placeholder; set a random one of {MIN_SECRET_KEY} "
                "characters or more.")
    if len(secret_key) < MIN_SECRET_KEY:
        return (f"SECRET_KEY is {len(secret_key)} characters long; it needs {MIN_SECRET_KEY} or "
                "more, e.g. from `python -c 'import secrets; print(secrets.token_hex(32))'`.")
    return None


def demo_users_present() -> list[str]:
    """Active users made by the demo (or named as its users) whose password is still `demo`."""
    from ..models import User

    users = db.session.scalars(select(User).where(User.active.is_(True)).where(
        User.is_demo.is_(True) | User.username.in_(DEMO_USERNAMES))).all()
    passwords = get_passwords()
    found = [u.username for u in users if passwords.verify(u.password_hash, DEMO_PASSWORD)]
    db.session.rollback()
    return sorted(found)


def production_refusal() -> str | None:
    """In production mode, why the start must stop (a clause that completes "refuses to start in
    production mode: …"), or None. A SECRET_KEY that create_app generated into the instance folder
    counts as not set."""
    config = current_app.config
    if not config.get("RELAPP_PRODUCTION"):
        return None
    given = None if config.get("RELAPP_SECRET_KEY_GENERATED") else config.get("SECRET_KEY")
    refusal = secret_key_refusal(given)
    if refusal:
        return refusal
    if config.get("RELAPP_DEMO"):
        return "RELAPP_DEMO is on; unset it (demo users must not exist in production)."
    try:
        demo = demo_users_present()
    except SQLAlchemyError as exc:
        db.session.rollback()
        return (f"the database cannot be read to check for demo users ({_cause(exc)}); run "
                "`flask --app relapp db upgrade` first.")
    if demo:
        return (f"the demo's users exist ({', '.join(demo)}) with the password 'demo'; give each "
                "a password of its own with `flask --app relapp users set-password NAME`.")
    return None
