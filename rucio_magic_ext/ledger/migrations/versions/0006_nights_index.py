"""An index of each RSE's files by night and appearance: the scanner asks every cycle which nights have finished,
and with it finds the nights one by one and each one's last file in one step, whatever the ledger holds.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-01
"""

from alembic import context, op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

INDEX = "magic_ledger_files_rse_night_seen_at_idx"


def upgrade() -> None:
    op.create_index(
        INDEX, "magic_ledger_files", ["rse", "night", "seen_at"], schema=context.config.attributes.get("schema")
    )


def downgrade() -> None:
    op.drop_index(INDEX, "magic_ledger_files", schema=context.config.attributes.get("schema"))
