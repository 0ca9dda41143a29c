"""The foundation: schema, configuration as code, sign-in, roles, CSRF, append-only audit, worker."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from redis import Redis
from rq import Queue
from sqlalchemy import func, select, text
from sqlalchemy.exc import IntegrityError

from relapp.extensions import db
from relapp.models import AuditEvent, Deployment, Environment, Project, Release, User
from relapp.services.accounts import create_token, create_user
from relapp.services.projects import sync_settings
from relapp.settings import SettingsError, parse
from tests.conftest import ROOT, csrf_token, login, run_worker_burst, signed_in

CONFIG = """
[[projects]]
key = "shop"
name = "Shop"
remote = "/srv/git/shop.git"
issue_key_pattern = "SHOP-[0-9]+"

[[projects.environments]]
name = "qa"
driver = { kind = "manual" }

[[projects.environments]]
name = "prod"
requires_go_from = "qa"
deploy_roles = ["release", "admin"]
driver = { kind = "manual" }

[[projects.teams]]
name = "core"
paths = ["core/"]
"""


def test_migrated_schema_matches_models(app):
    """`flask db upgrade` on an empty database gives exactly the models' schema."""
    with db.engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), db.metadata)
    assert diff == []


def test_config_sync_is_idempotent(app):
    projects = parse(CONFIG)
    first = sync_settings(projects)
    assert "project shop: created" in first
    assert "environment shop/prod: created" in first
    assert sync_settings(projects) == []
    prod = db.session.scalar(select(Environment).where(Environment.name == "prod"))
    assert prod.requires_go_from == "qa" and prod.position == 1
    assert prod.deploy_roles == ["release", "admin"]
    changed = sync_settings(parse(CONFIG.replace('name = "Shop"', 'name = "The shop"')))
    assert changed == ["project shop: changed name"]
    assert db.session.scalar(select(func.count()).select_from(AuditEvent).where(AuditEvent.action == "config.sync")) == 2


@pytest.mark.parametrize("broken, where", [
    (CONFIG.replace('requires_go_from = "qa"', 'requires_go_from = "staging"'), r"line 14: projects\[0\]\.environments\[1\]\.requires_go_from"),
    (CONFIG.replace('deploy_roles = ["release", "admin"]', 'deploy_roles = ["release", "boss"]'), r"line 15: .*deploy_roles: unknown role 'boss'"),
    (CONFIG.replace('key = "shop"', 'key = "Shop Main"'), r"line 3: projects\[0\]\.key"),
    (CONFIG.replace('name = "qa"\n', 'name = "qa"\ncolour = "red"\n'), r"line 10: projects\[0\]\.environments\[0\]\.colour: unknown key"),
    (CONFIG.replace('issue_key_pattern = "SHOP-[0-9]+"', 'issue_key_pattern = "SHOP-[0-9"'), r"line 6: .*issue_key_pattern: is not a valid regular expression"),
    (CONFIG.replace('name = "Shop"', 'name = "Shop'), r"not valid TOML: .*line 4"),
])
def test_malformed_config_names_line_and_key_and_changes_nothing(app, broken, where):
    sync_settings(parse(CONFIG))
    before = db.session.scalar(select(func.count()).select_from(AuditEvent))
    with pytest.raises(SettingsError, match=where):
        sync_settings(parse(broken))
    assert db.session.scalar(select(func.count()).select_from(AuditEvent)) == before


def test_config_sync_cli_reports_errors_without_traceback(app, tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text(CONFIG.replace('driver = { kind = "manual" }', 'driver = { kind = "ftp" }', 1))
    runner = app.test_cli_runner()
    result = runner.invoke(args=["config", "sync", str(bad)])
    assert result.exit_code == 1
    assert "line 10: projects[0].environments[0].driver.kind: must be one of" in result.output
    assert "Traceback" not in result.output
    assert db.session.scalar(select(func.count()).select_from(Project)) == 0
    good = tmp_path / "good.toml"
    good.write_text(CONFIG)
    assert "project shop: created" in runner.invoke(args=["config", "sync", str(good)]).output
    assert "Up to date" in runner.invoke(args=["config", "sync", str(good)]).output


@pytest.fixture
def people(app):
    sync_settings(parse(CONFIG))
    for name, role in (("vic", "viewer"), ("quinn", "qa"), ("erin", "engineer"), ("rita", "release"), ("ada", "admin")):
        create_user(name, "pass", role)


def test_sign_in_and_board(app, people):
    client = app.test_client()
    assert client.get("/").status_code == 302
    response = login(client, "quinn", "wrong")
    assert response.status_code == 401
    assert "Wrong username or password." in response.get_data(as_text=True)
    response = login(client, "quinn")
    assert response.status_code == 302
    page = client.get("/")
    assert page.status_code == 200
    body = page.get_data(as_text=True)
    assert "Shop" in body and 'id="column-qa"' in body and 'id="column-prod"' in body


def test_post_without_csrf_token_is_refused_and_changes_nothing(app, people):
    client = signed_in(app, "ada")
    response = client.post("/logout")
    assert response.status_code == 400
    assert "security token" in response.get_data(as_text=True)
    assert client.get("/").status_code == 200  # still signed in
    token = csrf_token(client)
    assert client.post("/logout", headers={"X-CSRFToken": token}).status_code == 302
    assert client.get("/").status_code == 302


def test_every_answer_varies_on_htmx_headers(app, people):
    client = app.test_client()
    answers = [client.get("/"), client.get("/login"), client.get("/no/such/page"),
               client.get("/login", headers={"HX-Request": "true"})]
    for response in answers:
        assert "HX-Request" in response.vary, response.status_code


def test_session_cookie_flags(app, people):
    client = app.test_client()
    response = login(client, "ada")
    cookie = response.headers.get("Set-Cookie")
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie


def test_next_parameter_cannot_leave_the_site(app, people):
    client = app.test_client()
    page = client.get("/login?next=https://evil.invalid/x")
    token = re.search(r'name="csrf_token" value="([^"]+)"', page.get_data(as_text=True)).group(1)
    response = client.post("/login?next=https://evil.invalid/x", data={"username": "ada", "password": "pass", "csrf_token": token})
    assert response.headers["Location"] == "/"


def test_unknown_project_is_a_clear_404(app, people):
    response = signed_in(app, "vic").get("/?project=nope")
    assert response.status_code == 404
    assert "There is no project &#39;nope&#39;" in response.get_data(as_text=True)


def test_login_attempts_are_rate_limited(app, people):
    client = app.test_client()
    statuses = [login(client, "quinn", "wrong").status_code for _ in range(11)]
    assert statuses[:10] == [401] * 10
    assert statuses[10] == 429
    # Another username from the same address is limited too (per-IP limit).
    assert login(client, "erin", "wrong").status_code == 429


def test_demo_users_only_sign_in_in_demo_mode(app, people):
    create_user("demo-qa", "demo", "qa", is_demo=True)
    client = app.test_client()
    assert login(client, "demo-qa", "demo").status_code == 401
    app.config["RELAPP_DEMO"] = True
    assert login(client, "demo-qa", "demo").status_code == 302


def test_tokens_are_stored_hashed(app, people):
    row, token = create_token("erin")
    assert token.startswith("rla_") and len(token) > 40
    assert row.token_hash != token and token not in row.token_hash


def test_one_active_deployment_per_environment_is_enforced_by_the_database(app, people):
    project = db.session.scalar(select(Project))
    env = project.environments[0]
    release = Release(project_id=project.id, version="1.0.0", major=1, minor=0, patch=0, kind="minor", tag="v1.0.0")
    db.session.add(release)
    db.session.flush()
    db.session.add(Deployment(release_id=release.id, environment_id=env.id, status="queued"))
    db.session.commit()
    db.session.add(Deployment(release_id=release.id, environment_id=env.id, status="running"))
    with pytest.raises(IntegrityError):
        db.session.commit()
    db.session.rollback()
    # Finished deployments do not count.
    db.session.add(Deployment(release_id=release.id, environment_id=env.id, status="succeeded"))
    db.session.commit()


def test_audit_events_are_append_only_in_the_database(app, people):
    event = db.session.scalar(select(AuditEvent))
    with pytest.raises(Exception, match="append-only"):
        db.session.execute(text("UPDATE audit_events SET actor = 'mallory' WHERE id = :id"), {"id": event.id})
        db.session.commit()
    db.session.rollback()
    with pytest.raises(Exception, match="append-only"):
        db.session.execute(text("DELETE FROM audit_events"))
        db.session.commit()
    db.session.rollback()
    assert db.session.scalar(select(AuditEvent).where(AuditEvent.id == event.id)).actor == event.actor


def test_roles_are_checked_on_the_server(app, people):
    from relapp.auth import has_role

    users = {u.username: u for u in db.session.scalars(select(User))}
    assert not has_role(users["vic"], "engineer")
    assert not has_role(users["quinn"], "engineer")
    assert has_role(users["erin"], "engineer") and has_role(users["ada"], "release")


def test_a_trivial_job_round_trips_through_a_real_worker_process(app, worker_env, backend):
    queue = Queue(app.config["RQ_QUEUE"] + "-git", connection=Redis.from_url(backend["redis"]))
    job = queue.enqueue("relapp.jobs.ping", "hello")
    result = run_worker_burst(worker_env)
    assert result.returncode == 0, result.stderr
    job.refresh()
    assert job.get_status() == "finished"
    assert job.return_value()["echo"] == "hello"
    assert job.return_value()["pid"] != __import__("os").getpid()


def test_worker_with_unreachable_redis_says_so(tmp_path):
    env = dict(__import__("os").environ, REDIS_URL="redis://127.0.0.1:1/0", RELAPP_INSTANCE=str(tmp_path),
               DATABASE_URL=f"sqlite:///{tmp_path}/x.sqlite3")
    result = subprocess.run([sys.executable, str(ROOT / "worker.py"), "--burst"], env=env, cwd=ROOT,
                            check=False, capture_output=True, text=True, timeout=60)
    assert result.returncode == 1
    assert "cannot reach Redis" in result.stderr
    assert "Traceback" not in result.stderr


def test_cli_with_unreachable_database_says_so(tmp_path):
    env = dict(__import__("os").environ, DATABASE_URL="postgresql://nobody@127.0.0.1:1/none", REDIS_URL="redis://127.0.0.1:1/0",
               RELAPP_INSTANCE=str(tmp_path))
    result = subprocess.run([sys.executable, "-m", "flask", "--app", "relapp", "token", "create", "ada"],
                            env=env, cwd=ROOT, check=False, capture_output=True, text=True, timeout=60)
    assert result.returncode == 1
    assert "The database cannot be reached" in result.stderr
    assert "Traceback" not in result.stderr


def test_embedded_redis_is_started_once_and_shared(tmp_path):
    from relapp.embedded import ensure_server, stop_server

    url = ensure_server(tmp_path)
    assert ensure_server(tmp_path) == url
    pid = (tmp_path / "redis.pid").read_text().strip()
    client = Redis.from_url(url)
    client.set("k", "v")
    assert Redis.from_url(ensure_server(tmp_path)).get("k") == b"v"
    assert (tmp_path / "redis.pid").read_text().strip() == pid
    assert client.config_get("maxmemory-policy")["maxmemory-policy"] == "noeviction"
    stop_server(tmp_path)
