"""The server library: files a server keeps under a one-word name, pulled into /video prompts
as `@name` (bot/service/library_use.py, bot/library_refs.py).

`add` checks the name, the member (the same gate as a prompt: blocks, channels, roles, the
blocklist, the review rule), the server's limits, then fetches the file and checks it by the
rules of /video inputs (bot/intake.py `fetch_one`); the bytes go into the database, so every
process on every host can use them. In a server that reviews prompts the item is pending until
a moderator approves it (`/library approve`), unusable until then. On a gateway with an asset
API (`Capabilities.assets`, `AssetRegistry`) the item is registered at once, while the member's
fresh link still works: in the server's one asset group, each step written before its call, so
the gateway's review (a real person's face) refuses the file now and nothing is kept.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import httpx

from bot.config import Settings
from bot.errors import ContentRejectedError, GatewayError, RealFaceError, Refusal, scrub
from bot.guild import GuildSettings
from bot.intake import MediaInput, RequestOptions, fetch_one
from bot.library_refs import name_problem, near_names
from bot.media.thumbs import thumbnail
from bot.models import MediaKind
from bot.providers.base import AssetRegistry, Capabilities, Provider
from bot.store import Store
from bot.store.library import LibraryFull, LibraryItem
from bot.words import size

from .gate import admit
from .options import capabilities_of
from .people import Requester
from .refusals import NotAllowed, NothingThere
from .videos import resolve_options

log = logging.getLogger(__name__)


class LibraryRefused(Refusal):
    """An item that can't be added, used or removed; the message says why and the fix."""


@dataclass(frozen=True)
class Added:
    """An item written (and registered where the server's gateway keeps assets)."""

    item: LibraryItem
    #: The gateway it was registered on as an asset; None: it is sent as a file.
    registered_on: str | None
    #: The moderators' channel to tell when the item waits for approval.
    mod_channel: str | None


@dataclass(frozen=True)
class Shelf:
    """A server's library as `/library list` shows it."""

    items: list[LibraryItem]
    bytes: int
    max_items: int
    max_bytes: int


class LibraryService:
    """Use cases of the server library. Raises `Refusal`s and `InvalidInput`."""

    def __init__(self, settings: Settings, store: Store, providers: Callable[[str], Provider],
                 http: httpx.AsyncClient, *, cache_dir: Path,
                 member_hosts: Sequence[str] = ()) -> None:
        """`cache_dir`: where a download waits while it is measured (the engine's inputs)."""
        self.settings = settings
        self.store = store
        self.providers = providers
        self.http = http
        self.cache_dir = cache_dir
        self.member_hosts = tuple(member_hosts)
        self._policy = settings.network_policy()

    @property
    def max_items(self) -> int:
        return self.settings.seedance_library_max_items

    @property
    def max_bytes(self) -> int:
        return self.settings.seedance_library_max_bytes

    # ---- add ------------------------------------------------------------------------------
    async def add(self, who: Requester, name: str, source: str, *, filename: str,
                  declared_size: int | None = None, description: str = "") -> Added:
        """Keep the file at `source` (a member's attachment) as `name` on the server."""
        _in_server(who)
        name = name.strip()
        problem = name_problem(name)
        if problem:
            raise LibraryRefused(key="errors.library.bad_name", problem=problem)
        admitted = await admit(self.store, who, f"{name} {description}")
        if await self.store.library_item(who.guild_id, name) is not None:
            raise self._taken(name)
        count, used = await self.store.library_usage(who.guild_id)
        if count >= self.max_items:
            raise self._full(LibraryFull("count", count, used), 0)
        caps = self._server_caps(admitted.settings)
        ref, path = await fetch_one(
            MediaInput(source, name=filename, declared_size=declared_size), caps.limits,
            http=self.http, cache_dir=self.cache_dir,
            max_bytes=self.settings.seedance_max_download_bytes,
            allowed_hosts=self.member_hosts, policy=self._policy)
        try:
            data = await asyncio.to_thread(path.read_bytes)
            thumb = await asyncio.to_thread(thumbnail, path, ref.kind)
        finally:
            if path.resolve().is_relative_to(self.cache_dir.resolve()):
                path.unlink(missing_ok=True)  # our download; a local file (the CLI's) stays
        facts = ref.facts
        review = admitted.review.prompts
        item = LibraryItem(
            id=uuid.uuid4().hex, guild_id=who.guild_id, name=name, kind=ref.kind.value,
            format=facts.format if facts else "", size=len(data),
            seconds=facts.duration if facts else None, width=facts.width if facts else None,
            height=facts.height if facts else None, description=description.strip()[:200],
            owner_id=who.user_id, blob_id=uuid.uuid4().hex,
            state="pending" if review else "ready", uses=0, decided_by=None,
            created_at=time.time(), has_thumb=thumb is not None)
        written = await self.store.add_library_item(item, data, thumb, max_items=self.max_items,
                                                    max_bytes=self.max_bytes)
        if isinstance(written, LibraryFull):
            raise self._taken(name) if written.reason == "exists" else self._full(
                written, len(data))
        try:
            registered = await self._register(item, source, caps)
        except BaseException:
            await self.store.remove_library_item(item.id)  # all or nothing
            raise
        return Added(item, registered, admitted.settings.mod_channel if review else None)

    def _server_caps(self, guild: GuildSettings) -> Capabilities:
        options = resolve_options(RequestOptions(), guild, self.settings)
        return capabilities_of(self.providers, options.provider, options.model)

    async def _register(self, item: LibraryItem, url: str, caps: Capabilities) -> str | None:
        """Register the item on the server's gateway where it keeps assets; the gateway's
        name, or None where the item will be sent as a file."""
        if not caps.assets:
            return None
        provider = self.providers(caps.provider)
        if not isinstance(provider, AssetRegistry):
            return None
        try:
            group = await self._group(item.guild_id, caps.provider, provider)
            if not await self.store.begin_library_asset(item.id, caps.provider):
                return caps.provider  # registered already (cannot happen for a new item)
            try:
                asset = await provider.register_asset(group, f"{item.name}-{item.id[:8]}", url,
                                                      MediaKind(item.kind))
            except BaseException:
                await self.store.end_library_asset(item.id, caps.provider, None)
                raise
        except RealFaceError:
            raise LibraryRefused(key="errors.library.real_face", provider=caps.provider) \
                from None
        except ContentRejectedError as exc:
            raise LibraryRefused(key="errors.library.refused", provider=caps.provider,
                                 reason=scrub(exc.reason)) from None
        except GatewayError as exc:
            raise LibraryRefused(key="errors.library.not_kept", provider=caps.provider,
                                 reason=scrub(exc.reason)) from None
        await self.store.end_library_asset(item.id, caps.provider, asset)
        return caps.provider

    async def _group(self, guild_id: str, name: str, provider: AssetRegistry) -> str:
        """The server's asset group on the gateway, made the first time."""
        state, group = await self.store.begin_library_group(guild_id, name)
        if state == "ready" and group:
            return group
        if state == "busy":
            raise LibraryRefused(key="errors.library.registering", provider=name)
        try:
            group = await provider.create_asset_group(f"seedance-bot-{guild_id}")
        except BaseException:
            await self.store.end_library_group(guild_id, name, None)
            raise
        await self.store.end_library_group(guild_id, name, group)
        log.info("library: asset group %s made on %s for server %s", group, name, guild_id)
        return group

    def _taken(self, name: str) -> LibraryRefused:
        return LibraryRefused(key="errors.library.taken", name=name)

    def _full(self, full: LibraryFull, adding: int) -> LibraryRefused:
        if full.reason == "count":
            return LibraryRefused(key="errors.library.full", count=full.count,
                                  most=self.max_items)
        return LibraryRefused(key="errors.library.too_big", size=size(adding),
                              most=size(self.max_bytes), used=size(full.bytes))

    # ---- list, remove, decide ---------------------------------------------------------------
    async def shelf(self, who: Requester) -> Shelf:
        _in_server(who)
        items = await self.store.library_items(who.guild_id)
        return Shelf(items, sum(i.size for i in items), self.max_items, self.max_bytes)

    async def thumb(self, item: LibraryItem) -> bytes | None:
        return await self.store.library_thumb(item.id) if item.has_thumb else None

    async def remove(self, who: Requester, name: str) -> LibraryItem:
        """Delete an item: the member who added it, or someone with Manage Server. Jobs that
        use it keep their copy (bot/store/library.py)."""
        item = await self._find(who, name)
        if item.owner_id != who.user_id and not who.admin:
            raise NotAllowed(key="errors.library.not_yours", name=item.name)
        await self.store.remove_library_item(item.id)
        return item

    async def approve(self, who: Requester, name: str) -> LibraryItem:
        """A moderator lets a pending item be used."""
        item = await self._pending(who, name)
        if not await self.store.approve_library_item(item.id, who.user_id):
            raise NothingThere(key="errors.library.decided", name=item.name)
        return item

    async def reject(self, who: Requester, name: str) -> LibraryItem:
        """A moderator refuses a pending item: it is deleted."""
        item = await self._pending(who, name)
        await self.store.remove_library_item(item.id)
        return item

    async def _pending(self, who: Requester, name: str) -> LibraryItem:
        if not who.moderator:
            raise NotAllowed(key="errors.library.moderators_only")
        item = await self._find(who, name)
        if not item.pending:
            raise NothingThere(key="errors.library.not_waiting", name=item.name)
        return item

    async def _find(self, who: Requester, name: str) -> LibraryItem:
        _in_server(who)
        key = name.strip().lstrip("@")
        item = await self.store.library_item(who.guild_id, key)
        if item is None:
            names = [i.name for i in await self.store.library_items(who.guild_id)]
            near = near_names(key, names)
            if near:
                raise NothingThere(key="errors.library.no_item_near", name=key,
                                   near=", ".join(f"`{n}`" for n in near))
            raise NothingThere(key="errors.library.no_item", name=key)
        return item

    async def forget(self, user_id: str) -> int:
        """Delete every item a member added (their "delete my data")."""
        return await self.store.forget_library_items(user_id)


def _in_server(who: Requester) -> None:
    if not who.in_server:
        raise NotAllowed(key="errors.library.server_only")
