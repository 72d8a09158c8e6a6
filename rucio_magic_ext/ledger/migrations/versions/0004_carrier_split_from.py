"""The carrier a file that kept failing was moved out of, on the carrier made for it.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01
"""

import sqlalchemy as sa
from alembic import context, op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # ALTER TABLE is not rewritten by the engine's schema_translate_map: name the schema.
    schema = context.config.attributes.get("schema")
    op.add_column("magic_ledger_carriers", sa.Column("split_from", sa.String(250)), schema=schema)


def downgrade() -> None:
    with op.batch_alter_table("magic_ledger_carriers", schema=context.config.attributes.get("schema")) as batch:
        batch.drop_column("split_from")
