"""Carrier batches, and the nights whose datasets were closed.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "magic_ledger_carriers",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False),
        sa.Column("rse", sa.String(255), nullable=False),
        sa.Column("scope", sa.String(25), nullable=False),
        sa.Column("name", sa.String(250), nullable=False),
        sa.Column("policy", sa.String(1024), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("files", sa.Integer(), nullable=False),
        sa.Column("bytes", sa.BigInteger(), nullable=False),
        sa.Column("source_rule", sa.String(32)),
        sa.Column("destination_rules", sa.Text()),
        sa.Column("detail", sa.Text()),
        sa.Column("opened_at", sa.DateTime(), nullable=False),
        sa.Column("closed_at", sa.DateTime()),
        sa.Column("released_at", sa.DateTime()),
        sa.Column("gone_at", sa.DateTime()),
        sa.PrimaryKeyConstraint("id", name="magic_ledger_carriers_pk"),
    )
    op.create_index("magic_ledger_carriers_scope_name_idx", "magic_ledger_carriers", ["scope", "name"], unique=True)
    op.create_index("magic_ledger_carriers_rse_state_idx", "magic_ledger_carriers", ["rse", "state"])

    op.create_table(
        "magic_ledger_nights",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False),
        sa.Column("rse", sa.String(255), nullable=False),
        sa.Column("night", sa.Date(), nullable=False),
        sa.Column("datasets", sa.Integer(), nullable=False),
        sa.Column("closed_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="magic_ledger_nights_pk"),
    )
    op.create_index("magic_ledger_nights_rse_night_idx", "magic_ledger_nights", ["rse", "night"], unique=True)


def downgrade() -> None:
    op.drop_table("magic_ledger_nights")
    op.drop_table("magic_ledger_carriers")
