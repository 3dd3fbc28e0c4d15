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


def requester_of(interaction: discord.Interaction[Any]) -> Requester:
    """The person and the place of an interaction, as the services take them."""
    user = interaction.user
    perms = getattr(user, "guild_permissions", None)
    parent = getattr(interaction.channel, "parent_id", None)
    return Requester(
        user_id=str(user.id),
        guild_id=str(interaction.guild_id) if interaction.guild_id else DM_GUILD,
        channel_id=str(interaction.channel_id or ""),
        parent_channel_id=str(parent) if parent else None,
        role_ids=tuple(str(r.id) for r in getattr(user, "roles", [])),
        moderator=bool(perms and (perms.manage_messages or perms.manage_guild)),
        admin=bool(perms and perms.manage_guild),
        bot=user.bot,
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
        ).model_dump(mode="json", exclude={"review"})

    @property
    def token_alive(self) -> bool:
        return bool(self.interaction_token and self.application_id
                    and time.time() - self.token_issued_at < TOKEN_SAFE_SECONDS)
