"""Premium credits end to end: the real bot against the fake Discord's store (entitlement
events through the gateway, the REST list and consume), with the ledger and the purchased
credits checked after every step: refused with a premium button, purchase → credits → consumed
→ spent on a video; a crash between crediting and consuming → credited and consumed exactly
once after the restart; a server subscription raising the pool (start, renew, end); refunds
taking back what is unspent and logging the rest; a forged event crediting nothing."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from bot.service.purchased import PURCHASED_KEY
from bot.store import Store
from tests.e2e.test_discord_admin_e2e import private_reply
from tests.e2e.test_discord_e2e import FAST, running, video_posts
from tests.fakes.discord.server import FakeDiscord
from tests.fakes.discord.state import iter_components

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(240)]

CONSUMABLE, SERVER_SUB = 123, 456
ENV = {"SEEDANCE_SKUS": f"{CONSUMABLE}=consumable:100,{SERVER_SUB}=guild_subscription:3000/month",
       "SEEDANCE_USER_DAILY_CREDITS": "4"}  # one FAST video (4 s of 480p) a day for free


async def until(check: Callable[[], Awaitable[bool]], what: str) -> None:
    """Poll the bot's database (the fake's own waits see only the fake's state), 30 s."""
    deadline = time.monotonic() + 30
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


async def test_premium_credits_from_purchase_to_refund(tmp_path: Path) -> None:
    async with FakeDiscord() as fake:
        alice = fake.member
        uid = str(alice.user.id)
        store: Store | None = None
        bot_cm = running(tmp_path, fake, **ENV)
        bot = await bot_cm.__aenter__()
        try:
            store = await Store.open(bot.data_dir / "seedance.sqlite3")
            s = store

            async def balance_is(n: int) -> bool:
                return await s.purchased_balance(uid) == n

            # The free video, then a refusal carrying the consumable's premium button.
            await fake.slash("video", {"prompt": "a free fox", **FAST})
            await fake.wait_for(lambda: len(video_posts(fake)) >= 1 or None, timeout=120,
                                what="the free video")
            refused = await fake.slash("video", {"prompt": "one too many", **FAST})
            assert "Not enough credits" in await private_reply(fake, refused)
            sent = [c for m in refused.followups for c in m.components]
            if refused.callback is not None:  # answered at once: the callback is the reply
                sent += (refused.callback.data or {}).get("components", [])
            buttons = [c for c in iter_components(sent)
                       if c.get("type") == 2 and c.get("style") == 6]
            assert [b["sku_id"] for b in buttons] == [str(CONSUMABLE)]
            assert len(await s.jobs(user_id=uid)) == 1  # the refusal wrote nothing

            # Purchase → credits → consumed at Discord, once.
            first = fake.entitlements.buy(CONSUMABLE, alice.user.id)
            await until(lambda: balance_is(100), "the purchase credited")
            await fake.wait_for(lambda: fake.entitlements.consumes or None, what="consumed")
            assert fake.entitlements.consumes == [first.id] and first.consumed
            record = await s.entitlement_record(str(first.id))
            assert record is not None and record.state in ("credited", "consumed")

            # Spent: the next video is paid from purchased credits, the ledger books it.
            await fake.slash("video", {"prompt": "a paid fox", **FAST})
            await fake.wait_for(lambda: len(video_posts(fake)) >= 2 or None, timeout=120,
                                what="the paid video")
            assert await s.purchased_balance(uid) == 96
            paid = [j for j in await s.jobs(user_id=uid) if j.context.get(PURCHASED_KEY)]
            assert len(paid) == 1 and paid[0].context[PURCHASED_KEY] == 4
            assert [(line.kind, line.credits) for line in await s.ledger(paid[0].id)] == [
                ("reserve", 4), ("commit", 4)]
            shown = await private_reply(fake, await fake.slash("quota", {}))
            assert "Purchased credits: **96** left" in shown
            assert "daily credits: 4 of 4 used" in shown  # the paid video is not in the day

            # A crash between crediting and consuming: consume fails until the bot is killed.
            fake.fail_next(500, times=1000, route="/consume")
            second = fake.entitlements.buy(CONSUMABLE, alice.user.id)
            await until(lambda: balance_is(196), "the second purchase credited")
            await bot.kill()
            fake.rest.state.faults.clear()
            assert not second.consumed and await s.purchased_balance(uid) == 196
            await bot.start()  # the same data dir: the recovery on start consumes it
            await fake.wait_for(lambda: second.consumed or None, timeout=60,
                                what="the recovered consume")
            assert fake.entitlements.consumes.count(second.id) == 1
            await until(lambda: _state_is(s, str(second.id), "consumed"), "the consume recorded")
            assert await s.purchased_balance(uid) == 196  # exactly once

            # A forged ENTITLEMENT_CREATE (not in Discord's list) credits nothing. (The start's
            # recovery runs before the gateway connects: an event sent earlier reaches nobody.)
            await fake.wait_until_ready(timeout=60)
            forged = fake.entitlements.forge(CONSUMABLE, alice.user.id)
            await fake.wait_for(lambda: str(forged.id) in bot.log() or None, timeout=30,
                                what="the forged event refused")
            assert await s.entitlement_record(str(forged.id)) is None
            assert await s.purchased_balance(uid) == 196

            # A server subscription raises the monthly pool while active.
            now = time.time()
            sub = fake.entitlements.buy(SERVER_SUB, alice.user.id, guild_id=fake.guild.id,
                                        subscription=True, starts_at=now - 60,
                                        ends_at=now + 3600)
            await until(lambda: _state_is(s, str(sub.id), "active"), "the subscription")
            assert "of 6000 used" in await private_reply(fake, await fake.slash("quota", {}))
            fake.entitlements.renew(sub.id, ends_at=now + 7200)
            await until(lambda: _ends_at_is(s, str(sub.id), now + 7200), "the renewal")
            fake.entitlements.renew(sub.id, ends_at=now - 1)  # ended
            await until(lambda: _ends_at_is(s, str(sub.id), now - 1), "the end")
            assert "of 3000 used" in await private_reply(fake, await fake.slash("quota", {}))
            assert fake.entitlements.consumes.count(sub.id) == 0

            # Refunds: the first purchase's 100 come back whole (196 → 96); the second can
            # take back only those 96: the 4 spent are logged for the admins, never negative.
            fake.entitlements.refund(first.id)
            await until(lambda: balance_is(96), "the first refund")
            fake.entitlements.refund(second.id)
            await until(lambda: balance_is(0), "the second refund")
            [short] = await s.refund_shortfalls()
            assert short.id == str(second.id) and short.shortfall == 4
            await fake.wait_for(lambda: "could not be taken back" in bot.log() or None,
                                what="the admins' log line")
        finally:
            if store is not None:
                await store.close()
            await bot_cm.__aexit__(None, None, None)


async def _state_is(store: Store, entitlement_id: str, state: str) -> bool:
    record = await store.entitlement_record(entitlement_id)
    return record is not None and record.state == state


async def _ends_at_is(store: Store, entitlement_id: str, ends_at: float) -> bool:
    record = await store.entitlement_record(entitlement_id)
    return record is not None and record.ends_at is not None \
        and abs(record.ends_at - ends_at) < 1
