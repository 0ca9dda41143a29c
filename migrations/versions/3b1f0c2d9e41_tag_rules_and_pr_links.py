"""per-project legacy tag rules and a PR link template

Revision ID: 3b1f0c2d9e41
Revises: 6774566c7fdb
Create Date: 2026-12-01 16:40:00

"""
import sqlalchemy as sa
from alembic import op

revision = "3b1f0c2d9e41"
down_revision = "6774566c7fdb"
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table("projects") as batch:
        batch.add_column(sa.Column("legacy_tags", sa.JSON(), nullable=True))
        batch.add_column(sa.Column("pr_url_template", sa.String(length=500), nullable=False, server_default=""))


def downgrade():
    with op.batch_alter_table("projects") as batch:
        batch.drop_column("pr_url_template")
        batch.drop_column("legacy_tags")
