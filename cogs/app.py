"""The Discord bot: one `AutoShardedBot` subclass whose `setup_hook` builds the shared parts.

Modelled on RoboDanny: resources (HTTP client, store, engine, services, callback receiver) are
built once, hung on the bot as `core` (cogs/utils/core.py), and cogs are extensions loaded by
name, so this module imports no cog and no cog imports another. Persistent buttons are dynamic
items, so they work for messages posted before a restart. One `CommandTree` subclass answers
every command error (as Red does). Intents are limited to what is used (guilds only: slash
commands and buttons arrive as interactions and need no privileged intents).
"""

from __future__ import annotations

import asyncio
import errno
import logging
import signal
import sys
import time
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import discord
import httpx
from discord import app_commands
from discord.ext import commands, tasks

from bot.config import PROVIDER_NAMES, Settings
from bot.engine import Engine, QuotaExceeded
from bot.engine.engine import CallbackUrls
from bot.errors import ConfigError, InvalidInput, Refusal, SeedanceError, scrub
from bot.gctune import settle_gc
from bot.health import HealthServer
from bot.httpclient import new_client
from bot.i18n import DEFAULT, say, t
from bot.metrics import Metrics
from bot.models import TaskState
from bot.providers import ProviderRegistry
from bot.providers.base import Provider
from bot.service import Services
from bot.store import Store
from bot.store.database import DatabaseUnavailable, is_outage
from bot.webhooks import CallbackReceiver, https_problem, load_or_create_secret
from cogs.utils.acks import acknowledged
from cogs.utils.cards import ModButton
from cogs.utils.commands_i18n import install as install_translator
from cogs.utils.core import Core, cdn_hosts
from cogs.utils.delivery import DiscordDelivery
from cogs.utils.premium import premium_view
from cogs.utils.texts import OUTAGE_TEXT, refusal_text
from cogs.utils.views import ForgetButton, JobButton
from cogs.utils.voting import VoteButton, WithdrawButton

log = logging.getLogger(__name__)

EXTENSIONS = ("cogs.video", "cogs.info", "cogs.admin", "cogs.moderation", "cogs.events",
              "cogs.privacy", "cogs.library",
              "cogs.drafts", "cogs.premium", "cogs.installs")


def describe(error: app_commands.AppCommandError, locale: object = DEFAULT) -> str:
    """A command error as the person sees it, in their language: never internals or secrets."""
    original = getattr(error, "original", error)
    if isinstance(error, app_commands.MissingPermissions):
        return t(locale, "cogs.app.manage_server")
    if isinstance(error, app_commands.CommandOnCooldown):
        return t(locale, "cogs.app.cooldown", seconds=f"{error.retry_after:.0f}")
    if isinstance(error, app_commands.NoPrivateMessage):
        return t(locale, "cogs.app.server_only")
    if isinstance(error, app_commands.CheckFailure):
        return t(locale, "cogs.app.not_here")
    if isinstance(original, InvalidInput | Refusal | QuotaExceeded):
        return refusal_text(original, locale)
    if is_outage(original):
        return OUTAGE_TEXT
    if isinstance(original, SeedanceError):
        return say(original, locale)
    return t(locale, "cogs.app.unexpected")


class SeedanceTree(app_commands.CommandTree[Any]):
    """One place for app-command errors: an ephemeral answer, or the channel when the
    interaction has expired. Core errors already carry a sentence for a person; anything else
    is logged with its traceback and the person gets a short apology."""

    async def on_error(self, interaction: discord.Interaction[Any],
                       error: app_commands.AppCommandError) -> None:
        original = getattr(error, "original", error)
        if not isinstance(original, SeedanceError | app_commands.CheckFailure):
            log.error("command %s failed", interaction.command and interaction.command.name,
                      exc_info=original)
        settings: Settings | None = getattr(interaction.client, "settings", None)
        text = scrub(describe(error, interaction.locale),
                     settings.secrets() if settings else ())
        view = premium_view(settings, original) if settings else None
        extra: dict[str, Any] = {"view": view} if view is not None else {}
        try:
            if interaction.response.is_done():
                await interaction.followup.send(text, ephemeral=True, **extra)
            else:
                await interaction.response.send_message(text, ephemeral=True, **extra)
                acknowledged(interaction)  # a refusal answered at once is the ack too
        except discord.HTTPException:
            # The interaction expired (10062) or its token died: say it in the channel.
            channel = interaction.channel
            if (isinstance(channel, discord.abc.Messageable)
                    and interaction.is_guild_integration()):  # the bot is there
                await channel.send(f"{interaction.user.mention} {text}",
                                   allowed_mentions=discord.AllowedMentions(users=True))


def _shards(settings: Settings) -> dict[str, Any]:
    """SEEDANCE_SHARD_COUNT and SEEDANCE_SHARD_IDS as discord.py takes them. Unset: discord.py
    asks Discord how many (GET /gateway/bot) and runs them all in this process."""
    shards: dict[str, Any] = {}
    if settings.seedance_shard_count is not None:
        shards["shard_count"] = settings.seedance_shard_count
    if settings.shard_ids is not None:
        shards["shard_ids"] = settings.shard_ids
    return shards


class SeedanceBot(commands.AutoShardedBot):
    """The bot. `core` (store, engine, services) exists once `setup_hook` has run.

    A `worker` is the same bot without the gateway: it runs the engine over the shared
    database and posts results through Discord's REST API, loading no cogs and syncing no
    commands (`run_bot(settings, worker=True)` logs it in and never connects)."""

    engine: Engine
    store: Store
    http_client: httpx.AsyncClient
    core: Core
    metrics: Metrics

    def __init__(self, settings: Settings, *, worker: bool = False) -> None:
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
            tree_cls=SeedanceTree,
            # Installed to a server, used in it: the default. The commands a person uses for
            # themselves (/video, /quota, /my-data, /my-videos) allow user installs too.
            allowed_installs=app_commands.AppInstallationType(guild=True, user=False),
            allowed_contexts=app_commands.AppCommandContext(guild=True, dm_channel=False,
                                                            private_channel=False),
            **_shards(settings),
        )
        self.settings = settings
        self.worker = worker
        self.providers: ProviderRegistry | None = None
        self._receiver: CallbackReceiver | None = None
        self._health: HealthServer | None = None
        self._callbacks: CallbackUrls | None = None
        self._prepared = False
        self._catch_up: asyncio.Task[None] | None = None

    def provider(self, name: str) -> Provider:
        """One provider instance per gateway for the process (bot/providers/__init__.py)."""
        if self.providers is None:
            self.providers = ProviderRegistry(self.settings, client=self.http_client)
        return self.providers.get(name)

    async def prepare(self) -> None:
        """Everything that needs no Discord, before logging in to it: the store (SQLite, or
        the PostgreSQL that several processes share) and the callback receiver's port. A
        problem here stops the bot at once, without a login, a gateway connection or a
        half-built bot.

        Raises `DatabaseUnavailable`, or `ConfigError` when the HTTP port (callbacks, health
        check) cannot be listened on.
        """
        if self._prepared:
            return
        self._prepared = True
        self.settings.data_dir.mkdir(parents=True, exist_ok=True)
        self.http_client = new_client(timeout=60.0)
        self.store = await Store.open(self.settings.database)
        self.metrics = Metrics(self.store)
        self._callbacks = await self._start_http()

    async def setup_hook(self) -> None:
        """After logging in: the engine (its deliveries post to Discord), then, unless this is
        a worker, cogs and commands."""
        await self.prepare()  # done already when started by run_bot
        delivery = self.build_core()
        if not self.worker:
            await self.load_cogs()
        await self.engine.start()
        self.retention.start()
        self._catch_up = asyncio.create_task(self._say_missed_endings(delivery),
                                             name="status-catch-up")
        if not self.worker:
            await self._sync_commands()
        settle_gc()  # what startup built lives as long as the process (bot/gctune.py)

    def build_core(self) -> DiscordDelivery:
        """The engine (its deliveries post to Discord) and the services, on the prepared store.
        Returns the delivery port (a start catches up on endings it missed)."""
        delivery = DiscordDelivery(self, self.settings, self.store)
        self.engine = Engine(
            self.settings,
            self.store,
            delivery=delivery,
            providers=self.provider,
            http=self.http_client,
            callbacks=self._callbacks,
        )
        services = Services.build(self.settings, self.store, self.engine, self.provider,
                                  self.http_client, member_hosts=cdn_hosts(self.settings))
        self.core = Core(self.settings, self.store, self.engine, services, self.http_client,
                         metrics=self.metrics)
        return delivery

    async def load_cogs(self) -> None:
        """Buttons, cogs and their commands, in every shipped language (commands.toml)."""
        self.add_dynamic_items(JobButton, ModButton, ForgetButton)
        self.add_dynamic_items(VoteButton, WithdrawButton)
        for ext in EXTENSIONS:
            await self.load_extension(ext)
        await install_translator(self.tree)

    async def _say_missed_endings(self, delivery: DiscordDelivery) -> None:
        try:
            await delivery.catch_up()
        except Exception:
            log.exception("saying missed endings failed; the next start tries again")

    @tasks.loop(hours=24)
    async def retention(self) -> None:
        """Delete finished jobs' files older than SEEDANCE_RETENTION_DAYS, once a day."""
        removed = await self.engine.cleanup()
        log.info("retention: removed files of %s old jobs", removed)
        # People who deleted their data: ledger lines no quota needs any more lose the user id.
        await self.store.finish_forgetting(now=time.time())

    async def _start_http(self) -> CallbackUrls | None:
        """The callback receiver (with /healthz and /metrics) when callbacks are configured,
        else those two alone when SEEDANCE_HTTP_PORT is set. Returns the receiver, if any."""
        settings = self.settings
        variable = "SEEDANCE_HTTP_PORT" if settings.seedance_http_port else "SEEDANCE_WEBHOOK_PORT"
        port = settings.seedance_http_port or settings.seedance_webhook_port
        try:
            if settings.seedance_webhook_base_url:
                return await self._start_receiver(port)
            if settings.seedance_http_port:
                self._health = HealthServer(self.store.db.now, port=port,
                                            metrics=self.metrics.exposition)
                await self._health.start()
        except OSError as exc:
            why = ("is already in use by another program" if exc.errno == errno.EADDRINUSE
                   else f"cannot be listened on ({exc.strerror or exc})")
            hint = (" (and forward SEEDANCE_WEBHOOK_BASE_URL to it)"
                    if settings.seedance_webhook_base_url else "")
            raise ConfigError(f"{variable}={port} {why}; stop that program or choose another "
                              f"port{hint}") from None
        return None

    async def _start_receiver(self, port: int) -> CallbackUrls:
        assert self.settings.seedance_webhook_base_url
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
            port=port,
            health=self.store.db.now,
            metrics=self.metrics.exposition,
            library=self.store.library_blob,
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

    async def on_ready(self) -> None:
        log.info("ready as %s in %d guilds", self.user, len(self.guilds))

    async def close(self) -> None:
        self.retention.cancel()
        if self._catch_up is not None:
            self._catch_up.cancel()
        engine = getattr(self, "engine", None)
        if engine is not None:
            await engine.stop()
        if self._receiver is not None:
            await self._receiver.stop()
        if self._health is not None:
            await self._health.stop()
        if self.providers is not None:
            await self.providers.aclose()
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
        await bot.prepare()  # the data dir, the database and the callback port: before the login
        if not bot.worker:
            await bot.start(token)
            return
        await bot.login(token)  # REST only; runs setup_hook, which starts the engine
        await _until_stopped()
    # Leaving `async with` closed the bot: the engine handed its jobs back, the store closed.


async def _until_stopped() -> None:
    """Wait for SIGTERM or SIGINT (a worker has no gateway connection to wait on)."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)


def _fail(settings: Settings, message: str) -> None:
    """One line on stderr, without the secrets a library's message might repeat."""
    print(f"seedance-bot: {scrub(message, settings.secrets())}", file=sys.stderr, flush=True)


def run_bot(settings: Settings, *, worker: bool = False) -> int:
    """Run the bot, or a `worker` (no gateway), until stopped. Returns the process exit code:
    0 stopped, 1 Discord or the network, 2 configuration or the database. Every failure is one
    line, no traceback."""
    assert settings.discord_token
    bot = SeedanceBot(settings, worker=worker)
    try:
        asyncio.run(_serve(bot, settings.discord_token))
    except KeyboardInterrupt:
        pass  # asyncio.run cancelled the bot, whose `async with` closed everything
    except discord.LoginFailure:
        _fail(settings, "Discord refused DISCORD_TOKEN; reset it in the developer portal "
                        "(Bot → Reset Token)")
        return 2
    except (ConfigError, DatabaseUnavailable) as exc:
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
    return 0
