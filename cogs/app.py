"""The Discord bot: one `AutoShardedBot` subclass whose `setup_hook` builds the shared parts.

Modelled on RoboDanny: resources (HTTP client, store, engine, callback receiver) are built once
in `setup_hook`, cogs are extensions, persistent buttons are dynamic items so they work for
messages posted before a restart. Intents are limited to what is used (guilds only: slash
commands and buttons arrive as interactions and need no privileged intents).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

import discord
import httpx
from discord.ext import commands, tasks

from bot.config import PROVIDER_NAMES, Settings
from bot.engine import Engine
from bot.engine.engine import CallbackUrls
from bot.lease import Lease, LeaseHeld
from bot.models import TaskState
from bot.providers import create_provider
from bot.providers.base import Provider
from bot.store import Store
from bot.webhooks import CallbackReceiver, load_or_create_secret

log = logging.getLogger(__name__)

EXTENSIONS = ("cogs.video", "cogs.info", "cogs.admin", "cogs.buttons", "cogs.moderation",
              "cogs.events", "cogs.privacy", "cogs.errors")


class SeedanceBot(commands.AutoShardedBot):
    """The bot. `engine`, `store` and `http_client` exist once `setup_hook` has run."""

    engine: Engine
    store: Store
    http_client: httpx.AsyncClient

    def __init__(self, settings: Settings) -> None:
        intents = discord.Intents.none()
        intents.guilds = True
        super().__init__(
            command_prefix=commands.when_mentioned,
            intents=intents,
            help_command=None,
            allowed_mentions=discord.AllowedMentions(everyone=False, roles=False, users=True),
        )
        self.settings = settings
        self._providers: dict[str, Provider] = {}
        self._receiver: CallbackReceiver | None = None
        self.lease: Lease | None = None
        self.lease_lost = False
        self._lease_keeper: asyncio.Task[None] | None = None

    def provider(self, name: str) -> Provider:
        """One provider instance per gateway, sharing the bot's HTTP client."""
        if name not in self._providers:
            self._providers[name] = create_provider(name, self.settings, client=self.http_client)
        return self._providers[name]

    async def setup_hook(self) -> None:
        from cogs.delivery import DiscordDelivery

        self.settings.data_dir.mkdir(parents=True, exist_ok=True)
        self.http_client = httpx.AsyncClient(timeout=60.0, follow_redirects=False)
        self.store = await Store.open(self.settings.database_path)
        self.lease = Lease(self.store)
        await self.lease.acquire()  # before resuming anything: one process drives the jobs
        self._lease_keeper = asyncio.create_task(self.lease.keep(self._lease_lost),
                                                 name="lease")
        callbacks = await self._start_receiver()
        self.engine = Engine(
            self.settings,
            self.store,
            delivery=DiscordDelivery(self),
            providers=self.provider,
            http=self.http_client,
            callbacks=callbacks,
        )
        for ext in EXTENSIONS:
            await self.load_extension(ext)
        await self.engine.start()
        self.retention.start()
        await self._sync_commands()

    @tasks.loop(hours=24)
    async def retention(self) -> None:
        """Delete finished jobs' files older than SEEDANCE_RETENTION_DAYS, once a day."""
        removed = await self.engine.cleanup()
        log.info("retention: removed files of %s old jobs", removed)
        # People who deleted their data: ledger lines no quota needs any more lose the user id.
        await self.store.finish_forgetting(now=time.time())

    async def _start_receiver(self) -> CallbackUrls | None:
        if not self.settings.seedance_webhook_base_url:
            return None
        async def sink(job_id: str, state: TaskState) -> None:
            await self.engine.on_callback(job_id, state)

        configured = {
            name: self.provider(name)
            for name in PROVIDER_NAMES
            if name != "local" and self.settings.api_key(name)
        }
        receiver = CallbackReceiver(
            configured,
            sink,
            base_url=self.settings.seedance_webhook_base_url,
            secret=load_or_create_secret(self.settings),
            port=self.settings.seedance_webhook_port,
        )
        await receiver.start()
        self._receiver = receiver
        return receiver

    async def _sync_commands(self) -> None:
        """Instant in a dev guild; global otherwise (Discord may take a while to show them)."""
        guild_id = self.settings.seedance_dev_guild_id
        if guild_id:
            guild = discord.Object(id=guild_id)
            self.tree.copy_global_to(guild=guild)
            synced = await self.tree.sync(guild=guild)
        else:
            synced = await self.tree.sync()
        log.info("synced %d application commands", len(synced))

    async def _lease_lost(self) -> None:
        """Another process drives the jobs now; running on would post twice."""
        self.lease_lost = True
        await self.close()

    async def on_ready(self) -> None:
        log.info("ready as %s in %d guilds", self.user, len(self.guilds))

    async def close(self) -> None:
        self.retention.cancel()
        engine = getattr(self, "engine", None)
        if engine is not None:
            await engine.stop()
        if self._lease_keeper is not None and self._lease_keeper is not asyncio.current_task():
            self._lease_keeper.cancel()
        if self.lease is not None and not self.lease_lost:
            with contextlib.suppress(Exception):
                await self.lease.release()
        if self._receiver is not None:
            await self._receiver.stop()
        for provider in self._providers.values():
            await provider.aclose()
        if getattr(self, "store", None) is not None:
            await self.store.close()
        if getattr(self, "http_client", None) is not None:
            await self.http_client.aclose()
        await super().close()


def run_bot(settings: Settings) -> int:
    """Run until stopped. Returns the process exit code."""
    assert settings.discord_token
    bot = SeedanceBot(settings)
    try:
        bot.run(settings.discord_token, log_handler=None)
    except discord.LoginFailure:
        logging.getLogger("seedance").error(
            "Discord refused DISCORD_TOKEN; reset it in the developer portal (Bot → Reset Token)"
        )
        return 2
    except LeaseHeld as exc:
        logging.getLogger("seedance").error("%s", exc)
        return 1
    return 1 if bot.lease_lost else 0

