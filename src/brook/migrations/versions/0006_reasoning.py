"""An answer's reasoning, kept apart from its content.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-06
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


# Plain ADD/DROP COLUMN, which SQLite does in place: a batch that copied the table would
# drop the search triggers (0005) on it.


def upgrade() -> None:
    op.add_column("messages", sa.Column("reasoning", sa.Text(), nullable=False,
                                        server_default=""))


def downgrade() -> None:
    op.drop_column("messages", "reasoning")
