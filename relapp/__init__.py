"""relapp: a self-hosted release tracker. `create_app` is the one app factory."""

from __future__ import annotations

import logging
import os
import secrets
import time
from pathlib import Path
from typing import Any

from flask import Flask, has_request_context, request
from flask.typing import ResponseReturnValue
from sqlalchemy import event
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DBAPIError

from config import Config

from .extensions import (
    CONTENDED,
    SQLITE_IMMEDIATE,
    backoff,
    csrf,
    db,
    htmx,
    limiter,
    login_manager,
    migrate,
    retryable,
)

log = logging.getLogger(__name__)

# Requests that only read: their view may run again when the database refused it for a moment.
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
READ_ATTEMPTS = 5
# Where a SQLite transaction stands (kept on the connection): DEFERRED and not read yet, DEFERRED
# and read (a write now is an upgrade SQLite may refuse at once), or IMMEDIATE.
_TX = "relapp.sqlite_transaction"
_DEFERRED, _READ, _IMMEDIATE = "deferred", "read", "immediate"
_WRITES = ("INSERT", "UPDATE", "DELETE", "REPLACE")


class Relapp(Flask):
    """Flask, running a read-only request's view again when the database refused it for a moment
    (SQLite busy, a PostgreSQL serialization failure, a dropped connection): such a request gets
    its answer a little later instead of a 503. A state-changing request is not run twice; on
    SQLite it took the write lock at its first statement and waits its turn there."""

    def dispatch_request(self) -> ResponseReturnValue:
        """The view's answer, with up to READ_ATTEMPTS tries for a request that only reads."""
        if request.method not in SAFE_METHODS:
            return super().dispatch_request()
        for attempt in range(1, READ_ATTEMPTS + 1):
            try:
                return super().dispatch_request()
            except DBAPIError as exc:
                if attempt >= READ_ATTEMPTS or not retryable(exc):
                    raise
                db.session.rollback()
                log.info("%s %s: the database refused it (%s); try %d of %d", request.method,
                         request.path, exc.orig.__class__.__name__, attempt + 1, READ_ATTEMPTS)
            time.sleep(backoff(attempt))
        raise AssertionError("unreachable")  # the last try returned or raised


def _secret_key(instance: Path) -> str:
    """A SECRET_KEY kept in the instance folder, generated on first start."""
    path = instance / "secret_key"
    if not path.exists():
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(secrets.token_hex(32))
    return path.read_text().strip()


def normalise_database_url(url: str) -> str:
    """Use psycopg 3 for PostgreSQL URLs given in their usual form."""
    for prefix in ("postgres://", "postgresql://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix):]
    return url


def _sqlite_pragmas(engine: Engine) -> None:
    """WAL, a busy timeout, and BEGIN IMMEDIATE for write transactions (see SQLITE_IMMEDIATE):
    concurrent writers wait their turn instead of failing. And the check of the rule that makes
    this hold: a write in a DEFERRED transaction that has already read is logged as a warning
    naming the statement, once per statement and process, in a request, a job or the worker's
    maintenance loop (SQLite refuses that upgrade at once when another writer committed since
    the read began; such a write belongs in `in_write_transaction()`)."""
    warned: set[str] = set()

    @event.listens_for(engine, "connect")
    def _connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # let SQLAlchemy's begin event issue BEGIN
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _begin(connection: Any) -> None:
        immediate = SQLITE_IMMEDIATE.get()
        connection.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")
        connection.info[_TX] = _IMMEDIATE if immediate else _DEFERRED

    @event.listens_for(engine, "commit")
    @event.listens_for(engine, "rollback")
    def _end(connection: Any) -> None:
        connection.info.pop(_TX, None)

    @event.listens_for(engine, "before_cursor_execute")
    def _watch(connection: Any, _cursor: Any, statement: str, _parameters: Any, _context: Any,
               _executemany: bool) -> None:
        state = connection.info.get(_TX)
        if state is None or state == _IMMEDIATE:
            return
        verb = statement.lstrip()[:7].upper()
        if verb.startswith(_WRITES):
            if state == _READ:
                key = statement[:120]
                contended = CONTENDED.get() or has_request_context()
                if contended and key in warned:
                    return
                if contended:
                    warned.add(key)
                log.log(logging.WARNING if contended else logging.DEBUG,
                        "SQLite: a write in a read transaction (it began DEFERRED and has read; "
                        "under another writer SQLite refuses it at once): %s. Write through "
                        "in_write_transaction().", " ".join(key.split()))
            else:
                connection.info[_TX] = _IMMEDIATE  # its first statement wrote: it holds the lock
        elif verb.startswith(("SELECT", "WITH")):
            connection.info[_TX] = _READ


def create_app(test_config: dict[str, Any] | None = None) -> Flask:
    """Build the app: config, extensions, blueprints, error handlers and CLI commands."""
    settings = Config()
    instance_path = (test_config or {}).get("INSTANCE_PATH") or settings.RELAPP_INSTANCE
    app = Relapp(__name__, instance_relative_config=True,
                 instance_path=str(Path(instance_path).resolve()) if instance_path else None)
    app.config.from_object(settings)
    if test_config:
        app.config.update(test_config)
    # First: request ids and the request clock cover every later hook; JSON logs in production.
    from . import logging_setup
    from .services import metrics

    logging_setup.init_app(app)
    metrics.init_app(app)
    instance = Path(app.instance_path)
    instance.mkdir(parents=True, exist_ok=True)

    if not app.config.get("SECRET_KEY"):
        app.config["SECRET_KEY"] = _secret_key(instance)
        app.config["RELAPP_SECRET_KEY_GENERATED"] = True  # production mode refuses it
    url = app.config.get("SQLALCHEMY_DATABASE_URI") or f"sqlite:///{instance / 'relapp.sqlite3'}"
    app.config["SQLALCHEMY_DATABASE_URI"] = normalise_database_url(url)
    if url.startswith("sqlite"):
        options = dict(app.config.get("SQLALCHEMY_ENGINE_OPTIONS") or {})
        options.setdefault("connect_args", {"timeout": 30, "check_same_thread": False})
        app.config["SQLALCHEMY_ENGINE_OPTIONS"] = options
    else:
        options = dict(app.config.get("SQLALCHEMY_ENGINE_OPTIONS") or {})
        options.setdefault("pool_pre_ping", True)
        app.config["SQLALCHEMY_ENGINE_OPTIONS"] = options
    if not app.config.get("RELAPP_REPOS_DIR"):
        app.config["RELAPP_REPOS_DIR"] = str(instance / "repos")
    if not app.config.get("REDIS_URL"):
        from .embedded import url_for_folder

        # Started on first use (get_redis or the first request), so admin commands that never
        # touch Redis do not leave a server running.
        app.config["RELAPP_EMBEDDED_REDIS"] = str(instance / "redis")
        app.config["REDIS_URL"] = url_for_folder(instance / "redis")
    redis_url = app.config["REDIS_URL"]
    storage = "redis+unix://" + redis_url[len("unix://"):] if redis_url.startswith("unix://") else redis_url
    app.config.setdefault("RATELIMIT_STORAGE_URI", storage)
    # A Redis outage does not lift limits: they fall back to per-process memory (config.py,
    # RATELIMIT_IN_MEMORY_FALLBACK_ENABLED); only if that fails too are they skipped, and logged.
    app.config.setdefault("RATELIMIT_SWALLOW_ERRORS", True)

    db.init_app(app)
    app.extensions["relapp.pid"] = os.getpid()
    migrate.init_app(app, db, directory=str(Path(__file__).resolve().parent.parent / "migrations"))
    login_manager.init_app(app)
    login_manager.login_view = "auth.login"
    login_manager.login_message = "Please sign in to see this page."
    login_manager.session_protection = "strong"
    csrf.init_app(app)
    htmx.init_app(app)
    limiter.init_app(app)

    with app.app_context():
        if db.engine.dialect.name == "sqlite":
            _sqlite_pragmas(db.engine)
            from .extensions import cooperative_sqlite

            cooperative_sqlite(db.engine)  # under gevent: SQLite waits that yield (extensions.py)

    from .services import live

    live.init_app(app)  # the live doorbell: rung after each commit (services/live.py)

    @app.before_request
    def _embedded_redis_runs() -> None:
        if app.config.get("RELAPP_EMBEDDED_REDIS") and not app.extensions.get("relapp.redis_started"):
            from .extensions import ensure_embedded_redis

            ensure_embedded_redis()

    @app.before_request
    def _writes_take_the_lock_first() -> None:
        # A state-changing request reads, then writes: on SQLite it takes the write lock at its
        # first statement so it waits its turn instead of failing with "database is locked".
        SQLITE_IMMEDIATE.set(request.method not in ("GET", "HEAD", "OPTIONS"))

    @app.teardown_request
    def _back_to_deferred(_exc: BaseException | None) -> None:
        # Whatever a view did not commit is not kept, and no transaction (nor SQLite's write
        # lock) outlives the request.
        db.session.rollback()
        SQLITE_IMMEDIATE.set(False)

    from . import auth, cli, errors, templating
    from .blueprints import register_blueprints

    auth.init_app(app)
    templating.init_app(app)
    errors.init_app(app)
    register_blueprints(app)
    cli.init_app(app)
    return app
