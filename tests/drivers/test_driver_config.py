"""Config sync builds every driver table as a deploy builds it (registry.build_driver), so what
would fail a deploy later is refused at sync with the TOML path and line; secrets may be named by
environment variable, and only the name is ever stored (issue 9, finding 9 and "secrets stay
secret")."""

from __future__ import annotations

import json
import re
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from relapp.drivers import DriverConfigError, Outcome, build_driver, secrets_of, verify
from relapp.drivers.webhook import SIGNATURE_HEADER, signing_secret
from relapp.extensions import db
from relapp.models import AuditEvent, Environment, Project
from relapp.services.projects import sync_settings
from relapp.settings import SettingsError, parse
from tests.drivers.test_webhook import Server, run, start_server

# Line numbers matter: the tests below name them. {driver} is line 12.
CONFIG = """
[[projects]]
key = "shop"
remote = "https://git.example.com/shop.git"

[[projects.environments]]
name = "qa"

[[projects.environments]]
name = "prod"
requires_go_from = "qa"
{driver}
"""
SECRET_VALUE = "whsec-from-the-environment-0123456789"


def config(driver: str) -> str:
    return CONFIG.replace("{driver}", driver)


BAD_DRIVERS = [
    ('driver = { kind = "command", argvv = ["./deploy.sh", "{tag}"] }', 12, "argvv",
     ("Unknown setting 'argvv' for the command driver; expected one of: "
     "argv, cwd, env, kind, pass_env, secrets, timeout.")),
    ('driver = { kind = "command", argv = ["./deploy.sh"], allow_hosts = ["10.0.0.5"] }', 12,
     "allow_hosts", ("Setting 'allow_hosts' belongs to the webhook driver, not the command driver, "
                    "whose settings are: argv, cwd, env, kind, pass_env, secrets, timeout; an "
                    "internal version_url is allowed through RELAPP_ALLOW_HOSTS instead.")),
    ('driver = { kind = "webhook", url = "https://cd.example.com/hook", secret = "x" }', 12,
     "secret", "Setting 'secret' must be at least 16 characters long (it has 1)"),
    (('driver = { kind = "webhook", url = "https://ci:hunter2@cd.example.com/hook", '
     'secret_env = "SHOP_HOOK_SECRET" }'), 12, "url",
     ("Setting 'url' must not contain a user name or password: the request is authenticated by its "
     "signature, whose shared secret belongs in an environment variable named by 'secret_env'")),
    ('driver = { kind = "webhook", url = "https://cd.example.com/hook", secret_env = "SECRET_KEY" }',
     12, "secret_env", "Setting 'secret_env' must not name SECRET_KEY, one of relapp's own settings"),
    (('driver = { kind = "webhook", url = "https://cd.example.com/hook", '
     'secret = "0123456789abcdef0", secret_env = "SHOP_HOOK_SECRET" }'), 12, "secret_env",
     "Setting 'secret_env' and setting 'secret' of the webhook driver exclude each other"),
    # The driver as a [table] of its own: the line is the bad key's, not the environment's.
    (('[projects.environments.driver]\nkind = "command"\nargv = ["./deploy.sh"]\ntimeout = 60\n'
     'argvv = ["x"]'), 16, "argvv", "Unknown setting 'argvv' for the command driver"),
    (('[projects.environments.driver]\nkind = "command"\nargv = ["./deploy.sh"]\n'
     'env = { STAGE = 2 }'), 15, "env.STAGE", "Setting 'env.STAGE' must be a string."),
    ('driver = { kind = "manual", instructions = 3 }', 12, "instructions",
     "Setting 'instructions' of the manual driver must be text."),
]
IDS = ["unknown-key", "allow-hosts-on-command", "short-secret", "credentials-in-url",
       "relapps-own-variable", "secret-and-secret-env", "driver-table-header", "env-not-a-string",
       "manual-instructions"]


@pytest.mark.parametrize("driver, line, key, says", BAD_DRIVERS, ids=IDS)
def test_each_bad_driver_table_is_refused_with_its_path_and_line(driver, line, key, says):
    with pytest.raises(SettingsError) as caught:
        parse(config(driver), source="relapp.toml", check_driver=build_driver)
    message = str(caught.value)
    assert message.startswith(
        f"relapp.toml, line {line}: projects[0].environments[1].driver.{key}: {says}"), message
    assert "\n" not in message and "Traceback" not in message
    assert "hunter2" not in message


@pytest.mark.parametrize("driver, line, key, says", BAD_DRIVERS, ids=IDS)
def test_the_deploy_refuses_the_same_tables_with_the_same_sentence(driver, line, key, says):
    """One code path: build_driver at deploy time gives the sentence sync gave."""
    raw = tomllib.loads(config(driver))["projects"][0]["environments"][1]["driver"]
    with pytest.raises(DriverConfigError) as caught:
        build_driver(raw)
    assert caught.value.key == key
    assert str(caught.value).startswith(says)


@pytest.mark.parametrize("driver, key", [(BAD_DRIVERS[0][0], "argvv"), (BAD_DRIVERS[2][0], "secret")],
                         ids=["unknown-key", "short-secret"])
def test_config_sync_refuses_a_bad_driver_and_writes_nothing(app, app_ctx, tmp_path, driver, key):
    bad = tmp_path / "relapp.toml"
    bad.write_text(config(driver))
    result = app.test_cli_runner().invoke(args=["config", "sync", str(bad)])
    assert result.exit_code == 1, result.output
    assert f"Error: {bad}, line 12: projects[0].environments[1].driver.{key}: " in result.output
    assert "Traceback" not in result.output
    assert db.session.scalar(select(func.count()).select_from(Project)) == 0
    assert db.session.scalar(select(func.count()).select_from(AuditEvent)) == 0


def test_sync_checks_the_drivers_again_when_given_records_parsed_without_the_check(app_ctx):
    projects = parse(config(BAD_DRIVERS[0][0]))  # no check_driver: only the kind is looked at
    with pytest.raises(SettingsError, match=re.escape(
            "projects[0].environments[1].driver.argvv: Unknown setting 'argvv'")):
        sync_settings(projects)
    assert db.session.scalar(select(func.count()).select_from(Project)) == 0


WEBHOOK = ('driver = { kind = "webhook", url = "https://cd.example.com/hook", '
           'secret_env = "SHOP_HOOK_SECRET" }')


def _stored_text() -> str:
    """Everything sync wrote that a page or the API could show: rows of projects,
    environments and the audit."""
    rows: list[Any] = []
    for project in db.session.scalars(select(Project)):
        rows.append({c.name: getattr(project, c.key) for c in Project.__table__.columns})
    for env in db.session.scalars(select(Environment)):
        rows.append({c.name: getattr(env, c.key) for c in Environment.__table__.columns})
    for event in db.session.scalars(select(AuditEvent)):
        rows.append([event.action, event.target, event.before, event.after, event.detail])
    return json.dumps(rows, default=str)


def test_secret_env_is_stored_by_name_and_an_unset_variable_is_only_a_warning(
        app, app_ctx, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SHOP_HOOK_SECRET", raising=False)
    monkeypatch.delenv("SHOP_GIT_TOKEN", raising=False)
    file = tmp_path / "relapp.toml"
    file.write_text(config(WEBHOOK).replace(
        'key = "shop"', 'key = "shop"\nremote_credentials_env = "SHOP_GIT_TOKEN"'))
    runner = app.test_cli_runner()

    first = runner.invoke(args=["config", "sync", str(file)])
    assert first.exit_code == 0, first.output
    assert "environment shop/prod: created" in first.stdout
    assert first.stderr.splitlines() == [
        (f"Warning: {file}: projects[0].remote_credentials_env names SHOP_GIT_TOKEN, which is not "
        "set here; fetching and tagging shop will fail where it is not set either."),
        (f"Warning: {file}: projects[0].environments[1].driver.secret_env names SHOP_HOOK_SECRET, "
        "which is not set here; deploys to shop/prod will fail where it is not set either."),
    ]
    prod = db.session.scalar(select(Environment).where(Environment.name == "prod"))
    assert prod.driver == {"kind": "webhook", "url": "https://cd.example.com/hook",
                           "secret_env": "SHOP_HOOK_SECRET"}
    assert db.session.scalar(select(Project.remote_credentials_env)) == "SHOP_GIT_TOKEN"

    monkeypatch.setenv("SHOP_HOOK_SECRET", SECRET_VALUE)
    monkeypatch.setenv("SHOP_GIT_TOKEN", "deploy:tok-0123456789abcdef")
    again = runner.invoke(args=["config", "sync", str(file)])
    assert again.exit_code == 0 and again.stderr == "", again.output
    assert "Up to date: nothing changed." in again.stdout
    stored = _stored_text()
    assert "SHOP_HOOK_SECRET" in stored and "SHOP_GIT_TOKEN" in stored
    assert SECRET_VALUE not in stored and "tok-0123456789abcdef" not in stored


@pytest.fixture
def cd_server() -> Iterator[Server]:
    """A local CD system (test_webhook's recording server) on 127.0.0.1."""
    server = start_server()
    yield server
    server.httpd.shutdown()
    server.httpd.server_close()


def test_a_webhook_signs_with_the_variables_value_read_when_it_runs(
        cd_server: Server, monkeypatch: pytest.MonkeyPatch) -> None:
    server = cd_server
    settings = {"kind": "webhook", "url": server.url, "secret_env": "SHOP_HOOK_SECRET",
                "allow_hosts": [f"127.0.0.1:{server.port}"]}
    monkeypatch.delenv("SHOP_HOOK_SECRET", raising=False)
    driver = build_driver(settings)  # built without the value: sync does the same

    result, lines = run(driver)
    assert result.outcome is Outcome.FAILED
    assert result.message == ("The webhook secret is read from the environment variable "
                              "SHOP_HOOK_SECRET, which is not set for the worker; set it there and "
                              "deploy again.")
    assert server.requests == []  # nothing unsigned is sent

    monkeypatch.setenv("SHOP_HOOK_SECRET", "too-short")
    result, _ = run(driver)
    assert result.outcome is Outcome.FAILED and "shorter than 16 characters" in result.message
    assert "too-short" not in result.message and server.requests == []

    monkeypatch.setenv("SHOP_HOOK_SECRET", SECRET_VALUE)
    server.status, server.body = 500, f"denied, expected {SECRET_VALUE}\n".encode()
    result, lines = run(driver)
    assert result.outcome is Outcome.FAILED and "500" in result.message
    [request] = server.requests
    assert verify(SECRET_VALUE, request["body"], request["headers"][SIGNATURE_HEADER])
    assert "  denied, expected ****" in lines
    assert not any(SECRET_VALUE in line for line in lines)
    # What the deploy job masks and what the status report is checked with: the value, now.
    assert secrets_of(settings) == [SECRET_VALUE]
    assert signing_secret(settings) == SECRET_VALUE


def test_secrets_of_resolves_every_env_secret_and_only_those():
    settings = {"kind": "webhook", "url": "https://cd.example.com/hook", "secret_env": "HOOK"}
    assert secrets_of(settings, {"HOOK": SECRET_VALUE, "OTHER": "not-a-secret"}) == [SECRET_VALUE]
    assert secrets_of(settings, {}) == []  # unset: nothing to mask, and the deploy fails anyway
    command = {"kind": "command", "argv": ["x"], "secrets": {"T": "literal-1"}, "pass_env": ["HOME"]}
    assert secrets_of(command, {"HOME": "/home/deploy"}) == ["literal-1"]
    assert signing_secret({"kind": "command", "secret": SECRET_VALUE}) is None
