"""Alembic environment of the ledger: its own version table, so it never touches Rucio's migrations."""

from alembic import context

from rucio_magic_ext.ledger.models import PREFIX, Base

VERSION_TABLE = PREFIX + "alembic_version"

connection = context.config.attributes["connection"]
context.configure(
    connection=connection,
    target_metadata=Base.metadata,
    version_table=VERSION_TABLE,
    version_table_schema=context.config.attributes.get("schema"),
    render_as_batch=connection.dialect.name == "sqlite",
)
with context.begin_transaction():
    context.run_migrations()
