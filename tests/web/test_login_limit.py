"""The sign-in rate limit holds while Redis is down (issue 9, finding 10): it falls back to a
per-process limit in memory and says so in the log, then goes back to Redis when it answers.

The test's app keeps its limits (and its queue) in a Redis of its own, stopped mid-test: the
embedded server on a Unix socket for the embedded backend, a redis-server on a loopback port
for the server one."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from relapp import create_app
from relapp.embedded import ensure_server, stop_server
from relapp.extensions import db
from relapp.services.accounts import create_user
from tests.conftest import login
from tests.faults.conftest import PrivateRedis

FALLBACK = "falling back to in-memory storage"
RECOVERED = "Rate limit storage recovered"


class OwnRedis:
    """A Redis only this test uses: started, stopped and started again."""

    def __init__(self, backend: str, folder: Path) -> None:
        self.embedded = backend == "embedded"
        self.folder = folder
        self.server = None if self.embedded else PrivateRedis(folder)
        self.url = ""

    def start(self) -> None:
        if self.server is None:
            self.url = ensure_server(self.folder)
        else:
            self.server.start()
            self.url = self.server.url

    def stop(self) -> None:
        if self.server is None:
            stop_server(self.folder)
        else:
            self.server.stop()


@pytest.fixture
def own_redis(backend: dict[str, str], tmp_path: Path) -> Iterator[OwnRedis]:
    redis = OwnRedis(backend["name"], tmp_path / "own-redis")
    redis.start()
    yield redis
    redis.stop()


@pytest.fixture
def limited_app(backend: dict[str, str], own_redis: OwnRedis, tmp_path: Path,
                worker_name: str) -> Iterator[Any]:
    """The app with its rate limits and queue in `own_redis`, and one user, sam."""
    url = own_redis.url
    storage = "redis+unix://" + url[len("unix://"):] if url.startswith("unix://") else url
    instance = tmp_path / "instance"
    instance.mkdir()
    config: dict[str, Any] = {
        "TESTING": True, "SECRET_KEY": "test-secret", "INSTANCE_PATH": str(instance),
        "SQLALCHEMY_DATABASE_URI": backend["database"], "REDIS_URL": url,
        "RATELIMIT_STORAGE_URI": storage, "RQ_QUEUE": f"relapp-{worker_name}",
        "RELAPP_REPOS_DIR": str(tmp_path / "repos"),
    }
    if backend["database"].startswith("postgresql"):
        config["SQLALCHEMY_ENGINE_OPTIONS"] = {"pool_size": 2, "max_overflow": 2}
    app = create_app(config)
    with app.app_context():
        create_user("sam", "pass", "engineer")
        db.session.remove()
    yield app
    with app.app_context():
        db.engine.dispose()


def _said(caplog: pytest.LogCaptureFixture, text: str) -> int:
    return sum(text in record.getMessage() for record in caplog.records)


@pytest.fixture
def limiter_log(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    """Flask-Limiter's log. Migrating the test databases in this process ran alembic's
    fileConfig, which disables the loggers that existed then (a server migrates in another
    process: `make run`'s supervisor, or `flask db upgrade`)."""
    logging.getLogger("flask-limiter").disabled = False
    caplog.set_level(logging.INFO, logger="flask-limiter")
    return caplog


def test_the_login_limit_holds_per_process_while_redis_is_down(limited_app, own_redis, limiter_log):
    caplog = limiter_log
    client = limited_app.test_client()
    assert login(client, "sam", "wrong").status_code == 401  # counted in Redis
    own_redis.stop()

    statuses = [login(client, "sam", "wrong").status_code for _ in range(10)]
    # The limit is 10 a minute: the attempt counted in Redis is not seen by the process, so
    # ten more are answered and the eleventh in memory is refused.
    assert statuses == [401] * 10
    refused = login(client, "sam", "pass")
    assert refused.status_code == 429  # even the right password, until the minute is over
    # Per address too: another name from this address is refused.
    assert login(client, "nobody", "wrong").status_code == 429
    assert _said(caplog, FALLBACK) == 1, [r.getMessage() for r in caplog.records]
    warning = next(r for r in caplog.records if FALLBACK in r.getMessage())
    assert warning.levelno == logging.WARNING

    # Redis is back: the limiter notices (it checks with growing pauses) and uses it again.
    own_redis.start()
    deadline = time.monotonic() + 60
    while not _said(caplog, RECOVERED) and time.monotonic() < deadline:
        client.get("/login")
        time.sleep(0.5)
    assert _said(caplog, RECOVERED) == 1
    assert login(limited_app.test_client(), "sam", "pass").status_code == 302  # Redis's count: 1
