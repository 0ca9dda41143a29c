"""sessions that end, deploys that stop, secrets from the environment, an audit hash chain

- users.session_version: rotated on logout, password change and "sign out everywhere"; part of
  the session and remember cookies, so rotating it ends them all.
- projects.remote_credentials_env: the name of the environment variable holding the remote's
  credentials (never the credentials themselves).
- environments.unknown_reason / unknown_since: set when a deploy there was abandoned, cleared by
  a verification or a successful deploy.
- deployments.process_group / process_host: the deploy command's process group, so the reaper
  can kill everything it started when the worker died.
- audit_events.prev_hash / hash: the hash chain; events recorded before it are chained here.
- installation: one row, the installation's id (prefix of its RQ job ids).
- PostgreSQL also refuses TRUNCATE on audit_events (UPDATE and DELETE were refused already);
  SQLite has no TRUNCATE, and its DELETE trigger covers a delete without WHERE.

Revision ID: c884c051650f
Revises: 3b1f0c2d9e41
Create Date: 2026-12-01 21:10:00

"""
import secrets

import sqlalchemy as sa
from alembic import op

revision = "c884c051650f"
down_revision = "3b1f0c2d9e41"
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table("users") as batch:
        batch.add_column(sa.Column("session_version", sa.Integer(), nullable=False, server_default="0"))
    with op.batch_alter_table("projects") as batch:
        batch.add_column(sa.Column("remote_credentials_env", sa.String(length=128), nullable=True))
    with op.batch_alter_table("environments") as batch:
        batch.add_column(sa.Column("unknown_reason", sa.String(length=500), nullable=True))
        batch.add_column(sa.Column("unknown_since", sa.DateTime(timezone=True), nullable=True))
    with op.batch_alter_table("deployments") as batch:
        batch.add_column(sa.Column("process_group", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("process_host", sa.String(length=255), nullable=True))
    # Plain ALTER TABLE ADD COLUMN (no batch copy): a copied table would lose its triggers.
    op.add_column("audit_events", sa.Column("prev_hash", sa.String(length=64), nullable=True))
    op.add_column("audit_events", sa.Column("hash", sa.String(length=64), nullable=True))
    installation = op.create_table(
        "installation",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("uid", sa.String(length=32), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_installation")),
    )
    op.bulk_insert(installation, [{"id": 1, "uid": secrets.token_hex(4)}])
    _chain_existing_events()
    if op.get_bind().dialect.name == "postgresql":
        op.execute("""
            CREATE TRIGGER audit_events_no_truncate BEFORE TRUNCATE ON audit_events
            FOR EACH STATEMENT EXECUTE FUNCTION relapp_audit_append_only()
        """)


def _chain_existing_events():
    """Hash the events recorded before the chain, in id order, with the append-only guard lifted
    for this one transaction."""
    from relapp.domain.auditchain import GENESIS, event_hash

    bind = op.get_bind()
    events = sa.table(
        "audit_events", sa.column("id", sa.Integer), sa.column("at", sa.DateTime(timezone=True)),
        sa.column("actor_id", sa.Integer), sa.column("actor", sa.String),
        sa.column("action", sa.String), sa.column("project_id", sa.Integer),
        sa.column("target", sa.String), sa.column("before", sa.JSON), sa.column("after", sa.JSON),
        sa.column("detail", sa.Text), sa.column("prev_hash", sa.String), sa.column("hash", sa.String))
    rows = bind.execute(sa.select(events).order_by(events.c.id)).mappings().all()
    if not rows:
        return
    postgres = bind.dialect.name == "postgresql"
    if postgres:
        op.execute("ALTER TABLE audit_events DISABLE TRIGGER audit_events_append_only")
    else:
        op.execute("DROP TRIGGER IF EXISTS audit_events_no_update")
    previous = GENESIS
    for row in rows:
        digest = event_hash(previous, row)
        bind.execute(events.update().where(events.c.id == row["id"])
                     .values(prev_hash=previous, hash=digest))
        previous = digest
    if postgres:
        op.execute("ALTER TABLE audit_events ENABLE TRIGGER audit_events_append_only")
    else:
        op.execute("""
            CREATE TRIGGER audit_events_no_update BEFORE UPDATE ON audit_events
            BEGIN SELECT RAISE(ABORT, 'audit_events is append-only'); END
        """)


def downgrade():
    op.drop_table("installation")
    postgres = op.get_bind().dialect.name == "postgresql"
    if postgres:
        op.execute("DROP TRIGGER IF EXISTS audit_events_no_truncate ON audit_events")
        op.drop_column("audit_events", "hash")
        op.drop_column("audit_events", "prev_hash")
    else:
        # SQLite drops a column by copying the table, which loses the append-only triggers.
        with op.batch_alter_table("audit_events") as batch:
            batch.drop_column("hash")
            batch.drop_column("prev_hash")
        for verb in ("UPDATE", "DELETE"):
            op.execute(f"""
                CREATE TRIGGER IF NOT EXISTS audit_events_no_{verb.lower()} BEFORE {verb}
                ON audit_events BEGIN SELECT RAISE(ABORT, 'audit_events is append-only'); END
            """)
    with op.batch_alter_table("deployments") as batch:
        batch.drop_column("process_host")
        batch.drop_column("process_group")
    with op.batch_alter_table("environments") as batch:
        batch.drop_column("unknown_since")
        batch.drop_column("unknown_reason")
    with op.batch_alter_table("projects") as batch:
        batch.drop_column("remote_credentials_env")
    with op.batch_alter_table("users") as batch:
        batch.drop_column("session_version")
