"""Run the real bot as a subprocess against the fake Discord (and fake gateways).

The bot's code is unaware: the launcher `tests.fakes.discord.run_bot` points discord.py's class
attributes at the fake and runs `seedance-bot run`. Each test gets its own data dir, so a test
can kill the bot (SIGKILL) and start it again over the same database.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections.abc import Mapping
from contextlib import suppress
from pathlib import Path

from tests.fakes.discord.server import FakeDiscord

REPO = Path(__file__).resolve().parents[2]


class BotProcess:
    def __init__(self, fake: FakeDiscord, data_dir: Path, env: Mapping[str, str] | None = None):
        self.fake = fake
        self.data_dir = data_dir
        self.extra_env = dict(env or {})
        self.proc: asyncio.subprocess.Process | None = None
        self.log_path = data_dir / "bot.log"

    def environment(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items()
               if not k.startswith(("SEEDANCE_", "ANYFAST_", "RUNWARE_", "MAGNIFIC_", "HIAPI_"))}
        env.update(self.fake.env())
        env.update({
            "SEEDANCE_DATA_DIR": str(self.data_dir),
            "SEEDANCE_DEV_GUILD_ID": str(self.fake.guild.id),
            "SEEDANCE_CDN_HOSTS": "127.0.0.1",
            "SEEDANCE_PRIVATE_HOSTS": "127.0.0.1",
            "PYTHONUNBUFFERED": "1",
            # The suite written before result cards checks the embed version (the fallback,
            # cogs/utils/layout.py); tests/e2e/test_cards_e2e.py runs with cards on.
            "SEEDANCE_RESULT_CARDS": "0",
            "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")])),
        })
        env.update(self.extra_env)
        return env

    async def start(self) -> None:
        log = self.log_path.open("ab")
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "tests.fakes.discord.run_bot", "run",
            env=self.environment(), stdout=log, stderr=log,
            cwd=str(self.data_dir.parent),
        )
        log.close()

    async def kill(self) -> None:
        """SIGKILL: no cleanup at all, as a crash or an OOM kill."""
        if self.proc and self.proc.returncode is None:
            self.proc.send_signal(signal.SIGKILL)
            await self.proc.wait()

    async def stop(self) -> None:
        if self.proc and self.proc.returncode is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(self.proc.wait(), 10)
            except TimeoutError:
                await self.kill()

    def log(self) -> str:
        with suppress(FileNotFoundError):
            return self.log_path.read_text(errors="replace")[-6000:]
        return ""
