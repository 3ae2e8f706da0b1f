"""documents: an index for the history sorted by file name

History pages are keyset-paginated on (sort key, id) within one owner; sorted by name, PostgreSQL had to sort
every document of the owner for each page (80 ms at 50,000 documents). This index serves the order directly.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-28 20:45:00
"""

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_documents_owner_id_filename_id", "documents", ["owner_id", "filename", "id"])


def downgrade() -> None:
    op.drop_index("ix_documents_owner_id_filename_id", table_name="documents")
