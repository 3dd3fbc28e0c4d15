"""What every part of the Discord layer reaches the core through, without importing a cog.

`Core` is built once in `SeedanceBot.setup_hook` (cogs/app.py) and hung on the bot; helpers,
views and cogs get it with `core_of(client)`, so nothing here imports cogs/app.py (no circle).
`requester_of` turns an interaction into the plain `Requester` the services take, and
`DiscordJobContext` is the typed part of a job's row that only the Discord layer reads.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import discord
import httpx
from pydantic import BaseModel, ConfigDict

from bot.config import Settings
from bot.engine import Engine
from bot.guild import ReviewMode
from bot.metrics import Metrics
from bot.service import DM_GUILD, Requester, Services
from bot.store import JobView, Store

#: Where Discord serves attachments; a member's files may come from nowhere else.
DISCORD_CDN_HOSTS = ("cdn.discordapp.com", "media.discordapp.net")
#: Interaction tokens live 15 minutes; switch to the channel API a minute before.
TOKEN_SAFE_SECONDS = 14 * 60


@dataclass(frozen=True)
class Core:
    """The bot's one store, engine and services (built once, after the login)."""

    settings: Settings
    store: Store
    engine: Engine
    services: Services
    http: httpx.AsyncClient
    metrics: Metrics | None = None  # this process's /metrics (bot/metrics.py)


def core_of(client: discord.Client) -> Core:
    core = getattr(client, "core", None)
    if not isinstance(core, Core):
        raise RuntimeError("the bot's core is not built yet")
    return core


def cdn_hosts(settings: Settings) -> tuple[str, ...]:
    """Discord's CDN plus SEEDANCE_CDN_HOSTS (a test CDN, a proxy)."""
    extra = settings.seedance_cdn_hosts
    return DISCORD_CDN_HOSTS + tuple(h.strip() for h in extra.split(",") if h.strip())


def is_personal(interaction: discord.Interaction[Any]) -> bool:
    """Asked through the app installed to the user (a DM, a group DM, a server that did not
    install it, or one whose install lacks the commands), not through a server's install."""
    return not interaction.is_guild_integration()


def bot_in_guild(interaction: discord.Interaction[Any]) -> bool:
    """The bot is a member of the interaction's server (its guild is in the bot's cache): the
    guild id alone is present even where the bot is not."""
    gid = interaction.guild_id
    return gid is not None and interaction.client.get_guild(gid) is not None


def private_answers(interaction: discord.Interaction[Any]) -> bool:
    """Discord shows a user-installed app's answers only privately in a server that did not
    install it and denies `USE_EXTERNAL_APPS`: ask for ephemeral answers there."""
    return (interaction.guild_id is not None and not bot_in_guild(interaction)
            and not interaction.app_permissions.use_external_apps)


def requester_of(interaction: discord.Interaction[Any]) -> Requester:
    """The person and the place of an interaction, as the services take them. A personal
    one (`is_personal`) is in no server's scope: the user's own quota (`DM_GUILD`), with the
    server's rules kept where the server has the bot (`rules_guild_id`)."""
    user = interaction.user
    perms = getattr(user, "guild_permissions", None)
    parent = getattr(interaction.channel, "parent_id", None)
    personal = is_personal(interaction)
    guild = str(interaction.guild_id) if interaction.guild_id else None
    return Requester(
        user_id=str(user.id),
        guild_id=DM_GUILD if personal or guild is None else guild,
        channel_id=str(interaction.channel_id or ""),
        parent_channel_id=str(parent) if parent else None,
        role_ids=tuple(str(r.id) for r in getattr(user, "roles", [])),
        moderator=not personal and bool(perms and (perms.manage_messages or perms.manage_guild)),
        admin=not personal and bool(perms and perms.manage_guild),
        bot=user.bot,
        rules_guild_id=guild if personal and bot_in_guild(interaction) else None,
    )


class DiscordJobContext(BaseModel):
    """What the Discord layer keeps in a job's row to report on it later."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    status_message_id: str | None = None  # the message edited as the job moves
    interaction_token: str | None = None  # edits and private notes while it lives
    application_id: str | None = None
    token_issued_at: float = 0.0
    filesize_limit: int | None = None  # the server's upload limit when it was asked
    review: ReviewMode = ReviewMode.OFF  # written by the service (bot/service/videos.py)
    #: Asked through a user install: answered through the interaction webhook only, the
    #: video by DM once the token is gone (cogs/utils/installs.py).
    personal: bool = False
    ephemeral: bool = False  # every answer private (`private_answers`)
    dm_closed: bool = False  # the video could not be sent by DM (Discord's 50007)
    followup_refused: bool = False  # Discord refused the result's follow-up: not posted
    # Languages (bot/i18n), kept so a post after a restart still knows them: the requester's
    # (private notes, DMs) and the server's (the status message, result and moderators' cards).
    locale: str = "en"
    guild_locale: str = "en"

    @classmethod
    def of(cls, job: JobView) -> DiscordJobContext:
        return cls.model_validate(job.context)

    @classmethod
    def for_interaction(cls, interaction: discord.Interaction[Any], status_message_id: int,
                        token_issued_at: float) -> dict[str, Any]:
        """The context to store for a job asked for by `interaction` (as the row keeps it)."""
        return cls(
            status_message_id=str(status_message_id), interaction_token=interaction.token,
            application_id=str(interaction.application_id), token_issued_at=token_issued_at,
            filesize_limit=interaction.filesize_limit, locale=str(interaction.locale),
            guild_locale=str(interaction.guild_locale or interaction.locale),
            personal=is_personal(interaction), ephemeral=private_answers(interaction),
        ).model_dump(mode="json", exclude={"review", "dm_closed", "followup_refused"})

    @property
    def token_alive(self) -> bool:
        return bool(self.interaction_token and self.application_id
                    and time.time() - self.token_issued_at < TOKEN_SAFE_SECONDS)
