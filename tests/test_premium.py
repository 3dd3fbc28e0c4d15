"""Premium credits (bot/skus.py, bot/store/premium.py, bot/service/premium.py,
bot/service/purchased.py): SEEDANCE_SKUS, each purchase credited once and consumed after,
recovery from Discord's list after a crash, forged events, refunds that never go below zero,
subscriptions raising the limits while active, and purchased credits paying for a video once
the free quota is spent. The store runs on both backends; Discord's list is `Listed` here
(the e2e file drives the real cog through the fake Discord)."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import replace
from pathlib import Path

import httpx
import pytest

from bot.config import load_settings
from bot.engine import QuotaExceeded
from bot.errors import ConfigError
from bot.models import GenerationRequest
from bot.service import Made
from bot.service.premium import Entitlement, PremiumService, offer_for
from bot.service.purchased import PURCHASED_KEY
from bot.skus import parse_skus
from bot.store import JobState, NewJob, Store, UsageCheck
from bot.store.ledger import day_of
from bot.store.premium import EntitlementRecord
from tests.test_service import MEMBER, build, make

SKUS = "123=consumable:100,456=guild_subscription:3000/month,789=user_subscription:300/month"
T0 = 1_000_000.0


# ---- configuration -----------------------------------------------------------------------------
def test_skus_parse_each_kind() -> None:
    skus = load_settings(seedance_skus=SKUS).skus
    assert [(s.id, s.kind, s.credits, s.period) for s in skus.values()] == [
        ("123", "consumable", 100, None), ("456", "guild_subscription", 3000, "month"),
        ("789", "user_subscription", 300, "month")]
    assert load_settings(seedance_skus="").skus == {}


@pytest.mark.parametrize("bad", [
    "12a=consumable:5", "123=coupon:5", "123=consumable:0", "123=consumable:5/month",
    "456=guild_subscription:10/day", "789=user_subscription:10",
    "123=consumable:5,123=consumable:6",
])
def test_a_bad_sku_entry_is_named_at_startup(bad: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_settings(seedance_skus=f"1=consumable:1,{bad}")
    message = str(info.value)
    assert message.startswith("SEEDANCE_SKUS: bad entry")
    assert repr(bad.split(",")[-1]) in message and "use the form" in message


# ---- the store (both backends) -----------------------------------------------------------------
@pytest.fixture
async def store(store_url: str) -> AsyncIterator[Store]:
    s = await Store.open(store_url)
    yield s
    await s.close()


def consumable(ent_id: str = "e1", user: str = "u1", credits: int = 100) -> EntitlementRecord:
    return EntitlementRecord(ent_id, "123", "consumable", user, "", credits, None, None, None,
                             "credited", 0, T0)


async def test_a_purchase_is_recorded_and_credited_once(store: Store) -> None:
    assert await store.record_entitlement(consumable(), now=T0)
    assert not await store.record_entitlement(consumable(), now=T0 + 1)
    assert await store.purchased_balance("u1") == 100
    assert await store.mark_consumed("e1", now=T0 + 2)
    assert not await store.mark_consumed("e1", now=T0 + 3)
    rec = await store.entitlement_record("e1")
    assert rec is not None and rec.state == "consumed"


async def test_spends_are_covered_keyed_by_job_and_given_back_once(store: Store) -> None:
    await store.record_entitlement(consumable(credits=10), now=T0)
    assert not await store.spend_purchased("u1", "j1", 11, now=T0)
    assert await store.spend_purchased("u1", "j1", 8, now=T0)
    assert not await store.spend_purchased("u1", "j1", 1, now=T0)  # one spend per job
    assert await store.purchased_balance("u1") == 2
    assert await store.return_purchased("j1", 8, now=T0)
    assert not await store.return_purchased("j1", 8, now=T0)
    assert await store.purchased_balance("u1") == 10
    # A spend whose job was never written (a crash) comes back after an hour, once.
    assert await store.spend_purchased("u1", "lost", 6, now=T0)
    assert await store.settle_purchased(now=T0 + 10) == 0
    assert await store.purchased_balance("u1") == 4
    assert await store.settle_purchased(now=T0 + 3601) == 1
    assert await store.settle_purchased(now=T0 + 3602) == 0
    assert await store.purchased_balance("u1") == 10


async def test_a_refund_takes_back_only_unspent_credits_and_records_the_rest(
        store: Store) -> None:
    await store.record_entitlement(consumable(credits=10), now=T0)
    await store.spend_purchased("u1", "j1", 7, now=T0)
    back = await store.delete_entitlement("e1", now=T0 + 5)
    assert back is not None and (back.taken, back.shortfall) == (3, 7)
    assert await store.purchased_balance("u1") == 0
    assert await store.delete_entitlement("e1", now=T0 + 6) is None  # once
    assert await store.delete_entitlement("nope", now=T0 + 6) is None
    assert [r.id for r in await store.refund_shortfalls()] == ["e1"]


async def test_subscriptions_count_while_active(store: Store) -> None:
    sub = EntitlementRecord("s1", "456", "guild_subscription", "u1", "g1", 3000, "month",
                            T0, T0 + 100, "active", 0, T0)
    await store.record_entitlement(sub, now=T0)
    assert await store.purchased_balance("u1") == 0  # a subscription adds no purchased credits

    async def credits(at: float) -> int:
        return await store.subscription_credits("guild_subscription", "g1", "month", now=at)

    assert (await credits(T0 - 1), await credits(T0), await credits(T0 + 100)) == (0, 3000, 0)
    assert await store.set_subscription_period("s1", starts_at=T0, ends_at=T0 + 200, now=T0)
    assert await credits(T0 + 150) == 3000
    await store.delete_entitlement("s1", now=T0 + 160)
    assert await credits(T0 + 170) == 0
    assert not await store.set_subscription_period("s1", starts_at=T0, ends_at=None, now=T0)


async def _job(store: Store, job_id: str, credits: int, context: dict[str, int]) -> None:
    refused = await store.create_job(NewJob(
        id=job_id, guild_id="g1", channel_id="10", user_id="u1", role_ids=(),
        request=GenerationRequest(prompt="a fox"), provider="local", model=None,
        state=JobState.QUEUED, credits_estimate=credits, context=context),
        [UsageCheck("guild", "g1", 100, day_of(T0))], now=T0)
    assert refused is None


async def test_a_paid_job_is_in_the_ledger_but_in_no_window(store: Store) -> None:
    window = UsageCheck("guild", "g1", 100, day_of(T0))
    member = UsageCheck("user", "g1", 100, day_of(T0), user_id="u1", outside_events=True)
    await _job(store, "free", 4, {})
    await store.record_entitlement(consumable(), now=T0)
    assert await store.spend_purchased("u1", "paid", 8, now=T0)
    await _job(store, "paid", 8, {PURCHASED_KEY: 8})
    assert (await store.usage(window), await store.usage(member)) == (4, 4)
    await store.transition("paid", JobState.FAILED, now=T0 + 1, ledger="release")
    await store.transition("free", JobState.FAILED, now=T0 + 1, ledger="release")
    assert (await store.usage(window), await store.usage(member)) == (0, 0)
    assert [line.kind for line in await store.ledger("paid")] == ["reserve", "release"]
    assert await store.settle_purchased(now=T0 + 2) == 1
    assert await store.purchased_balance("u1") == 100


# ---- the service -------------------------------------------------------------------------------
class Listed:
    """Discord's entitlement list for the service, with a consume that can fail once (the
    process dying between crediting and consuming)."""

    def __init__(self) -> None:
        self.items: dict[str, Entitlement] = {}
        self.consumes: list[str] = []
        self.crash_next_consume = False

    async def list_entitlements(self, *, user_id: str | None = None,
                                include_deleted: bool = False) -> Sequence[Entitlement]:
        return [e for e in self.items.values() if (user_id is None or e.user_id == user_id)
                and (include_deleted or not e.deleted)]

    async def consume(self, entitlement_id: str) -> None:
        if self.crash_next_consume:
            self.crash_next_consume = False
            raise ConnectionError("the process died here")
        self.consumes.append(entitlement_id)
        self.items[entitlement_id] = replace(self.items[entitlement_id], consumed=True)


@pytest.fixture
async def premium(store: Store) -> tuple[PremiumService, Listed]:
    listed = Listed()
    return PremiumService(store, parse_skus(SKUS), listed, clock=lambda: T0), listed


async def test_a_purchase_is_credited_then_consumed_exactly_once(
        premium: tuple[PremiumService, Listed]) -> None:
    service, listed = premium
    listed.items["e1"] = ent = Entitlement("e1", "123", "u1", None)
    done = await service.on_created(ent)
    assert (done.verified, done.credited, done.consumed) == (True, 100, True)
    assert await service.balance("u1") == 100 and listed.consumes == ["e1"]
    again = await service.on_created(ent)  # a replayed event
    assert again.credited == 0 and listed.consumes == ["e1"]
    await service.recover()
    assert await service.balance("u1") == 100 and listed.consumes == ["e1"]


async def test_a_crash_between_crediting_and_consuming_is_recovered_once(
        premium: tuple[PremiumService, Listed]) -> None:
    service, listed = premium
    listed.items["e1"] = ent = Entitlement("e1", "123", "u1", None)
    listed.crash_next_consume = True
    with pytest.raises(ConnectionError):
        await service.on_created(ent)
    assert await service.balance("u1") == 100 and listed.consumes == []
    await service.recover()  # the next start
    await service.recover()
    assert await service.balance("u1") == 100 and listed.consumes == ["e1"]
    record = await service.store.entitlement_record("e1")
    assert record is not None and record.state == "consumed"
    # A purchase whose event was missed altogether is credited by the recovery too.
    listed.items["e2"] = Entitlement("e2", "123", "u1", None)
    await service.recover()
    assert await service.balance("u1") == 200 and listed.consumes == ["e1", "e2"]


async def test_forged_replayed_or_foreign_entitlements_credit_nothing(
        premium: tuple[PremiumService, Listed]) -> None:
    service, listed = premium
    forged = await service.on_created(Entitlement("x1", "123", "u1", None))
    listed.items["e1"] = Entitlement("e1", "123", "u2", None)
    foreign = await service.on_created(Entitlement("e1", "123", "u1", None))
    listed.items["e3"] = Entitlement("e3", "123", "u1", None, deleted=True)
    deleted = await service.on_created(Entitlement("e3", "123", "u1", None))
    listed.items["e4"] = Entitlement("e4", "123", "u1", None, consumed=True)
    consumed_elsewhere = await service.on_created(Entitlement("e4", "123", "u1", None))
    assert [forged.verified, foreign.verified, deleted.verified] == [False, False, False]
    assert consumed_elsewhere.credited == 0
    assert await service.balance("u1") == 0 and listed.consumes == []
    # A forged delete of a live purchase takes nothing back.
    listed.items["e5"] = ent = Entitlement("e5", "123", "u1", None)
    await service.on_created(ent)
    assert not (await service.on_deleted(ent)).verified
    assert not (await service.on_deleted(replace(ent, user_id="u9", deleted=True))).verified
    assert await service.balance("u1") == 100


async def test_a_refund_after_spending_is_logged_for_the_admins(
        premium: tuple[PremiumService, Listed], caplog: pytest.LogCaptureFixture) -> None:
    service, listed = premium
    listed.items["e1"] = ent = Entitlement("e1", "123", "u1", None)
    await service.on_created(ent)
    await service.store.spend_purchased("u1", "j1", 60, now=T0)
    listed.items["e1"] = replace(listed.items["e1"], deleted=True)
    done = await service.on_deleted(ent)
    assert done.clawback is not None and (done.clawback.taken, done.clawback.shortfall) == (40, 60)
    assert await service.balance("u1") == 0
    assert "60 purchased credits were spent already" in caplog.text


def test_the_refusal_offers_the_sku_that_lifts_the_limit() -> None:
    skus = parse_skus(SKUS)
    offers = [offer_for(skus, w) for w in ("user", "guild", "event")]
    assert [o.id if o else None for o in offers] == ["123", "456", None]
    only_subs = parse_skus("789=user_subscription:30/day")
    assert offer_for(only_subs, "user") == only_subs["789"]
    assert offer_for(only_subs, "guild") is None


# ---- spending and subscriptions through the real services --------------------------------------
async def test_purchased_credits_pay_when_the_free_quota_is_spent(tmp_path: Path) -> None:
    async with httpx.AsyncClient() as http:
        w = await build(tmp_path, http, seedance_skus=SKUS, seedance_user_daily_credits=4)
        try:
            listed = Listed()
            service = PremiumService(w.store, w.settings.skus, listed)
            await make(w)  # 4 credits: the whole free day
            with pytest.raises(QuotaExceeded):
                await make(w)  # nothing purchased yet
            listed.items["e1"] = ent = Entitlement("e1", "123", MEMBER.user_id, None)
            await service.on_created(ent)
            made = await make(w)
            assert isinstance(made, Made) and made.job.context[PURCHASED_KEY] == 4
            assert await service.balance(MEMBER.user_id) == 96
            # Paid credits use neither the member's free day nor the server's pool.
            status = await w.services.videos.quota(MEMBER)
            assert [(win.name, win.used) for win in status.windows] == [("user", 4), ("guild", 4)]
            # Cancelled while waiting: the ledger releases it, the purchased credits come back.
            await w.engine.cancel(made.job.id, MEMBER.user_id)
            assert [line.kind for line in await w.store.ledger(made.job.id)] == [
                "reserve", "release"]
            assert await w.store.settle_purchased(now=time.time()) == 1
            assert await w.store.settle_purchased(now=time.time()) == 0
            assert await service.balance(MEMBER.user_id) == 100
            # Subscriptions raise the limits while active: 300/month is 10 a day.
            listed.items["s1"] = sub = Entitlement("s1", "789", MEMBER.user_id, None,
                                                   starts_at=time.time() - 60,
                                                   ends_at=time.time() + 3600)
            listed.items["s2"] = pool = Entitlement("s2", "456", MEMBER.user_id, MEMBER.guild_id,
                                                    ends_at=time.time() + 3600)
            await service.on_created(sub)
            await service.on_created(pool)
            status = await w.services.videos.quota(MEMBER)
            user, guild = status.window("user"), status.window("guild")
            assert user is not None and guild is not None
            assert (user.limit, guild.limit) == (4 + 10, 3000 + 3000)
            assert listed.consumes == ["e1"]  # subscriptions are not consumed
            listed.items["s1"] = replace(sub, ends_at=time.time() - 1)  # ended, not renewed
            await service.on_created(listed.items["s1"])
            user = (await w.services.videos.quota(MEMBER)).window("user")
            assert user is not None and user.limit == 4
        finally:
            await w.engine.stop()
            await w.store.close()
