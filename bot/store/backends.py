"""Which database a `SEEDANCE_DATABASE_URL` (or a SQLite path) opens."""

from __future__ import annotations

from pathlib import Path

from bot.store.database import Database
from bot.store.postgres import PostgresDatabase
from bot.store.sqlite import SqliteDatabase


async def open_database(url_or_path: str | Path) -> Database:
    """A `postgresql://` URL opens PostgreSQL; anything else is a SQLite file's path."""
    text = str(url_or_path)
    if text.startswith(("postgresql://", "postgres://")):
        return await PostgresDatabase.connect(text)
    return SqliteDatabase(Path(text))
