"""What a file's own headers say (a DL3 file's FITS headers), kept from the checksum pass to registration.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-01
"""

import sqlalchemy as sa
from alembic import context, op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # ALTER TABLE is not rewritten by the engine's schema_translate_map: name the schema.
    schema = context.config.attributes.get("schema")
    op.add_column("magic_ledger_files", sa.Column("header_metadata", sa.JSON()), schema=schema)


def downgrade() -> None:
    with op.batch_alter_table("magic_ledger_files", schema=context.config.attributes.get("schema")) as batch:
        batch.drop_column("header_metadata")
