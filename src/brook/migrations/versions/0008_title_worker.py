"""The process that asked the model for a conversation's title, while it is pending.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-06
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

PENDING = sa.text("title_source = 'pending'")


def upgrade() -> None:
    # Plain ADD COLUMN, as in 0007: a batch copy of the table would drop 0005's triggers.
    op.add_column("conversations", sa.Column("title_worker", sa.String(length=200),
                                             nullable=True))
    # The sweep looks for pending titles only: a small index of those rows.
    op.create_index("ix_conversations_title_pending", "conversations", ["title_worker"],
                    sqlite_where=PENDING, postgresql_where=PENDING)


def downgrade() -> None:
    op.drop_index("ix_conversations_title_pending", table_name="conversations")
    op.drop_column("conversations", "title_worker")
