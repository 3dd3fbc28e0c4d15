"""Discord's checks of a command's localizations at bulk overwrite (developer docs,
"Application Commands: Localization" and "Application Command Naming"): only Discord's locale
codes as keys; a localized chat-input name follows the default name's rules (1–32 characters,
lowercase, `^[-_\\p{L}\\p{N}\\p{sc=Deva}\\p{sc=Thai}]{1,32}$`); localized descriptions and
choice names are 1–100 characters."""

from __future__ import annotations

import unicodedata
from collections.abc import Callable
from typing import Any

#: Where, Discord's error code and its message: world.py turns it into a 50035 answer.
Problem = tuple[str, str, str]

#: The locales Discord accepts as localization keys.
LOCALES = frozenset({
    "id", "da", "de", "en-GB", "en-US", "es-ES", "es-419", "fr", "hr", "it", "lt", "hu", "nl",
    "no", "pl", "pt-BR", "ro", "fi", "sv-SE", "vi", "tr", "cs", "el", "bg", "ru", "uk", "hi",
    "th", "zh-CN", "ja", "zh-TW", "ko",
})


def _name_char(c: str) -> bool:
    if c in "-_" or unicodedata.category(c)[0] in "LN":
        return True
    return 0x0900 <= ord(c) <= 0x097F or 0x0E00 <= ord(c) <= 0x0E7F  # Devanagari, Thai marks


def valid_name(name: object) -> bool:
    """A chat-input command or option name as Discord accepts it."""
    return (isinstance(name, str) and 1 <= len(name) <= 32 and name == name.lower()
            and all(_name_char(c) for c in name))


def _length(text: object, most: int) -> bool:
    return isinstance(text, str) and 1 <= len(text) <= most


def _table(value: Any, path: str, ok: Callable[[object], bool], code: str,
           message: str) -> Problem | None:
    """The first problem of one localization table (locale → text), if any."""
    if value is None:
        return None
    if not isinstance(value, dict):
        return path, "DICT_TYPE_CONVERT", "Only dictionaries may be used in a DictType"
    for locale, text in value.items():
        if locale not in LOCALES:
            return (f"{path}.{locale}", "ENUM_TYPE_COERCE",
                    f'Value "{locale}" is not a valid enum value.')
        if not ok(text):
            return f"{path}.{locale}", code, message
    return None


def localization_problem(payload: dict[str, Any], path: str, *,
                         chat_input: bool = True) -> Problem | None:
    """The first bad localization of a command, its options (recursively) and their choices."""
    names = valid_name if chat_input else (lambda text: _length(text, 32))
    checks = [
        _table(payload.get("name_localizations"), f"{path}.name_localizations", names,
               "APPLICATION_COMMAND_INVALID_NAME", "Command name is invalid"),
        _table(payload.get("description_localizations"), f"{path}.description_localizations",
               lambda text: _length(text, 100), "BASE_TYPE_BAD_LENGTH",
               "Must be between 1 and 100 in length."),
        *(_table(choice.get("name_localizations"), f"{path}.choices.{n}.name_localizations",
                 lambda text: _length(text, 100), "BASE_TYPE_BAD_LENGTH",
                 "Must be between 1 and 100 in length.")
          for n, choice in enumerate(payload.get("choices") or [])),
        *(localization_problem(option, f"{path}.options.{n}")
          for n, option in enumerate(payload.get("options") or [])),
    ]
    return next((problem for problem in checks if problem is not None), None)
