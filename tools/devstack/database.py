"""The stack's database: create it (PostgreSQL role and database), build Rucio's schema in it, drop it.

PostgreSQL is administered as the ``postgres`` role over TCP on loopback (trust auth, as `.ci/run` sets up).
The schema itself is built by ``schema.py`` in a child process, because Rucio reads its config (and so the
database URL) once per process.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

from .config import Settings

SCHEMA_SCRIPT = Path(__file__).with_name("schema.py")


class DatabaseUnavailable(RuntimeError):
    """PostgreSQL cannot be reached as its admin role."""


def _admin_connect(settings: Settings) -> Any:
    import psycopg

    try:
        return psycopg.connect(host=settings.pg_host, port=settings.pg_port, user="postgres",
                               dbname="postgres", autocommit=True, connect_timeout=5)
    except psycopg.OperationalError as error:
        raise DatabaseUnavailable(
            f"PostgreSQL is not reachable as role 'postgres' at {settings.pg_host}:{settings.pg_port} "
            f"({str(error).strip()}). Start it and allow trust auth on loopback, as .ci/run does.") from error


def check_postgresql(settings: Settings) -> None:
    """Raise DatabaseUnavailable with a clear message if the admin connection fails."""
    _admin_connect(settings).close()


def create(settings: Settings) -> None:
    """Create the role and the database of a PostgreSQL stack if missing (nothing to do for SQLite)."""
    if settings.db != "postgresql":
        return
    from psycopg import sql

    with _admin_connect(settings) as conn:
        if not conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (settings.pg_user,)).fetchone():
            conn.execute(sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(
                sql.Identifier(settings.pg_user), sql.Literal(settings.pg_password)))
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (settings.pg_database,)).fetchone():
            conn.execute(sql.SQL("CREATE DATABASE {} OWNER {}").format(
                sql.Identifier(settings.pg_database), sql.Identifier(settings.pg_user)))


def drop(settings: Settings) -> None:
    """Drop a PostgreSQL stack's database, closing its remaining connections (SQLite: the file goes with state)."""
    if settings.db != "postgresql":
        return
    from psycopg import sql

    with _admin_connect(settings) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(settings.pg_database)))


def build_schema(settings: Settings, env: dict[str, str]) -> None:
    """Build Rucio's tables, the base VO and the root account unless they exist (idempotent).

    Its output goes to ``<state>/log/database.log``; a failure raises with the end of that output."""
    settings.log_dir.mkdir(parents=True, exist_ok=True)
    result = subprocess.run([sys.executable, str(SCHEMA_SCRIPT)], env=env, capture_output=True, text=True)
    (settings.log_dir / "database.log").write_text(result.stdout + result.stderr)
    if result.returncode != 0:
        raise subprocess.CalledProcessError(result.returncode, result.args, result.stdout, result.stderr[-3000:])
