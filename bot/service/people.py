"""Who asks, and where: the plain values every use case takes instead of a Discord object."""

from __future__ import annotations

from dataclasses import dataclass

from bot.engine.quota import PERSONAL_SCOPE

#: The guild id of jobs made from the command line, and of jobs made outside any server.
CLI_GUILD = "cli"
DM_GUILD = PERSONAL_SCOPE


@dataclass(frozen=True)
class Requester:
    """A person asking for something, where they ask it.

    `moderator` and `admin` are what the front end knows of their rights there (on Discord:
    Manage Messages and Manage Server); the service decides what those rights allow.
    """

    user_id: str
    guild_id: str = DM_GUILD
    channel_id: str = ""
    #: The channel a thread belongs to: rules set for a channel hold in its threads.
    parent_channel_id: str | None = None
    role_ids: tuple[str, ...] = ()
    moderator: bool = False
    admin: bool = False
    #: An automated account (a Discord bot): it may not vote (bot/service/votes.py).
    bot: bool = False
    #: A personal job (the app installed to the user, bot/service/gate.py) asked in a server
    #: that has the bot: that server's rules still hold there. Its `guild_id` is `DM_GUILD`.
    rules_guild_id: str | None = None

    @property
    def places(self) -> tuple[str, ...]:
        """The channel, and the channel of its thread if it is one."""
        return tuple(p for p in (self.channel_id, self.parent_channel_id) if p)

    @property
    def in_server(self) -> bool:
        return self.guild_id not in (CLI_GUILD, DM_GUILD)

    @classmethod
    def operator(cls, user_id: str) -> Requester:
        """The person at the command line: the bot's operator."""
        return cls(user_id=user_id, guild_id=CLI_GUILD, channel_id=CLI_GUILD, moderator=True,
                   admin=True)
