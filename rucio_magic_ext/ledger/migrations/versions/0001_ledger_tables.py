"""The ledger's tables: files, their events, and listed folders.

Revision ID: 0001
Revises:
Create Date: 2026-11-23
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
TIMESTAMPS = (
    "seen",
    "stable",
    "checksummed",
    "registered",
    "protected",
    "replicated",
    "verified",
    "released",
    "deleted",
    "rejected",
    "quarantined",
)


def upgrade() -> None:
    op.create_table(
        "magic_ledger_files",
        sa.Column("id", BIG_ID, autoincrement=True, nullable=False),
        sa.Column("rse", sa.String(255), nullable=False),
        sa.Column("path", sa.String(1024), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("mtime", sa.Float(), nullable=False),
        sa.Column("adler32", sa.String(8)),
        sa.Column("md5", sa.String(32)),
        sa.Column("scope", sa.String(25)),
        sa.Column("name", sa.String(250)),
        sa.Column("night", sa.Date()),
        sa.Column("level", sa.String(16)),
        sa.Column("carrier", sa.String(250)),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("last_error", sa.Text()),
        sa.Column("retry_after", sa.DateTime()),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        *(sa.Column(f"{state}_at", sa.DateTime()) for state in TIMESTAMPS),
        sa.PrimaryKeyConstraint("id", name="magic_ledger_files_pk"),
    )
    op.create_index("magic_ledger_files_rse_path_idx", "magic_ledger_files", ["rse", "path"], unique=True)
    op.create_index(
        "magic_ledger_files_rse_state_retry_after_idx", "magic_ledger_files", ["rse", "state", "retry_after"]
    )
    op.create_index("magic_ledger_files_scope_name_idx", "magic_ledger_files", ["scope", "name"])
    op.create_index("magic_ledger_files_carrier_idx", "magic_ledger_files", ["carrier"])
    op.create_index("magic_ledger_files_night_state_idx", "magic_ledger_files", ["night", "state"])

    op.create_table(
        "magic_ledger_events",
        sa.Column("id", BIG_ID, autoincrement=True, nullable=False),
        sa.Column("file_id", BIG_ID, nullable=False),
        sa.Column("at", sa.DateTime(), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("actor", sa.String(64), nullable=False),
        sa.Column("detail", sa.Text()),
        sa.ForeignKeyConstraint(
            ["file_id"], ["magic_ledger_files.id"], name="magic_ledger_events_file_id_fk", ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name="magic_ledger_events_pk"),
    )
    op.create_index("magic_ledger_events_file_id_at_idx", "magic_ledger_events", ["file_id", "at"])
    op.create_index("magic_ledger_events_at_idx", "magic_ledger_events", ["at"])

    op.create_table(
        "magic_ledger_folders",
        sa.Column("id", BIG_ID, autoincrement=True, nullable=False),
        sa.Column("rse", sa.String(255), nullable=False),
        sa.Column("path", sa.String(1024), nullable=False),
        sa.Column("mtime", sa.Float(), nullable=False),
        sa.Column("listed_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="magic_ledger_folders_pk"),
    )
    op.create_index("magic_ledger_folders_rse_path_idx", "magic_ledger_folders", ["rse", "path"], unique=True)


def downgrade() -> None:
    op.drop_table("magic_ledger_folders")
    op.drop_table("magic_ledger_events")
    op.drop_table("magic_ledger_files")
