"""The language catalog (bot/i18n): every language has every key with the same placeholders,
no key is left unused, and a Discord locale picks the closest shipped language."""

from __future__ import annotations

import ast
import asyncio
import tempfile
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import discord
import pytest
from discord.app_commands import TranslationContextTypes, locale_str

from bot.config import Settings
from bot.i18n import DEFAULT, LANGUAGES, catalog, fields, language_of, plural_form, say, t
from bot.service.refusals import Blocked, NotInThisChannel
from cogs.app import SeedanceBot
from cogs.utils.commands_i18n import CatalogTranslator, key_of
from tests.fakes.discord.command_rules import valid_name

ROOT = Path(__file__).resolve().parents[1]
SOURCES = [*sorted((ROOT / "bot").rglob("*.py")), *sorted((ROOT / "cogs").rglob("*.py"))]


def string_constants() -> tuple[set[str], set[str]]:
    """Every string literal in bot/ and cogs/, and every literal part of an f-string that is
    followed by a value (a key family chosen at run time: f"choices.ratio.{value}")."""
    whole: set[str] = set()
    prefixes: set[str] = set()
    for path in SOURCES:
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                whole.add(node.value)
            elif isinstance(node, ast.JoinedStr):
                for part, after in zip(node.values, [*node.values[1:], None], strict=True):
                    if (isinstance(part, ast.Constant) and isinstance(part.value, str)
                            and isinstance(after, ast.FormattedValue)):
                        prefixes.add(part.value)
    return whole, prefixes


@pytest.mark.parametrize("language", [lang for lang in LANGUAGES if lang != DEFAULT])
def test_every_language_has_every_key_and_no_other(language: str) -> None:
    english, other = catalog(DEFAULT), catalog(language)
    assert sorted(set(english) - set(other)) == [], f"{language} lacks these keys"
    assert sorted(set(other) - set(english)) == [], f"{language} has keys English lacks"


@pytest.mark.parametrize("language", [lang for lang in LANGUAGES if lang != DEFAULT])
def test_placeholders_are_the_same_in_every_language(language: str) -> None:
    english, other = catalog(DEFAULT), catalog(language)
    differ = {key: (sorted(fields(text)), sorted(fields(other[key])))
              for key, text in english.items()
              if key in other and fields(text) != fields(other[key])}
    assert differ == {}, f"{language}: placeholders differ from English (en, {language})"


@pytest.mark.parametrize("language", LANGUAGES)
def test_no_text_is_empty_and_plurals_have_their_forms(language: str) -> None:
    for key, text in catalog(language).items():
        forms = text.values() if isinstance(text, dict) else [text]
        assert all(form.strip() for form in forms), f"{language}: {key} is empty"
        if isinstance(text, dict):
            assert "other" in text and (language == "ja" or "one" in text), (language, key)


def test_every_key_is_used_somewhere() -> None:
    """A key is used when its whole name is a string literal in bot/ or cogs/, or when an
    f-string builds it from a literal prefix (a family of keys chosen by a value). Command
    keys are named by the command tree instead (cogs/utils/commands_i18n.py): one is used
    when the real tree asks for it."""
    whole, prefixes = string_constants()
    asked = command_tree().asked
    unused = sorted(key for key in catalog(DEFAULT)
                    if key not in whole and not any(key.startswith(p) and p.endswith(".")
                                                    for p in prefixes)
                    and not (key.startswith(COMMANDS) and key in asked))
    assert unused == [], "keys no code uses: remove them or use them"


# ---- slash commands: the real tree, as the bot loads it ---------------------------------------
COMMANDS = "commands."


class Recording(CatalogTranslator):
    """The bot's translator, noting every key the tree asks for and its English source."""

    def __init__(self) -> None:
        self.asked: dict[str, str] = {}

    async def translate(self, string: locale_str, locale: discord.Locale,
                        context: TranslationContextTypes) -> str | None:
        key = key_of(string, context)
        if key is not None:
            self.asked[key] = string.message
        return await super().translate(string, locale, context)


@dataclass(frozen=True)
class Tree:
    asked: dict[str, str]  # key → the English the cog wrote
    payloads: list[dict[str, Any]]  # what the bot syncs, localizations included


@cache
def command_tree() -> Tree:
    """Load the cogs as the bot does (cogs/app.py `load_cogs`, over a throwaway SQLite store,
    never connecting) and translate every command, option and choice for every locale."""
    async def build() -> Tree:
        with tempfile.TemporaryDirectory() as data:
            bot = SeedanceBot(Settings(_env_file=None, seedance_data_dir=Path(data),
                                       discord_token="unused"))
            async with bot:
                await bot.prepare()
                bot.build_core()
                await bot.load_cogs()
                assert isinstance(bot.tree.translator, CatalogTranslator)
                recording = Recording()
                await bot.tree.set_translator(recording)
                payloads = [await command.get_translated_payload(bot.tree, recording)
                            for command in bot.tree.get_commands()]
        return Tree(recording.asked, payloads)

    return asyncio.run(build())


def test_the_tree_asks_for_command_keys_every_language_has() -> None:
    asked = command_tree().asked
    assert len(asked) > 200  # every command, option and choice, not a few
    for language in LANGUAGES:
        missing = sorted(set(asked) - set(catalog(language)))
        assert missing == [], f"{language} lacks these command keys"
    stale = sorted(key for key in catalog(DEFAULT) if key.startswith(COMMANDS) and key not in asked)
    assert stale == [], "command keys no command, option or choice asks for"
    english = {key: catalog(DEFAULT)[key] for key in asked}
    assert english == asked, "commands.toml's English must be the cogs' own text"


def _names(payload: dict[str, Any], locale: str) -> str:
    return payload.get("name_localizations", {}).get(locale, payload["name"])


def _check(payload: dict[str, Any], where: str, problems: list[str]) -> None:
    for locale, name in payload.get("name_localizations", {}).items():
        if not valid_name(name):
            problems.append(f"{where}: {locale} name {name!r}")
    for locale, text in payload.get("description_localizations", {}).items():
        if not 1 <= len(text) <= 100:
            problems.append(f"{where}: {locale} description of {len(text)} characters")
    options = payload.get("options") or []
    for locale in {"en-US", *(k for o in options for k in o.get("name_localizations", {}))}:
        names = [_names(option, locale) for option in options]
        if len(set(names)) != len(names):
            problems.append(f"{where}: {locale} names twice among {names}")
    for option in options:
        _check(option, f"{where} {option['name']}", problems)
        for choice in option.get("choices") or []:
            for locale, name in choice.get("name_localizations", {}).items():
                if not 1 <= len(name) <= 100:
                    problems.append(f"{where}: {locale} choice {name!r}")


def test_localized_commands_follow_discords_rules() -> None:
    """Names lowercase letters, digits, - and _ (1–32), unique among their siblings in every
    language; descriptions and choice names 1–100 characters; English is never localized
    (its default strings are the source)."""
    payloads = command_tree().payloads
    problems: list[str] = []
    _check({"name": "/", "options": payloads}, "/", problems)  # top-level names unique too
    assert problems == []
    [video] = [p for p in payloads if p["name"] == "video"]
    assert video["name_localizations"]["ja"] == "動画"
    assert video["description_localizations"]["de"] == "Erstelle ein kurzes Video mit Seedance"
    assert {"en-US", "en-GB"}.isdisjoint(video["name_localizations"])
    mode = next(o for o in video["options"] if o["name"] == "mode")
    auto = next(c for c in mode["choices"] if c["value"] == "auto")
    assert auto["name"] == "auto" and auto["name_localizations"]["fr"] == "automatique"
    assert auto["name_localizations"]["es-419"] == auto["name_localizations"]["es-ES"]


def test_every_key_the_code_names_exists() -> None:
    """A literal that looks like a catalog key (`part.section.name` of a shipped part) must
    be one: a typo would show English — or fail — at run time."""
    parts = {p.stem for p in (ROOT / "bot" / "i18n" / "locales" / DEFAULT).glob("*.toml")}
    whole, _ = string_constants()
    english = catalog(DEFAULT)
    named = {s for s in whole if s.count(".") >= 2 and s.split(".")[0] in parts
             and " " not in s and all(bit.isidentifier() for bit in s.split("."))}
    assert sorted(named - set(english)) == []


@pytest.mark.parametrize(("locale", "language"), [
    ("en-US", "en"), ("en-GB", "en"), ("de", "de"), ("es-ES", "es"), ("es-419", "es"),
    ("fr", "fr"), ("ja", "ja"), ("pt-BR", "pt-BR"), ("ko", "en"), ("zh-CN", "en"),
    ("", "en"), (None, "en"),
])
def test_a_discord_locale_picks_the_closest_language(locale: str | None, language: str) -> None:
    assert language_of(locale) == language


def test_plural_forms_follow_each_language() -> None:
    assert [plural_form("en", n) for n in (0, 1, 2)] == ["other", "one", "other"]
    assert [plural_form("fr", n) for n in (0, 1, 2)] == ["one", "one", "other"]
    assert [plural_form("ja", n) for n in (0, 1, 2)] == ["other", "other", "other"]


def test_a_refusal_reads_in_the_readers_language_and_stays_english_for_logs() -> None:
    refusal = Blocked("spam")
    assert str(refusal) == "You can't make videos on this server. Reason: spam"
    assert say(refusal, "ja") == "このサーバーでは動画を作成できません。理由: spam"
    assert say(refusal, "de").startswith("Du darfst")
    assert say(NotInThisChannel(("1", "2")), "fr").endswith("<#1>, <#2>.")
    assert say(ValueError("plain"), "ja") == "plain"  # a sentence without a key, as it is
    assert t("ko", "errors.refusal.blocked") == t("en", "errors.refusal.blocked")
