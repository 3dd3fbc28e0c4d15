"""Discord's store for the fake: entitlements of the application, the REST routes that list
and consume them, and the ENTITLEMENT_CREATE/UPDATE/DELETE gateway events.

Routes as Discord documents them (API v10, "Entitlement"): GET
/applications/{app_id}/entitlements with user_id, sku_ids (comma-separated), guild_id,
before/after, limit (1-100, default 100), exclude_ended (default false) and exclude_deleted
(default true), in id order; POST /applications/{app_id}/entitlements/{id}/consume (204; only a
consumable — a one-time purchase — can be consumed). Tests buy, renew, refund and forge through
the methods here; the events go through the real gateway to the real discord.py client.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from tests.fakes.discord.gateway import Gateway
from tests.fakes.discord.world import ApiError, World

API = "/api/v10"
PURCHASE = 1  # EntitlementType.purchase (a consumable bought once)
APPLICATION_SUBSCRIPTION = 8


def _iso(moment: float | None) -> str | None:
    return None if moment is None else datetime.fromtimestamp(moment, UTC).isoformat()


@dataclass
class FakeEntitlement:
    id: int
    sku_id: int
    user_id: int | None
    guild_id: int | None
    type: int
    starts_at: float | None = None
    ends_at: float | None = None
    consumed: bool = False
    deleted: bool = False

    def to_dict(self, application_id: int) -> dict[str, Any]:
        data: dict[str, Any] = {
            "id": str(self.id), "sku_id": str(self.sku_id),
            "application_id": str(application_id), "type": self.type,
            "deleted": self.deleted, "consumed": self.consumed,
            "starts_at": _iso(self.starts_at), "ends_at": _iso(self.ends_at)}
        if self.user_id is not None:
            data["user_id"] = str(self.user_id)
        if self.guild_id is not None:
            data["guild_id"] = str(self.guild_id)
        return data


class Store:
    """The application's entitlements (`items`) and the consume calls made (`consumes`)."""

    def __init__(self, world: World, gateway: Gateway) -> None:
        self.world = world
        self.gateway = gateway
        self.items: dict[int, FakeEntitlement] = {}
        self.consumes: list[int] = []

    def install(self, app: web.Application) -> None:
        app.router.add_route("GET", API + "/applications/{app_id}/entitlements", self.list)
        app.router.add_route(
            "POST", API + "/applications/{app_id}/entitlements/{entitlement_id}/consume",
            self.consume)

    # ---- the test's side ------------------------------------------------------------------
    def _dispatch(self, event: str, ent: FakeEntitlement) -> None:
        self.gateway.dispatch(event, ent.to_dict(self.world.application_id), None)

    def buy(self, sku_id: int, user_id: int, *, guild_id: int | None = None,
            starts_at: float | None = None, ends_at: float | None = None,
            subscription: bool = False, announce: bool = True) -> FakeEntitlement:
        """A purchase: listed at once, ENTITLEMENT_CREATE unless `announce` is False (a
        missed event, as after a crash)."""
        ent = FakeEntitlement(self.world.snowflakes.next(), sku_id,
                              None if subscription and guild_id else user_id, guild_id,
                              APPLICATION_SUBSCRIPTION if subscription else PURCHASE,
                              starts_at, ends_at)
        if subscription and guild_id:
            ent.user_id = user_id  # the purchaser of a server's subscription is named too
        self.items[ent.id] = ent
        if announce:
            self._dispatch("ENTITLEMENT_CREATE", ent)
        return ent

    def renew(self, entitlement_id: int, *, ends_at: float | None) -> FakeEntitlement:
        ent = self.items[entitlement_id]
        ent.ends_at = ends_at
        self._dispatch("ENTITLEMENT_UPDATE", ent)
        return ent

    def refund(self, entitlement_id: int) -> FakeEntitlement:
        ent = self.items[entitlement_id]
        ent.deleted = True
        self._dispatch("ENTITLEMENT_DELETE", ent)
        return ent

    def forge(self, sku_id: int, user_id: int, *, event: str = "ENTITLEMENT_CREATE",
              entitlement_id: int | None = None) -> FakeEntitlement:
        """An event for an entitlement Discord's list does not hold (or replays one)."""
        ent = FakeEntitlement(entitlement_id or self.world.snowflakes.next(), sku_id, user_id,
                              None, PURCHASE)
        self._dispatch(event, ent)
        return ent

    # ---- REST ----------------------------------------------------------------------------
    def _app(self, request: web.Request) -> None:
        if int(request.match_info["app_id"]) != self.world.application_id:
            raise ApiError(403, 50001, "Missing Access")

    async def list(self, request: web.Request) -> web.Response:
        self._app(request)
        q = request.query
        now = datetime.now(UTC).timestamp()
        skus = {int(s) for s in q.get("sku_ids", "").split(",") if s}
        limit = int(q.get("limit", "100"))
        if not 1 <= limit <= 100:
            raise ApiError(400, 50035, "Invalid Form Body")
        found = []
        for ent in sorted(self.items.values(), key=lambda e: e.id):
            if (("user_id" in q and ent.user_id != int(q["user_id"]))
                    or ("guild_id" in q and ent.guild_id != int(q["guild_id"]))
                    or (skus and ent.sku_id not in skus)
                    or (q.get("exclude_ended", "0") in ("1", "true")
                    and ent.ends_at is not None and ent.ends_at <= now)
                    or (q.get("exclude_deleted", "1") in ("1", "true") and ent.deleted)
                    or ("after" in q and ent.id <= int(q["after"]))
                    or ("before" in q and ent.id >= int(q["before"]))):
                continue
            found.append(ent.to_dict(self.world.application_id))
        found = found[-limit:] if "before" in q else found[:limit]
        return web.Response(body=json.dumps(found).encode(),
                            headers={"Content-Type": "application/json"})

    async def consume(self, request: web.Request) -> web.Response:
        self._app(request)
        ent = self.items.get(int(request.match_info["entitlement_id"]))
        if ent is None or ent.deleted:
            raise ApiError(404, 10070, "Unknown Entitlement")
        if ent.type == APPLICATION_SUBSCRIPTION:
            raise ApiError(400, 40074, "Subscriptions can't be consumed")
        self.consumes.append(ent.id)
        ent.consumed = True
        return web.Response(status=204)
