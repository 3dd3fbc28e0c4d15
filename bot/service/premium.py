"""Premium credits bought through Discord's store (issue 16, part 3).

Discord tells us of purchases by gateway events, which can be forged, replayed or missed, so
an event is only a hint: each one is checked against the application's entitlement list, read
from Discord through `EntitlementPort` (cogs/premium.py implements it; bot/ never imports
discord), and only the listed entitlement is acted on.

- A consumable: its credits are written to the buyer's purchased credits keyed by the
  entitlement id (bot/store/premium.py), and only then consumed at Discord. A crash between
  the two leaves a `credited` row; `recover` (on start and periodically, in any process)
  consumes it. An entitlement Discord shows consumed that we never credited is not ours to
  credit (a consumption we did not make) and is left alone.
- A subscription (guild or user): its row, with Discord's period, raises the server's monthly
  pool or the member's credits while `starts_at <= now < ends_at` (`subscription_bonus` in
  bot/engine/admission.py reads it); a renewal moves `ends_at`; a deletion ends it.
- A deletion (a refund): the purchase's unspent credits are taken back; what was spent
  already cannot be, is never taken below zero, and is logged and listed for the admins.

Spend order: the free quota first (daily/monthly windows), then purchased credits, a whole
video at a time (bot/service/videos.py).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from bot.skus import Sku
from bot.store import Store
from bot.store.premium import Clawback, EntitlementRecord

log = logging.getLogger(__name__)

@dataclass(frozen=True)
class Entitlement:
    """An entitlement as Discord's list shows it (times in unix seconds)."""

    id: str
    sku_id: str
    user_id: str | None
    guild_id: str | None
    consumed: bool = False
    deleted: bool = False
    starts_at: float | None = None
    ends_at: float | None = None


class EntitlementPort(Protocol):
    """Discord's entitlement REST calls for this application."""

    async def list_entitlements(self, *, user_id: str | None = None,
                                include_deleted: bool = False) -> Sequence[Entitlement]:
        """GET /applications/{id}/entitlements (every page; ended ones included)."""
        ...

    async def consume(self, entitlement_id: str) -> None:
        """POST /applications/{id}/entitlements/{entitlement_id}/consume."""
        ...


@dataclass(frozen=True)
class Applied:
    """What handling one entitlement did: `verified` False when Discord's list does not have
    it (forged, replayed, another application's): nothing was written."""

    verified: bool
    credited: int = 0
    consumed: bool = False
    clawback: Clawback | None = None


class PremiumService:
    def __init__(self, store: Store, skus: Mapping[str, Sku], port: EntitlementPort, *,
                 clock: Callable[[], float] = time.time) -> None:
        self.store = store
        self.skus = dict(skus)
        self.port = port
        self.clock = clock

    @property
    def enabled(self) -> bool:
        return bool(self.skus)

    async def _listed(self, entitlement_id: str, user_id: str | None,
                      *, include_deleted: bool) -> Entitlement | None:
        listed = await self.port.list_entitlements(user_id=user_id,
                                                   include_deleted=include_deleted)
        return next((e for e in listed if e.id == entitlement_id), None)

    async def on_created(self, event: Entitlement) -> Applied:
        """ENTITLEMENT_CREATE or _UPDATE: act on the listed entitlement, never the event."""
        listed = await self._listed(event.id, event.user_id, include_deleted=False)
        if listed is None or listed.deleted or (event.user_id and listed.user_id != event.user_id):
            log.warning("entitlement %s is not in Discord's list for this application;"
                        " nothing credited", event.id)
            return Applied(False)
        return await self._apply(listed)

    async def on_deleted(self, event: Entitlement) -> Applied:
        """ENTITLEMENT_DELETE: a refund or removal of one we recorded, once Discord's list
        (for the owner we recorded, not the event's) shows it deleted."""
        known = await self.store.entitlement_record(event.id)
        if known is None:
            return Applied(True)  # never credited: nothing to take back
        listed = await self._listed(event.id, known.user_id or None, include_deleted=True)
        if listed is None or not listed.deleted:
            log.warning("entitlement %s deleted by an event but not in Discord's list as"
                        " deleted; ignored", event.id)
            return Applied(False)
        return Applied(True, clawback=await self._delete(event.id))

    async def recover(self) -> list[Applied]:
        """Bring the database in line with Discord's list: credit what was missed, consume
        what was credited but not consumed, end what was deleted (safe to run anywhere, any
        time: every step is keyed)."""
        done = []
        listed = await self.port.list_entitlements(include_deleted=True)
        for ent in listed:
            if ent.deleted:
                if await self.store.entitlement_record(ent.id) is not None:
                    done.append(Applied(True, clawback=await self._delete(ent.id)))
            else:
                done.append(await self._apply(ent))
        return done

    async def _apply(self, ent: Entitlement) -> Applied:
        sku = self.skus.get(ent.sku_id)
        if sku is None:
            return Applied(True)  # not a SKU of ours: nothing to credit
        now = self.clock()
        record = EntitlementRecord(
            ent.id, sku.id, sku.kind, ent.user_id or "", ent.guild_id or "", sku.credits,
            sku.period, ent.starts_at, ent.ends_at,
            "credited" if sku.kind == "consumable" else "active", 0, now)
        if sku.kind != "consumable":
            if not await self.store.record_entitlement(record, now=now):
                await self.store.set_subscription_period(
                    ent.id, starts_at=ent.starts_at, ends_at=ent.ends_at, now=now)
            return Applied(True)
        known = await self.store.entitlement_record(ent.id)
        credited = 0
        if known is None:
            if ent.consumed or not ent.user_id:
                return Applied(True)  # consumed by someone else, or no buyer: not ours
            credited = sku.credits if await self.store.record_entitlement(record, now=now) else 0
            known = await self.store.entitlement_record(ent.id)
        if known is None or known.state != "credited":
            return Applied(True, credited)
        if not ent.consumed:
            await self.port.consume(ent.id)  # written above first: a crash here is recovered
        await self.store.mark_consumed(ent.id, now=self.clock())
        return Applied(True, credited, consumed=True)

    async def _delete(self, entitlement_id: str) -> Clawback | None:
        clawback = await self.store.delete_entitlement(entitlement_id, now=self.clock())
        if clawback is not None and clawback.shortfall:
            log.warning("refund of entitlement %s: %d purchased credits were spent already and"
                        " could not be taken back", entitlement_id, clawback.shortfall)
        return clawback

    # ---- what members see and spend ---------------------------------------------------
    async def balance(self, user_id: str) -> int:
        return await self.store.purchased_balance(user_id)



def offer_for(skus: Mapping[str, Sku], window: str) -> Sku | None:
    """The SKU a refusal for an exhausted `window` (quota.py's user | guild | event) offers:
    the server's subscription when the server's pool ran out, else a consumable (or the
    member's subscription); nothing for an event's own limit, which purchases do not lift."""
    if window == "event":
        return None
    order = (("guild_subscription", "consumable") if window == "guild"
             else ("consumable", "user_subscription"))
    for kind in order:
        found = next((s for s in skus.values() if s.kind == kind), None)
        if found is not None:
            return found
    return None


__all__ = ["Applied", "Entitlement", "EntitlementPort", "PremiumService", "offer_for"]
