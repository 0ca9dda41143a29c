"""Shared fixtures: a real database (SQLite, and PostgreSQL when TEST_DATABASE_URL is set), a real
Redis server (the embedded one, and TEST_REDIS_URL's when set), real git repositories in tmp_path."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from redis import Redis
from sqlalchemy import create_engine, text

ROOT = Path(__file__).resolve().parent.parent
MIGRATIONS = ROOT / "migrations"

# The demo's simulated deploys print a line per step; tests need not wait 0.8 s a step.
os.environ.setdefault("RELAPP_DEMO_STEP_SECONDS", "0.05")

BACKENDS = ["embedded"]
if os.environ.get("TEST_DATABASE_URL") or os.environ.get("TEST_REDIS_URL"):
    BACKENDS.append("server")


@pytest.fixture(scope="session")
def embedded_redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real Redis server from the embedded binary, for the whole test session."""
    from relapp.embedded import ensure_server, stop_server

    folder = tmp_path_factory.mktemp("redis")
    url = ensure_server(folder)
    yield url
    stop_server(folder)


def _upgrade(url: str, instance: Path, redis_url: str) -> None:
    from flask_migrate import upgrade

    from relapp import create_app

    app = create_app({"SQLALCHEMY_DATABASE_URI": url, "REDIS_URL": redis_url, "TESTING": True,
                      "INSTANCE_PATH": str(instance)})
    with app.app_context():
        upgrade(directory=str(MIGRATIONS))
        from relapp.extensions import db

        db.engine.dispose()


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory, embedded_redis_url: str) -> Path:
    """An SQLite database migrated once with `flask db upgrade`, copied for each test."""
    folder = tmp_path_factory.mktemp("sqlite-template")
    path = folder / "template.sqlite3"
    _upgrade(f"sqlite:///{path}", folder, embedded_redis_url)
    return path


@pytest.fixture(scope="session")
def postgres_url(tmp_path_factory: pytest.TempPathFactory, embedded_redis_url: str) -> str:
    """TEST_DATABASE_URL's database, emptied and migrated once with `flask db upgrade`."""
    from relapp import normalise_database_url

    url = normalise_database_url(os.environ["TEST_DATABASE_URL"])
    engine = create_engine(url)
    with engine.begin() as conn:
        conn.execute(text("DROP SCHEMA public CASCADE"))
        conn.execute(text("CREATE SCHEMA public"))
    engine.dispose()
    _upgrade(url, tmp_path_factory.mktemp("pg-instance"), embedded_redis_url)
    return url


def _truncate_postgres(url: str) -> None:
    engine = create_engine(url)
    with engine.begin() as conn:
        tables = [row[0] for row in conn.execute(text(
            "SELECT tablename FROM pg_tables WHERE schemaname='public' AND tablename <> 'alembic_version'"))]
        conn.execute(text(f"TRUNCATE {', '.join(tables)} RESTART IDENTITY CASCADE"))
    engine.dispose()


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> dict[str, str]:
    """Database and Redis URLs for one test: embedded default, or this machine's servers."""
    if request.param == "embedded":
        db_path = tmp_path / "relapp.sqlite3"
        shutil.copy(request.getfixturevalue("sqlite_template"), db_path)
        return {"name": "embedded", "database": f"sqlite:///{db_path}",
                "redis": request.getfixturevalue("embedded_redis_url")}
    database = os.environ.get("TEST_DATABASE_URL")
    if database:
        database = request.getfixturevalue("postgres_url")
        _truncate_postgres(database)
    else:
        db_path = tmp_path / "relapp.sqlite3"
        shutil.copy(request.getfixturevalue("sqlite_template"), db_path)
        database = f"sqlite:///{db_path}"
    redis_url = os.environ.get("TEST_REDIS_URL") or request.getfixturevalue("embedded_redis_url")
    return {"name": "server", "database": database, "redis": redis_url}


@pytest.fixture
def app(backend: dict[str, str], tmp_path: Path) -> Iterator[Any]:
    """The app on a fresh, migrated database and an empty Redis."""
    from relapp import create_app
    from relapp.extensions import db

    Redis.from_url(backend["redis"]).flushdb()
    instance = tmp_path / "instance"
    instance.mkdir()
    config = {
        "TESTING": True,
        "SQLALCHEMY_DATABASE_URI": backend["database"],
        "REDIS_URL": backend["redis"],
        "SECRET_KEY": "test-secret",
        "RELAPP_REPOS_DIR": str(tmp_path / "repos"),
        "RELAPP_DEMO": False,
        "INSTANCE_PATH": str(instance),
    }
    application = create_app(config)
    with application.app_context():
        yield application
        db.session.remove()
        db.engine.dispose()


@pytest.fixture
def worker_env(app: Any, backend: dict[str, str], tmp_path: Path) -> dict[str, str]:
    """Environment for a real worker process (`python worker.py`) bound to this test's app."""
    env = dict(os.environ)
    env.update({
        "DATABASE_URL": backend["database"],
        "REDIS_URL": backend["redis"],
        "SECRET_KEY": "test-secret",
        "RELAPP_REPOS_DIR": app.config["RELAPP_REPOS_DIR"],
        "RELAPP_INSTANCE": app.instance_path,
        "PYTHONPATH": str(ROOT),
    })
    return env


def run_worker_burst(env: dict[str, str], timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """Run a real worker process until the queue is empty."""
    return subprocess.run([sys.executable, str(ROOT / "worker.py"), "--burst"], env=env, cwd=ROOT,
                          check=False, capture_output=True, text=True, timeout=timeout)


def login(client: Any, username: str, password: str = "pass") -> Any:
    """Sign a test client in through the real form (CSRF token included)."""
    import re

    page = client.get("/login")
    token = re.search(r'name="csrf_token" value="([^"]+)"', page.get_data(as_text=True)).group(1)
    return client.post("/login", data={"username": username, "password": password, "csrf_token": token})


def csrf_token(client: Any, path: str = "/") -> str:
    """The CSRF token from a page the client can see."""
    import re

    page = client.get(path)
    return re.search(r'name="csrf-token" content="([^"]+)"', page.get_data(as_text=True)).group(1)
