"""Discord's side of premium credits: the entitlement REST calls behind
`bot.service.premium.EntitlementPort`, and the premium button a credit refusal carries."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import discord

from bot.config import Settings
from bot.engine import QuotaExceeded
from bot.service.premium import Entitlement, offer_for

#: Discord's page size for the entitlement list.
PAGE = 100


def _stamp(moment: Any) -> float | None:
    if isinstance(moment, datetime):
        return moment.timestamp()
    if isinstance(moment, str) and moment:
        return datetime.fromisoformat(moment).timestamp()
    return None


def from_payload(data: dict[str, Any]) -> Entitlement:
    return Entitlement(
        str(data["id"]), str(data["sku_id"]),
        str(data["user_id"]) if data.get("user_id") else None,
        str(data["guild_id"]) if data.get("guild_id") else None,
        bool(data.get("consumed", False)), bool(data.get("deleted", False)),
        _stamp(data.get("starts_at")), _stamp(data.get("ends_at")))


def from_event(ent: discord.Entitlement) -> Entitlement:
    return Entitlement(
        str(ent.id), str(ent.sku_id), str(ent.user_id) if ent.user_id else None,
        str(ent.guild_id) if ent.guild_id else None, ent.consumed, ent.deleted,
        _stamp(ent.starts_at), _stamp(ent.ends_at))


class DiscordEntitlements:
    """`EntitlementPort` through discord.py's HTTP client. The raw list call, because
    `Client.entitlements()` drops `exclude_deleted` when it pages forwards."""

    def __init__(self, client: discord.Client) -> None:
        self.client = client

    def _app(self) -> int:
        if self.client.application_id is None:
            raise RuntimeError("the application id is not known before the login")
        return self.client.application_id

    async def list_entitlements(self, *, user_id: str | None = None,
                                include_deleted: bool = False) -> list[Entitlement]:
        found: list[Entitlement] = []
        after: int | None = None
        while True:
            page = await self.client.http.get_entitlements(
                self._app(), user_id=int(user_id) if user_id else None, after=after,
                limit=PAGE, exclude_ended=False, exclude_deleted=not include_deleted)
            found += [from_payload(dict(d)) for d in page]
            if len(page) < PAGE:
                return found
            after = int(page[-1]["id"])

    async def consume(self, entitlement_id: str) -> None:
        await self.client.http.consume_entitlement(self._app(), int(entitlement_id))


def premium_view(settings: Settings, error: BaseException) -> discord.ui.View | None:
    """A premium button for the SKU that lifts the limit `error` ran into, if any."""
    if not isinstance(error, QuotaExceeded):
        return None
    # The personal pool (user installs) is no server's: a server subscription can't lift it.
    window = "user" if error.window.personal else error.window.name
    sku = offer_for(settings.skus, window)
    if sku is None:
        return None
    view = discord.ui.View(timeout=None)
    view.add_item(discord.ui.Button(sku_id=int(sku.id)))
    return view
