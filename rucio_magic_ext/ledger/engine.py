"""Where the ledger lives and how to reach it: Rucio's database by default, or ``[magic-ledger] url``."""

from __future__ import annotations

import time
from pathlib import Path

from alembic import command
from alembic.config import Config as AlembicConfig
from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine.interfaces import DBAPIConnection
from sqlalchemy.exc import DBAPIError
from sqlalchemy.pool import ConnectionPoolEntry

MIGRATIONS = Path(__file__).with_name("migrations")


def configured_url_and_schema() -> tuple[str, str | None]:
    """``[magic-ledger] url``/``schema`` in rucio.cfg, else Rucio's own ``[database] default``/``schema``."""
    from rucio.common.config import config_get

    url = config_get("magic-ledger", "url", raise_exception=False, default=None)
    if url:
        return url, config_get("magic-ledger", "schema", raise_exception=False, default=None)
    return (
        config_get("database", "default", check_config_table=False),
        config_get("database", "schema", raise_exception=False, default=None, check_config_table=False),
    )


def make_engine(url: str, schema: str | None = None) -> Engine:
    engine = create_engine(url, pool_pre_ping=True)
    if engine.dialect.name == "sqlite":
        event.listen(engine, "connect", _sqlite_pragmas)
    if schema:
        engine = engine.execution_options(schema_translate_map={None: schema})
    return engine


def _sqlite_pragmas(connection: DBAPIConnection, _record: ConnectionPoolEntry) -> None:
    # Several daemons share one SQLite file in the embedded default: wait for the lock, don't fail.
    cursor = connection.cursor()
    cursor.execute("PRAGMA busy_timeout = 30000")
    cursor.execute("PRAGMA foreign_keys = ON")
    cursor.close()


def upgrade(engine: Engine, schema: str | None = None, revision: str = "head", attempts: int = 5) -> None:
    """Bring the ledger's tables to ``revision`` (idempotent). Of daemons migrating at the same moment, the one that
    loses the race finds the work done when it tries again."""
    config = AlembicConfig()
    config.set_main_option("script_location", str(MIGRATIONS))
    for attempt in range(attempts):
        try:
            with engine.begin() as connection:
                config.attributes["connection"] = connection
                config.attributes["schema"] = schema
                command.upgrade(config, revision)
            return
        except DBAPIError:
            if attempt == attempts - 1:
                raise
            time.sleep(0.5 * (attempt + 1))

