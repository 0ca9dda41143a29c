"""Shared fixtures: a real database (SQLite, and PostgreSQL when TEST_DATABASE_URL is set), a real
Redis server (the embedded one, and TEST_REDIS_URL's when set), real git repositories in tmp_path,
and the whole app started as `make run` starts it.

The suite runs in parallel (pytest-xdist). Each worker process gets its own embedded Redis, its
own PostgreSQL database (copied from a template migrated once per run, both named after the run
and dropped at its end), its own Redis database number on the server (leased, so that two runs on
one machine never share one) and its own RQ queue name. Tests that restart, flush or kill Redis
start a redis-server of their own (tests/deploys/test_crash.py).

Shape (Flask's tutorial): `app` builds the app and holds no context; tests that call services
or the database directly take `app_ctx` (the service-level folders take it for every test in
their conftest). The test client runs each request in an app context of its own, as production
does, so a request never shares `g` or a database session with the test.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from filelock import FileLock
from flask.testing import FlaskClient
from hypothesis import HealthCheck, settings
from redis import Redis
from sqlalchemy import create_engine, text
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.pool import NullPool

ROOT = Path(__file__).resolve().parent.parent

# Property tests judge what the code does, never how fast: no per-example deadline and no
# "generation is slow" failure when other work shares the machine's two cores.
settings.register_profile("relapp", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("relapp")
MIGRATIONS = ROOT / "migrations"

# Read by every app made here and by the processes tests start (worker, `relapp.run`):
# - the demo's simulated deploys print a line per step; tests need not wait 0.8 s a step;
# - argon2 with production parameters costs ~0.1–0.5 s a hash; tests use the cheapest
#   parameters (one test checks the production ones: tests/web/test_passwords.py).
os.environ.setdefault("RELAPP_DEMO_STEP_SECONDS", "0.05")
os.environ.setdefault("RELAPP_ARGON2_MEMORY_KIB", "8")
os.environ.setdefault("RELAPP_ARGON2_TIME_COST", "1")
os.environ.setdefault("RELAPP_ARGON2_PARALLELISM", "1")

BACKENDS = ["embedded"]
if os.environ.get("TEST_DATABASE_URL") or os.environ.get("TEST_REDIS_URL"):
    BACKENDS.append("server")

# Redis databases a run may lease on TEST_REDIS_URL's server; 0 holds only the leases.
REDIS_LEASE_DBS = range(1, 16)
LEASE_SECONDS = 3 * 3600


def _run_id(config: pytest.Config) -> str:
    """One id per `pytest` invocation, the same in the controller and every xdist worker
    (pytest_configure gives the controller its id and `--testrunuid` hands it to the workers)."""
    workerinput = getattr(config, "workerinput", None)
    uid = workerinput["testrunuid"] if workerinput else config.getoption("testrunuid", None)
    if not uid:
        uid = getattr(config, "_relapp_uid", None) or os.urandom(6).hex()
        config._relapp_uid = uid  # type: ignore[attr-defined]
    return re.sub(r"[^a-z0-9]", "", str(uid).lower())[:12]


def pytest_configure(config: pytest.Config) -> None:
    """The controller picks the run's id before the workers start, so all share it."""
    if not getattr(config, "workerinput", None) and hasattr(config.option, "testrunuid") \
            and not config.option.testrunuid:
        config.option.testrunuid = os.urandom(8).hex()


@pytest.fixture(scope="session")
def run_id(request: pytest.FixtureRequest) -> str:
    return _run_id(request.config)


@pytest.fixture(scope="session")
def worker_name(request: pytest.FixtureRequest) -> str:
    """`gw0`, `gw1` … under xdist, `main` otherwise."""
    workerinput = getattr(request.config, "workerinput", None)
    return str(workerinput["workerid"]) if workerinput else "main"


@pytest.fixture(scope="session")
def shared_tmp(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder every worker of this run sees (for locks)."""
    base = tmp_path_factory.getbasetemp()
    return base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base


@pytest.fixture(scope="session")
def embedded_redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real Redis server from the embedded binary, one per worker process."""
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


def _admin_engine() -> Any:
    from relapp import normalise_database_url

    return create_engine(normalise_database_url(os.environ["TEST_DATABASE_URL"]),
                         isolation_level="AUTOCOMMIT", poolclass=NullPool)


def _with_database(url: str, name: str) -> str:
    from sqlalchemy.engine import make_url

    from relapp import normalise_database_url

    return make_url(normalise_database_url(url)).set(database=name).render_as_string(hide_password=False)


def _template_name(run: str) -> str:
    return f"relapp_t_{run}"


@pytest.fixture(scope="session")
def postgres_url(tmp_path_factory: pytest.TempPathFactory, embedded_redis_url: str, run_id: str,
                 worker_name: str, shared_tmp: Path) -> Iterator[str]:
    """This worker's own PostgreSQL database, copied from the run's migrated template."""
    template = _template_name(run_id)
    mine = f"{template}_{worker_name}"
    engine = _admin_engine()
    with FileLock(str(shared_tmp / f"pg-{run_id}.lock")), engine.connect() as conn:
        exists = conn.scalar(text("SELECT 1 FROM pg_database WHERE datname = :n"), {"n": template})
        if not exists:
            conn.execute(text(f'CREATE DATABASE "{template}"'))
            _upgrade(_with_database(os.environ["TEST_DATABASE_URL"], template),
                     tmp_path_factory.mktemp("pg-instance"), embedded_redis_url)
        conn.execute(text(f'DROP DATABASE IF EXISTS "{mine}"'))
        conn.execute(text(f'CREATE DATABASE "{mine}" TEMPLATE "{template}"'))
    try:
        yield _with_database(os.environ["TEST_DATABASE_URL"], mine)
    finally:
        with engine.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{mine}" WITH (FORCE)'))
        engine.dispose()


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """The controller drops the run's PostgreSQL template (workers dropped their own copies)."""
    if getattr(session.config, "workerinput", None) or not os.environ.get("TEST_DATABASE_URL"):
        return
    run = _run_id(session.config)
    try:
        engine = _admin_engine()
        with engine.connect() as conn:
            names = conn.scalars(text("SELECT datname FROM pg_database WHERE datname LIKE :p"),
                                 {"p": _template_name(run) + "%"}).all()
            for name in names:
                conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        engine.dispose()
    except SQLAlchemyError as exc:  # cleaning up must not turn a passing run into a failing one
        print(f"could not drop the run's PostgreSQL databases: {exc}", file=sys.stderr)


@pytest.fixture(scope="session")
def server_redis_url(run_id: str, worker_name: str) -> Iterator[str]:
    """A Redis database number on TEST_REDIS_URL's server, leased to this worker for the run."""
    base = Redis.from_url(os.environ["TEST_REDIS_URL"], db=0)
    holder = f"{run_id}:{worker_name}:{os.getpid()}"
    leased = None
    for number in REDIS_LEASE_DBS:
        if base.set(f"relapp:test-lease:{number}", holder, nx=True, ex=LEASE_SECONDS):
            leased = number
            break
    if leased is None:
        pytest.fail("Every Redis database 1–15 of TEST_REDIS_URL is leased by other test runs.")
    url = re.sub(r"(/\d+)?$", f"/{leased}", os.environ["TEST_REDIS_URL"].split("?")[0], count=1)
    try:
        yield url
    finally:
        key = f"relapp:test-lease:{leased}"
        if base.get(key) == holder.encode():
            Redis.from_url(url).flushdb()
            base.delete(key)


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> dict[str, str]:
    """Database and Redis URLs for one test: embedded default, or this machine's servers."""
    if request.param == "embedded" or not os.environ.get("TEST_DATABASE_URL"):
        db_path = tmp_path / "relapp.sqlite3"
        shutil.copy(request.getfixturevalue("sqlite_template"), db_path)
        database = f"sqlite:///{db_path}"
    else:
        database = request.getfixturevalue("postgres_url")
        _truncate_postgres(database)
    if request.param == "server" and os.environ.get("TEST_REDIS_URL"):
        redis_url = request.getfixturevalue("server_redis_url")
    else:
        redis_url = request.getfixturevalue("embedded_redis_url")
    return {"name": request.param, "database": database, "redis": redis_url}


def _truncate_postgres(url: str) -> None:
    engine = create_engine(url, poolclass=NullPool)
    with engine.begin() as conn:
        # Back to a freshly migrated database: the schema's own rows (its version, the
        # installation id) stay; the audit log's append-only triggers (TRUNCATE included) are
        # lifted for this one transaction, which the test role may do as a superuser.
        tables = [row[0] for row in conn.execute(text(
            "SELECT tablename FROM pg_tables WHERE schemaname='public' "
            "AND tablename NOT IN ('alembic_version', 'installation')"))]
        conn.execute(text("SET LOCAL session_replication_role = replica"))
        conn.execute(text(f"TRUNCATE {', '.join(tables)} RESTART IDENTITY CASCADE"))
    engine.dispose()


class IsolatedClient(FlaskClient):
    """Runs each request in an app context of its own, as production does, even while the test
    holds one for its service calls; afterwards the test's session starts afresh, so it reads
    what the request wrote."""

    def open(self, *args: Any, **kwargs: Any) -> Any:
        from flask import has_app_context

        from relapp.extensions import db

        outer = has_app_context()
        with self.application.app_context():
            response = super().open(*args, **kwargs)
        if outer:
            db.session.rollback()
        return response


@pytest.fixture
def app(backend: dict[str, str], tmp_path: Path, worker_name: str) -> Iterator[Any]:
    """The app on a fresh, migrated database and an empty Redis database; no context held."""
    from relapp import create_app
    from relapp.extensions import db

    Redis.from_url(backend["redis"]).flushdb()
    instance = tmp_path / "instance"
    instance.mkdir()
    config: dict[str, Any] = {
        "TESTING": True,
        "SQLALCHEMY_DATABASE_URI": backend["database"],
        "REDIS_URL": backend["redis"],
        "RQ_QUEUE": f"relapp-{worker_name}",
        "SECRET_KEY": "test-secret",
        "RELAPP_REPOS_DIR": str(tmp_path / "repos"),
        "RELAPP_DEMO": False,
        "INSTANCE_PATH": str(instance),
    }
    if backend["database"].startswith("postgresql"):
        # The server allows 100 connections and four workers share it.
        config["SQLALCHEMY_ENGINE_OPTIONS"] = {"pool_size": 3, "max_overflow": 5,
                                               "pool_pre_ping": True}
    application = create_app(config)
    application.test_client_class = IsolatedClient
    yield application
    with application.app_context():
        db.session.remove()
        db.engine.dispose()


@pytest.fixture
def app_ctx(app: Any) -> Iterator[Any]:
    """An app context for tests that call services or the database directly."""
    from relapp.extensions import db

    with app.app_context():
        yield app
        db.session.remove()


@pytest.fixture
def service_context(request: pytest.FixtureRequest) -> Iterator[Any]:
    """For the service-level folders (their conftest makes it autouse): an app context around
    each test that uses the app; tests that do not use it stay app-free."""
    if "app" in request.fixturenames:
        yield request.getfixturevalue("app_ctx")
    else:
        yield None


@pytest.fixture
def worker_env(app: Any, backend: dict[str, str], tmp_path: Path) -> dict[str, str]:
    """Environment for a real worker process (`python worker.py`) bound to this test's app."""
    env = dict(os.environ)
    env.update({
        "DATABASE_URL": backend["database"],
        "REDIS_URL": backend["redis"],
        "RELAPP_QUEUE": app.config["RQ_QUEUE"],
        "SECRET_KEY": "test-secret",
        "RELAPP_REPOS_DIR": app.config["RELAPP_REPOS_DIR"],
        "RELAPP_INSTANCE": app.instance_path,
        "PYTHONPATH": str(ROOT),
    })
    return env


def run_worker_burst(env: dict[str, str], timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """Run a real worker process until the queue is empty (for fork and crash tests)."""
    return subprocess.run([sys.executable, str(ROOT / "worker.py"), "--burst"], env=env, cwd=ROOT,
                          check=False, capture_output=True, text=True, timeout=timeout)


def work_queue() -> None:
    """Run every queued job (of every queue kind) through a real RQ worker in this process (no
    fork), inside the test's app context, as RQ's testing docs do."""
    from rq import SimpleWorker

    from relapp.extensions import QUEUE_KINDS, db, get_queue, get_redis

    db.session.rollback()  # the test's own read snapshot must not hide what the jobs write
    SimpleWorker([get_queue(kind) for kind in QUEUE_KINDS], connection=get_redis()).work(burst=True)
    db.session.rollback()


def git(*args: str, cwd: Path | None = None, env: dict[str, str] | None = None) -> str:
    """Run git for test set-up and inspection (the app itself only runs git through gitops)."""
    full_env = dict(os.environ, GIT_AUTHOR_NAME="Test", GIT_AUTHOR_EMAIL="t@example.com",
                    GIT_COMMITTER_NAME="Test", GIT_COMMITTER_EMAIL="t@example.com",
                    GIT_CONFIG_NOSYSTEM="1", **(env or {}))
    return subprocess.run(["git", *args], cwd=cwd, env=full_env, check=True, capture_output=True,
                          text=True).stdout.strip()


def login(client: Any, username: str, password: str = "pass") -> Any:
    """Sign a test client in through the real form (CSRF token included)."""
    page = client.get("/login")
    token = re.search(r'name="csrf_token" value="([^"]+)"', page.get_data(as_text=True)).group(1)
    return client.post("/login", data={"username": username, "password": password, "csrf_token": token})


def csrf_token(client: Any, path: str = "/") -> str:
    """The CSRF token from a page the client can see."""
    page = client.get(path)
    return re.search(r'name="csrf-token" content="([^"]+)"', page.get_data(as_text=True)).group(1)


def signed_in(app: Any, name: str, password: str = "pass") -> Any:
    """A test client signed in as `name` through the real form."""
    client = app.test_client()
    assert login(client, name, password).status_code == 302
    return client


# -- the demo project -----------------------------------------------------------------------


@dataclass
class Demo:
    """The demo project of a test: its folder, bare origin, a working clone and API tokens."""

    folder: Path
    origin: Path
    work: Path
    tokens: dict[str, str]

    def headers(self, user: str = "erin") -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[user]}"}

    def commit_on_main(self, path: str, content: str, message: str) -> str:
        """Push a new commit to origin's main, as an engineer would."""
        git("checkout", "-q", "main", cwd=self.work)
        git("pull", "-q", "--ff-only", "origin", "main", cwd=self.work)
        target = self.work / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(content)
        git("add", path, cwd=self.work)
        git("commit", "-q", "-m", message, cwd=self.work)
        git("push", "-q", "origin", "main", cwd=self.work)
        return git("rev-parse", "HEAD", cwd=self.work)

    def remote_tag(self, name: str) -> tuple[str, str] | None:
        """(object type, peeled commit) of a tag on the bare remote."""
        out = git("for-each-ref", f"refs/tags/{name}", "--format=%(objecttype) %(*objectname) %(objectname)",
                  cwd=self.origin)
        if not out:
            return None
        kind, peeled, obj = out.split(" ")
        return kind, peeled or obj


@pytest.fixture
def demo_project(app_ctx: Any, tmp_path: Path) -> Demo:
    """The generated demo history on a bare remote, its configuration synced, five users with
    tokens (password 'pass') and a working clone."""
    from relapp import demo
    from relapp.services.accounts import create_token, create_user
    from relapp.services.projects import sync_settings
    from relapp.settings import parse

    folder = tmp_path / "demo"
    config = demo.build(folder)
    sync_settings(parse(config.read_text(), base_dir=folder))
    tokens = {}
    for name, role in (("vic", "viewer"), ("quinn", "qa"), ("erin", "engineer"), ("rita", "release"), ("ada", "admin")):
        create_user(name, "pass", role, display_name=name.title())
        tokens[name] = create_token(name)[1]
    work = tmp_path / "work"
    git("clone", "-q", str(folder / "origin.git"), str(work))
    return Demo(folder=folder, origin=folder / "origin.git", work=work, tokens=tokens)


# -- the whole app, as `make run` starts it ---------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_until_serving(url: str, proc: subprocess.Popen[Any], seconds: float, pause: float = 0.1) -> bool:
    """Poll `url`/login until it answers 200; False if the process died or time ran out."""
    import httpx

    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            if httpx.get(f"{url}/login", timeout=1).status_code == 200:
                return True
        except httpx.HTTPError:
            pass
        time.sleep(pause)
    return False


@contextlib.contextmanager
def run_server(instance: Path, **extra_env: str) -> Iterator[dict[str, Any]]:
    """`python -m relapp.run` (web + workers + embedded Redis + the demo, as `make run` starts
    it) with its own instance folder, port and any extra settings; yields its URL, stops it with
    SIGTERM after."""
    port = free_port()
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("DATABASE_URL", "REDIS_URL", "TEST_"))}
    env.update({"RELAPP_INSTANCE": str(instance), "PORT": str(port), "RELAPP_DEMO": "1",
                "RELAPP_DEMO_STEP_SECONDS": "0.2", "PYTHONUNBUFFERED": "1", **extra_env})
    log = open(instance / "run.log", "w")  # noqa: SIM115 - closed below
    started = time.monotonic()
    proc = subprocess.Popen([sys.executable, "-m", "relapp.run"], cwd=ROOT, env=env, stdout=log,
                            stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    serving = wait_until_serving(url, proc, 120, pause=0.3)
    startup = time.monotonic() - started
    print(f"\nrelapp.run served its first page after {startup:.1f} s")
    try:
        assert serving, (instance / "run.log").read_text()[-3000:]
        yield {"url": url, "instance": instance, "proc": proc, "startup": startup}
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
        log.close()


@contextlib.contextmanager
def production_server(backend: dict[str, str], tmp_path: Path, *, workers: int = 1,
                      **extra_env: str) -> Iterator[dict[str, Any]]:
    """The production start from the README (`gunicorn -c python:relapp.gunicorn_conf`: gevent
    workers) on the test's database and Redis, a free port and any extra settings; yields its
    url, port and log file, stops it with SIGTERM after."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("DATABASE_URL", "REDIS_URL", "TEST_", "RELAPP_CONFIG", "RELAPP_INSTANCE"))}
    env.update({"DATABASE_URL": backend["database"], "REDIS_URL": backend["redis"],
                "RELAPP_INSTANCE": str(tmp_path / "gunicorn-instance"), "SECRET_KEY": "test-secret",
                **extra_env})
    port = free_port()
    log = tmp_path / "gunicorn.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "-c", "python:relapp.gunicorn_conf", "--workers",
             str(workers), "--bind", f"127.0.0.1:{port}", "--no-control-socket", "relapp.wsgi:app"],
            cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        assert wait_until_serving(url, proc, 90, pause=0.2), log.read_text()
        yield {"url": url, "port": port, "log": log}
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)


@pytest.fixture(scope="module")
def live_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """The real `make run` stack (see run_server), one per test module."""
    with run_server(tmp_path_factory.mktemp("instance")) as server:
        yield server
