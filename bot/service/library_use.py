"""Library items in a /video request: the `@name`s a prompt uses, the files they bring in (after
the attachments, numbered as bot/library_refs.py documents), and what the job keeps of them.

Per gateway: an item registered there as an asset goes as `asset://ID`; otherwise its bytes are
written from the database to a file of this request (under the engine's inputs, like a
download), sent as a data URI where the gateway's capability table takes one. A gateway that
takes that kind only as a link gets a link this bot serves (bot/library_links.py) where
SEEDANCE_WEBHOOK_BASE_URL is set; otherwise the request is refused with the fix (attach the
file instead): a library item has no lasting public link of its own. The job records which
bytes it uses (`job_library`), so a removal leaves it its copy; the file's name says which
bytes it holds, so a process on another host writes it again (bot/engine/inputs.py).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

from bot.config import Settings
from bot.engine.inputs import library_file, write_file
from bot.errors import InvalidInput, Problem, Refusal
from bot.i18n import Said
from bot.intake import MediaInput
from bot.library_links import library_url
from bot.library_refs import mentions, near_names, numbering, rewrite
from bot.models import MediaKind, Reference, SourceKind
from bot.providers.base import Capabilities
from bot.store import Store
from bot.store.library import LibraryItem
from bot.webhooks import load_or_create_secret

from .people import Requester

#: How a library item is named in the mapping a member checks before spending.
LABEL = "library: {name}"


class LibraryNotUsable(Refusal):
    """An `@name` names no usable item here; the message names the near ones or the fix."""


@dataclass
class LibraryInputs:
    """The files a request's library items became for one gateway."""

    inputs: list[MediaInput] = field(default_factory=list)
    #: (item id, blob id, file) of each item, for the job's record and for cleaning up.
    files: list[tuple[str, str, Path]] = field(default_factory=list)
    labels: dict[str, str] = field(default_factory=dict)  # label → name key

    def rewrite(self, prompt: str, refs: Sequence[Reference]) -> str:
        """`bot.intake.PromptRewrite`: the `@name`s as the placeholders their files got."""
        return rewrite(prompt, numbering(refs, self.labels))

    def discard(self) -> None:
        for _, _, path in self.files:
            path.unlink(missing_ok=True)


#: (blob id, file name) → a public link to the bytes (bot/library_links.py).
Linker = Callable[[str, str], str]


def linker_of(settings: Settings) -> Linker | None:
    """Links served by this bot's receiver, where SEEDANCE_WEBHOOK_BASE_URL names it."""
    base = settings.seedance_webhook_base_url
    if not base:
        return None
    return partial(library_url, base, load_or_create_secret(settings))


class LibraryUse:
    """Library items into requests. Raises `Refusal`s and `InvalidInput`."""

    def __init__(self, store: Store, link: Linker | None = None) -> None:
        self.store = store
        self.link = link

    async def pick(self, who: Requester, prompt: str) -> list[LibraryItem]:
        """The items the prompt's `@name`s name, in first-mention order; refused when one is
        unknown or still waits for a moderator. Outside a server (the CLI) `@words` stay
        words."""
        keys = mentions(prompt)
        if not keys or not who.in_server:
            return []
        items = {i.name.lower(): i for i in await self.store.library_items(who.guild_id)}
        unknown = [k for k in keys if k not in items]
        if unknown:
            names = [i.name for i in items.values()]
            lines: Said | None = None
            for key in reversed(unknown):  # "a; b; c", each said in the reader's language
                near = near_names(key, names)
                hint = (Said("errors.library.near", near=", ".join(f"@{n}" for n in near))
                        if near else Said("errors.library.none_near"))
                line = Said("errors.library.unknown", name=key, hint=hint)
                lines = line if lines is None else Said("errors.library.unknown_and",
                                                        first=line, rest=lines)
            raise LibraryNotUsable(key="errors.library.not_usable", unknown=lines)
        waiting = [items[k].name for k in keys if items[k].pending]
        if waiting:
            raise LibraryNotUsable(key="errors.library.pending",
                                   names=", ".join(f"`@{n}`" for n in waiting))
        return [items[k] for k in keys]

    async def inputs(self, items: Sequence[LibraryItem], caps: Capabilities,
                     cache_dir: Path) -> LibraryInputs:
        """The items as inputs for the gateway of `caps` (see the module docstring)."""
        made = LibraryInputs()
        if not items:
            return made
        assets = (await self.store.library_assets([i.id for i in items], caps.provider)
                  if caps.assets else {})
        try:
            for item in items:
                kind = MediaKind(item.kind)
                asset = assets.get(item.id)
                allowed = caps.accepts.get(kind, frozenset())
                as_file = bool(allowed & {SourceKind.DATA_URI, SourceKind.PATH})
                link = None
                if asset is None and not as_file and SourceKind.URL in allowed and self.link:
                    link = self.link(item.blob_id, f"{item.name}.{item.format or 'bin'}")
                if asset is None and not as_file and link is None:
                    # A problem of the request (not a refusal): the next gateway of a fleet
                    # may take it (bot/service/videos.py tries them in turn).
                    raise InvalidInput([Problem.keyed(
                        f"@{item.name}", f"errors.library.links_only.{kind.value}"
                        if not caps.assets else f"errors.library.links_or_assets.{kind.value}",
                        provider=caps.provider)])
                data = await self.store.library_blob(item.blob_id)
                if data is None:
                    raise LibraryNotUsable(key="errors.library.just_removed", name=item.name)
                path = library_file(cache_dir, item.blob_id)
                await asyncio.to_thread(write_file, path, data)
                made.files.append((item.id, item.blob_id, path))
                label = LABEL.format(name=item.name)
                made.labels[label] = item.name.lower()
                source = f"asset://{asset}" if asset else (link or str(path))
                made.inputs.append(MediaInput(source, name=label, declared_kind=kind,
                                              local_path=path))
        except BaseException:
            made.discard()
            raise
        return made

    async def record(self, job_id: str, made: LibraryInputs) -> None:
        """The job uses these bytes (kept for it) and each item counts one use."""
        if made.files:
            await self.store.use_library_items(
                job_id, [(item, blob, str(path)) for item, blob, path in made.files])
