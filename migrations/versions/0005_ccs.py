"""Selections remember CCS's hard cutoff.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-28
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("selections") as batch:
        batch.add_column(sa.Column("hard_cutoff", sa.Float(), nullable=False, server_default="0.1"))


def downgrade() -> None:
    with op.batch_alter_table("selections") as batch:
        batch.drop_column("hard_cutoff")
