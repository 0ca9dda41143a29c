"""Admin commands under `flask --app relapp`: config sync, users, tokens, the demo."""

from __future__ import annotations

from pathlib import Path

import click
from flask import Flask, current_app
from flask.cli import AppGroup
from sqlalchemy import select
from sqlalchemy.exc import DBAPIError, OperationalError, ProgrammingError

from .domain.pipeline import Role
from .exceptions import ServiceError
from .extensions import db
from .models import User
from .settings import SettingsError

config_group = AppGroup("config", help="Configuration as code.")
users_group = AppGroup("users", help="Manage users.")
token_group = AppGroup("token", help="Manage API tokens.")
audit_group = AppGroup("audit", help="The audit log's hash chain.")


def _fail(exc: Exception) -> click.ClickException:
    if isinstance(exc, DBAPIError) and _no_schema(exc):
        return click.ClickException("The database has no relapp tables yet; run `flask --app relapp db upgrade` first. Nothing was changed.")
    if isinstance(exc, OperationalError):
        return click.ClickException("The database cannot be reached; check DATABASE_URL. Nothing was changed.")
    return click.ClickException(str(getattr(exc, "detail", None) or exc))


def _no_schema(exc: DBAPIError) -> bool:
    """A missing table (SQLite's "no such table", PostgreSQL's UndefinedTable): not migrated."""
    return "no such table" in str(exc.orig) or type(exc.orig).__name__ == "UndefinedTable"


@config_group.command("sync")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
def config_sync(file: Path) -> None:
    """Load FILE (TOML) into the database; running it twice changes nothing."""
    sync_file(file)


def sync_file(file: Path) -> list[str]:
    """Load FILE into the database, report each change and (re)schedule release trains; a bad
    file or an unreachable database raises ClickException with one sentence, changing nothing."""
    from .services.projects import load_settings, settings_warnings, sync_settings

    try:
        projects = load_settings(file)
        changes = sync_settings(projects)
    except (SettingsError, ServiceError, OperationalError, ProgrammingError) as exc:
        raise _fail(exc) from None
    for line in changes:
        click.echo(line)
    # A secret's variable may be set only where the worker runs: said, not refused.
    for warning in settings_warnings(projects):
        click.echo(f"Warning: {file}: {warning}", err=True)
    click.echo(f"{len(changes)} change(s)." if changes else "Up to date: nothing changed.")
    _schedule_trains()
    return changes


def sync_at_start(app: Flask) -> None:
    """The start commands' step (`make run`, gunicorn's master): sync RELAPP_CONFIG once when it
    is set. A bad file prints `config sync`'s sentence on stderr and exits with status 1."""
    path = app.config.get("RELAPP_CONFIG")
    if not path:
        return
    click.echo(f"RELAPP_CONFIG: syncing {path}")
    with app.app_context():
        try:
            sync_file(Path(path))
        except click.ClickException as exc:
            exc.show()
            raise SystemExit(1) from None
        finally:
            db.session.remove()


def _schedule_trains() -> None:
    """(Re)schedule each project's next release-train slot; a Redis outage is only reported."""
    from redis.exceptions import RedisError

    from .services import train

    try:
        for key, slot in train.schedule_all().items():
            if slot:
                click.echo(f"train {key}: next cut at {slot:%Y-%m-%d %H:%M} UTC")
    except (RedisError, OSError):
        click.echo("Redis is not reachable: release trains will be scheduled when the worker starts.", err=True)


@users_group.command("create")
@click.argument("username")
@click.option("--role", default=Role.VIEWER.value, show_default=True)
@click.option("--password", prompt=True, hide_input=True, confirmation_prompt=True)
def users_create(username: str, role: str, password: str) -> None:
    """Create a user."""
    from .services.accounts import create_user

    try:
        create_user(username, password, role)
    except (ServiceError, OperationalError) as exc:
        raise _fail(exc) from None
    click.echo(f"Created {username} ({role}).")


@users_group.command("set-password")
@click.argument("username")
@click.option("--password", prompt=True, hide_input=True, confirmation_prompt=True)
def users_set_password(username: str, password: str) -> None:
    """Set USERNAME's password; every session of theirs ends (remember cookies included)."""
    from .services.accounts import set_password

    try:
        set_password(username, password)
    except (ServiceError, OperationalError) as exc:
        raise _fail(exc) from None
    click.echo(f"Password of {username} set; their sessions are signed out.")


@users_group.command("sign-out")
@click.argument("username")
def users_sign_out(username: str) -> None:
    """End every session of USERNAME at once, in every browser (e.g. a lost laptop)."""
    from .services.accounts import end_sessions

    try:
        user = db.session.scalar(select(User).where(User.username == username))
        if user is None:
            raise click.ClickException(f"There is no user named '{username}'.")
        end_sessions(user, actor="cli", reason="signed out by an admin")
    except OperationalError as exc:
        raise _fail(exc) from None
    click.echo(f"Every session of {username} is signed out.")


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


@click.command("adopt")
@click.argument("project")
@click.option("--record", is_flag=True, help="Also record recognised stable tags as adopted releases.")
def adopt_command(project: str, record: bool) -> None:
    """Report how PROJECT's existing tags are understood, the rules that would read the rest,
    the conflicts to settle and which release main would follow; never writes configuration."""
    from .services import adoption
    from .services.projects import get_project

    try:
        report = adoption.adopt_report(get_project(project))
        created = adoption.adopt_into_db(project) if record else []
    except (ServiceError, OperationalError) as exc:
        raise _fail(exc) from None
    click.echo(f"{report.version_like} tag(s) look like versions; relapp reads {report.read} of them.")
    if report.refusal:
        click.echo(report.refusal)
    sections = (
        ("Recognised", report.recognised, report.recognised_count, "  {tag:<24} {version:<14} {short}  ({rule})"),
        ("Ignored", report.ignored, report.ignored_count, "  {tag:<24} {reason}"),
        ("Not recognised", report.unknown, report.unknown_count, "  {tag:<24} {reason}"),
    )
    for title, items, total, line in sections:
        shown = f", the first {len(items)} shown" if total > len(items) else ""
        click.echo(f"{title} ({total}{shown}):")
        for item in items:
            click.echo(line.format(**item, short=str(item.get("commit", ""))[:10]))
    if report.shapes:
        click.echo("Unread tags by shape:")
        for s in report.shapes:
            under = (f"next from main would be {s['next_version']}" if s["next_version"]
                     else s["next_refusal"] or "next version not worked out")
            click.echo(f"  {s['shape']:<24} {s['count']:>5} tag(s), e.g. {', '.join(s['examples'])}")
            click.echo(f"    {s['key']}: {s['proposed']}  ({under})")
        if report.more_shapes:
            click.echo(f"  … and {report.more_shapes} smaller shape(s)")
    click.echo(f"Conflicts ({len(report.conflicts)}):")
    for item in report.conflicts:
        click.echo(f"  {item['version'] or '-'} [{item['kind']}] {item['settle']}")
    if report.main_next:
        click.echo(f"main follows {report.main_follows or '(nothing: baseline)'}; the next release would be {report.main_next}")
    else:
        click.echo(f"main: {report.main_refusal}")
    if report.snippet:
        click.echo("Rules to add:")
        click.echo(report.snippet_note or "")
        click.echo(report.snippet)
        if report.proposed_next:
            click.echo(f"With these rules, the next release from main would be {report.proposed_next}.")
        click.echo(adoption.CONFIG_SENTENCE)
    if record:
        click.echo(f"Recorded {len(created)} adopted release(s).")


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
    from .services import adoption

    adoption.adopt_into_db("demo", actor="demo")
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


@audit_group.command("verify")
def audit_verify() -> None:
    """Walk the audit events in id order and report the first broken link of their hash chain;
    exit status 1 when there is one."""
    from .services import audit

    try:
        report = audit.verify()
    except (OperationalError, ProgrammingError) as exc:
        raise _fail(exc) from None
    click.echo(report.sentence())
    if not report.intact:
        raise SystemExit(1)
    if report.last_id is not None:
        click.echo(f"Last event {report.last_id}, hash {report.last_hash} (keep it elsewhere to "
                   "prove later that no event was removed from the end).")


def init_app(app: Flask) -> None:
    """Attach the command groups to `flask`."""
    app.cli.add_command(config_group)
    app.cli.add_command(users_group)
    app.cli.add_command(token_group)
    app.cli.add_command(audit_group)
    app.cli.add_command(demo_command)
    app.cli.add_command(adopt_command)
