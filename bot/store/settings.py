"""SQL for what servers configure: quota limits, their typed settings, and the task durations
ETAs learn from. A mixin of `Store`, so one connection and one lock serve everything."""

from __future__ import annotations

import json
import time
from collections.abc import Awaitable, Callable
from typing import Any

import aiosqlite

from bot.guild import GuildSettings
from bot.store.records import QuotaLimitRow


class SettingsStore:
    """Settings tables. `Store` provides `_read` and `_atomic`."""

    _read: Callable[..., Awaitable[list[aiosqlite.Row]]]
    _atomic: Callable[..., Awaitable[Any]]

    # ---- quota limits ---------------------------------------------------------------------
    async def quota_limits(self, guild_id: str) -> list[QuotaLimitRow]:
        rows = await self._read(
            "SELECT * FROM quota_limits WHERE guild_id = ? ORDER BY scope, subject_id",
            (guild_id,),
        )
        return [
            QuotaLimitRow(r["scope"], r["guild_id"], r["subject_id"], r["credits"], r["window"])
            for r in rows
        ]

    async def set_quota_limit(self, limit: QuotaLimitRow, *, now: float) -> None:
        async def body(conn: aiosqlite.Connection) -> None:
            await conn.execute(
                "INSERT INTO quota_limits (scope, guild_id, subject_id, credits, window,"
                " updated_at) VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (scope, guild_id,"
                " subject_id) DO UPDATE SET credits = excluded.credits,"
                " window = excluded.window, updated_at = excluded.updated_at",
                (limit.scope, limit.guild_id, limit.subject_id, limit.credits, limit.window, now),
            )

        await self._atomic(body)

    async def delete_quota_limit(self, scope: str, guild_id: str, subject_id: str = "") -> bool:
        async def body(conn: aiosqlite.Connection) -> bool:
            cur = await conn.execute(
                "DELETE FROM quota_limits WHERE scope = ? AND guild_id = ? AND subject_id = ?",
                (scope, guild_id, subject_id),
            )
            return cur.rowcount > 0

        return await self._atomic(body)

    # ---- guild settings -------------------------------------------------------------------
    async def guild_settings(self, guild_id: str) -> GuildSettings:
        rows = await self._read(
            "SELECT settings FROM guild_settings WHERE guild_id = ?", (guild_id,)
        )
        if not rows:
            return GuildSettings()
        return GuildSettings.from_stored(json.loads(rows[0]["settings"]), guild_id=guild_id)

    async def all_guild_settings(self) -> dict[str, GuildSettings]:
        """Every server that set anything (for sweeps over, e.g., servers with an audit log)."""
        rows = await self._read("SELECT guild_id, settings FROM guild_settings ORDER BY guild_id")
        return {r["guild_id"]: GuildSettings.from_stored(json.loads(r["settings"]),
                                                         guild_id=r["guild_id"]) for r in rows}

    async def update_guild_settings(
        self, guild_id: str, change: Callable[[GuildSettings], GuildSettings], *,
        now: float | None = None,
    ) -> GuildSettings:
        """Read, change and write a server's settings in one transaction (two admins at once
        each see the other's change); `change` raises ValueError to refuse and write nothing."""
        stamp = time.time() if now is None else now

        async def body(conn: aiosqlite.Connection) -> GuildSettings:
            async with conn.execute(
                "SELECT settings FROM guild_settings WHERE guild_id = ?", (guild_id,)
            ) as cur:
                row = await cur.fetchone()
            current = (GuildSettings.from_stored(json.loads(row[0]), guild_id=guild_id)
                       if row else GuildSettings())
            new = change(current)
            await conn.execute(
                "INSERT INTO guild_settings (guild_id, settings, updated_at) VALUES (?, ?, ?)"
                " ON CONFLICT (guild_id) DO UPDATE SET settings = excluded.settings,"
                " updated_at = excluded.updated_at",
                (guild_id, json.dumps(new.stored()), stamp),
            )
            return new

        return await self._atomic(body)

    # ---- durations for ETAs ---------------------------------------------------------------
    async def record_duration(
        self, provider: str, resolution: str, duration: int, seconds: float, *, now: float
    ) -> None:
        async def body(conn: aiosqlite.Connection) -> None:
            await conn.execute(
                "INSERT INTO gateway_durations (provider, resolution, duration, seconds, at)"
                " VALUES (?, ?, ?, ?, ?)",
                (provider, resolution, duration, seconds, now),
            )

        await self._atomic(body)

    async def recent_durations(
        self, provider: str, resolution: str, duration: int, *, limit: int = 20
    ) -> list[float]:
        rows = await self._read(
            "SELECT seconds FROM gateway_durations WHERE provider = ? AND resolution = ?"
            " AND duration = ? ORDER BY id DESC LIMIT ?",
            (provider, resolution, duration, limit),
        )
        return [float(r["seconds"]) for r in rows]
