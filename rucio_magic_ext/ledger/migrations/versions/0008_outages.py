"""The services a daemon finds not answering (a source RSE's storage, its credentials), while they do not.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-07
"""

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "magic_ledger_outages",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False),
        sa.Column("rse", sa.String(255), nullable=False),
        sa.Column("service", sa.String(32), nullable=False),
        sa.Column("since", sa.DateTime(), nullable=False),
        sa.Column("seen_at", sa.DateTime(), nullable=False),
        sa.Column("why", sa.Text()),
        sa.PrimaryKeyConstraint("id", name="magic_ledger_outages_pk"),
    )
    op.create_index("magic_ledger_outages_rse_service_idx", "magic_ledger_outages", ["rse", "service"], unique=True)


def downgrade() -> None:
    op.drop_table("magic_ledger_outages")
