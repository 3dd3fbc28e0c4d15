"""completion: from the gateway's success to the video's message in Discord, through the bot.

The real bot runs as a subprocess (tests.e2e.harness.BotProcess) against the fake Discord and
a fake Magnific (MAGNIFIC_BASE_URL) whose tasks take TASK seconds of wall time. 20 `/video`
commands per mode (10 users, the bot's default EngineLimits). The moment of success is when the
fake's task turns succeeded (polling) or when it sends the callback (callbacks, received by the
bot's own CallbackReceiver on SEEDANCE_WEBHOOK_PORT); the end is the fake Discord creating the
video's message (both on time.monotonic). Each job is matched by its row's task_id and by the
message nonce the delivery derives from the job id.

Polling mode starts from a store that already holds 20 durations equal to the task length (a
bot that has seen this gateway before), so the schedule fits the tasks and the figure is the
lag the backoff itself leaves. Targets: p50 < 1 s with callbacks; polling reported.
"""

from __future__ import annotations

import asyncio
import os
import socket
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.common import bench_magnific, code_version, report, summary_ms
from bot.store import Store
from tests.e2e.harness import BotProcess
from tests.fakes.discord.server import FakeDiscord

JOBS = int(os.environ.get("COMPLETION_JOBS", "20"))
USERS = 10
TASK = {"callbacks": float(os.environ.get("COMPLETION_CALLBACK_TASK_S", "3")),
        "polling": float(os.environ.get("COMPLETION_POLLING_TASK_S", "10"))}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def video_posts(fake: FakeDiscord) -> list[Any]:
    return [m for m in fake.messages(fake.channel.id)
            if not m.ephemeral and any(a.filename.endswith(".mp4") for a in m.attachments)]


async def run_mode(mode: str) -> dict[str, Any]:
    task_s = TASK[mode]
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "data"
        data.mkdir()
        env = {"SEEDANCE_PROVIDER": "magnific", "SEEDANCE_USER_DAILY_CREDITS": "100000",
               "SEEDANCE_GUILD_MONTHLY_CREDITS": "1000000"}
        if mode == "callbacks":
            port = free_port()
            env |= {"SEEDANCE_WEBHOOK_BASE_URL": f"http://127.0.0.1:{port}",
                    "SEEDANCE_WEBHOOK_PORT": str(port)}
        else:  # a bot that knows how long this gateway takes for this shape
            store = await Store.open(data / "seedance.sqlite3")
            for _ in range(20):
                await store.record_duration("magnific", "480p", 5, task_s, now=time.time())
            await store.close()
        async with FakeDiscord() as fake, bench_magnific(task_s, callbacks=mode == "callbacks") \
                as gw:
            env |= {"MAGNIFIC_API_KEY": gw.api_key, "MAGNIFIC_BASE_URL": gw.base_url}
            members = [fake.member] + [fake.add_member(f"user{i}") for i in range(USERS - 1)]
            bot = BotProcess(fake, data, env)
            await bot.start()
            try:
                await fake.wait_until_ready(timeout=60)
                await fake.wait_for(lambda: fake.commands(guild_id=fake.guild.id), timeout=60,
                                    what="command sync")
                for i in range(JOBS):
                    await fake.slash("video", {"prompt": f"completion {i}", "duration": 5,
                                               "resolution": "480p", "ratio": "16:9",
                                               "audio": False}, user=members[i % USERS])
                await fake.wait_for(lambda: len(video_posts(fake)) >= JOBS or None,
                                    timeout=JOBS * (task_s + 60), what="every video")
            except BaseException:
                print(bot.log())
                raise
            finally:
                await bot.stop()
            store = await Store.open(data / "seedance.sqlite3")
            jobs = await store.jobs()
            await store.close()
            # By the message nonce (cogs/delivery.job_nonce: the job id's first 25 hex digits):
            # the bot may be stopped after the last post but before its row says delivered.
            posts = {m.nonce: m for m in video_posts(fake) if m.nonce}
            lags = []
            for job in jobs:
                post = posts.get(job.id.replace("-", "")[:25])
                if job.task_id in gw.succeeded_at and post is not None:
                    lags.append(post.created_loop_time - gw.succeeded_at[job.task_id])
            polls = gw.counts["poll"] / max(1, len(jobs))
    return {"mode": mode, "task_seconds": task_s, "jobs": len(jobs), "measured": len(lags),
            "polls_per_job": round(polls, 2), **summary_ms(lags)}


async def main() -> None:
    version = code_version()
    results = [await run_mode("callbacks"), await run_mode("polling")]
    rows = []
    for r in results:
        target = "p50 < 1000 ms" if r["mode"] == "callbacks" else "report"
        rows.append((
            f"{r['mode']}: gateway success → video message, {r['measured']} jobs "
            f"({r['task_seconds']:.0f} s tasks, {r['polls_per_job']} polls/job): p50 / p99",
            f"{r['p50_ms']:.0f} / {r['p99_ms']:.0f} ms", target))
    report("completion", rows, {"code": version, "modes": results})


if __name__ == "__main__":
    asyncio.run(main())
