"""Kill -9 chaos with several processes on one database: two shards and a worker on
PostgreSQL, a bot and a worker on SQLite. Users ask for 60 videos over 2 servers; seeded
SIGKILLs hit random processes, each restarted after a moment. Whatever the timing: every job
ends once, every delivered job is posted once, the ledger balances, and no job is left
claimed by a process that died (its jobs were taken over by the others).

`CHAOS_SEED=<n>` replays a plan, as in test_chaos.py.
"""

from __future__ import annotations

import asyncio
import os
import random
import sys
from collections import Counter
from pathlib import Path

import pytest

from bot.store import Store
from tests.chaos.test_chaos import Asker, Chaos, check_outcomes, make_plan
from tests.e2e.harness import BotProcess
from tests.fakes.discord.server import FakeDiscord

pytestmark = [pytest.mark.chaos, pytest.mark.timeout(300)]

JOBS = int(os.environ.get("CHAOS_JOBS", "60"))
KILLS = int(os.environ.get("CHAOS_KILLS", "5"))


class Proc(BotProcess):
    """One process of the fleet: `run` (a shard, or every shard) or `worker`."""

    def __init__(self, fake: FakeDiscord, data_dir: Path, env: dict[str, str], name: str,
                 command: str, shard: tuple[int, int] | None) -> None:
        super().__init__(fake, data_dir, env)
        self.name, self.command, self.shard = name, command, shard
        self.log_path = data_dir / f"{name}.log"
        self.starts = 0

    async def start(self) -> None:
        known = set(self.fake.gateway.sessions)
        log = self.log_path.open("ab")
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "tests.fakes.discord.run_bot", self.command,
            env=self.environment(), stdout=log, stderr=log, cwd=str(self.data_dir.parent))
        log.close()
        self.starts += 1
        if self.command == "run":
            def fresh() -> bool:
                return any(s.id not in known and (self.shard is None or s.shard == self.shard)
                           for s in self.fake.gateway.live_sessions())
            await self.fake.wait_for(fresh, timeout=60, what=f"{self.name}'s gateway session")
            await self.fake.wait_for(lambda: self.fake.commands(), timeout=60,
                                     what="command sync")


class Fleet(Chaos):
    """test_chaos.py's actors (askers, cancellers) against a fleet: the killer picks a random
    process each time, and the store is the fleet's shared database."""

    def __init__(self, fake: FakeDiscord, procs: list[Proc], target: str | Path,
                 askers: list[Asker], rng: random.Random) -> None:
        super().__init__(fake, procs[0], askers,
                         make_plan(rng, len(askers), jobs=JOBS, kills=KILLS), rng)
        self.procs, self.target = procs, target
        self.killed: Counter[str] = Counter()

    async def open_store(self) -> Store:
        if self.store is None:
            self.store = await Store.open(self.target)
        return self.store

    async def killer(self) -> None:
        for uptime, down in zip(self.plan.kill_after, self.plan.down_for, strict=True):
            await asyncio.sleep(uptime)
            victim = self.rng.choice(self.procs)
            await victim.kill()
            self.killed[victim.name] += 1
            await asyncio.sleep(down)
            await victim.start()


async def run_fleet(tmp_path: Path, layout: list[tuple[str, str, tuple[int, int] | None]],
                    database_url: str | None) -> None:
    seed = int(os.environ.get("CHAOS_SEED") or random.SystemRandom().randrange(2**32))
    print(f"chaos seed: {seed} (replay with CHAOS_SEED={seed})")
    rng = random.Random(seed)
    data = tmp_path / "data"
    data.mkdir()
    async with FakeDiscord() as fake:
        second = fake.add_guild("Second")
        first_channel = fake.channel
        second_channel = fake.world.channels[second.default_channel_id]
        askers = [
            Asker(fake.member, first_channel),
            Asker(fake.add_member("bob"), first_channel),
            Asker(fake.add_member("carol"), first_channel),
            Asker(fake.add_member("dave", guild_id=second.id), second_channel),
            Asker(fake.add_member("erin", guild_id=second.id), second_channel),
        ]
        env = {"SEEDANCE_LOCAL_DELAY": "0.5", "SEEDANCE_DEV_GUILD_ID": "0"}
        if database_url:
            env["SEEDANCE_DATABASE_URL"] = database_url
        procs = []
        for name, command, shard in layout:
            own = dict(env)
            if shard is not None:
                own.update({"SEEDANCE_SHARD_COUNT": str(shard[1]),
                            "SEEDANCE_SHARD_IDS": str(shard[0])})
            procs.append(Proc(fake, data, own, name, command, shard))
        target = database_url or data / "seedance.sqlite3"
        fleet = Fleet(fake, procs, target, askers, rng)
        try:
            for proc in procs:
                await proc.start()
            await asyncio.gather(fleet.asker(), fleet.killer())
            jobs = await fleet.settle(timeout=180)
            await asyncio.sleep(1.0)  # the last edits and posts land just after the rows
            store = await fleet.open_store()
            await check_outcomes(fake, [first_channel, second_channel], jobs,
                                 await store.ledger(), fleet.plan)
            # Every job ended, so none is claimed; and a job of a killed process was resumed.
            assert await store.owners() == {}
        except BaseException:
            for proc in procs:
                print(f"---- {proc.name} ----\n{proc.log()}")
            raise
        finally:
            if fleet.store is not None:
                await fleet.store.close()
            for proc in procs:
                await proc.stop()
        states = Counter(j.state.value for j in jobs)
        print(f"fleet chaos: {len(fleet.sent)} asked, {len(jobs)} jobs {dict(states)}, "
              f"kills {dict(fleet.killed)}")
        assert sum(fleet.killed.values()) == KILLS
        assert len(jobs) >= JOBS * 0.7, (len(jobs), len(fleet.sent))


async def test_two_shards_and_a_worker_on_postgresql(tmp_path: Path, postgres_url: str) -> None:
    await run_fleet(tmp_path, [("shard0", "run", (0, 2)), ("shard1", "run", (1, 2)),
                               ("worker", "worker", None)], postgres_url)


async def test_a_bot_and_a_worker_on_sqlite(tmp_path: Path) -> None:
    await run_fleet(tmp_path, [("bot", "run", None), ("worker", "worker", None)], None)
