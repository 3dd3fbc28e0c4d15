"""One catalog for every sentence a person reads, in the languages the bot ships.

Texts live in `bot/i18n/locales/<language>/<part>.toml`; a key is the part's file name plus the
dotted path inside it (`errors.toml`, `[refusal] blocked = "…"` → `errors.refusal.blocked`).
Placeholders are `str.format` fields (`{credits}`); every language of a key has the same ones
(tests/test_i18n.py fails otherwise, and on any key missing from a language or used nowhere). A
value that is a table of CLDR plural forms (`one`, `other`, …) is chosen by the `count` param.

The core stays free of discord: front ends pass Discord's locale string (`"ja"`, `"pt-BR"`,
`"en-US"`) and get the closest shipped language, English when there is none. The core hands a
sentence to a person as a keyed error (`Localized`: Refusals, `bot.errors.Problem`) or as a
`Said` value (a cancel's answer, a subject word, a sentence part used as another's param); both
are English as str() and are said in the reader's language by `say(x, locale)`.
"""

from __future__ import annotations

import string
import tomllib
from collections.abc import Mapping
from functools import cache
from pathlib import Path
from typing import Any

#: The shipped languages, English first (the source every other language must match).
LANGUAGES: tuple[str, ...] = ("en", "de", "es", "fr", "ja", "pt-BR")
DEFAULT = "en"
PLURAL_FORMS = frozenset({"zero", "one", "two", "few", "many", "other"})
_LOCALES = Path(__file__).parent / "locales"
_FORMATTER = string.Formatter()


def language_of(locale: object) -> str:
    """The shipped language for a Discord locale (`"es-419"` → es, `"pt-BR"` → pt-BR,
    `"en-GB"` → en), English for anything unknown or missing. Accepts discord.Locale too (its
    str() is the code)."""
    code = str(getattr(locale, "value", locale) or "").strip()
    if code in LANGUAGES:
        return code
    base = code.split("-")[0].lower()
    if base == "pt":
        return "pt-BR"
    return base if base in LANGUAGES and base != "pt" else DEFAULT


def _flatten(prefix: str, table: Mapping[str, Any], out: dict[str, str | dict[str, str]]) -> None:
    for name, value in table.items():
        key = f"{prefix}.{name}"
        if isinstance(value, dict) and value and set(value) <= PLURAL_FORMS and "other" in value:
            out[key] = {form: str(text) for form, text in value.items()}
        elif isinstance(value, dict):
            _flatten(key, value, out)
        else:
            out[key] = str(value)


@cache
def catalog(language: str) -> Mapping[str, str | dict[str, str]]:
    """Every key of one language (read once per process)."""
    out: dict[str, str | dict[str, str]] = {}
    folder = _LOCALES / language
    for part in sorted(folder.glob("*.toml")):
        with part.open("rb") as fh:
            _flatten(part.stem, tomllib.load(fh), out)
    return out


def plural_form(language: str, count: int) -> str:
    """The CLDR cardinal form for integers: Japanese has one form; French and Brazilian
    Portuguese count 0 and 1 as one; the others only 1."""
    if language == "ja":
        return "other"
    if language in ("fr", "pt-BR"):
        return "one" if count in (0, 1) else "other"
    return "one" if count == 1 else "other"


def t(locale: object, key: str, /, **params: Any) -> str:
    """The text of `key` in the language closest to `locale`, its placeholders filled.

    A key missing from a language falls back to English (the test keeps that from shipping);
    a key missing from English is a programming error and raises KeyError."""
    language = language_of(locale)
    value = catalog(language).get(key)
    if value is None:
        language, value = DEFAULT, catalog(DEFAULT)[key]
    if isinstance(value, dict):
        value = value.get(plural_form(language, int(params.get("count", 0))), value["other"])
    return value.format(**params) if params else value.replace("{{", "{").replace("}}", "}")


def fields(text: str | Mapping[str, str]) -> frozenset[str]:
    """The placeholder names a text (or each form of a plural text) uses."""
    texts = text.values() if isinstance(text, Mapping) else (text,)
    return frozenset(name for one in texts for _, name, _, _ in _FORMATTER.parse(one)
                     if name is not None and name != "")


class Localized:
    """Mixed into errors whose sentence comes from the catalog: `key` and `params` let a front
    end say it in the reader's language (`say`); str() stays English for logs and the CLI."""

    key: str | None = None
    params: Mapping[str, Any] = {}


class Said(str):
    """A sentence the core hands back to a person as a value (a cancel's answer, a subject word):
    it is its English text, so logs, the CLI and every str use are unchanged, and it keeps its
    catalog `key` and `params` so a front end can `say` it in the reader's language."""

    key: str
    params: Mapping[str, Any]

    def __new__(cls, key: str, /, **params: Any) -> Said:
        self = super().__new__(cls, t(DEFAULT, key, **params))
        self.key, self.params = key, params
        return self

    def __getnewargs_ex__(self) -> tuple[tuple[str], dict[str, Any]]:
        return (self.key,), dict(self.params)


def say(said: object, locale: object) -> str:
    """An error or a `Said` as the reader should read it: from the catalog when it carries a
    key (a param that carries one is said in the same language), else its str()."""
    key = getattr(said, "key", None)
    if not isinstance(key, str):
        return str(said)
    params = dict(getattr(said, "params", {}) or {})
    return t(locale, key, **{name: say(value, locale) if _keyed(value) else value
                             for name, value in params.items()})


def _keyed(value: object) -> bool:
    return isinstance(getattr(value, "key", None), str)
