"""Which settings a request gets, in order: the member's choice, the event's fixed value, the
server's default, the model's default.

- An event (`/event start`) fixes some settings for every entry (bot/guild.py
  `FixedSettings`). A member's choice that contradicts one is refused with the reason before
  anything is fetched or spent; a setting left out takes the fixed value, and the job's context
  names what was fixed so the status message can say so.
- A server's defaults (`/seedance-admin defaults`) fill what the member left out. Ratio and
  watermark defaults apply only where the gateway's table takes them (as the "sound on" default
  does), so a server default never makes a request on another gateway fail.
- What an event fixes is checked against its gateway's table when it starts
  (`fixed_problems`), in the words validation uses for a request (bot/validation.py).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any

from bot.errors import ConfigError, InvalidInput, Problem
from bot.guild import FixedSettings, GuildSettings
from bot.i18n import Said
from bot.intake import RequestOptions
from bot.providers import model_refusal
from bot.providers.base import Capabilities, Provider
from bot.store import EventRow
from bot.validation import setting_problems

from .refusals import GatewayUnavailable

#: What `/event start` may fix, in the order they are shown.
FIXABLE = ("provider", "model", "ratio", "resolution", "duration", "audio", "watermark")


def fixed_of(event: EventRow | None) -> FixedSettings:
    """What `event` fixes (nothing without an event)."""
    return FixedSettings.from_stored(dict(event.fixed)) if event is not None else FixedSettings()


def _shown(value: Any) -> str:
    if isinstance(value, bool):
        return "on" if value else "off"
    return str(getattr(value, "value", value))


def apply_fixed(options: RequestOptions, fixed: FixedSettings) -> RequestOptions:
    """`options` with the event's fixed settings; raises InvalidInput naming every choice that
    contradicts one (nothing has been fetched or spent yet)."""
    problems: list[Problem] = []
    values: dict[str, Any] = {}
    for key in FIXABLE:
        want = getattr(fixed, key)
        if want is None:
            continue
        chosen = getattr(options, key)
        if chosen not in (None, "") and chosen != want:
            problems.append(Problem.keyed(Said(f"errors.subject.{key}"), "errors.request.fixed",
                                          option=key, value=_shown(want)))
        values[key] = want
    if problems:
        raise InvalidInput(problems)
    return replace(options, **values)


def capabilities_of(providers: Callable[[str], Provider], name: str,
                    model: str | None) -> Capabilities:
    """The table of `model` on gateway `name`: `GatewayUnavailable` when the gateway can't be
    built here (no key, unknown name), `InvalidInput` (about the model) when it does not run
    that model. A /video and an event's fixed settings are checked against the same table."""
    try:
        provider = providers(name)
    except (ConfigError, KeyError, ValueError) as exc:
        raise GatewayUnavailable(name, str(exc)) from None
    refusal = model_refusal(provider, model)
    if refusal:
        raise InvalidInput([Problem(Said("errors.subject.model"), refusal)])
    return provider.capabilities(model)


def server_defaults(resolved: RequestOptions, chosen: RequestOptions, guild: GuildSettings,
                    caps: Capabilities) -> RequestOptions:
    """The server's sound, ratio and watermark defaults where the gateway takes them.

    `chosen` is what the member (and the event) set; `resolved` already has the defaults that
    need no table (bot/service/videos.py `resolve_options`).
    """
    values: dict[str, Any] = {}
    if chosen.audio is None and guild.audio:
        values["audio"] = caps.audio_generation  # "sound on" where the model has sound
    if chosen.ratio is None and guild.ratio is not None and guild.ratio in caps.ratios:
        values["ratio"] = guild.ratio
    if chosen.watermark is None and guild.watermark is not None and (
            caps.watermark or not guild.watermark):
        values["watermark"] = guild.watermark
    return replace(resolved, **values) if values else resolved


def fixed_problems(fixed: FixedSettings, caps: Capabilities) -> list[Problem]:
    """Why an event could not fix these settings on its gateway (empty: it can)."""
    return setting_problems(caps, resolution=fixed.resolution, duration=fixed.duration,
                            ratio=fixed.ratio, audio=fixed.audio, watermark=fixed.watermark)


def fixed_keys(fixed: FixedSettings) -> list[str]:
    """The names of the settings `fixed` fixes (for the job's context)."""
    return [key for key in FIXABLE if getattr(fixed, key) is not None]
