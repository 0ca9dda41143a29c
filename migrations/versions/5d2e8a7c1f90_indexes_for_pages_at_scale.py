"""indexes for the queries the pages run at scale (issue 10)

- jobs (release_id, id): a release's jobs; jobs.release_id had no index.
- jobs (status, id): the queued jobs the outbox relay and the queue depth read, oldest first.
- deployments (environment_id, status, id): what runs in an environment (its latest successful
  deployment), top-1 by index for the environments page, the board and the drift check.
- audit_events (action, id), (actor, id), (project_id, id): the audit page's filters, newest
  first, keyset-paginated on id; (action, id) also lists the known actions by skipping through
  the index (no DISTINCT scan).
- audit_events (action, target, id): an environment's latest drift event, top-1.
- releases (project_id, major, minor, patch): a project's releases in version order (the board,
  the release page's "Compare with" neighbours); it replaces ix_releases_line (project_id, major,
  minor), its prefix.
- releases (project_id, created_at, id): the train page's window, newest cut first.
- deployments (environment_id, status, finished_at): the train page's deploys per week.
- deployments (job_id, id): a job's deployment, for the job page and its live stream.
- jobs (kind, status): /metrics counts jobs by kind and status at every scrape, from the index
  alone (an index-only scan instead of reading every row).

Revision ID: 5d2e8a7c1f90
Revises: c884c051650f
Create Date: 2026-12-01 23:40:00

"""
from alembic import op

revision = "5d2e8a7c1f90"
down_revision = "c884c051650f"
branch_labels = None
depends_on = None

INDEXES = (
    ("ix_jobs_release_id", "jobs", ["release_id", "id"]),
    ("ix_jobs_status_id", "jobs", ["status", "id"]),
    ("ix_deployments_env_status_id", "deployments", ["environment_id", "status", "id"]),
    ("ix_audit_events_action_id", "audit_events", ["action", "id"]),
    ("ix_audit_events_actor_id", "audit_events", ["actor", "id"]),
    ("ix_audit_events_project_id_id", "audit_events", ["project_id", "id"]),
    ("ix_audit_events_action_target_id", "audit_events", ["action", "target", "id"]),
    ("ix_releases_version_order", "releases", ["project_id", "major", "minor", "patch"]),
    ("ix_releases_project_created", "releases", ["project_id", "created_at", "id"]),
    ("ix_deployments_env_status_finished", "deployments", ["environment_id", "status", "finished_at"]),
    ("ix_deployments_job_id", "deployments", ["job_id", "id"]),
    ("ix_jobs_kind_status", "jobs", ["kind", "status"]),
)


def upgrade():
    # Plain CREATE INDEX (no batch copy): a copied audit_events would lose its append-only triggers.
    for name, table, columns in INDEXES:
        op.create_index(name, table, columns)
    op.drop_index("ix_releases_line", table_name="releases")


def downgrade():
    op.create_index("ix_releases_line", "releases", ["project_id", "major", "minor"])
    for name, table, _columns in reversed(INDEXES):
        op.drop_index(name, table_name=table)
