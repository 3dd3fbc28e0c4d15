"""SQL for leases: one named lease per database, held by one owner until it expires."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from bot.store.database import Tx


class LeaseStore:
    """A mixin of `Store` (it provides `_read` and `_atomic`)."""

    _read: Callable[..., Awaitable[list[Any]]]
    _atomic: Callable[..., Awaitable[Any]]

    async def lease_holder(self, name: str) -> tuple[str, float] | None:
        """(owner, expires_at) of the lease, if anyone ever took it."""
        rows = await self._read("SELECT owner, expires_at FROM leases WHERE name = ?", (name,))
        return (rows[0]["owner"], rows[0]["expires_at"]) if rows else None

    async def take_lease(self, name: str, owner: str, *, until: float, now: float,
                         replacing: str | None = None) -> bool:
        """Take or renew the lease: free, expired, already ours, or held by `replacing` (an
        owner the caller proved dead). Atomic against every other process on the file."""

        async def body(tx: Tx) -> bool:
            changed_rows = await tx.execute(
                "INSERT INTO leases (name, owner, expires_at) VALUES (?, ?, ?)"
                " ON CONFLICT (name) DO UPDATE SET owner = excluded.owner,"
                " expires_at = excluded.expires_at"
                " WHERE leases.owner = excluded.owner OR leases.expires_at < ?"
                " OR leases.owner = ?",
                (name, owner, until, now, replacing or owner))
            return changed_rows > 0

        taken: bool = await self._atomic(body)
        return taken

    async def drop_lease(self, name: str, owner: str) -> None:
        async def body(tx: Tx) -> None:
            await tx.execute("DELETE FROM leases WHERE name = ? AND owner = ?", (name, owner))

        await self._atomic(body)
