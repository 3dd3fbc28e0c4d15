"""What a draft is, and what its final is: plain rules over a request and a capability table.

- `/video draft:true` (`RequestOptions.draft`) asks for the cheapest version the gateway's
  table allows: its lowest resolution (480p) and its shortest duration, within what the
  channel's event fixes (an event's value stands, bot/service/options.py). A member's own
  resolution or duration that contradicts the draft is refused with the reason, before
  anything is fetched or spent. Where the gateway takes a seed and none was given, one is drawn
  now and kept in the request, so the final can repeat it whatever the gateway reports back.
- The job's context marks it (`DRAFT_KEY`) with the duration the member chose, if any.
- Its final (bot/service/drafts.py) is the same request at the gateway's best resolution
  (1080p where the model makes it, else 720p), with the draft's seed, and the duration the
  member chose for the draft; without one, the duration `/video` would give a non-draft: the
  server's default, else the model's (bot/intake.py `default_duration`). An event's fixed
  resolution or duration wins, as for any request.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from bot.errors import InvalidInput, Problem
from bot.guild import FixedSettings, GuildSettings
from bot.i18n import Said
from bot.intake import RequestOptions, default_duration
from bot.models import GenerationRequest, Resolution
from bot.providers.base import Capabilities
from bot.store import JobView
from bot.validation import MAX_SEED

#: The job's context key that marks a draft: {"duration": what the member chose, or None}.
DRAFT_KEY = "draft"
#: The job's context key of a final: the id of the draft it finishes.
FINAL_OF_KEY = "final_of"
#: The job's context key of a remix: the id of the job it remixes.
REMIX_OF_KEY = "remix_of"


def pixels(resolution: Resolution) -> int:
    """How tall a resolution is, to order them (480p < 720p < 1080p)."""
    return int(resolution.value.removesuffix("p"))


def draft_settings(resolved: RequestOptions, chosen: RequestOptions, fixed: FixedSettings,
                   caps: Capabilities) -> RequestOptions:
    """`resolved` made the cheapest the gateway allows; `chosen` is what the member (and the
    event, `fixed`) set. Raises InvalidInput naming a member's choice that contradicts it."""
    cheapest: dict[str, Any] = {"resolution": min(caps.resolutions, key=pixels),
                                "duration": min(caps.durations)}
    problems: list[Problem] = []
    values: dict[str, Any] = {}
    for key, value in cheapest.items():
        if getattr(fixed, key) is not None:
            continue  # the event's value stands (the cheapest it allows)
        mine = getattr(chosen, key)
        if mine is not None and mine != value:
            problems.append(Problem.keyed(Said(f"errors.subject.{key}"), "errors.request.draft",
                                          value=shown(key, value), provider=caps.provider,
                                          option=key, mine=shown(key, mine)))
        values[key] = value
    if problems:
        raise InvalidInput(problems)
    if caps.seed and resolved.seed is None:
        values["seed"] = random.randrange(0, MAX_SEED + 1)
    return replace(resolved, **values)


def shown(key: str, value: Any) -> str:
    return f"{value} s" if key == "duration" else str(getattr(value, "value", value))


def draft_mark(options: RequestOptions) -> dict[str, Any]:
    """The context that marks a job made from `options` as a draft (empty: not one)."""
    return {DRAFT_KEY: {"duration": options.duration}} if options.draft else {}


def draft_of(job: JobView) -> Mapping[str, Any] | None:
    """The draft mark of `job`, None when it was not made as a draft."""
    mark = job.context.get(DRAFT_KEY)
    return mark if isinstance(mark, Mapping) else None


def carried_mark(job: JobView, duration: int | None = None) -> dict[str, Any]:
    """A video made from a draft (its reroll, its remix) is a draft too, so it keeps a Final;
    a new `duration` becomes the one the member chose."""
    mark = draft_of(job)
    if mark is None:
        return {}
    chose = duration if duration is not None and duration != job.request.duration \
        else mark.get("duration")
    return {DRAFT_KEY: {"duration": chose}}


def kept_seed(job: JobView, caps: Capabilities) -> int | None:
    """The seed the job's video was made with, where the gateway takes one: the one asked
    for, else the one the gateway reported (bot/engine/follow.py keeps it in result_meta)."""
    if not caps.seed:
        return None
    seed = job.request.seed if job.request.seed is not None else job.result_meta.get("seed")
    return int(seed) if isinstance(seed, int | float) and 0 <= seed <= MAX_SEED else None


def final_resolution(caps: Capabilities, fixed: FixedSettings) -> Resolution:
    """1080p where the model makes it, else 720p; an event's fixed resolution wins."""
    if fixed.resolution is not None:
        return fixed.resolution
    for best in (Resolution.P1080, Resolution.P720):
        if best in caps.resolutions:
            return best
    return max(caps.resolutions, key=pixels)


def final_duration(mark: Mapping[str, Any], fixed: FixedSettings, guild: GuildSettings,
                   caps: Capabilities) -> int:
    """The event's fixed duration, else the member's choice for the draft, else the normal
    default of a non-draft (the server's, else the model's)."""
    chose = mark.get("duration")
    if fixed.duration is not None:
        return fixed.duration
    if isinstance(chose, int):
        return chose
    return guild.duration if guild.duration is not None else default_duration(caps)


def final_request(draft: JobView, mark: Mapping[str, Any], fixed: FixedSettings,
                  guild: GuildSettings, caps: Capabilities) -> GenerationRequest:
    """The draft's request as its final: what is priced and then asked for."""
    return draft.request.model_copy(update={
        "resolution": final_resolution(caps, fixed),
        "duration": final_duration(mark, fixed, guild, caps),
        "seed": kept_seed(draft, caps),
        "provider": draft.provider, "model": draft.model,
    })
