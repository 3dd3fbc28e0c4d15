"""The schema: numbered migrations (bot/store/migrations/NNNN_name.sql), applied in order at
open, each in its own transaction and recorded, so several processes opening one database at
once apply each exactly once."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import aiosqlite

MIGRATIONS_DIR = Path(__file__).parent / "migrations"


async def enable_wal(conn: aiosqlite.Connection, attempts: int = 100) -> None:
    """Switch to WAL. SQLite answers "database is locked" at once, without its busy handler,
    when two connections switch a new file at the same moment, so retry briefly."""
    for attempt in range(attempts):
        try:
            await conn.execute("PRAGMA journal_mode = WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or attempt == attempts - 1:
                raise
            await asyncio.sleep(0.05)


def split_statements(script: str) -> list[str]:
    """Cut a migration into statements (executescript would commit our transaction early)."""
    statements, current = [], ""
    for line in script.splitlines(keepends=True):
        current += line
        if sqlite3.complete_statement(current):
            if current.strip():
                statements.append(current.strip())
            current = ""
    if current.strip() and not all(
        ln.strip().startswith("--") or not ln.strip() for ln in current.splitlines()
    ):
        raise ValueError("a migration ends with an incomplete statement")
    return statements


def migrations() -> list[tuple[int, str, str]]:
    """(version, name, sql) for every bot/store/migrations/NNNN_name.sql, in order."""
    found = []
    for path in sorted(MIGRATIONS_DIR.glob("[0-9][0-9][0-9][0-9]_*.sql")):
        found.append((int(path.name[:4]), path.stem[5:], path.read_text("utf-8")))
    return found
