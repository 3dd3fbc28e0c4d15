"""The language catalog (bot/i18n): every language has every key with the same placeholders,
no key is left unused, and a Discord locale picks the closest shipped language."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from bot.i18n import DEFAULT, LANGUAGES, catalog, fields, language_of, plural_form, say, t
from bot.service.refusals import Blocked, NotInThisChannel

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
    f-string builds it from a literal prefix (a family of keys chosen by a value)."""
    whole, prefixes = string_constants()
    unused = sorted(key for key in catalog(DEFAULT)
                    if key not in whole and not any(key.startswith(p) and p.endswith(".")
                                                    for p in prefixes))
    assert unused == [], "keys no code uses: remove them or use them"


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
