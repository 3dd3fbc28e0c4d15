"""Slash commands in the reader's language: one `app_commands.Translator` over bot/i18n.

The English names and descriptions written in the cogs stay the source: discord.py wraps each
in a `locale_str` (auto_locale_strings), asks the translator for every Discord locale when
syncing, and Discord shows the default string where there is no localization. The catalog key
comes from where the string sits (bot/i18n/locales/<language>/commands.toml), so no cog names
a key:

- `commands.<command>.name|description`: the qualified name with spaces and `-` as `_`
  (`seedance-admin quota-user` → `seedance_admin_quota_user`); groups alike;
- `commands.<command>.options.<parameter>.name|description`;
- `commands.choices.<value>`: a choice's context is the choice alone (not its option), so a
  value means the same wherever it is offered (`off`, `16:9`, `anyfast`).

English, languages not shipped and discord.py's "…" (an option without a description) get
None: the default string.
"""

from __future__ import annotations

from typing import Any

import discord
from discord import app_commands
from discord.app_commands import TranslationContextLocation as Where
from discord.app_commands import TranslationContextTypes, locale_str

from bot.i18n import DEFAULT, catalog, language_of

_PART = "commands"
#: discord.py's description of an option the cog leaves undescribed: nothing to translate.
PLACEHOLDER = "…"


def slug(qualified_name: str) -> str:
    """A command's qualified name as one key segment."""
    return qualified_name.replace(" ", "_").replace("-", "_")


def key_of(string: locale_str, context: TranslationContextTypes) -> str | None:
    """The catalog key of a string the tree asks to translate (None: not one of ours)."""
    if string.message == PLACEHOLDER:
        return None
    data: Any = context.data
    where = context.location
    if where in (Where.command_name, Where.group_name):
        return f"{_PART}.{slug(data.qualified_name)}.name"
    if where in (Where.command_description, Where.group_description):
        return f"{_PART}.{slug(data.qualified_name)}.description"
    if where in (Where.parameter_name, Where.parameter_description):
        field = "name" if where is Where.parameter_name else "description"
        return f"{_PART}.{slug(data.command.qualified_name)}.options.{data.name}.{field}"
    if where is Where.choice_name:
        return f"{_PART}.choices.{data.value}"
    return None


class CatalogTranslator(app_commands.Translator):
    """Names and descriptions from the catalog; None (the English default) for English,
    languages not shipped and keys a language lacks."""

    async def translate(self, string: locale_str, locale: discord.Locale,
                        context: TranslationContextTypes) -> str | None:
        language = language_of(locale.value)
        key = key_of(string, context)
        if language == DEFAULT or key is None:
            return None
        text = catalog(language).get(key)
        return text if isinstance(text, str) else None


async def install(tree: app_commands.CommandTree[Any]) -> None:
    """Set the translator (before the tree is synced)."""
    await tree.set_translator(CatalogTranslator())
