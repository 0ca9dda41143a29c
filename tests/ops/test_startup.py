"""Start-up checks: a warning when Redis may evict relapp's keys (or when that cannot be checked),
and in production mode a refusal — one sentence on stderr, exit status 1 — from the worker and
from gunicorn's master, while the demo's users exist or SECRET_KEY is a default."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from redis import Redis

from relapp.extensions import db
from relapp.services.accounts import create_user, set_password
from relapp.services.health import MIN_SECRET_KEY, eviction_warning, secret_key_refusal
from relapp.startup import check_start
from tests.conftest import ROOT, free_port
from tests.faults.conftest import PrivateRedis, use_redis
from tests.ops.conftest import SECRET, production_env
from tests.processes import wait_for

PREFIX = "relapp worker refuses to start in production mode: "


@pytest.mark.parametrize(("key", "says"), [
    (None, "SECRET_KEY is not set"),
    ("", "SECRET_KEY is not set"),
    ("changeme", "well-known placeholder"),
    ("Test-Secret", "well-known placeholder"),
    ("a" * (MIN_SECRET_KEY - 1), f"{MIN_SECRET_KEY - 1} characters long"),
    ("a" * MIN_SECRET_KEY, None),
    (SECRET, None),
])
def test_which_secret_keys_production_refuses(key: str | None, says: str | None) -> None:
    refusal = secret_key_refusal(key)
    assert (refusal is None) if says is None else (says in (refusal or ""))


def _worker(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(ROOT / "worker.py"), "--burst", "--queues", "git"],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=180, check=False)


def _refused(result: subprocess.CompletedProcess[str], prefix: str = PREFIX) -> str:
    """The one plain line on stderr (JSON log lines aside) of a start that exited with 1."""
    assert result.returncode == 1, result.stderr
    plain = [line for line in result.stderr.splitlines() if line.strip() and not line.startswith("{")]
    assert len(plain) == 1, result.stderr
    assert plain[0].startswith(prefix), plain
    assert "Traceback" not in result.stderr
    return plain[0]


@pytest.mark.parametrize(("settings", "says"), [
    ({"RELAPP_SECRET_KEY_GENERATED": True}, "SECRET_KEY is not set"),
    ({"SECRET_KEY": "changeme"}, "SECRET_KEY is a well-known placeholder"),
    ({"RELAPP_DEMO": True}, "RELAPP_DEMO is on"),
])
def test_production_refuses_defaults(app: Any, capsys: pytest.CaptureFixture[str],
                                     settings: dict[str, Any], says: str) -> None:
    app.config.update({"RELAPP_PRODUCTION": True, "SECRET_KEY": SECRET, **settings})
    with pytest.raises(SystemExit) as stopped:
        check_start(app, "worker")
    assert stopped.value.code == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith(PREFIX + says) and "\n" not in err
    app.config.update(RELAPP_PRODUCTION=False)
    check_start(app, "worker")  # development mode starts


def test_the_worker_refuses_production_mode_with_the_demos_users(
        app_ctx: Any, worker_env: dict[str, str]) -> None:
    env = production_env(worker_env)
    create_user("admin", "demo", "admin", is_demo=True)
    create_user("qa", "demo", "qa")  # named as a demo user, with its password
    create_user("vic", "demo", "viewer")  # not the demo's: a weak password is not this check's
    db.session.commit()
    line = _refused(_worker(env))
    assert "the demo's users exist (admin, qa) with the password 'demo'" in line
    assert "flask --app relapp users set-password NAME" in line

    set_password("admin", "a long password of its own")
    set_password("qa", "another long password")
    db.session.commit()
    started = _worker(env)
    assert started.returncode == 0, started.stderr


def test_gunicorn_refuses_before_forking_a_worker(app_ctx: Any, worker_env: dict[str, str],
                                                  tmp_path: Path) -> None:
    create_user("admin", "demo", "admin", is_demo=True)
    db.session.commit()
    env = production_env(worker_env, PROMETHEUS_MULTIPROC_DIR=str(tmp_path / "metrics"))
    result = subprocess.run(
        [sys.executable, "-m", "gunicorn", "-c", "python:relapp.gunicorn_conf", "--workers", "2",
         "--bind", f"127.0.0.1:{free_port()}", "relapp.wsgi:app"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=180, check=False)
    line = _refused(result, "relapp web server refuses to start in production mode: ")
    assert "the demo's users exist (admin)" in line
    assert "Booting worker" not in result.stderr + result.stdout


def test_redis_that_may_evict_is_warned_about(app: Any, worker_env: dict[str, str],
                                               private_redis: Callable[..., PrivateRedis]) -> None:
    server = private_redis()
    use_redis(app, server.url)
    with app.app_context():
        assert eviction_warning() is None  # noeviction
        server.client().config_set("maxmemory-policy", "allkeys-lru")
        warning = eviction_warning()
    assert warning is not None
    assert warning.startswith("Redis's maxmemory-policy is allkeys-lru, not noeviction")
    # Every start says it: here the worker's (development mode: plain text, not JSON).
    result = _worker({**worker_env, "REDIS_URL": server.url})
    assert result.returncode == 0, result.stderr
    lines = [line for line in result.stderr.splitlines() if "maxmemory-policy" in line]
    assert len(lines) == 1 and "allkeys-lru, not noeviction" in lines[0], result.stderr
    assert not lines[0].startswith("{")


def test_a_redis_that_refuses_config_get_is_said_so(app: Any, tmp_path: Path) -> None:
    # Managed Redis often refuses CONFIG: here a real redis-server with the command renamed away.
    from relapp.embedded import executable

    port = free_port()
    proc = subprocess.Popen([executable(), "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                             "--appendonly", "no", "--dir", str(tmp_path),
                             "--rename-command", "CONFIG", ""],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        url = f"redis://127.0.0.1:{port}/0"
        wait_for("redis-server to answer", lambda: _answers(url), deadline=30)
        use_redis(app, url)
        with app.app_context():
            warning = eviction_warning()
        assert warning is not None
        assert warning.startswith("Redis's maxmemory-policy could not be checked (CONFIG GET was refused")
    finally:
        proc.kill()
        proc.wait(timeout=30)


def _answers(url: str) -> bool:
    try:
        return bool(Redis.from_url(url, socket_connect_timeout=0.5).ping())
    except Exception:  # noqa: BLE001 - not up yet
        return False


def test_make_run_refuses_production_mode_once_and_leaves_nothing_running(tmp_path: Path) -> None:
    """`RELAPP_ENV=production make run` (the demo is on by default there) stops before it starts
    any child, with the one sentence, instead of children refusing and being restarted forever."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("DATABASE_URL", "REDIS_URL", "TEST_", "PROMETHEUS_"))}
    env.update({"RELAPP_INSTANCE": str(tmp_path / "instance"), "PORT": str(free_port()),
                "RELAPP_ENV": "production", "SECRET_KEY": SECRET, "PYTHONUNBUFFERED": "1"})
    result = subprocess.run([sys.executable, "-m", "relapp.run"], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=180, check=False)
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    # Before it, only the migrations' own INFO lines (make run upgrades the schema first).
    said = [line for line in result.stderr.splitlines()
            if line.strip() and not line.startswith("INFO  [alembic")]
    assert len(said) == 1 and said[0].startswith(
        "relapp make run refuses to start in production mode: RELAPP_DEMO is on"), result.stderr
    assert "relapp runs on" not in result.stdout
    from relapp.embedded import process_alive, server_pid

    pid = server_pid(tmp_path / "instance" / "redis")
    assert pid is None or not process_alive(pid)  # the embedded Redis it started was stopped
