"""model_versions: the last failure to load a version's artifact

A worker that cannot load a version (missing or corrupt files, a manifest mismatch) records why and when,
so the web app can say so and the workers serve the previous good version instead of failing every
wake-up. Activating the version again clears it.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-28 20:35:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("model_versions", sa.Column("load_error", sa.Text(), nullable=True))
    op.add_column("model_versions", sa.Column("load_failed_at", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    op.drop_column("model_versions", "load_failed_at")
    op.drop_column("model_versions", "load_error")
