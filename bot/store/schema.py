"""The schema: numbered migrations per database (bot/store/migrations/<dialect>/NNNN_name.sql,
the same numbers and names for SQLite and PostgreSQL), applied in order at open, each in its own
transaction and recorded, so several processes opening one database at once apply each exactly
once (PostgreSQL: under an advisory lock; SQLite: the file's write lock)."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

from bot.store.database import Database, Dialect, Tx

MIGRATIONS_DIR = Path(__file__).parent / "migrations"


def split_statements(script: str, dialect: Dialect = "sqlite") -> list[str]:
    """Cut a migration into statements (a script run at once would commit the transaction early).

    SQLite says itself when a statement is complete; PostgreSQL migrations end each statement
    with `;` at the end of a line (none inside literals), so they are cut there, but not inside
    a function's `$$`-quoted body.
    """
    statements, current = [], ""
    for line in script.splitlines(keepends=True):
        current += line
        done = (sqlite3.complete_statement(current) if dialect == "sqlite"
                else line.rstrip().endswith(";") and not line.lstrip().startswith("--")
                and current.count("$$") % 2 == 0)
        if done:
            if current.strip():
                statements.append(current.strip())
            current = ""
    if current.strip() and not all(
        ln.strip().startswith("--") or not ln.strip() for ln in current.splitlines()
    ):
        raise ValueError("a migration ends with an incomplete statement")
    return statements


def migrations(dialect: Dialect = "sqlite") -> list[tuple[int, str, str]]:
    """(version, name, sql) for every migration of `dialect`, in order."""
    found = []
    for path in sorted((MIGRATIONS_DIR / dialect).glob("[0-9][0-9][0-9][0-9]_*.sql")):
        found.append((int(path.name[:4]), path.stem[5:], path.read_text("utf-8")))
    return found


async def migrate(db: Database) -> None:
    """Apply what is missing, each migration in one transaction."""
    async with db.transaction(lock="seedance:schema") as tx:
        await tx.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations ("
            "version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at DOUBLE PRECISION"
            " NOT NULL)")
    for version, name, sql in migrations(db.dialect):

        async def apply(tx: Tx, version: int = version, name: str = name,
                        sql: str = sql) -> None:
            if await tx.fetchrow("SELECT 1 FROM schema_migrations WHERE version = ?",
                                 (version,)):
                return  # another process got here first
            for statement in split_statements(sql, db.dialect):
                await tx.execute(statement)
            await tx.execute(
                "INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)",
                (version, name, time.time()),
            )

        await db.atomic(apply, lock="seedance:schema")


async def schema_version(db: Database) -> int:
    return int(await db.fetchval("SELECT COALESCE(MAX(version), 0) FROM schema_migrations")
               or 0)
