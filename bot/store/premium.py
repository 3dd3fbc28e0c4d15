"""SQL for Discord store purchases (migration 0016): entitlements by Discord's id and the
purchased-credit lines. A mixin of `Store`. The rules (what to credit, when to consume) are
bot/service/premium.py's; every write here is keyed so that doing it twice does it once.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from bot.store.database import Database, Tx

#: A job context key: the purchased credits that paid for the job (bot/service/purchased.py).
#: Such a job is booked in the ledger but not in the quota windows' day rows (bot/store/ledger.py).
PAID_KEY = "purchased_credits"
#: The ledger lines of paid jobs, which no quota window counts.
PAID_JOBS = "SELECT ref FROM purchased_credits WHERE kind = 'spend'"


@dataclass(frozen=True)
class EntitlementRecord:
    """One entitlement as this bot recorded it (see 0016_premium.sql for the states)."""

    id: str
    sku_id: str
    kind: str
    user_id: str
    guild_id: str
    credits: int
    period: str | None
    starts_at: float | None
    ends_at: float | None
    state: str
    shortfall: int
    updated_at: float


@dataclass(frozen=True)
class Clawback:
    """What a refund took back: `taken` purchased credits, `shortfall` already spent."""

    taken: int
    shortfall: int


def _record(r: Any) -> EntitlementRecord:
    return EntitlementRecord(
        r["id"], r["sku_id"], r["kind"], r["user_id"], r["guild_id"], int(r["credits"]),
        r["period"], r["starts_at"], r["ends_at"], r["state"], int(r["shortfall"]),
        float(r["updated_at"]))


async def _balance(tx: Tx, user_id: str) -> int:
    return int(await tx.fetchval(
        "SELECT COALESCE(SUM(credits), 0) FROM purchased_credits WHERE user_id = ?",
        (user_id,)) or 0)


def _wallet_lock(user_id: str) -> str:
    return f"seedance:wallet:{user_id}"


class PremiumStore:
    """Entitlements and purchased credits. `Store` provides `db`, `_read` and `_atomic`."""

    db: Database
    _read: Callable[..., Awaitable[list[Any]]]
    _atomic: Callable[..., Awaitable[Any]]

    async def record_entitlement(self, record: EntitlementRecord, *, now: float) -> bool:
        """Write an entitlement once, and for a consumable its purchase line with it (one
        transaction). False: it was recorded already (nothing written)."""
        async def body(tx: Tx) -> bool:
            written = await tx.execute(
                "INSERT INTO entitlements (id, sku_id, kind, user_id, guild_id, credits, period,"
                " starts_at, ends_at, state, shortfall, created_at, updated_at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 0, ?, ?) ON CONFLICT (id) DO NOTHING",
                (record.id, record.sku_id, record.kind, record.user_id, record.guild_id,
                 record.credits, record.period, record.starts_at, record.ends_at, record.state,
                 now, now))
            if written and record.kind == "consumable":
                await tx.execute(
                    "INSERT INTO purchased_credits (ref, kind, user_id, credits, at)"
                    " VALUES (?, 'purchase', ?, ?, ?)",
                    (record.id, record.user_id, record.credits, now))
            return bool(written)

        return bool(await self._atomic(body, lock=_wallet_lock(record.user_id)))

    async def entitlement_record(self, entitlement_id: str) -> EntitlementRecord | None:
        rows = await self._read("SELECT * FROM entitlements WHERE id = ?", (entitlement_id,))
        return _record(rows[0]) if rows else None

    async def entitlement_records(self, *, state: str | None = None) -> list[EntitlementRecord]:
        sql: str = "SELECT * FROM entitlements"
        params: tuple[str, ...] = ()
        if state is not None:
            sql, params = sql + " WHERE state = ?", (state,)
        return [_record(r) for r in await self._read(sql + " ORDER BY id", params)]

    async def mark_consumed(self, entitlement_id: str, *, now: float) -> bool:
        """A consumable was consumed at Discord (after its credits were written)."""
        return bool(await self._atomic(lambda tx: tx.execute(
            "UPDATE entitlements SET state = 'consumed', updated_at = ?"
            " WHERE id = ? AND state = 'credited'", (now, entitlement_id))))

    async def set_subscription_period(self, entitlement_id: str, *, starts_at: float | None,
                                      ends_at: float | None, now: float) -> bool:
        """A renewal (a new `ends_at`) or an end; a deleted one stays deleted."""
        return bool(await self._atomic(lambda tx: tx.execute(
            "UPDATE entitlements SET starts_at = ?, ends_at = ?, updated_at = ?"
            " WHERE id = ? AND state <> 'deleted'", (starts_at, ends_at, now, entitlement_id))))

    async def delete_entitlement(self, entitlement_id: str, *, now: float) -> Clawback | None:
        """Mark an entitlement deleted once; a consumable's purchased credits go back, as many
        as are unspent (the balance never goes below zero): the rest is its `shortfall`.
        None: unknown or deleted already."""
        rows = await self._read("SELECT user_id FROM entitlements WHERE id = ?",
                                (entitlement_id,))
        if not rows:
            return None

        async def body(tx: Tx) -> Clawback | None:
            row = await tx.fetchrow(
                "SELECT kind, user_id, credits, state FROM entitlements WHERE id = ?",
                (entitlement_id,))
            if row is None or row["state"] == "deleted":
                return None
            taken = 0
            if row["kind"] == "consumable":
                taken = max(0, min(int(row["credits"]), await _balance(tx, row["user_id"])))
                if taken:
                    await tx.execute(
                        "INSERT INTO purchased_credits (ref, kind, user_id, credits, at)"
                        " VALUES (?, 'clawback', ?, ?, ?)",
                        (entitlement_id, row["user_id"], -taken, now))
            shortfall = int(row["credits"]) - taken if row["kind"] == "consumable" else 0
            await tx.execute(
                "UPDATE entitlements SET state = 'deleted', shortfall = ?, updated_at = ?"
                " WHERE id = ?", (shortfall, now, entitlement_id))
            return Clawback(taken, shortfall)

        result: Clawback | None = await self._atomic(body, lock=_wallet_lock(rows[0]["user_id"]))
        return result

    async def purchased_balance(self, user_id: str) -> int:
        """The member's unspent purchased credits."""
        rows = await self._read(
            "SELECT COALESCE(SUM(credits), 0) AS n FROM purchased_credits WHERE user_id = ?",
            (user_id,))
        return int(rows[0]["n"])

    async def spend_purchased(self, user_id: str, job_id: str, credits: int, *,
                              now: float) -> bool:
        """Take `credits` for a job from the member's purchased credits, once per job, only
        when the balance covers them (under the member's wallet lock)."""
        async def body(tx: Tx) -> bool:
            if await _balance(tx, user_id) < credits:
                return False
            return bool(await tx.execute(
                "INSERT INTO purchased_credits (ref, kind, user_id, credits, at)"
                " VALUES (?, 'spend', ?, ?, ?) ON CONFLICT (ref, kind) DO NOTHING",
                (job_id, user_id, -credits, now)))

        return bool(await self._atomic(body, lock=_wallet_lock(user_id)))

    async def return_purchased(self, job_id: str, credits: int, *, now: float) -> bool:
        """Give back (once) up to `credits` of what a job took from purchased credits."""
        rows = await self._read(
            "SELECT user_id, credits FROM purchased_credits WHERE ref = ? AND kind = 'spend'",
            (job_id,))
        if not rows:
            return False
        back = min(credits, -int(rows[0]["credits"]))
        return bool(await self._atomic(lambda tx: tx.execute(
            "INSERT INTO purchased_credits (ref, kind, user_id, credits, at)"
            " VALUES (?, 'return', ?, ?, ?) ON CONFLICT (ref, kind) DO NOTHING",
            (job_id, rows[0]["user_id"], back, now))))

    async def subscription_credits(self, kind: str, subject_id: str, period: str, *,
                                   now: float) -> int:
        """The credits active subscriptions of `kind` add for a guild or user (`subject_id`)
        per `period`: those not deleted whose [starts_at, ends_at) holds `now`."""
        column = "guild_id" if kind == "guild_subscription" else "user_id"
        rows = await self._read(
            "SELECT COALESCE(SUM(credits), 0) AS n FROM entitlements WHERE kind = ?"
            f" AND {column} = ? AND period = ? AND state <> 'deleted'"
            " AND (starts_at IS NULL OR starts_at <= ?) AND (ends_at IS NULL OR ends_at > ?)",
            (kind, subject_id, period, now, now))
        return int(rows[0]["n"])

    async def refund_shortfalls(self) -> list[EntitlementRecord]:
        """Refunds that could not take back every credit (spent already), for the admins."""
        rows = await self._read(
            "SELECT * FROM entitlements WHERE state = 'deleted' AND shortfall > 0"
            " ORDER BY updated_at DESC")
        return [_record(r) for r in rows]

    async def settle_purchased(self, *, now: float, orphan_after: float = 3600.0,
                               look_back: float = 30 * 86400.0) -> int:
        """Give back purchased credits jobs did not use: as many as each job's ledger released
        (failed, cancelled, rejected, a short set), and all of a spend whose job was never
        written (a crash between the spend and the job, `orphan_after` seconds on). Once per
        job (the 'return' key); spends older than `look_back` (their jobs long settled) are
        not read again. Returns how many spends were settled."""
        rows = await self._read(
            "SELECT p.ref, p.credits, p.at, EXISTS (SELECT 1 FROM jobs j WHERE j.id = p.ref)"
            " AS job, (SELECT COALESCE(SUM(l.credits), 0) FROM ledger l WHERE l.job_id = p.ref"
            " AND l.kind = 'release') AS released FROM purchased_credits p"
            " WHERE p.kind = 'spend' AND p.at >= ? AND NOT EXISTS (SELECT 1 FROM"
            " purchased_credits r WHERE r.ref = p.ref AND r.kind = 'return')",
            (now - look_back,))
        settled = 0
        for r in rows:
            released = int(r["released"])
            if not r["job"] and float(r["at"]) <= now - orphan_after:
                released = -int(r["credits"])
            if released > 0 and await self.return_purchased(r["ref"], released, now=now):
                settled += 1
        return settled
