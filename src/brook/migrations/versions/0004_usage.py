"""Usage per owner and day, for the per-owner limits and the deployment's daily budget.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-05
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "usage",
        sa.Column("owner", sa.String(length=200), primary_key=True),
        sa.Column("day", sa.Date(), primary_key=True),
        sa.Column("answers", sa.Integer(), nullable=False),
        sa.Column("tokens", sa.BigInteger(), nullable=False),
        sa.Column("conversations", sa.Integer(), nullable=False),
        sa.Column("minute", sa.DateTime(timezone=True), nullable=True),
        sa.Column("minute_answers", sa.Integer(), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("usage")
