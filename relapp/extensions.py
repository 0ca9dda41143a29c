"""Unbound Flask extensions and the runtime clients (Redis, the RQ queue) kept in app.extensions."""

from __future__ import annotations

import logging
import random
import sqlite3
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any, TypeVar

from flask import current_app
from flask_limiter import Limiter
from flask_limiter.util import get_remote_address
from flask_login import LoginManager
from flask_migrate import Migrate
from flask_sqlalchemy import SQLAlchemy
from flask_wtf.csrf import CSRFProtect
from htmx_flask import Htmx
from sqlalchemy import MetaData
from sqlalchemy.exc import DBAPIError

if TYPE_CHECKING:
    from redis import Redis
    from rq import Queue

    from .security import Passwords

log = logging.getLogger(__name__)
T = TypeVar("T")

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
# State-changing requests set it for their whole duration; jobs and services write through
# `in_write_transaction()` (or `write_transaction()`).
#
# The rule: on SQLite, nothing writes inside a DEFERRED transaction that has already read. SQLite
# refuses such an upgrade at once (SQLITE_BUSY, the busy timeout does not apply) whenever another
# writer committed since the read began. relapp.create_app logs a warning naming the statement
# when it happens, and retries a GET whose read was refused an upgrade.
SQLITE_IMMEDIATE: ContextVar[bool] = ContextVar("relapp_sqlite_immediate", default=False)
# Set where other processes surely write at the same moment: in jobs and the maintenance loop
# (requests are known by their request context). A write in a read transaction is logged there as
# a warning; elsewhere (start-up, admin commands) at debug level.
CONTENDED: ContextVar[bool] = ContextVar("relapp_contended", default=False)
# Set inside in_write_transaction() / write_transaction(): an inner one joins the outer one (the
# outer commits, and retries the whole), instead of committing half of the outer's work.
_IN_WRITE: ContextVar[bool] = ContextVar("relapp_in_write_transaction", default=False)

WRITE_ATTEMPTS = 5
# SQLite result codes (the low byte of an extended code) that mean "another connection holds
# the lock": SQLITE_BUSY (5) and SQLITE_LOCKED (6).
_SQLITE_BUSY_CODES = (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED)
# PostgreSQL: serialization_failure, deadlock_detected.
_PG_RETRY_STATES = ("40001", "40P01")


def retryable(exc: BaseException) -> bool:
    """True for a database error that trying the same transaction again may cure: SQLite's
    "database is locked" (busy), PostgreSQL's serialization failure or deadlock, and a
    connection that dropped (SQLAlchemy invalidated it; the next try takes a fresh one)."""
    if not isinstance(exc, DBAPIError):
        return False
    if exc.connection_invalidated:
        return True
    orig = exc.orig
    if isinstance(orig, sqlite3.OperationalError):
        code = getattr(orig, "sqlite_errorcode", None)
        if code is not None:
            return code & 0xFF in _SQLITE_BUSY_CODES
        message = str(orig).lower()
        return "locked" in message or "busy" in message
    return getattr(orig, "sqlstate", None) in _PG_RETRY_STATES


def backoff(attempt: int) -> float:
    """Seconds to wait before try `attempt + 1` (attempt counts from 1): short, growing, jittered
    so that two processes that collided do not collide again in step."""
    return float(min(1.0, 0.025 * 2 ** attempt) * (0.5 + random.random()))


def in_write_transaction(fn: Callable[..., T], *args: Any, attempts: int = WRITE_ATTEMPTS,
                         **kwargs: Any) -> T:
    """Run `fn(*args, **kwargs)` in a write transaction of its own, commit, return its result.

    The current transaction is committed first (it should only have read). On SQLite the new one
    begins IMMEDIATE: it waits its turn for the write lock (busy timeout) and can never be
    refused an upgrade halfway. When the database answers busy/locked (SQLite), a serialization
    failure or deadlock (PostgreSQL) or a dropped connection, the transaction is rolled back and
    the whole function runs again after a short backoff, at most `attempts` times; then the
    error is raised. So `fn` must do all its reads and writes through the session inside, and
    leave side effects outside the database (Redis, log lines, files) to its caller.

    Called inside another one, it joins it: the outer one commits and retries the whole.
    Never write a job log line inside it: the log has its own connection and would wait for
    this transaction's lock.
    """
    if _IN_WRITE.get():
        return fn(*args, **kwargs)
    db.session.commit()
    for attempt in range(1, attempts + 1):
        try:
            with _one_write():
                result = fn(*args, **kwargs)
            return result
        except DBAPIError as exc:  # rolled back by _one_write
            if attempt >= attempts or not retryable(exc):
                raise
            log.info("write transaction %s: %s, try %d of %d", getattr(fn, "__qualname__", fn),
                     exc.orig.__class__.__name__, attempt + 1, attempts)
        time.sleep(backoff(attempt))
    raise AssertionError("unreachable")  # the last attempt returned or raised


@contextmanager
def _one_write() -> Iterator[None]:
    """One write transaction, IMMEDIATE on SQLite: committed at the end, rolled back on error;
    in_write_transaction() and write_transaction() inside it join it."""
    immediate, inside = SQLITE_IMMEDIATE.set(True), _IN_WRITE.set(True)
    try:
        yield
        db.session.commit()
    except BaseException:
        db.session.rollback()
        raise
    finally:
        _IN_WRITE.reset(inside)
        SQLITE_IMMEDIATE.reset(immediate)


@contextmanager
def write_transaction() -> Iterator[None]:
    """A read-then-write transaction: ends the current one, begins IMMEDIATE on SQLite, commits.

    It runs its block once: prefer `in_write_transaction()`, which retries a transaction the
    database refused. Inside an `in_write_transaction()` it joins that one. Never write a job log
    line inside it: the log has its own connection and would wait for this transaction's lock.
    """
    if _IN_WRITE.get():
        yield
        return
    db.session.commit()
    with _one_write():
        yield


# -- SQLite under gevent -------------------------------------------------------------------------
# sqlite3 waits for a lock inside its C busy handler, which sleeps the OS thread: under gevent
# that thread carries every request and stream of the worker, so one waiting writer would stall
# them all. In a gevent-patched process the busy timeout is therefore short (GEVENT_BUSY_MS) and
# the long waits happen in Python, where time.sleep is gevent's: BEGIN IMMEDIATE (every write
# transaction's start) is tried again until SQLITE_WAIT_SECONDS have passed; a statement refused
# as busy otherwise raises, and the retries above it (in_write_transaction, the read-only view's
# second try, write_line) wait with the patched sleep before trying again.
GEVENT_BUSY_MS = 10
SQLITE_WAIT_SECONDS = 30.0


def gevent_patched() -> bool:
    """True in a process gevent has monkey-patched (gunicorn's gevent worker)."""
    import sys

    if "gevent" not in sys.modules:
        return False
    from gevent import monkey  # type: ignore[import-untyped]

    return bool(monkey.is_module_patched("time") or monkey.is_module_patched("socket"))


def _busy(exc: BaseException) -> bool:
    if not isinstance(exc, sqlite3.OperationalError):
        return False
    code = getattr(exc, "sqlite_errorcode", None)
    if code is not None:
        return bool(code == sqlite3.SQLITE_BUSY)  # plain busy only (not BUSY_SNAPSHOT: roll back)
    return "locked" in str(exc).lower() or "busy" in str(exc).lower()


def cooperative_sqlite(engine: Any, *, force: bool = False) -> bool:
    """Make SQLite lock waits cooperative when gevent patched this process (or `force`): a
    short busy timeout on each connection, and BEGIN IMMEDIATE retried with a patched sleep.
    Returns whether it did (registered once per engine)."""
    from sqlalchemy import event

    if not (force or gevent_patched()) or engine.dialect.name != "sqlite":
        return False
    if getattr(engine, "_relapp_cooperative", False):
        return True
    engine._relapp_cooperative = True

    @event.listens_for(engine, "connect")
    def _short_busy(dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        cursor.execute(f"PRAGMA busy_timeout={GEVENT_BUSY_MS}")
        cursor.close()

    def _begin_immediate(cursor: Any, statement: str) -> bool:
        if statement.strip().upper() != "BEGIN IMMEDIATE":
            return False
        deadline = time.monotonic() + SQLITE_WAIT_SECONDS
        pause = 0.005
        while True:
            try:
                cursor.execute(statement)
                return True
            except sqlite3.OperationalError as exc:
                if not _busy(exc) or time.monotonic() >= deadline:
                    raise
            time.sleep(pause * (0.5 + random.random()))  # gevent's sleep: other greenlets run
            pause = min(0.1, pause * 2)

    @event.listens_for(engine, "do_execute")
    def _do_execute(cursor: Any, statement: str, parameters: Any, _context: Any) -> bool:
        return not parameters and _begin_immediate(cursor, statement)

    @event.listens_for(engine, "do_execute_no_params")
    def _do_execute_no_params(cursor: Any, statement: str, _context: Any) -> bool:
        return _begin_immediate(cursor, statement)

    return True


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


# The kinds of work, one RQ queue each (`<RELAPP_QUEUE>-<kind>`), so that each can have workers of
# its own: a slow deploy never holds up a tag. `git`: tag and hotfix jobs (every job row that is
# not a deploy); `deploy`: deploy jobs; `schedule`: train ticks and drift checks.
QUEUE_KINDS = ("git", "deploy", "schedule")


def get_queue(kind: str) -> Queue:
    """The RQ queue of one kind of work (QUEUE_KINDS), bound to get_redis() explicitly (a Queue
    is a name and a client: made per call, it follows the app's client when that is replaced)."""
    from rq import Queue

    if kind not in QUEUE_KINDS:
        raise ValueError(f"There is no queue kind {kind!r}; the kinds are {', '.join(QUEUE_KINDS)}.")
    return Queue(f"{current_app.config['RQ_QUEUE']}-{kind}", connection=get_redis())


def get_legacy_queue() -> Queue:
    """The single queue of releases before queues per kind (named RELAPP_QUEUE itself): what an
    upgrade left in it is served by the worker that serves `schedule` until it is empty."""
    from rq import Queue

    return Queue(current_app.config["RQ_QUEUE"], connection=get_redis())


def get_passwords() -> Passwords:
    """The app's password hasher, with the argon2id parameters of its configuration and at most
    RELAPP_PASSWORD_CHECKS checks at once in this process (made at first use: see Passwords)."""
    passwords = current_app.extensions.get("relapp.passwords")
    if passwords is None:
        from .security import Passwords

        config = current_app.config
        passwords = Passwords(memory_kib=config["RELAPP_ARGON2_MEMORY_KIB"],
                              time_cost=config["RELAPP_ARGON2_TIME_COST"],
                              parallelism=config["RELAPP_ARGON2_PARALLELISM"],
                              concurrency=config["RELAPP_PASSWORD_CHECKS"])
        current_app.extensions["relapp.passwords"] = passwords
    return passwords
