"""A fake Discord (REST API v10, gateway websocket, attachment CDN) that the real,
unpatched discord.py talks to over loopback. See server.py for the test-side API and
run_bot.py for launching the bot against it."""

from tests.fakes.discord.interactions import (
    Callback,
    FakeInteraction,
    File,
    InvalidInvocation,
    WebhookCall,
)
from tests.fakes.discord.patching import point_discord_at
from tests.fakes.discord.rest import LoggedRequest
from tests.fakes.discord.server import FakeDiscord
from tests.fakes.discord.state import Message

__all__ = [
    "Callback",
    "FakeDiscord",
    "FakeInteraction",
    "File",
    "InvalidInvocation",
    "LoggedRequest",
    "Message",
    "WebhookCall",
    "point_discord_at",
]
