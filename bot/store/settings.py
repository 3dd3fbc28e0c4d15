"""SQL for what servers configure: quota limits, their typed settings, and the task durations
ETAs learn from. A mixin of `Store`, so one connection and one lock serve everything."""

from __future__ import annotations

import json
import time
from collections.abc import Awaitable, Callable
from typing import Any

from bot.guild import GuildSettings
from bot.store.database import Tx
from bot.store.records import QuotaLimitRow
from bot.store.transitions import TIMED


class SettingsStore:
    """Settings tables. `Store` provides `_read` and `_atomic`."""

    _read: Callable[..., Awaitable[list[Any]]]
    _atomic: Callable[..., Awaitable[Any]]
    _write: Callable[..., Awaitable[int]]
    _lock_row: Callable[[str], str]

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
        async def body(tx: Tx) -> None:
            await tx.execute(
                "INSERT INTO quota_limits (scope, guild_id, subject_id, credits, \"window\","
                " updated_at) VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (scope, guild_id,"
                " subject_id) DO UPDATE SET credits = excluded.credits,"
                " \"window\" = excluded.\"window\", updated_at = excluded.updated_at",
                (limit.scope, limit.guild_id, limit.subject_id, limit.credits, limit.window, now),
            )

        await self._atomic(body)

    async def delete_quota_limit(self, scope: str, guild_id: str, subject_id: str = "") -> bool:
        async def body(tx: Tx) -> bool:
            changed_rows = await tx.execute(
                "DELETE FROM quota_limits WHERE scope = ? AND guild_id = ? AND subject_id = ?",
                (scope, guild_id, subject_id),
            )
            return changed_rows > 0

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

        async def body(tx: Tx) -> GuildSettings:
            row = await tx.fetchrow(
                self._lock_row("SELECT settings FROM guild_settings WHERE guild_id = ?"),
                (guild_id,))
            current = (GuildSettings.from_stored(json.loads(row[0]), guild_id=guild_id)
                       if row else GuildSettings())
            new = change(current)
            await tx.execute(
                "INSERT INTO guild_settings (guild_id, settings, updated_at) VALUES (?, ?, ?)"
                " ON CONFLICT (guild_id) DO UPDATE SET settings = excluded.settings,"
                " updated_at = excluded.updated_at",
                (guild_id, json.dumps(new.stored()), stamp),
            )
            return new

        # Two admins changing the same server's settings at once take turns (PostgreSQL: a new
        # row has nothing to lock yet, so the lock is by name).
        return await self._atomic(body, lock=f"seedance:settings:{guild_id}")

    # ---- durations for ETAs ---------------------------------------------------------------
    async def record_duration(
        self, provider: str, resolution: str, duration: int, seconds: float, *, now: float
    ) -> None:
        await self._write(f"{TIMED} VALUES (?, ?, ?, ?, ?)",
                          (provider, resolution, duration, seconds, now))

    async def recent_durations(
        self, provider: str, resolution: str, duration: int, *, limit: int = 20
    ) -> list[float]:
        rows = await self._read(
            "SELECT seconds FROM gateway_durations WHERE provider = ? AND resolution = ?"
            " AND duration = ? ORDER BY id DESC LIMIT ?",
            (provider, resolution, duration, limit),
        )
        return [float(r["seconds"]) for r in rows]

    # ---- result sizes, to ask gateways for files that fit ----------------------------------
    async def record_result_size(
        self, provider: str, resolution: str, quality: int, seconds: float, size: int, *,
        now: float, keep: int = 50,
    ) -> None:
        """One finished result's weight; only the latest `keep` per gateway and resolution
        stay (bot/engine/sizing.py reads a few)."""
        async def body(tx: Tx) -> None:
            await tx.execute(
                "INSERT INTO result_sizes (provider, resolution, quality, seconds, bytes, at)"
                " VALUES (?, ?, ?, ?, ?, ?)", (provider, resolution, quality, seconds, size, now))
            await tx.execute(
                "DELETE FROM result_sizes WHERE provider = ? AND resolution = ? AND id NOT IN"
                " (SELECT id FROM result_sizes WHERE provider = ? AND resolution = ?"
                " ORDER BY id DESC LIMIT ?)", (provider, resolution, provider, resolution, keep))

        await self._atomic(body)

    async def recent_result_sizes(
        self, provider: str, resolution: str, *, limit: int = 20
    ) -> list[tuple[int, float, int]]:
        """(quality, seconds, bytes) of the latest results, newest first."""
        rows = await self._read(
            "SELECT quality, seconds, bytes FROM result_sizes WHERE provider = ? AND"
            " resolution = ? ORDER BY id DESC LIMIT ?", (provider, resolution, limit))
        return [(int(r["quality"]), float(r["seconds"]), int(r["bytes"])) for r in rows]
