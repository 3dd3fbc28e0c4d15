"""SQL for the server library (migration 0014): items, their bytes, their gateway assets, and
which jobs use which bytes. A mixin of `Store`, so one connection and one lock serve everything.

The bytes are rows (`library_blobs`), so every process on every host reads the same file. A
blob is deleted only when no item and no unfinished job refers to it (`sweep_library_blobs`):
an item removed while a queued job uses it leaves the job its copy.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any, Literal

from bot.store.database import Database, Tx
from bot.store.records import TERMINAL_STATES

_ITEM_COLUMNS = ("id, guild_id, name, kind, format, size, seconds, width, height, description,"
                 " owner_id, blob_id, state, uses, decided_by, created_at,"
                 " thumb IS NOT NULL AS has_thumb")
_DONE = tuple(sorted(s.value for s in TERMINAL_STATES))
#: A 'registering' row older than this (by the database's clock) was left by a process that
#: stopped mid-call; another may take it over (the gateway may hold an orphan: it is logged).
STALE_REGISTERING_SECONDS = 300.0


@dataclass(frozen=True)
class LibraryItem:
    """One named file of a server (without its bytes)."""

    id: str
    guild_id: str
    name: str
    kind: str  # "image" | "video" | "audio"
    format: str
    size: int
    seconds: float | None
    width: int | None
    height: int | None
    description: str
    owner_id: str
    blob_id: str
    state: str  # "pending" (awaiting a moderator) | "ready"
    uses: int
    decided_by: str | None
    created_at: float
    has_thumb: bool

    @property
    def pending(self) -> bool:
        return self.state == "pending"


@dataclass(frozen=True)
class LibraryFull:
    """Why an item was not added: its name is taken, or the server's count or bytes are full."""

    reason: Literal["exists", "count", "bytes"]
    count: int  # items the server holds
    bytes: int  # their bytes


def _item(r: Any) -> LibraryItem:
    return LibraryItem(
        id=r["id"], guild_id=r["guild_id"], name=r["name"], kind=r["kind"], format=r["format"],
        size=int(r["size"]), seconds=r["seconds"], width=r["width"], height=r["height"],
        description=r["description"], owner_id=r["owner_id"], blob_id=r["blob_id"],
        state=r["state"], uses=int(r["uses"]), decided_by=r["decided_by"],
        created_at=float(r["created_at"]), has_thumb=bool(r["has_thumb"]),
    )


def _marks(n: int) -> str:
    return ", ".join("?" * n)


class LibraryStore:
    """Library tables. `Store` provides `_read` and `_atomic`."""

    db: Database
    _read: Callable[..., Awaitable[list[Any]]]
    _atomic: Callable[..., Awaitable[Any]]

    # ---- items ----------------------------------------------------------------------------
    async def library_items(self, guild_id: str) -> list[LibraryItem]:
        rows = await self._read(
            f"SELECT {_ITEM_COLUMNS} FROM library_items WHERE guild_id = ? ORDER BY name_key",
            (guild_id,))
        return [_item(r) for r in rows]

    async def library_item(self, guild_id: str, name: str) -> LibraryItem | None:
        """The item called `name` on this server, whatever the case."""
        rows = await self._read(
            f"SELECT {_ITEM_COLUMNS} FROM library_items WHERE guild_id = ? AND name_key = ?",
            (guild_id, name.lower()))
        return _item(rows[0]) if rows else None

    async def library_items_of(self, user_id: str) -> list[LibraryItem]:
        """Every item a member added, on any server."""
        rows = await self._read(
            f"SELECT {_ITEM_COLUMNS} FROM library_items WHERE owner_id = ? ORDER BY created_at",
            (user_id,))
        return [_item(r) for r in rows]

    async def add_library_item(self, item: LibraryItem, data: bytes, thumb: bytes | None, *,
                               max_items: int, max_bytes: int) -> LibraryItem | LibraryFull:
        """Write the item and its bytes, unless the name is taken on the server (any case) or
        the server's count or bytes would pass its limits: checked and written in one
        transaction under the server's library lock, so two adds at once can't both pass."""

        async def body(tx: Tx) -> LibraryItem | LibraryFull:
            row = await tx.fetchrow(
                "SELECT COUNT(*) AS n, COALESCE(SUM(size), 0) AS b FROM library_items"
                " WHERE guild_id = ?", (item.guild_id,))
            count, used = (int(row["n"]), int(row["b"])) if row else (0, 0)
            taken = await tx.fetchval(
                "SELECT 1 FROM library_items WHERE guild_id = ? AND name_key = ?",
                (item.guild_id, item.name.lower()))
            if taken:
                return LibraryFull("exists", count, used)
            if count >= max_items:
                return LibraryFull("count", count, used)
            if used + item.size > max_bytes:
                return LibraryFull("bytes", count, used)
            await tx.execute(
                "INSERT INTO library_blobs (id, data, size, created_at) VALUES (?, ?, ?, ?)",
                (item.blob_id, data, len(data), item.created_at))
            await tx.execute(
                "INSERT INTO library_items (id, guild_id, name, name_key, kind, format, size,"
                " seconds, width, height, description, owner_id, blob_id, thumb, state, uses,"
                " created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 0, ?)",
                (item.id, item.guild_id, item.name, item.name.lower(), item.kind, item.format,
                 item.size, item.seconds, item.width, item.height, item.description,
                 item.owner_id, item.blob_id, thumb, item.state, item.created_at))
            return replace(item, uses=0, has_thumb=thumb is not None, decided_by=None)

        result: LibraryItem | LibraryFull = await self._atomic(
            body, lock=f"seedance:library:{item.guild_id}")
        return result

    async def library_usage(self, guild_id: str) -> tuple[int, int]:
        """(items, bytes) the server holds."""
        rows = await self._read(
            "SELECT COUNT(*) AS n, COALESCE(SUM(size), 0) AS b FROM library_items"
            " WHERE guild_id = ?", (guild_id,))
        return (int(rows[0]["n"]), int(rows[0]["b"])) if rows else (0, 0)

    async def approve_library_item(self, item_id: str, by: str) -> bool:
        """A pending item becomes usable; False when it was not pending (decided, removed)."""

        async def body(tx: Tx) -> int:
            return await tx.execute(
                "UPDATE library_items SET state = 'ready', decided_by = ?"
                " WHERE id = ? AND state = 'pending'", (by, item_id))

        return bool(await self._atomic(body))

    async def remove_library_item(self, item_id: str) -> bool:
        """Delete the item (and its asset rows); its bytes go unless a job still uses them."""

        async def body(tx: Tx) -> int:
            await tx.execute("DELETE FROM library_assets WHERE item_id = ?", (item_id,))
            gone = await tx.execute("DELETE FROM library_items WHERE id = ?", (item_id,))
            await _sweep(tx)
            return gone

        return bool(await self._atomic(body))

    async def forget_library_items(self, user_id: str) -> int:
        """Delete every item a member added (their "delete my data"); jobs keep their copies
        until they end, as with a removal."""

        async def body(tx: Tx) -> int:
            await tx.execute(
                "DELETE FROM library_assets WHERE item_id IN"
                " (SELECT id FROM library_items WHERE owner_id = ?)", (user_id,))
            gone = await tx.execute("DELETE FROM library_items WHERE owner_id = ?", (user_id,))
            await _sweep(tx)
            return gone

        result: int = await self._atomic(body)
        return result

    async def sweep_library_blobs(self) -> int:
        """Delete the bytes no item and no unfinished job refers to; how many went."""
        result: int = await self._atomic(_sweep)
        return result

    async def library_blob(self, blob_id: str) -> bytes | None:
        rows = await self.db.fetch_bulky("SELECT data FROM library_blobs WHERE id = ?",
                                         (blob_id,))
        return bytes(rows[0]["data"]) if rows else None

    async def library_thumb(self, item_id: str) -> bytes | None:
        rows = await self._read("SELECT thumb FROM library_items WHERE id = ?", (item_id,))
        return bytes(rows[0]["thumb"]) if rows and rows[0]["thumb"] is not None else None

    # ---- jobs that use items --------------------------------------------------------------
    async def use_library_items(self, job_id: str,
                                uses: Sequence[tuple[str, str, str]]) -> None:
        """Record that the job uses these (item id, blob id, path on disk) and count one use
        of each item; one transaction."""

        async def body(tx: Tx) -> None:
            for item_id, blob_id, path in uses:
                await tx.execute(
                    "INSERT INTO job_library (job_id, blob_id, path) VALUES (?, ?, ?)"
                    " ON CONFLICT DO NOTHING", (job_id, blob_id, path))
                await tx.execute("UPDATE library_items SET uses = uses + 1 WHERE id = ?",
                                 (item_id,))

        await self._atomic(body)

    async def job_library(self, job_id: str) -> list[tuple[str, str]]:
        """(blob id, path) of every library file the job's request uses."""
        rows = await self._read(
            "SELECT blob_id, path FROM job_library WHERE job_id = ? ORDER BY path", (job_id,))
        return [(r["blob_id"], r["path"]) for r in rows]

    # ---- gateway assets -------------------------------------------------------------------
    async def begin_library_group(self, guild_id: str, provider: str
                                  ) -> tuple[Literal["ready", "mine", "busy"], str | None]:
        """The server's asset group on `provider`: ("ready", id) when it exists; ("mine",
        None) when this caller must create it now (its 'registering' row is written); ("busy",
        None) while another process is creating it."""

        async def body(tx: Tx) -> tuple[Literal["ready", "mine", "busy"], str | None]:
            now = float(await tx.fetchval(f"SELECT {self.db.now_sql}"))
            row = await tx.fetchrow(
                "SELECT state, group_id, at FROM library_groups WHERE guild_id = ?"
                " AND provider = ?", (guild_id, provider))
            if row is not None and row["state"] == "ready":
                return "ready", row["group_id"]
            if row is not None and float(row["at"]) > now - STALE_REGISTERING_SECONDS:
                return "busy", None
            await tx.execute(
                "INSERT INTO library_groups (guild_id, provider, state, at)"
                " VALUES (?, ?, 'registering', ?) ON CONFLICT (guild_id, provider)"
                " DO UPDATE SET state = 'registering', group_id = NULL, at = excluded.at",
                (guild_id, provider, now))
            return "mine", None

        result: tuple[Literal["ready", "mine", "busy"], str | None] = await self._atomic(
            body, lock=f"seedance:library-group:{guild_id}")
        return result

    async def end_library_group(self, guild_id: str, provider: str, group_id: str | None) -> None:
        """The group was made (`group_id`), or its creation failed (None: the row goes)."""

        async def body(tx: Tx) -> None:
            if group_id is None:
                await tx.execute(
                    "DELETE FROM library_groups WHERE guild_id = ? AND provider = ?"
                    " AND state = 'registering'", (guild_id, provider))
            else:
                await tx.execute(
                    "UPDATE library_groups SET state = 'ready', group_id = ? WHERE guild_id = ?"
                    " AND provider = ?", (group_id, guild_id, provider))

        await self._atomic(body)

    async def begin_library_asset(self, item_id: str, provider: str) -> bool:
        """Write the item's 'registering' row on `provider` before the gateway is called;
        False when a row exists already (registered, or another call in progress)."""

        async def body(tx: Tx) -> int:
            return await tx.execute(
                "INSERT INTO library_assets (item_id, provider, state, at)"
                f" VALUES (?, ?, 'registering', {self.db.now_sql}) ON CONFLICT DO NOTHING",
                (item_id, provider))

        return bool(await self._atomic(body))

    async def end_library_asset(self, item_id: str, provider: str, asset_id: str | None) -> None:
        """The asset was made (`asset_id`), or the gateway refused it (None: the row goes)."""

        async def body(tx: Tx) -> None:
            if asset_id is None:
                await tx.execute(
                    "DELETE FROM library_assets WHERE item_id = ? AND provider = ?"
                    " AND state = 'registering'", (item_id, provider))
            else:
                await tx.execute(
                    "UPDATE library_assets SET state = 'ready', asset_id = ? WHERE item_id = ?"
                    " AND provider = ?", (asset_id, item_id, provider))

        await self._atomic(body)

    async def library_assets(self, item_ids: Sequence[str], provider: str) -> dict[str, str]:
        """item id → asset id of the items registered (and ready) on `provider`."""
        if not item_ids:
            return {}
        rows = await self._read(
            "SELECT item_id, asset_id FROM library_assets WHERE provider = ? AND state = 'ready'"
            f" AND item_id IN ({_marks(len(item_ids))})", (provider, *item_ids))
        return {r["item_id"]: r["asset_id"] for r in rows}


async def _sweep(tx: Tx) -> int:
    """Forget the blob uses of finished jobs, then delete the blobs nobody refers to."""
    await tx.execute(
        f"DELETE FROM job_library WHERE job_id IN (SELECT id FROM jobs WHERE state IN"
        f" ({_marks(len(_DONE))}))", _DONE)
    return await tx.execute(
        "DELETE FROM library_blobs WHERE id NOT IN (SELECT blob_id FROM library_items)"
        " AND id NOT IN (SELECT blob_id FROM job_library)")
