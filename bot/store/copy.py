"""`seedance-bot migrate-db`: copy a SQLite database into an empty PostgreSQL one, once.

Both sides are opened (so migrated) by `Store.open` and must be at the same schema version.
Tables are copied in foreign-key order with their ids, all in one PostgreSQL transaction (a
failure leaves the target as empty as it was), values converted to the target column's type
(SQLite keeps whatever it was given). Identity columns and `jobs_seq` then restart past the
copied maxima, so new rows and queue places never collide with copied ones. It refuses a target
that already holds data (a copy would mix two histories) and a source a bot still runs on (a
job leased into the future: it would go on changing rows that were already copied).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, cast

from bot.store.database import masked
from bot.store.db import Store

_SKIPPED = ("schema_migrations",)  # each side records its own migrations


class CopyRefused(Exception):
    """The copy can't be made; the message (one line) says why and what to do."""


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _converter(pg_type: str) -> Callable[[Any], Any]:
    if pg_type in ("text", "character varying", "character"):
        return lambda v: v.decode() if isinstance(v, bytes) else str(v)
    if pg_type in ("integer", "bigint", "smallint"):
        return int
    if pg_type in ("double precision", "real", "numeric"):
        return float
    if pg_type == "boolean":
        return bool
    return lambda v: v


async def _sqlite_tables(source: Store) -> list[str]:
    """Every table of the source, parents before the tables that refer to them."""
    rows = await source.db.fetch(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"
        " ORDER BY name")
    names = [r["name"] for r in rows if r["name"] not in _SKIPPED]
    parents: dict[str, set[str]] = {}
    for name in names:
        refs = await source.db.fetch(f"PRAGMA foreign_key_list({_quote(name)})")
        parents[name] = {r["table"] for r in refs} & set(names) - {name}
    ordered: list[str] = []
    while len(ordered) < len(names):
        ready = [n for n in names if n not in ordered and parents[n] <= set(ordered)]
        if not ready:
            raise CopyRefused("the SQLite tables refer to each other in a circle; "
                              "migrate-db can't order them")
        ordered.extend(ready)
    return ordered


async def _target_columns(target: Store, table: str) -> dict[str, tuple[str, bool]]:
    """column → (data type, is an identity) of a PostgreSQL table; empty if it has none."""
    rows = await target.db.fetch(
        "SELECT column_name, data_type, is_identity FROM information_schema.columns"
        " WHERE table_schema = current_schema() AND table_name = ?", (table,))
    return {r["column_name"]: (r["data_type"], r["is_identity"] == "YES") for r in rows}


async def _refusal(source: Store, target: Store, tables: list[str], where: str) -> str | None:
    """Why this copy must not be made, or None."""
    versions = (await source.schema_version(), await target.schema_version())
    if versions[0] != versions[1]:
        return (f"the schema versions differ (SQLite {versions[0]}, PostgreSQL {versions[1]}); "
                "run the same seedance-bot version on both")
    running = await source.db.fetchval(
        "SELECT COUNT(*) FROM jobs WHERE lease_until > ?", (await source.db.now(),))
    if running:
        return (f"a bot is still running on the SQLite database ({running} jobs are claimed "
                "by a live process); stop every seedance-bot on it first (a bot killed "
                "without stopping holds its jobs for up to 30 s more)")
    filled: dict[str, int] = {}
    for table in tables:
        if await _target_columns(target, table):
            count = int(await target.db.fetchval(f"SELECT COUNT(*) FROM {_quote(table)}"))
            if count:
                filled[table] = count
    if filled:
        held = f"{filled.pop('jobs', 0)} jobs"
        if filled:
            held += f" and rows in {len(filled)} other tables ({', '.join(sorted(filled))})"
        return (f"PostgreSQL at {where} already holds data ({held}); migrate-db copies into an "
                "empty database only: create a new one and point --to at it")
    return None


async def copy_database(source: Store, target: Store) -> dict[str, int]:
    """Copy every table of `source` (SQLite) into `target` (PostgreSQL). Returns the rows
    copied per table. Raises `CopyRefused` (nothing written) when the copy must not be made."""
    if source.dialect != "sqlite" or target.dialect != "postgres":
        raise CopyRefused("migrate-db copies a SQLite database into PostgreSQL only")
    where = masked(getattr(target.db, "url", ""))
    tables = await _sqlite_tables(source)
    columns: dict[str, dict[str, tuple[str, bool]]] = {}
    for table in tables:
        columns[table] = await _target_columns(target, table)
        if not columns[table]:
            raise CopyRefused(f"PostgreSQL at {where} has no table {table}; run the same "
                              "seedance-bot version on both")
    refusal = await _refusal(source, target, tables, where)
    if refusal:
        raise CopyRefused(refusal)

    copied: dict[str, int] = {}
    async with target.db.transaction(lock="seedance:migrate-db") as tx:
        conn: Any = cast(Any, tx).conn  # asyncpg's: COPY is much faster than INSERTs
        for table in tables:
            info = await source.db.fetch(f"PRAGMA table_info({_quote(table)})")
            names = [r["name"] for r in info]
            missing = [n for n in names if n not in columns[table]]
            if missing:
                raise CopyRefused(f"PostgreSQL at {where} has no column {table}.{missing[0]}; "
                                  "run the same seedance-bot version on both")
            convert = [_converter(columns[table][n][0]) for n in names]
            select = ", ".join(_quote(n) for n in names)
            rows = await source.db.fetch(f"SELECT {select} FROM {_quote(table)} ORDER BY rowid")
            records = [tuple(None if v is None else c(v) for c, v in zip(convert, row,
                                                                         strict=True))
                       for row in rows]
            if records:
                await conn.copy_records_to_table(table, records=records, columns=names)
            copied[table] = len(records)
        # New rows continue after the copied ones.
        for table in tables:
            for column, (_, identity) in columns[table].items():
                if identity:
                    await tx.execute(
                        f"SELECT setval(pg_get_serial_sequence(?, ?), COALESCE(MAX("
                        f"{_quote(column)}), 0) + 1, false) FROM {_quote(table)}",
                        (_quote(table), column))
        if await tx.fetchval("SELECT to_regclass('jobs_seq') IS NOT NULL"):
            await tx.execute("SELECT setval('jobs_seq', COALESCE((SELECT MAX(seq) FROM jobs),"
                             " 0) + 1, false)")
    return copied
