"""Kill -9 chaos: many jobs across guilds and users while the real bot is SIGKILLed at random
moments and restarted over the same database. Whatever the timing, every job must end
delivered, failed with a message, or cancelled; no job is posted twice; the ledger balances.

The run is driven by one `random.Random(seed)`; the seed is printed, and `CHAOS_SEED=<n>` replays
the same plan (which jobs fail or get cancelled, who asks, when the kills come). The OS timing
still varies, which is the point of the suite.
"""

from __future__ import annotations

import asyncio
import os
import random
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from bot.store import JobState, JobView, LedgerLine, Store
from tests.e2e.harness import BotProcess
from tests.fakes.discord.interactions import FakeInteraction, InvalidInvocation
from tests.fakes.discord.server import FakeDiscord
from tests.fakes.discord.state import Channel, Member, Message

pytestmark = [pytest.mark.chaos, pytest.mark.timeout(240)]

JOBS = int(os.environ.get("CHAOS_JOBS", "50"))
KILLS = int(os.environ.get("CHAOS_KILLS", "5"))
#: Below the per-user queued cap (5), so pacing, not refusals, limits the submissions.
OPEN_PER_USER = 3
FAST = {"duration": 4, "resolution": "480p"}
ENDINGS = {JobState.DELIVERED, JobState.FAILED, JobState.CANCELLED}


@dataclass
class Asker:
    member: Member
    channel: Channel


@dataclass
class Plan:
    """What the seed decided: who asks for each job, and whether it should fail or be cancelled."""

    askers: list[int]
    fate: list[str]  # "ok" | "fail" | "cancel"
    kill_after: list[float]  # seconds of uptime before each kill
    down_for: list[float] = field(default_factory=list)


def make_plan(rng: random.Random, users: int, *, jobs: int = JOBS, kills: int = KILLS) -> Plan:
    askers = [rng.randrange(users) for _ in range(jobs)]
    fate = [rng.choices(["ok", "fail", "cancel"], weights=[7, 2, 1])[0] for _ in range(jobs)]
    kill_after = [rng.uniform(1.0, 6.0) for _ in range(kills)]
    down_for = [rng.uniform(0.0, 0.5) for _ in range(kills)]
    return Plan(askers, fate, kill_after, down_for)


def result_posts(fake: FakeDiscord, channels: list[Channel]) -> list[Message]:
    return [m for ch in channels for m in fake.messages(ch.id)
            if any(a.filename.endswith(".mp4") or a.filename == "thumbnail.jpg"
                   for a in m.attachments)]


def posted_job_ids(message: Message) -> list[str]:
    return [cid.removeprefix("sd:reroll:") for cid in message.custom_ids()
            if cid.startswith("sd:reroll:")]


class Chaos:
    """The three actors of the run: users asking, users cancelling, and the killer."""

    def __init__(self, fake: FakeDiscord, bot: BotProcess, askers: list[Asker],
                 plan: Plan, rng: random.Random) -> None:
        self.fake = fake
        self.bot = bot
        self.askers = askers
        self.plan = plan
        self.rng = rng
        self.sent: list[FakeInteraction] = []
        self.store: Store | None = None
        self.kills = 0
        self.cancel_clicks = 0

    async def start_bot(self) -> None:
        known = set(self.fake.gateway.sessions)
        await self.bot.start()
        await self.fake.wait_for(
            lambda: [s for s in self.fake.gateway.live_sessions() if s.id not in known],
            timeout=60, what="a fresh gateway session")
        await self.fake.wait_for(lambda: self.fake.commands(), timeout=60, what="command sync")

    async def open_store(self) -> Store:
        if self.store is None:
            self.store = await Store.open(self.bot.data_dir / "seedance.sqlite3")
        return self.store

    async def open_jobs_by_user(self) -> Counter[str]:
        store = await self.open_store()
        return Counter(j.user_id for j in await store.jobs() if not j.terminal)

    async def killer(self) -> None:
        for uptime, down in zip(self.plan.kill_after, self.plan.down_for, strict=True):
            await asyncio.sleep(uptime)
            await self.bot.kill()
            self.kills += 1
            await asyncio.sleep(down)
            await self.start_bot()

    async def asker(self) -> None:
        for n, (who, fate) in enumerate(zip(self.plan.askers, self.plan.fate, strict=True)):
            asker = self.askers[who]
            while True:
                busy = await self.open_jobs_by_user()
                if (busy[str(asker.member.user.id)] < OPEN_PER_USER
                        and self.fake.gateway.live_sessions(asker.channel.guild_id)):
                    break
                await asyncio.sleep(0.1)
            prompt = f"chaos job {n}: a lighthouse in a storm"
            if fate == "fail":
                prompt += " [local:fail:task_failed]"
            try:
                inter = await self.fake.invoke_slash(
                    asker.channel.guild_id, asker.channel.id, asker.member.user.id, "video",
                    {"prompt": prompt, **FAST})
            except RuntimeError:  # the bot died between the check and the send
                continue
            self.sent.append(inter)
            if fate == "cancel":
                asyncio.get_running_loop().create_task(self.cancel_later(inter))
            await asyncio.sleep(self.rng.uniform(0.0, 0.3))

    async def cancel_later(self, inter: FakeInteraction) -> None:
        await asyncio.sleep(self.rng.uniform(0.2, 2.0))
        original = inter.original
        if original is None:
            return
        cancel = next((c for c in original.custom_ids() if c.startswith("sd:cancel:")), None)
        if cancel is None:
            return
        try:
            await self.fake.click(original.id, cancel, inter.user_id)
            self.cancel_clicks += 1
        except (InvalidInvocation, RuntimeError):
            pass  # already finished, or the bot is down right now: both are fair outcomes

    async def settle(self, timeout: float) -> list[JobView]:  # noqa: ASYNC109
        """Wait until every job the bot accepted is in an ending state."""
        store = await self.open_store()
        deadline = time.monotonic() + timeout
        while True:
            jobs = await store.jobs()
            if all(j.state in ENDINGS for j in jobs):
                return jobs
            if time.monotonic() > deadline:
                stuck = [(j.id[:8], j.state.value) for j in jobs if j.state not in ENDINGS]
                raise AssertionError(f"jobs never finished: {stuck}")
            await asyncio.sleep(0.25)


async def test_sigkill_storm_every_job_ends_once_and_the_ledger_balances(tmp_path: Path) -> None:
    seed = int(os.environ.get("CHAOS_SEED") or random.SystemRandom().randrange(2**32))
    print(f"chaos seed: {seed} (replay with CHAOS_SEED={seed})")
    rng = random.Random(seed)
    data = tmp_path / "data"
    data.mkdir()
    async with FakeDiscord() as fake:
        second, third = fake.add_guild("Second"), fake.add_guild("Third")
        default_channel = fake.channel
        second_channel = fake.world.channels[second.default_channel_id]
        third_channel = fake.world.channels[third.default_channel_id]
        askers = [
            Asker(fake.member, default_channel),
            Asker(fake.add_member("bob"), default_channel),
            Asker(fake.add_member("carol", guild_id=second.id), second_channel),
            Asker(fake.add_member("dave", guild_id=second.id), second_channel),
            Asker(fake.add_member("erin", guild_id=third.id), third_channel),
        ]
        channels = [default_channel, second_channel, third_channel]
        plan = make_plan(rng, len(askers))
        # Global commands ("0" = no dev guild), so all three guilds see /video.
        bot = BotProcess(fake, data, {"SEEDANCE_LOCAL_DELAY": "0.5",
                                      "SEEDANCE_DEV_GUILD_ID": "0"})
        chaos = Chaos(fake, bot, askers, plan, rng)
        try:
            await chaos.start_bot()
            await asyncio.gather(chaos.asker(), chaos.killer())
            jobs = await chaos.settle(timeout=120)
            # The last terminal edits and posts land just after the rows; let them arrive.
            await asyncio.sleep(1.0)
            assert chaos.store is not None
            ledger = await chaos.store.ledger()
            await check_outcomes(fake, channels, jobs, ledger, plan)
        except BaseException:
            print(bot.log())
            raise
        finally:
            if chaos.store is not None:
                await chaos.store.close()
            await bot.stop()
        states = Counter(j.state.value for j in jobs)
        print(f"chaos: {len(chaos.sent)} asked, {len(jobs)} jobs {dict(states)}, "
              f"{chaos.kills} kills, {chaos.cancel_clicks} cancel clicks")
        assert chaos.kills == KILLS
        # Only interactions caught by a kill may go missing; most must have become jobs.
        assert len(jobs) >= JOBS * 0.7, (len(jobs), len(chaos.sent))


async def check_outcomes(fake: FakeDiscord, channels: list[Channel], jobs: list[JobView],
                         ledger: list[LedgerLine], plan: Plan) -> None:
    posts: Counter[str] = Counter()
    for message in result_posts(fake, channels):
        posts.update(posted_job_ids(message))
    by_id = {j.id: j for j in jobs}
    assert set(posts) <= set(by_id), "a post names a job the store does not know"
    lines_by_job: dict[str, list[LedgerLine]] = {}
    for line in ledger:
        lines_by_job.setdefault(line.job_id, []).append(line)
    assert set(lines_by_job) <= set(by_id), "ledger lines for a job that does not exist"
    for job in jobs:
        assert job.state in ENDINGS, (job.id, job.state)
        lines = lines_by_job.get(job.id, [])
        kinds = Counter(line.kind for line in lines)
        assert kinds["reserve"] == 1, (job.id, kinds)
        assert kinds["commit"] + kinds["release"] == 1, f"job {job.id} settled {dict(kinds)}"
        reserved = next(line.credits for line in lines if line.kind == "reserve")
        assert all(line.credits == reserved for line in lines), (job.id, lines)
        charged = reserved if kinds["commit"] else 0
        assert job.credits_charged == charged, (job.id, job.credits_charged, charged)
        if job.state is JobState.DELIVERED:
            assert posts[job.id] == 1, f"job {job.id} delivered with {posts[job.id]} posts"
            assert kinds["commit"] == 1, (job.id, kinds)
            assert job.delivery_ref, job.id
        else:
            assert posts[job.id] == 0, f"{job.state} job {job.id} has {posts[job.id]} posts"
        if job.state is JobState.FAILED:
            assert job.error_message, f"job {job.id} failed without a message"
            assert "[local:fail:" in job.request.prompt, (job.id, job.error_message)
        status_id = job.context.get("status_message_id")
        if status_id is not None:
            status = fake.world.messages[int(status_id)]
            word = {JobState.DELIVERED: "✅ posted", JobState.FAILED: "❌ failed",
                    JobState.CANCELLED: "🚫 cancelled"}[job.state]
            assert word in status.text, (job.id, job.state, status.text)
