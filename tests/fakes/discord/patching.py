"""Point an unmodified discord.py at the fake, from the outside.

discord.py has exactly three hard-coded hosts that matter to a bot:
- `discord.http.Route.BASE`: every REST call, *including* interaction callbacks and webhook
  followups (discord/webhook/async_.py builds its URLs from the same `Route`);
- `discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY`: a plain `Client` connects there first
  (only `AutoShardedClient` asks GET /gateway/bot), and falls back to it after an
  INVALID_SESSION;
- `discord.asset.Asset.BASE`: avatar and icon URLs (cdn.discordapp.com).
Other discord.com strings in the package are display-only `jump_url`s and `Webhook.url`.
"""

from __future__ import annotations

from collections.abc import Callable
from urllib.parse import urlsplit


def gateway_url_for(api_base: str) -> str:
    """ws://host:port/gateway for an API base like http://host:port/api/v10."""
    parts = urlsplit(api_base)
    scheme = "wss" if parts.scheme == "https" else "ws"
    return f"{scheme}://{parts.netloc}/gateway"


def point_discord_at(api_base: str, gateway_url: str | None = None) -> Callable[[], None]:
    """Patch discord.py's class attributes; returns a function that restores them."""
    import discord.asset
    import discord.gateway
    import discord.http
    import yarl

    route, ws, asset = discord.http.Route, discord.gateway.DiscordWebSocket, discord.asset.Asset
    saved = (route.BASE, ws.DEFAULT_GATEWAY, asset.BASE)
    parts = urlsplit(api_base)
    route.BASE = api_base.rstrip("/")
    ws.DEFAULT_GATEWAY = yarl.URL(gateway_url or gateway_url_for(api_base))
    asset.BASE = f"{parts.scheme}://{parts.netloc}"

    def restore() -> None:
        route.BASE, ws.DEFAULT_GATEWAY, asset.BASE = saved

    return restore
