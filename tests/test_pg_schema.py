"""The PostgreSQL migrations are twins of the SQLite ones: both sets are applied (through
`Store.open`) and their catalogs compared (tables, columns, keys, indexes), then the same
inserts run on both, which must accept and refuse alike (CHECKs, partial unique indexes,
foreign keys, defaults). And every migration file keeps the `;` rule `split_statements` needs.
"""

from __future__ import annotations

import re
import sqlite3
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import pytest

from bot.store import Store, migrations
from bot.store.database import Tx
from bot.store.schema import split_statements

DIALECTS = ("sqlite", "postgres")


class Column(NamedTuple):
    name: str
    kind: str  # "integer", "text", "real" or "bytes"
    not_null: bool
    default: str | None
    identity: bool


class Index(NamedTuple):
    table: str
    columns: tuple[str, ...]
    unique: bool
    predicate: str | None


class Catalog(NamedTuple):
    columns: dict[str, list[Column]]
    primary_keys: set[tuple[str, tuple[str, ...]]]
    unique_keys: set[tuple[str, tuple[str, ...]]]
    foreign_keys: set[tuple[str, tuple[str, ...], str, tuple[str, ...]]]
    indexes: dict[str, Index]  # by name: indexes the migrations create by name


@pytest.fixture
async def stores(tmp_path: Path, postgres_url: str) -> AsyncIterator[dict[str, Store]]:
    opened = {"sqlite": await Store.open(tmp_path / "seedance.sqlite3"),
              "postgres": await Store.open(postgres_url)}
    yield opened
    for store in opened.values():
        await store.close()


# ---- normalising the two catalogs --------------------------------------------------------------
def _kind(declared: str) -> str:
    """A declared type's class, by SQLite's affinity rules (PostgreSQL's names fit them too)."""
    upper = declared.upper()
    if "INT" in upper:
        return "integer"
    if any(word in upper for word in ("CHAR", "CLOB", "TEXT")):
        return "text"
    if any(word in upper for word in ("REAL", "FLOA", "DOUB")):
        return "real"
    if upper in ("BLOB", "BYTEA"):  # SQLite's BLOB is PostgreSQL's bytea (0014)
        return "bytes"
    raise AssertionError(f"unexpected column type {declared!r}")


def _default(text: str | None) -> str | None:
    """`''::text` (PostgreSQL) and `''` (SQLite) alike."""
    return None if text is None else re.sub(r"::[a-z ]+$", "", text.strip())


def _predicate(text: str | None) -> str | None:
    """A partial index's WHERE clause, as both write it: PostgreSQL's `kind = ANY (ARRAY[...])`
    is SQLite's `kind IN (...)`; casts, outer parentheses and spacing don't count."""
    if text is None:
        return None
    text = re.sub(r"::[a-z]+", "", text)
    text = re.sub(r"(\w+) = ANY \(ARRAY\[(.*?)\]\)", r"\1 IN (\2)", text)
    text = " ".join(text.split())
    while text.startswith("(") and text.endswith(")"):
        text = text[1:-1].strip()
    return text


async def _sqlite_catalog(store: Store) -> Catalog:
    read = store.db.fetch
    tables = [r["name"] for r in await read(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'")]
    sql_of = {r["name"]: r["sql"] for r in await read("SELECT name, sql FROM sqlite_master")}
    catalog = Catalog({}, set(), set(), set(), {})
    for table in tables:
        info = await read(f"PRAGMA table_info({table})")
        pk = tuple(r["name"] for r in sorted((r for r in info if r["pk"]), key=lambda r: r["pk"]))
        autoincrement = "AUTOINCREMENT" in sql_of[table].upper()
        catalog.columns[table] = [
            Column(r["name"], _kind(r["type"]),
                   # SQLite lets a non-INTEGER primary key hold NULL (a legacy quirk); the store
                   # never writes one, and PostgreSQL's primary keys are NOT NULL.
                   bool(r["notnull"]) or r["name"] in pk, _default(r["dflt_value"]),
                   autoincrement and pk == (r["name"],))
            for r in info]
        catalog.primary_keys.add((table, pk))
        for fk in await read(f"PRAGMA foreign_key_list({table})"):
            catalog.foreign_keys.add((table, (fk["from"],), fk["table"], (fk["to"],)))
        for index in await read(f"PRAGMA index_list({table})"):
            columns = tuple(r["name"] for r in await read(f"PRAGMA index_info({index['name']})"))
            if index["origin"] == "u":
                catalog.unique_keys.add((table, columns))
            elif index["origin"] == "c":
                sql = sql_of[index["name"]]
                where = sql.split(" WHERE ", 1)[1] if " WHERE " in sql else None
                catalog.indexes[index["name"]] = Index(table, columns, bool(index["unique"]),
                                                       _predicate(where))
    return catalog


async def _postgres_catalog(store: Store) -> Catalog:
    read = store.db.fetch
    catalog = Catalog({}, set(), set(), set(), {})
    for r in await read(
            "SELECT table_name, column_name, data_type, is_nullable, column_default,"
            " is_identity FROM information_schema.columns WHERE table_schema = 'public'"
            " ORDER BY table_name, ordinal_position"):
        catalog.columns.setdefault(r["table_name"], []).append(Column(
            r["column_name"], _kind(r["data_type"]), r["is_nullable"] == "NO",
            _default(r["column_default"]), r["is_identity"] == "YES"))
    for r in await read(
            "SELECT c.contype::text AS contype, t.relname AS tbl, f.relname AS ref,"
            " ARRAY(SELECT a.attname FROM unnest(c.conkey) WITH ORDINALITY k(n, o)"
            "  JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = k.n"
            "  ORDER BY k.o)::text[] AS cols,"
            " ARRAY(SELECT a.attname FROM unnest(c.confkey) WITH ORDINALITY k(n, o)"
            "  JOIN pg_attribute a ON a.attrelid = c.confrelid AND a.attnum = k.n"
            "  ORDER BY k.o)::text[] AS refcols"
            " FROM pg_constraint c JOIN pg_class t ON t.oid = c.conrelid"
            " LEFT JOIN pg_class f ON f.oid = c.confrelid"
            " JOIN pg_namespace n ON n.oid = t.relnamespace"
            " WHERE n.nspname = 'public' AND c.contype IN ('p', 'u', 'f')"):
        key = (r["tbl"], tuple(r["cols"]))
        if r["contype"] == "p":
            catalog.primary_keys.add(key)
        elif r["contype"] == "u":
            catalog.unique_keys.add(key)
        else:
            catalog.foreign_keys.add((*key, r["ref"], tuple(r["refcols"])))
    for r in await read(
            "SELECT t.relname AS tbl, i.relname AS name, x.indisunique,"
            " pg_get_expr(x.indpred, x.indrelid) AS pred,"
            " ARRAY(SELECT a.attname FROM unnest(x.indkey) WITH ORDINALITY k(n, o)"
            "  JOIN pg_attribute a ON a.attrelid = x.indrelid AND a.attnum = k.n"
            "  ORDER BY k.o)::text[] AS cols"
            " FROM pg_index x JOIN pg_class i ON i.oid = x.indexrelid"
            " JOIN pg_class t ON t.oid = x.indrelid JOIN pg_namespace n ON n.oid = t.relnamespace"
            " WHERE n.nspname = 'public'"
            " AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conindid = x.indexrelid)"):
        catalog.indexes[r["name"]] = Index(r["tbl"], tuple(r["cols"]), r["indisunique"],
                                           _predicate(r["pred"]))
    return catalog


# ---- the catalogs ------------------------------------------------------------------------------
async def test_both_migration_sets_make_the_same_schema(stores: dict[str, Store]) -> None:
    lite = await _sqlite_catalog(stores["sqlite"])
    pg = await _postgres_catalog(stores["postgres"])
    assert sorted(pg.columns) == sorted(lite.columns)
    for table, columns in lite.columns.items():
        assert pg.columns[table] == columns, table  # names in order, classes, NULLs, defaults
    assert pg.primary_keys == lite.primary_keys
    assert pg.unique_keys == lite.unique_keys
    assert pg.foreign_keys == lite.foreign_keys
    assert pg.indexes == lite.indexes
    # Spot checks, so the two can't agree by both being empty or both being wrong.
    assert lite.indexes["ledger_one_commit"] == Index(
        "ledger", ("job_id",), True, "kind = 'commit'")
    assert ("blocklist", ("guild_id", "kind", "pattern")) in lite.unique_keys
    assert ("ledger", ("job_id",), "jobs", ("id",)) in lite.foreign_keys
    assert ("votes", ("job_id",), "jobs", ("id",)) in lite.foreign_keys
    assert len(lite.columns) == 27  # every table (0009 added usage_days, dropped leases;
    # 0010 added gateway_health, 0011 result_sizes, 0014 the library's five, 0015 votes,
    # 0016 entitlements and purchased_credits)


async def test_postgres_integers_stay_integers_but_seq_and_ids(stores: dict[str, Store]) -> None:
    """INTEGER is 32-bit on PostgreSQL (sums come back as Python ints either way); the queue's
    seq and the identity ids are BIGINT, so they can't run out."""
    rows = await stores["postgres"].db.fetch(
        "SELECT table_name, column_name, data_type, is_identity FROM information_schema.columns"
        " WHERE table_schema = 'public' AND data_type IN ('bigint', 'integer')")
    bigint = {(r["table_name"], r["column_name"]) for r in rows if r["data_type"] == "bigint"}
    identity = {(r["table_name"], r["column_name"]) for r in rows if r["is_identity"] == "YES"}
    assert bigint == identity | {("jobs", "seq")}
    assert ("ledger", "id") in identity and ("job_updates", "id") in identity
    assert await stores["postgres"].db.fetchval("SELECT nextval('jobs_seq')") == 1


async def test_jobs_seq_starts_past_existing_jobs(postgres_url: str,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """A database that had jobs before 0008 hands out queue positions after theirs."""
    import bot.store.schema as schema

    every = schema.migrations("postgres")
    monkeypatch.setattr(schema, "migrations", lambda dialect="sqlite": every[:7])
    old = await Store.open(postgres_url)
    for seq in (3, 41):
        await old.db.atomic(lambda tx, seq=seq: tx.execute(
            "INSERT INTO jobs (id, guild_id, user_id, request, provider, state, seq, created_at,"
            " updated_at) VALUES (?, 'g', 'u', '{}', 'local', 'delivered', ?, 1, 1)",
            (f"old-{seq}", seq)))
    await old.close()
    monkeypatch.undo()
    store = await Store.open(postgres_url)
    try:
        assert await store.schema_version() == every[-1][0]  # the newest migration
        assert await store.db.fetchval("SELECT nextval('jobs_seq')") == 42
    finally:
        await store.close()


# ---- the same inserts, accepted and refused alike ----------------------------------------------
JOB = ("INSERT INTO jobs (id, guild_id, user_id, request, provider, state, seq, created_at,"
       " updated_at) VALUES (?, 'g', 'u', '{}', 'local', 'queued', ?, 1.5, 1.5)")
LEDGER = ("INSERT INTO ledger (job_id, user_id, guild_id, kind, credits, at, reserved_at)"
          " VALUES (?, 'u', 'g', ?, ?, 1, 1)")
LIMIT = ('INSERT INTO quota_limits (scope, guild_id, subject_id, credits, "window", updated_at)'
         " VALUES (?, 'g', ?, 5, ?, 1)")
EVENT = ("INSERT INTO events (id, guild_id, name, channel_id, ends_at, credits_per_user,"
         " moderation, created_at) VALUES (?, 'g', 'jam', 'c', 9, 5, ?, 1)")
RULE = ("INSERT INTO blocklist (guild_id, kind, pattern, created_at) VALUES ('g', ?, ?, 1)")
#: (statement, parameters, accepted?)
INSERTS: Sequence[tuple[str, tuple[Any, ...], bool]] = (
    (JOB, ("j1", 1), True),
    (JOB, ("j1", 2), False),  # primary key
    (JOB, ("j2", 2), True),
    ("INSERT INTO jobs (id, guild_id, request, provider, state, seq, created_at, updated_at)"
     " VALUES ('j3', 'g', '{}', 'local', 'queued', 3, 1, 1)", (), False),  # user_id NOT NULL
    ("INSERT INTO job_transitions (job_id, to_state, at) VALUES (?, 'queued', 1)", ("j1",), True),
    ("INSERT INTO job_transitions (job_id, to_state, at) VALUES (?, 'queued', 1)", ("nope",),
     False),  # foreign key
    (LEDGER, ("j1", "reserve", 5), True),
    (LEDGER, ("j1", "reserve", 5), False),  # one reserve per job (partial unique index)
    (LEDGER, ("j1", "commit", 5), True),
    (LEDGER, ("j1", "commit", 5), False),  # one commit per job (0011)
    (LEDGER, ("j1", "release", 0), True),  # a short set's release beside its commit (0011)
    (LEDGER, ("j1", "release", 5), False),  # one release per job (0011)
    (LEDGER, ("j2", "reserve", 0), True),
    (LEDGER, ("j2", "refund", 5), False),  # CHECK kind
    (LEDGER, ("j2", "release", -1), False),  # CHECK credits >= 0
    (LEDGER, ("nope", "reserve", 1), False),  # foreign key
    (LIMIT, ("user", "", "day"), True),
    (LIMIT, ("user", "", "month"), False),  # primary key
    (LIMIT, ("role", "vip", "week"), False),  # CHECK window
    (LIMIT, ("team", "x", "day"), False),  # CHECK scope
    (LIMIT, ("event", "jam", "event"), True),
    (RULE, ("word", "fox"), True),
    (RULE, ("word", "fox"), False),  # UNIQUE (guild_id, kind, pattern)
    (RULE, ("regex", "fox"), True),
    (RULE, ("glob", "f*"), False),  # CHECK kind
    (EVENT, ("e1", "both"), True),
    (EVENT, ("e2", "all"), False),  # CHECK moderation
    ("UPDATE events SET state = 'paused' WHERE id = 'e1'", (), False),  # CHECK state
    ("INSERT INTO job_messages (job_id, kind, channel_id, message_id, at)"
     " VALUES ('j1', 'audit', 'c', 'm', 1)", (), True),
    ("INSERT INTO job_messages (job_id, kind, channel_id, message_id, at)"
     " VALUES ('j1', 'audit', 'c', 'm2', 1)", (), False),  # primary key
    ("INSERT INTO job_messages (job_id, kind, channel_id, message_id, at)"
     " VALUES ('nope', 'audit', 'c', 'm', 1)", (), False),  # foreign key
    ("INSERT INTO user_blocks (guild_id, user_id, at) VALUES ('g', 'u', 1)", (), True),
    ("INSERT INTO user_blocks (guild_id, user_id, at) VALUES ('g', 'u', 2)", (), False),
    ("INSERT INTO forget_requests (user_id, pseudonym, requested_at) VALUES ('u', 'x', 1)", (),
     True),
    ("INSERT INTO launches (id, guild_id, user_id, at) VALUES ('l', 'g', 'u', 1)", (), True),
    ("INSERT INTO usage_days (guild_id, user_id, event_id, day, credits)"
     " VALUES ('g', '*', '', 0, 5)", (), True),
    ("INSERT INTO usage_days (guild_id, user_id, event_id, day, credits)"
     " VALUES ('g', '*', '', 0, 7)", (), False),  # one row per server, member, event and day
    ("INSERT INTO launches (id, guild_id, user_id, at) VALUES ('l', 'g', 'u', 2)", (), False),
    ("INSERT INTO job_updates (job_id, state, at) VALUES ('any-job', '{}', 1)", (), True),
    ("INSERT INTO fair_served (scope, key, tick) VALUES ('guild', 'g', 1)", (), True),
    ("INSERT INTO fair_served (scope, key, tick) VALUES ('guild', 'g', 2)", (), False),
    ("INSERT INTO counters (name, value) VALUES ('fair_tick', 1)", (), True),
    ("INSERT INTO guild_settings (guild_id, updated_at) VALUES ('g', 1)", (), True),
    ("INSERT INTO gateway_durations (provider, resolution, duration, seconds, at)"
     " VALUES ('p', '720p', 5, 30.5, 1)", (), True),
    ("INSERT INTO result_sizes (provider, resolution, quality, seconds, bytes, at)"
     " VALUES ('runware', '720p', 80, 5.0, 5500000, 1)", (), True),
    ("INSERT INTO result_sizes (provider, resolution, quality, seconds, at)"
     " VALUES ('runware', '720p', 80, 5.0, 1)", (), False),  # bytes NOT NULL
)


def _refused(exc: Exception) -> bool:
    """Whether `exc` is a constraint's refusal (anything else is a broken statement)."""
    import asyncpg

    return isinstance(exc, sqlite3.IntegrityError | asyncpg.IntegrityConstraintViolationError)


async def _outcomes(store: Store) -> list[bool]:
    outcomes = []
    for sql, params, _expected in INSERTS:

        async def run(tx: Tx, sql: str = sql, params: tuple[Any, ...] = params) -> int:
            return await tx.execute(sql, params)

        try:
            await store.db.atomic(run)
        except Exception as exc:
            if not _refused(exc):
                raise
            outcomes.append(False)
        else:
            outcomes.append(True)
    return outcomes


async def _dump(store: Store, table: str) -> list[dict[str, Any]]:
    """A table's rows without identity ids (PostgreSQL spends one on each refused insert)."""
    rows = [dict(r) for r in await store.db.fetch(f"SELECT * FROM {table}")]
    for row in rows:
        if table not in ("jobs", "events", "launches", "job_messages"):
            row.pop("id", None)
    return sorted(rows, key=repr)


async def test_the_same_inserts_are_accepted_and_refused_alike(
        stores: dict[str, Store]) -> None:
    expected = [accepted for _sql, _params, accepted in INSERTS]
    for dialect in DIALECTS:
        assert await _outcomes(stores[dialect]) == expected, dialect
    tables = [r["name"] for r in await stores["sqlite"].db.fetch(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"
        " AND name != 'schema_migrations'")]
    for table in tables:  # defaults filled in alike, values read back alike
        assert await _dump(stores["postgres"], table) == await _dump(stores["sqlite"], table), (
            table)
    job = (await _dump(stores["postgres"], "jobs"))[0]
    assert (job["channel_id"], job["role_ids"], job["not_before"], job["attempts"],
            job["result_meta"], job["forgotten"], job["owner"]) == ("", "[]", 0.0, 0, "{}", 0,
                                                                    None)
    event = (await _dump(stores["sqlite"], "events"))[0]
    assert (event["state"], event["created_by"]) == ("open", "")


# ---- the files ---------------------------------------------------------------------------------
def test_both_dialects_have_the_same_migrations() -> None:
    names = {d: [(v, n) for v, n, _s in migrations(d)] for d in DIALECTS}
    assert names["postgres"] == names["sqlite"]
    assert [v for v, _n in names["sqlite"]] == list(range(1, len(names["sqlite"]) + 1))
    for (_v, name, lite), (_v2, _n, pg) in zip(migrations("sqlite"), migrations("postgres"),
                                               strict=True):
        pg_comments = {ln.split("--", 1)[1].strip() for ln in pg.splitlines() if "--" in ln}
        for line in lite.splitlines():
            if "--" in line:
                assert line.split("--", 1)[1].strip() in pg_comments, (name, line)


@pytest.mark.parametrize("dialect", DIALECTS)
def test_every_migration_keeps_the_semicolon_rule(dialect: str) -> None:
    """A `;` only ends a statement's last line: never inside a line, before a trailing comment
    or at the end of a comment (PostgreSQL's split cuts at every line ending with `;`). A
    PostgreSQL function's `$$` body is one statement whatever its `;` (the split skips it)."""
    for _v, name, sql in migrations(dialect):  # type: ignore[arg-type]
        quoted = False
        for number, line in enumerate(sql.splitlines(), 1):
            code, _, comment = line.partition("--")
            where = f"{dialect}/{name}.sql:{number}"
            assert not comment.rstrip().endswith(";"), where
            if ";" in code and not quoted:
                assert code.count(";") == 1 and line.rstrip().endswith(";") and not comment, where
            quoted ^= code.count("$$") % 2 == 1
        assert not quoted, f"{dialect}/{name}.sql: a $$ body is never closed"
        statements = split_statements(sql, "postgres")
        assert dialect == "postgres" or "$$" not in sql
        if "$$" not in sql:  # SQLite does not know `$$`: its split is compared where it applies
            assert statements == split_statements(sql, "sqlite")
        for statement in statements:
            code = "\n".join(ln.partition("--")[0] for ln in statement.splitlines())
            assert code.rstrip().endswith(";"), (name, statement)
            assert code.count(";") == 1 or code.count("$$") == 2, (name, statement)
