"""SQLAlchemy 2.0 typed models: persistence only, no rules."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from flask_login import UserMixin
from sqlalchemy import (
    JSON,
    Boolean,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from .domain.pipeline import Role
from .extensions import db

ROLES = tuple(role.value for role in Role)  # lowest first; the one list is the domain's Role
ACTIVE_DEPLOY_STATES = ("queued", "running")


def utcnow() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(db.TypeDecorator):  # type: ignore[name-defined]
    """Timezone-aware UTC datetimes on SQLite (which drops tzinfo) and PostgreSQL alike."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is not None and value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return value.astimezone(UTC) if value is not None else None

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is not None and value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return value


class User(UserMixin, db.Model):  # type: ignore[name-defined]
    __tablename__ = "users"

    id: Mapped[int] = mapped_column(primary_key=True)
    username: Mapped[str] = mapped_column(String(64), unique=True)
    display_name: Mapped[str] = mapped_column(String(120), default="")
    email: Mapped[str] = mapped_column(String(200), default="")
    password_hash: Mapped[str] = mapped_column(String(255))
    role: Mapped[str] = mapped_column(String(16), default=Role.VIEWER.value)
    slack_user_id: Mapped[str | None] = mapped_column(String(64), unique=True, nullable=True)
    is_demo: Mapped[bool] = mapped_column(Boolean, default=False)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    # Part of the session and remember cookies: rotating it (logout, a password change, "sign out
    # everywhere") ends every session of this user at once.
    session_version: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    tokens: Mapped[list[ApiToken]] = relationship(back_populates="user")

    @property
    def is_active(self) -> bool:  # Flask-Login
        return self.active

    @property
    def name(self) -> str:
        return self.display_name or self.username

    def __repr__(self) -> str:
        return f"<User {self.username} {self.role}>"


class ApiToken(db.Model):  # type: ignore[name-defined]
    __tablename__ = "api_tokens"

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    name: Mapped[str] = mapped_column(String(120), default="")
    # SHA-256 of the token; the token itself is shown once and never stored.
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    prefix: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)

    user: Mapped[User] = relationship(back_populates="tokens")


class Project(db.Model):  # type: ignore[name-defined]
    __tablename__ = "projects"

    id: Mapped[int] = mapped_column(primary_key=True)
    key: Mapped[str] = mapped_column(String(64), unique=True)
    name: Mapped[str] = mapped_column(String(120))
    remote_url: Mapped[str] = mapped_column(String(1000))
    # The name of the environment variable holding the remote's credentials, never their value.
    remote_credentials_env: Mapped[str | None] = mapped_column(String(128), nullable=True)
    main_branch: Mapped[str] = mapped_column(String(200), default="main")
    tag_template: Mapped[str] = mapped_column(String(100), default="v{version}")
    release_branch_template: Mapped[str] = mapped_column(
        String(100), default="release/{major}.{minor}"
    )
    baseline_version: Mapped[str] = mapped_column(String(50), default="0.1.0")
    issue_key_pattern: Mapped[str] = mapped_column(String(200), default=r"[A-Z][A-Z0-9]+-\d+")
    issue_url_template: Mapped[str] = mapped_column(String(500), default="")
    ignore_tags: Mapped[list[str]] = mapped_column(JSON, default=list)
    # None: the built-in legacy forms (v1.2.3, 1.2, release-1.4, ...); a list replaces them.
    legacy_tags: Mapped[list[str] | None] = mapped_column(JSON, nullable=True, default=None)
    pr_url_template: Mapped[str] = mapped_column(String(500), default="", server_default="")
    timezone: Mapped[str] = mapped_column(String(64), default="UTC")
    train_cron: Mapped[str | None] = mapped_column(String(100), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    environments: Mapped[list[Environment]] = relationship(
        back_populates="project", order_by="Environment.position"
    )
    teams: Mapped[list[Team]] = relationship(back_populates="project", order_by="Team.name")
    releases: Mapped[list[Release]] = relationship(back_populates="project")


class Team(db.Model):  # type: ignore[name-defined]
    __tablename__ = "teams"
    __table_args__ = (UniqueConstraint("project_id", "name"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id"))
    name: Mapped[str] = mapped_column(String(64))
    paths: Mapped[list[str]] = mapped_column(JSON, default=list)

    project: Mapped[Project] = relationship(back_populates="teams")


class Environment(db.Model):  # type: ignore[name-defined]
    __tablename__ = "environments"
    __table_args__ = (UniqueConstraint("project_id", "name"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id"))
    name: Mapped[str] = mapped_column(String(64))
    position: Mapped[int] = mapped_column(Integer)
    requires_go_from: Mapped[str | None] = mapped_column(String(64), nullable=True)
    deploy_roles: Mapped[list[str]] = mapped_column(JSON, default=list)
    decide_roles: Mapped[list[str]] = mapped_column(JSON, default=list)
    separation_of_duties: Mapped[bool] = mapped_column(Boolean, default=False)
    driver: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    version_url: Mapped[str | None] = mapped_column(String(1000), nullable=True)
    locked: Mapped[bool] = mapped_column(Boolean, default=False)
    lock_reason: Mapped[str | None] = mapped_column(String(500), nullable=True)
    frozen: Mapped[bool] = mapped_column(Boolean, default=False)
    freeze_reason: Mapped[str | None] = mapped_column(String(500), nullable=True)
    observed_version: Mapped[str | None] = mapped_column(String(100), nullable=True)
    observed_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    observed_error: Mapped[str | None] = mapped_column(String(500), nullable=True)
    # Set when a deploy here was abandoned (nobody knows what runs); cleared by a verification or
    # a successful deploy.
    unknown_reason: Mapped[str | None] = mapped_column(String(500), nullable=True)
    unknown_since: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)

    project: Mapped[Project] = relationship(back_populates="environments")


class Release(db.Model):  # type: ignore[name-defined]
    __tablename__ = "releases"
    __table_args__ = (
        UniqueConstraint("project_id", "version"),
        UniqueConstraint("project_id", "tag"),
        # A project's releases in version order (board, "Compare with", a line's releases: its
        # prefix (project_id, major, minor) is the line), and newest cut first (the train window).
        Index("ix_releases_version_order", "project_id", "major", "minor", "patch"),
        Index("ix_releases_project_created", "project_id", "created_at", "id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id"))
    version: Mapped[str] = mapped_column(String(100))
    major: Mapped[int] = mapped_column(Integer)
    minor: Mapped[int] = mapped_column(Integer)
    patch: Mapped[int] = mapped_column(Integer)
    kind: Mapped[str] = mapped_column(String(16))  # major | minor | hotfix
    source: Mapped[str] = mapped_column(String(16), default="cut")  # cut | adopted
    tag: Mapped[str] = mapped_column(String(200))
    sha: Mapped[str | None] = mapped_column(String(40), nullable=True)
    # pending (its tag job has not finished) | tagged | failed
    state: Mapped[str] = mapped_column(String(16), default="pending")
    follows_id: Mapped[int | None] = mapped_column(ForeignKey("releases.id"), nullable=True)
    base_id: Mapped[int | None] = mapped_column(ForeignKey("releases.id"), nullable=True)
    reason: Mapped[str | None] = mapped_column(Text, nullable=True)
    details: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    tagged_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)

    project: Mapped[Project] = relationship(back_populates="releases")
    follows: Mapped[Release | None] = relationship(remote_side=[id], foreign_keys=[follows_id])
    base: Mapped[Release | None] = relationship(remote_side=[id], foreign_keys=[base_id])
    created_by: Mapped[User | None] = relationship()
    deployments: Mapped[list[Deployment]] = relationship(
        back_populates="release", order_by="Deployment.id"
    )
    decisions: Mapped[list[Decision]] = relationship(
        back_populates="release", order_by="Decision.id"
    )


class Job(db.Model):  # type: ignore[name-defined]
    """One background run; the database row is the record, Redis only carries it."""

    __tablename__ = "jobs"
    __table_args__ = (
        # A release's jobs (release page, retry), and the queued jobs the relay and the queue
        # depth read, oldest first (issue 10: indexes for the queries that exist).
        Index("ix_jobs_release_id", "release_id", "id"),
        Index("ix_jobs_status_id", "status", "id"),
        # /metrics: jobs by kind and status at every scrape, counted from the index alone.
        Index("ix_jobs_kind_status", "kind", "status"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[str] = mapped_column(String(32))  # tag_release | hotfix | deploy | ...
    # queued | running | succeeded | failed | cancelled
    status: Mapped[str] = mapped_column(String(16), default="queued")
    project_id: Mapped[int | None] = mapped_column(ForeignKey("projects.id"), nullable=True)
    release_id: Mapped[int | None] = mapped_column(ForeignKey("releases.id"), nullable=True)
    requested_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"), nullable=True)
    payload: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    attempt: Mapped[int] = mapped_column(Integer, default=0)
    # Outbox: NULL until the relay has handed the job to Redis.
    enqueued_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)

    release: Mapped[Release | None] = relationship()
    requested_by: Mapped[User | None] = relationship()

    @property
    def rq_id(self) -> str:
        """The RQ job id: `relapp-<installation uid>-<kind>-<id>`, so two installations sharing
        one Redis never take each other's ids."""
        return rq_job_id(f"{self.kind}-{self.id}")


def rq_job_id(name: str) -> str:
    """An RQ job id of this installation: `relapp-<installation uid>-<name>` (job rows, drift
    checks, train slots), so installations sharing one Redis never take each other's ids."""
    return f"relapp-{installation_uid()}-{name}"


def installation_uid() -> str:
    """This installation's uid (the prefix of its RQ job ids and live-log keys in Redis).

    Read once per app (in the caller's transaction: on SQLite a second connection would wait for
    the write lock the caller may hold) and kept in app.extensions. The migration makes the row;
    a database that lost it (emptied by hand, restored in part) gets a new one, once."""
    import secrets

    from flask import current_app
    from sqlalchemy.exc import IntegrityError

    app = current_app._get_current_object()  # type: ignore[attr-defined]
    uid: str | None = app.extensions.get("relapp.installation_uid")
    query = db.select(Installation.uid).order_by(Installation.id).limit(1)
    if uid is None:
        if db.session().in_transaction():
            uid = db.session.scalar(query)
        else:  # a read begun here must not stay open in the caller's session (and flush nothing)
            with db.engine.connect() as conn:
                uid = conn.scalar(query)
        if not uid:
            try:
                with db.engine.begin() as conn:
                    conn.execute(db.insert(Installation).values(id=1, uid=secrets.token_hex(4)))
            except IntegrityError:
                pass  # another process made it first: use theirs
            with db.engine.connect() as conn:
                uid = conn.scalar(query)
        app.extensions["relapp.installation_uid"] = uid
    assert uid is not None
    return uid


class JobLogLine(db.Model):  # type: ignore[name-defined]
    __tablename__ = "job_log_lines"
    __table_args__ = (UniqueConstraint("job_id", "seq"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    job_id: Mapped[int] = mapped_column(ForeignKey("jobs.id"), index=True)
    seq: Mapped[int] = mapped_column(Integer)
    at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    line: Mapped[str] = mapped_column(Text)


class Deployment(db.Model):  # type: ignore[name-defined]
    __tablename__ = "deployments"
    __table_args__ = (
        # At most one queued-or-running deployment per environment, enforced by the database.
        Index(
            "uq_deployments_active_env",
            "environment_id",
            unique=True,
            sqlite_where=text("status IN ('queued', 'running')"),
            postgresql_where=text("status IN ('queued', 'running')"),
        ),
        # What runs in an environment (its latest successful deployment), read top-1 by index.
        Index("ix_deployments_env_status_id", "environment_id", "status", "id"),
        # An environment's deploys finished in a date range (the train page's weeks).
        Index("ix_deployments_env_status_finished", "environment_id", "status", "finished_at"),
        # A job's deployment (the job page and its live stream).
        Index("ix_deployments_job_id", "job_id", "id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    release_id: Mapped[int] = mapped_column(ForeignKey("releases.id"), index=True)
    environment_id: Mapped[int] = mapped_column(ForeignKey("environments.id"), index=True)
    # queued | running | succeeded | failed | cancelled
    status: Mapped[str] = mapped_column(String(16), default="queued")
    job_id: Mapped[int | None] = mapped_column(ForeignKey("jobs.id"), nullable=True)
    requested_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"), nullable=True)
    rollback_reason: Mapped[str | None] = mapped_column(Text, nullable=True)
    freeze_reason: Mapped[str | None] = mapped_column(Text, nullable=True)
    previous_version: Mapped[str | None] = mapped_column(String(100), nullable=True)
    # Fencing token: each run bumps it; writes from an older attempt are rejected.
    attempt: Mapped[int] = mapped_column(Integer, default=0)
    lease_until: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    # Set when the driver hands off (webhook/manual) and waits for a report.
    waiting_until: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    # A cancel of a running deploy is a database flag its job polls: it works even when Redis
    # lost the worker's stop command, and the job stops its own process group before letting go.
    cancel_requested_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    # The deploy command's process group and host, so the reaper can stop what it started.
    process_group: Mapped[int | None] = mapped_column(Integer, nullable=True)
    process_host: Mapped[str | None] = mapped_column(String(255), nullable=True)
    message: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)

    release: Mapped[Release] = relationship(back_populates="deployments")
    environment: Mapped[Environment] = relationship()
    job: Mapped[Job | None] = relationship()
    requested_by: Mapped[User | None] = relationship()


class Decision(db.Model):  # type: ignore[name-defined]
    __tablename__ = "decisions"

    id: Mapped[int] = mapped_column(primary_key=True)
    release_id: Mapped[int] = mapped_column(ForeignKey("releases.id"), index=True)
    environment_id: Mapped[int] = mapped_column(ForeignKey("environments.id"))
    decision: Mapped[str] = mapped_column(String(8))  # go | no-go
    comment: Mapped[str] = mapped_column(Text, default="")
    bugs: Mapped[list[str]] = mapped_column(JSON, default=list)
    by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    release: Mapped[Release] = relationship(back_populates="decisions")
    environment: Mapped[Environment] = relationship()
    by: Mapped[User | None] = relationship()


class AuditEvent(db.Model):  # type: ignore[name-defined]
    """Append-only: the database refuses UPDATE and DELETE on this table (see the migration)."""

    __tablename__ = "audit_events"
    __table_args__ = (
        # The audit page's filters, newest first, each on an index (keyset pages on id), and the
        # drift state (the latest environment.drift event of one environment), read top-1.
        Index("ix_audit_events_action_id", "action", "id"),
        Index("ix_audit_events_actor_id", "actor", "id"),
        Index("ix_audit_events_project_id_id", "project_id", "id"),
        Index("ix_audit_events_action_target_id", "action", "target", "id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)
    actor_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"), nullable=True)
    actor: Mapped[str] = mapped_column(String(64))
    action: Mapped[str] = mapped_column(String(64), index=True)
    project_id: Mapped[int | None] = mapped_column(ForeignKey("projects.id"), nullable=True)
    target: Mapped[str] = mapped_column(String(200), default="")
    before: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    after: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    detail: Mapped[str] = mapped_column(Text, default="")
    # The hash chain (relapp.domain.auditchain): the previous event's hash and this one's.
    prev_hash: Mapped[str | None] = mapped_column(String(64), nullable=True)
    hash: Mapped[str | None] = mapped_column(String(64), nullable=True)


class Installation(db.Model):  # type: ignore[name-defined]
    """One row: this installation's id (the prefix of its RQ job ids)."""

    __tablename__ = "installation"

    id: Mapped[int] = mapped_column(primary_key=True)
    uid: Mapped[str] = mapped_column(String(32))


class IdempotencyKey(db.Model):  # type: ignore[name-defined]
    """The first response to a POST with an Idempotency-Key, replayed for a retry."""

    __tablename__ = "idempotency_keys"
    __table_args__ = (UniqueConstraint("user_id", "key"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    key: Mapped[str] = mapped_column(String(200))
    request_hash: Mapped[str] = mapped_column(String(64))
    status: Mapped[int] = mapped_column(Integer)
    body: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class TrainRun(db.Model):  # type: ignore[name-defined]
    """One slot of a project's release train; unique per slot, so it runs once however many
    workers and schedulers see it."""

    __tablename__ = "train_runs"
    __table_args__ = (UniqueConstraint("project_id", "slot"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id"))
    slot: Mapped[datetime] = mapped_column(UTCDateTime)
    outcome: Mapped[str] = mapped_column(String(32))  # running | tagging | cut | skipped | failed
    detail: Mapped[str] = mapped_column(Text, default="")
    release_id: Mapped[int | None] = mapped_column(ForeignKey("releases.id"), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
