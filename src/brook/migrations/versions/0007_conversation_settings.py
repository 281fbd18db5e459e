"""A conversation's model, system prompt and temperature, and who wrote its title.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-06
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Plain ADD/DROP COLUMN, which SQLite does in place: a batch that copied the table would
# drop the search triggers (0005) on it.


def upgrade() -> None:
    op.add_column("conversations", sa.Column("model", sa.String(length=100), nullable=True))
    op.add_column("conversations", sa.Column("system_prompt", sa.Text(), nullable=True))
    op.add_column("conversations", sa.Column("temperature", sa.Float(), nullable=True))
    # The titles already there are kept as they are: as if their users had written them.
    op.add_column("conversations", sa.Column("title_source", sa.String(length=16),
                                             nullable=False, server_default="user"))


def downgrade() -> None:
    op.drop_column("conversations", "title_source")
    op.drop_column("conversations", "temperature")
    op.drop_column("conversations", "system_prompt")
    op.drop_column("conversations", "model")
