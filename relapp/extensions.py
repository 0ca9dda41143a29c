"""Unbound Flask extensions and the runtime clients (Redis, the RQ queue) kept in app.extensions."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import TYPE_CHECKING

from flask import current_app
from flask_limiter import Limiter
from flask_limiter.util import get_remote_address
from flask_login import LoginManager
from flask_migrate import Migrate
from flask_sqlalchemy import SQLAlchemy
from flask_wtf.csrf import CSRFProtect
from htmx_flask import Htmx
from sqlalchemy import MetaData

if TYPE_CHECKING:
    from redis import Redis
    from rq import Queue

    from .security import Passwords

# Named constraints so Alembic migrations are stable on SQLite and PostgreSQL.
NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

db = SQLAlchemy(metadata=MetaData(naming_convention=NAMING))
migrate = Migrate()
login_manager = LoginManager()
csrf = CSRFProtect()
htmx = Htmx()
limiter = Limiter(key_func=get_remote_address, default_limits=[])

# On SQLite, transactions begin DEFERRED (readers never block anyone) unless this is set: then
# they begin IMMEDIATE, taking the write lock up front, so a read-then-write transaction can
# never fail halfway with "database is locked" when another writer committed in between.
# State-changing requests set it for their whole duration; jobs use `write_transaction()`.
SQLITE_IMMEDIATE: ContextVar[bool] = ContextVar("relapp_sqlite_immediate", default=False)


@contextmanager
def write_transaction() -> Iterator[None]:
    """A read-then-write transaction: ends the current one, begins IMMEDIATE on SQLite, commits.

    Never write a job log line inside it: the log has its own connection and would wait for
    this transaction's lock.
    """
    db.session.commit()
    token = SQLITE_IMMEDIATE.set(True)
    try:
        yield
        db.session.commit()
    except BaseException:
        db.session.rollback()
        raise
    finally:
        SQLITE_IMMEDIATE.reset(token)


def ensure_embedded_redis() -> None:
    """Start the embedded Redis server of the instance folder if this app uses it (once)."""
    folder = current_app.config.get("RELAPP_EMBEDDED_REDIS")
    if folder and not current_app.extensions.get("relapp.redis_started"):
        from .embedded import ensure_server

        ensure_server(folder)
        current_app.extensions["relapp.redis_started"] = True


def get_redis() -> Redis:
    """The app's Redis client, made once per app from REDIS_URL (or the embedded server)."""
    client = current_app.extensions.get("relapp.redis")
    if client is None:
        ensure_embedded_redis()
        from redis import Redis

        client = Redis.from_url(
            current_app.config["REDIS_URL"], socket_connect_timeout=3, socket_timeout=10
        )
        current_app.extensions["relapp.redis"] = client
    return client


def get_queue() -> Queue:
    """The RQ queue that carries git and deploy jobs, bound to get_redis() explicitly."""
    queue = current_app.extensions.get("relapp.queue")
    if queue is None:
        from rq import Queue

        queue = Queue(current_app.config["RQ_QUEUE"], connection=get_redis())
        current_app.extensions["relapp.queue"] = queue
    return queue


def get_passwords() -> Passwords:
    """The app's password hasher, with the argon2id parameters of its configuration."""
    passwords = current_app.extensions.get("relapp.passwords")
    if passwords is None:
        from .security import Passwords

        config = current_app.config
        passwords = Passwords(memory_kib=config["RELAPP_ARGON2_MEMORY_KIB"],
                              time_cost=config["RELAPP_ARGON2_TIME_COST"],
                              parallelism=config["RELAPP_ARGON2_PARALLELISM"])
        current_app.extensions["relapp.passwords"] = passwords
    return passwords
