"""Folders that could not be listed: the error, when, and when to try again.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-01
"""

import sqlalchemy as sa
from alembic import context, op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def _schema() -> str | None:
    # ALTER TABLE is not rewritten by the engine's schema_translate_map, unlike CREATE TABLE: name it.
    return context.config.attributes.get("schema")


def upgrade() -> None:
    # Added columns only (no change to an existing one): plain ALTER TABLE ADD on PostgreSQL and SQLite alike.
    schema = _schema()
    op.add_column(
        "magic_ledger_folders", sa.Column("attempts", sa.Integer(), nullable=False, server_default="0"), schema=schema
    )
    op.add_column("magic_ledger_folders", sa.Column("last_error", sa.Text()), schema=schema)
    op.add_column("magic_ledger_folders", sa.Column("failed_at", sa.DateTime()), schema=schema)
    op.add_column("magic_ledger_folders", sa.Column("retry_after", sa.DateTime()), schema=schema)


def downgrade() -> None:
    with op.batch_alter_table("magic_ledger_folders", schema=_schema()) as batch:
        for column in ("retry_after", "failed_at", "last_error", "attempts"):
            batch.drop_column(column)
