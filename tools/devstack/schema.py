"""Build Rucio's schema, base VO and root account in the database of ``$RUCIO_CONFIG``, unless present.

Run as a script in its own process (Rucio reads its config once per process). This is Rucio's own
``tools/bootstrap.py`` (``build_database``, ``create_base_vo``, ``create_root_account``), made idempotent.
"""

from __future__ import annotations

import sqlite3

from rucio.common.config import config_get
from rucio.common.constants import DEFAULT_VO
from rucio.common.types import InternalAccount
from rucio.core.account import account_exists
from rucio.db.sqla import models
from rucio.db.sqla.constants import DatabaseOperationType
from rucio.db.sqla.session import db_session, get_engine
from rucio.db.sqla.util import build_database, create_base_vo, create_root_account
from sqlalchemy import inspect, select


def main() -> None:
    engine = get_engine()
    schema = config_get("database", "schema", raise_exception=False, check_config_table=False) or None
    if engine.dialect.name == "sqlite":
        # WAL lets the REST server and the daemons read while one of them writes.
        with sqlite3.connect(engine.url.database or "") as conn:
            conn.execute("PRAGMA journal_mode=WAL")
    if not inspect(engine).has_table(models.AlembicVersion.__tablename__, schema):
        build_database()
    with db_session(DatabaseOperationType.READ) as session:
        has_vo = session.execute(select(models.VO).where(models.VO.vo == DEFAULT_VO)).first() is not None
        has_root = account_exists(InternalAccount("root"), session=session)
    if not has_vo:
        create_base_vo()
    if not has_root:
        create_root_account()


if __name__ == "__main__":
    main()
