"""The last cheap audit of each source RSE (counts per class), taken by the scanner's census.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-01
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "magic_ledger_audit_counts",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False),
        sa.Column("rse", sa.String(255), nullable=False),
        sa.Column("counts", sa.JSON()),
        sa.Column("taken_at", sa.DateTime()),
        sa.Column("tried_at", sa.DateTime(), nullable=False),
        sa.Column("error", sa.Text()),
        sa.PrimaryKeyConstraint("id", name="magic_ledger_audit_counts_pk"),
    )
    op.create_index("magic_ledger_audit_counts_rse_idx", "magic_ledger_audit_counts", ["rse"], unique=True)


def downgrade() -> None:
    op.drop_table("magic_ledger_audit_counts")
