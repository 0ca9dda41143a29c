"""RELAPP_CONFIG is synced once at start: by the documented production start (gunicorn with
relapp.gunicorn_conf: its master syncs before forking the workers) and by `make run`
(relapp.run, beside the demo). A bad file stops the start with `config sync`'s sentence and
exit status 1."""

from __future__ import annotations

import os
import shutil
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import func, select

from relapp.embedded import url_for_folder
from relapp.extensions import db
from relapp.models import AuditEvent, Project
from tests.conftest import ROOT, free_port, wait_until_serving

CONFIG = """
[[projects]]
key = "shop"
name = "Shop"
remote = "/srv/git/shop.git"
pr_url_template = "https://git.example.com/shop/pull/{pr}"

[[projects.environments]]
name = "qa"
"""
BAD = CONFIG.replace("/pull/{pr}", "/pull/")
BAD_SENTENCE = "line 6: projects[0].pr_url_template: must be an http(s) URL containing {pr}"


def _gunicorn(tmp_path: Path, database: Path, redis_url: str, config: Path) -> tuple[subprocess.Popen[bytes], str, Path]:
    """The production start from the README, with two web workers on a free port."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("DATABASE_URL", "REDIS_URL", "TEST_", "RELAPP_CONFIG", "RELAPP_INSTANCE"))}
    env.update({"DATABASE_URL": f"sqlite:///{database}", "REDIS_URL": redis_url,
                "RELAPP_CONFIG": str(config), "RELAPP_INSTANCE": str(tmp_path / "instance"),
                "SECRET_KEY": "test-secret"})
    port = free_port()
    log = tmp_path / "gunicorn.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "-c", "python:relapp.gunicorn_conf", "--workers", "2",
             "--bind", f"127.0.0.1:{port}", "--no-control-socket", "relapp.wsgi:app"],
            cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    return proc, f"http://127.0.0.1:{port}", log


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def _rows(database: Path, sql: str) -> list[tuple[object, ...]]:
    with sqlite3.connect(database) as conn:
        return conn.execute(sql).fetchall()


@pytest.fixture
def database(tmp_path, sqlite_template):
    """A migrated SQLite database (what `flask --app relapp db upgrade` leaves)."""
    path = tmp_path / "relapp.sqlite3"
    shutil.copy(sqlite_template, path)
    return path


def test_production_start_syncs_the_file_once_not_once_per_worker(tmp_path, database, embedded_redis_url):
    config = tmp_path / "relapp.toml"
    config.write_text(CONFIG)
    proc, url, log = _gunicorn(tmp_path, database, embedded_redis_url, config)
    try:
        assert wait_until_serving(url, proc, 60), log.read_text()
        assert _rows(database, "SELECT key, name, pr_url_template FROM projects") == [
            ("shop", "Shop", "https://git.example.com/shop/pull/{pr}")]
    finally:
        _stop(proc)
    # After a graceful stop every worker has finished loading the app, so a sync per worker
    # would have printed its line by now.
    output = log.read_text()
    assert output.count("Booting worker") == 2, output
    assert output.count("RELAPP_CONFIG: syncing") == 1, output
    assert "project shop: created" in output
    assert _rows(database, "SELECT target FROM audit_events WHERE action = 'project.create'") == [("project:shop",)]
    assert _rows(database, "SELECT count(*) FROM audit_events WHERE action = 'config.sync'") == [(1,)]


def test_production_start_with_a_bad_file_exits_1_with_the_sentence(tmp_path, database, embedded_redis_url):
    config = tmp_path / "relapp.toml"
    config.write_text(BAD)
    proc, _url, log = _gunicorn(tmp_path, database, embedded_redis_url, config)
    try:
        assert proc.wait(timeout=60) == 1
    finally:
        _stop(proc)
    output = log.read_text()
    assert f"Error: {config}, {BAD_SENTENCE}" in output, output
    assert "Traceback" not in output and "Booting worker" not in output, output
    assert _rows(database, "SELECT count(*) FROM projects") == [(0,)]


def test_make_run_syncs_the_file_beside_the_demo(app, tmp_path, capsys):
    from relapp.run import prepare

    config = tmp_path / "relapp.toml"
    config.write_text(CONFIG)
    app.config.update(RELAPP_DEMO=True, RELAPP_CONFIG=str(config))
    prepare(app)
    assert "project shop: created" in capsys.readouterr().out
    db.session.expire_all()
    assert db.session.scalars(select(Project.key).order_by(Project.key)).all() == ["demo", "shop"]
    creates = select(func.count()).select_from(AuditEvent).where(AuditEvent.action == "project.create")
    assert db.session.scalar(creates) == 2
    prepare(app)  # the next start: nothing changes
    assert "Up to date: nothing changed." in capsys.readouterr().out
    assert db.session.scalar(creates) == 2


def test_make_run_with_a_bad_file_exits_1_and_stops_its_redis(tmp_path, monkeypatch, capsys):
    from relapp import run

    config = tmp_path / "relapp.toml"
    config.write_text(BAD)
    instance = tmp_path / "instance"
    for name in ("DATABASE_URL", "REDIS_URL"):
        monkeypatch.setenv(name, "")  # the embedded default; restored afterwards
    monkeypatch.setenv("RELAPP_INSTANCE", str(instance))
    monkeypatch.setenv("RELAPP_DEMO", "0")
    monkeypatch.setenv("RELAPP_CONFIG", str(config))
    with pytest.raises(SystemExit) as stopped:
        run.main()
    assert stopped.value.code == 1
    err = capsys.readouterr().err
    assert f"Error: {config}, {BAD_SENTENCE}" in err and "Traceback" not in err
    assert "User requested shutdown" in (instance / "redis" / "redis.log").read_text()
    assert not Path(url_for_folder(instance / "redis").removeprefix("unix://")).exists()
