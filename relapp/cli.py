"""Admin commands under `flask --app relapp`: config sync, users, tokens, the demo."""

from __future__ import annotations

from pathlib import Path

import click
from flask import Flask, current_app
from flask.cli import AppGroup
from sqlalchemy import select
from sqlalchemy.exc import OperationalError

from .errors import ServiceError
from .extensions import db
from .models import User
from .settings import SettingsError

config_group = AppGroup("config", help="Configuration as code.")
users_group = AppGroup("users", help="Manage users.")
token_group = AppGroup("token", help="Manage API tokens.")


def _fail(exc: Exception) -> click.ClickException:
    if isinstance(exc, OperationalError):
        return click.ClickException("The database cannot be reached; check DATABASE_URL. Nothing was changed.")
    return click.ClickException(str(getattr(exc, "detail", None) or exc))


@config_group.command("sync")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
def config_sync(file: Path) -> None:
    """Load FILE (TOML) into the database; running it twice changes nothing."""
    from .services.projects import sync_settings
    from .settings import load

    try:
        changes = sync_settings(load(file))
    except (SettingsError, ServiceError, OperationalError) as exc:
        raise _fail(exc) from None
    for line in changes:
        click.echo(line)
    click.echo(f"{len(changes)} change(s)." if changes else "Up to date: nothing changed.")


@users_group.command("create")
@click.argument("username")
@click.option("--role", default="viewer", show_default=True)
@click.option("--password", prompt=True, hide_input=True, confirmation_prompt=True)
def users_create(username: str, role: str, password: str) -> None:
    """Create a user."""
    from .services.accounts import create_user

    try:
        create_user(username, password, role)
    except (ServiceError, OperationalError) as exc:
        raise _fail(exc) from None
    click.echo(f"Created {username} ({role}).")


@token_group.command("create")
@click.argument("username")
@click.option("--name", default="cli", show_default=True)
def token_create(username: str, name: str) -> None:
    """Create an API token for USERNAME; it is shown once."""
    from .services.accounts import create_token

    try:
        _row, token = create_token(username, name)
    except (ServiceError, OperationalError) as exc:
        raise _fail(exc) from None
    click.echo(token)


def ensure_demo(app: Flask) -> Path:
    """Create the demo project, its configuration and users unless they exist; return the config path."""
    from . import demo
    from .services.accounts import create_user
    from .services.projects import sync_settings
    from .settings import load

    folder = Path(app.instance_path) / "demo"
    config = demo.build(folder)
    sync_settings(load(config), actor="demo")
    for username, role in demo.DEMO_USERS:
        if db.session.scalar(select(User).where(User.username == username)) is None:
            create_user(username, demo.DEMO_PASSWORD, role, display_name=username.title(), is_demo=True, actor="demo")
    from .services import releases

    releases.adopt_into_db("demo", actor="demo")
    return config


@click.command("demo")
def demo_command() -> None:
    """Create the demo project (generated repository, qa/beta/prod, demo users) if missing."""
    try:
        config = ensure_demo(current_app)
    except (SettingsError, ServiceError, OperationalError) as exc:
        raise _fail(exc) from None
    click.echo(f"Demo ready: configuration in {config}.")
    click.echo("Demo users (password 'demo'): admin, release, engineer, qa, viewer.")


def init_app(app: Flask) -> None:
    """Attach the command groups to `flask`."""
    app.cli.add_command(config_group)
    app.cli.add_command(users_group)
    app.cli.add_command(token_group)
    app.cli.add_command(demo_command)
