"""Scores of language data: response tokens per sample, unscored counts.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-28
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("score_sets") as batch:
        batch.add_column(sa.Column("tokens", sa.LargeBinary(), nullable=True))
        batch.add_column(sa.Column("unscored", sa.Integer(), nullable=False, server_default="0"))
    with op.batch_alter_table("selections") as batch:
        batch.add_column(sa.Column("excluded", sa.Integer(), nullable=False, server_default="0"))
    with op.batch_alter_table("jobs") as batch:
        batch.add_column(sa.Column("unscored", sa.Integer(), nullable=False, server_default="0"))


def downgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.drop_column("unscored")
    with op.batch_alter_table("selections") as batch:
        batch.drop_column("excluded")
    with op.batch_alter_table("score_sets") as batch:
        batch.drop_column("unscored")
        batch.drop_column("tokens")
