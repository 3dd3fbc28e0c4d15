"""The Discord bot: one `AutoShardedBot` subclass whose `setup_hook` builds the shared parts.

Modelled on RoboDanny: resources (HTTP client, store, engine, callback receiver) are built once
in `setup_hook`, cogs are extensions, persistent buttons are dynamic items so they work for
messages posted before a restart. Intents are limited to what is used (guilds only: slash
commands and buttons arrive as interactions and need no privileged intents).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import sys
import time
from urllib.parse import urlsplit

import aiohttp
import discord
import httpx
from discord.ext import commands, tasks

from bot.config import PROVIDER_NAMES, Settings
from bot.engine import Engine
from bot.engine.engine import CallbackUrls
from bot.errors import ConfigError, scrub
from bot.lease import Lease, LeaseHeld
from bot.models import TaskState
from bot.providers import create_provider
from bot.providers.base import Provider
from bot.store import Store
from bot.webhooks import CallbackReceiver, https_problem, load_or_create_secret

log = logging.getLogger(__name__)

EXTENSIONS = ("cogs.video", "cogs.info", "cogs.admin", "cogs.buttons", "cogs.moderation",
              "cogs.events", "cogs.privacy", "cogs.errors")


class SeedanceBot(commands.AutoShardedBot):
    """The bot. `engine`, `store` and `http_client` exist once `setup_hook` has run."""

    engine: Engine
    store: Store
    http_client: httpx.AsyncClient

    def __init__(self, settings: Settings) -> None:
        # The bot has no voice: without this discord.py warns at every start that PyNaCl and
        # davey (voice, and its end-to-end encryption) are missing. These two flags are read
        # once, in Client.__init__, only for those two warnings.
        discord.VoiceClient.warn_nacl = False
        discord.VoiceClient.warn_dave = False
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
        self._callbacks: CallbackUrls | None = None
        self._prepared = False

    def provider(self, name: str) -> Provider:
        """One provider instance per gateway, sharing the bot's HTTP client."""
        if name not in self._providers:
            self._providers[name] = create_provider(name, self.settings, client=self.http_client)
        return self._providers[name]

    async def prepare(self) -> None:
        """Everything that needs no Discord, before logging in to it: the store, the lease
        (one process drives the jobs) and the callback receiver's port. A problem here stops
        the bot at once, without a login, a gateway connection or a half-built bot.

        Raises `LeaseHeld`, or `ConfigError` when SEEDANCE_WEBHOOK_PORT cannot be listened on.
        """
        if self._prepared:
            return
        self._prepared = True
        self.settings.data_dir.mkdir(parents=True, exist_ok=True)
        self.http_client = httpx.AsyncClient(timeout=60.0, follow_redirects=False)
        self.store = await Store.open(self.settings.database_path)
        self.lease = Lease(self.store)
        await self.lease.acquire()  # before resuming anything: one process drives the jobs
        self._lease_keeper = asyncio.create_task(self.lease.keep(self._lease_lost),
                                                 name="lease")
        self._callbacks = await self._start_receiver()

    async def setup_hook(self) -> None:
        """After logging in: the engine (its deliveries post to Discord), cogs, commands."""
        from cogs.delivery import DiscordDelivery

        await self.prepare()  # done already when started by run_bot
        self.engine = Engine(
            self.settings,
            self.store,
            delivery=DiscordDelivery(self),
            providers=self.provider,
            http=self.http_client,
            callbacks=self._callbacks,
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
            engine = getattr(self, "engine", None)
            if engine is None:  # still logging in: a 500 makes the gateway deliver it again
                raise RuntimeError("a callback arrived before the engine was started")
            await engine.on_callback(job_id, state)

        configured = {
            name: self.provider(name)
            for name in PROVIDER_NAMES
            if name != "local" and self.settings.api_key(name)
        }
        problem = https_problem(self.settings.seedance_webhook_base_url,
                                [p.capabilities() for p in configured.values()])
        if problem:
            raise ConfigError(problem)
        receiver = CallbackReceiver(
            configured,
            sink,
            base_url=self.settings.seedance_webhook_base_url,
            secret=load_or_create_secret(self.settings),
            port=self.settings.seedance_webhook_port,
        )
        try:
            await receiver.start()
        except OSError as exc:
            port = self.settings.seedance_webhook_port
            why = ("is already in use by another program" if exc.errno == errno.EADDRINUSE
                   else f"cannot be listened on ({exc.strerror or exc})")
            raise ConfigError(
                f"SEEDANCE_WEBHOOK_PORT={port} {why}; stop that program or choose another "
                "port (and forward SEEDANCE_WEBHOOK_BASE_URL to it)") from None
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


def _discord_host() -> str:
    """The host discord.py talks to (discord.com, unless pointed elsewhere)."""
    return urlsplit(discord.http.Route.BASE).netloc or "discord.com"


async def _serve(bot: SeedanceBot, token: str) -> None:
    async with bot:
        await bot.prepare()  # the data dir, the lease and the callback port: before the login
        await bot.start(token)


def _fail(settings: Settings, message: str) -> None:
    """One line on stderr, without the secrets a library's message might repeat."""
    print(f"seedance-bot: {scrub(message, settings.secrets())}", file=sys.stderr, flush=True)


def run_bot(settings: Settings) -> int:
    """Run until stopped. Returns the process exit code: 0 stopped, 1 Discord, the network or
    another bot on this database, 2 configuration. Every failure is one line, no traceback."""
    assert settings.discord_token
    bot = SeedanceBot(settings)
    try:
        asyncio.run(_serve(bot, settings.discord_token))
    except KeyboardInterrupt:
        pass  # asyncio.run cancelled the bot, whose `async with` closed everything
    except discord.LoginFailure:
        _fail(settings, "Discord refused DISCORD_TOKEN; reset it in the developer portal "
                        "(Bot → Reset Token)")
        return 2
    except LeaseHeld as exc:
        _fail(settings, str(exc))
        return 1
    except ConfigError as exc:
        _fail(settings, str(exc))
        return 2
    except (aiohttp.ClientError, TimeoutError) as exc:
        reason = str(exc) or type(exc).__name__
        _fail(settings, f"could not reach Discord at {_discord_host()} ({reason}); check the "
                        "network (DNS, a proxy or firewall) and try again")
        return 1
    except discord.HTTPException as exc:  # 5xx while logging in: Discord's trouble, not ours
        _fail(settings, f"Discord answered HTTP {exc.status} at {_discord_host()} "
                        f"({exc.text or 'no details'}); try again later")
        return 1
    return 1 if bot.lease_lost else 0
