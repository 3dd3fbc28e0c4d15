"""Draft → final, and remix: new jobs from a finished one, for every front end.

- **Final** (bot/service/draft_rules.py says what it is): `quote` prices it without writing
  anything; `final` makes it once the person confirmed that price. A confirmation carries the
  quote's `nonce`, and the final job's id is derived from the draft's id and that nonce, so a
  repeated confirmation (a double click, a retry after a restart) finds the job instead of
  writing a second one: the job's row is the record, and its insert is the one that can win.
  A price that changed since the quote is refused, never charged.
- **Remix**: the same files and settings, with the prompt, duration and ratio the person
  edited, checked by the same rules as `/video` (they go through `VideoService.make`).

Who may do either: the requester or a moderator of the server, as with Reroll
(`VideoService.may_act`). Files are reused as Reroll reuses them (`job_inputs`): our copy while
it is kept, else fetched again; when neither works, the refusal says to make it again.
"""

from __future__ import annotations

import secrets
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from bot.config import Settings
from bot.errors import InvalidInput, Problem, Refusal
from bot.i18n import Said
from bot.models import GenerationRequest, Ratio, RequestedMode
from bot.pricing import credits_for
from bot.store import JobState, JobView, Store

from .draft_rules import (
    FINAL_OF_KEY,
    REMIX_OF_KEY,
    carried_mark,
    draft_of,
    final_request,
    kept_seed,
    pixels,
)
from .gate import admit
from .options import capabilities_of, fixed_of
from .people import Requester
from .refusals import NotAllowed, NothingThere
from .videos import Made, VideoService, job_inputs, options_like

#: Names final jobs: uuid5(FINALS, "<draft id>:<nonce>").
FINALS = uuid.UUID("6f0c8f2e-8d1b-5d8e-9a57-3c2f1f0d7a11")


class AlreadyConfirmed(Refusal):
    """This confirmation made its job already (a double click)."""

    def __init__(self, job_id: str) -> None:
        self.job_id = job_id
        super().__init__(key="errors.draft.already_confirmed", job=job_id[:8])


class PriceChanged(Refusal):
    """The final costs something else than the quote said; nothing is charged."""

    def __init__(self, quoted: int, now: int) -> None:
        self.quoted, self.now = quoted, now
        super().__init__(key="errors.draft.price_changed", now=now, quoted=quoted)


@dataclass(frozen=True)
class FinalQuote:
    """What a final of `draft` would be and cost; `nonce` names this quote's confirmation."""

    draft: JobView
    request: GenerationRequest
    credits: int
    nonce: str

    @property
    def seed_kept(self) -> bool:
        """False: the gateway takes no seed, so the final is a new take, not the draft's."""
        return self.request.seed is not None


@dataclass(frozen=True)
class RemixForm:
    """What a remix form starts with: the job's prompt, duration and ratio."""

    prompt: str
    duration: str
    ratio: str


def final_job_id(draft_id: str, nonce: str) -> str:
    return str(uuid.uuid5(FINALS, f"{draft_id}:{nonce}"))


class DraftService:
    """Finals of drafts and remixes of finished videos; refusals are `Refusal`s or
    `InvalidInput`, as for `/video`."""

    def __init__(self, settings: Settings, store: Store, videos: VideoService) -> None:
        self.settings = settings
        self.store = store
        self.videos = videos

    # ---- draft → final ----------------------------------------------------------------------
    async def quote(self, job_id: str, who: Requester, *, nonce: str | None = None) -> FinalQuote:
        """The final of the draft `job_id` and its price; nothing is written or charged."""
        job = await self._source(job_id, who)
        mark = draft_of(job)
        if mark is None:
            raise NotAllowed(key="errors.draft.not_a_draft")
        if job.state is not JobState.DELIVERED:
            raise NothingThere(key="errors.draft.not_finished")
        admitted = await admit(self.store, who, job.request.prompt)
        fixed = fixed_of(admitted.event)
        caps = capabilities_of(self.videos.providers, job.provider, job.model)
        request = final_request(job, mark, fixed, admitted.settings, caps)
        if pixels(request.resolution) <= pixels(job.request.resolution):
            if fixed.resolution is not None:
                raise NotAllowed(key="errors.draft.no_higher_event",
                                 resolution=request.resolution.value)
            raise NotAllowed(key="errors.draft.no_higher_gateway",
                             who=f"{caps.provider} ({caps.model})",
                             resolution=job.request.resolution.value)
        return FinalQuote(job, request, credits_for(request, self.settings.prices),
                          nonce or secrets.token_hex(6))

    async def final(self, job_id: str, who: Requester, *, credits: int, nonce: str,
                    context: Mapping[str, Any] | None = None) -> Made:
        """Make the final the person confirmed at `credits`; at most one job per `nonce`."""
        quote = await self.quote(job_id, who, nonce=nonce)
        final_id = final_job_id(quote.draft.id, nonce)
        if await self.store.get_job(final_id) is not None:
            raise AlreadyConfirmed(final_id)
        if quote.credits != credits:
            raise PriceChanged(credits, quote.credits)
        req = quote.request
        options = replace(options_like(req, RequestedMode(req.mode.value), req.seed),
                          count=req.results)
        try:
            return await self.videos.make(
                who, job_inputs(quote.draft.request), options,
                context={**(context or {}), FINAL_OF_KEY: quote.draft.id}, job_id=final_id)
        except InvalidInput as exc:
            raise with_fix(exc, quote.draft.request) from None
        except Refusal:
            raise
        except Exception:
            # A second confirmation that raced the first lost the insert of the same id.
            if await self.store.get_job(final_id) is not None:
                raise AlreadyConfirmed(final_id) from None
            raise

    async def _source(self, job_id: str, who: Requester) -> JobView:
        """The job a new one is made from, if `who` may (as with Reroll) and it still has its
        prompt and files."""
        job = await self.videos.may_act(job_id, who)
        if job.forgotten:
            raise NothingThere(key="errors.draft.forgotten")
        return job

    # ---- remix -------------------------------------------------------------------------------
    async def remix_form(self, job_id: str, who: Requester) -> RemixForm:
        """What the remix form of `job_id` starts with, if `who` may remix it."""
        job = await self._source(job_id, who)
        req = job.request
        return RemixForm(req.prompt, str(req.duration), req.ratio.value)

    async def remix(self, job_id: str, who: Requester, *, prompt: str, duration: str,
                    ratio: str, context: Mapping[str, Any] | None = None) -> Made:
        """A new job from `job_id`'s files and settings with the edited prompt, duration and
        ratio (as typed in a form; checked here, then by every rule of `/video`). It keeps the
        seed where the gateway takes one, so only what was edited changes."""
        job = await self._source(job_id, who)
        new_prompt, seconds, shape = remix_values(prompt, duration, ratio)
        req = job.request
        caps = capabilities_of(self.videos.providers, job.provider, job.model)
        options = replace(options_like(req, RequestedMode(req.mode.value), kept_seed(job, caps)),
                          prompt=new_prompt, duration=seconds, ratio=shape, count=req.results,
                          provider=job.provider, model=job.model)
        try:
            return await self.videos.make(
                who, job_inputs(req), options,
                context={**(context or {}), REMIX_OF_KEY: job.id,
                         **carried_mark(job, seconds)})
        except InvalidInput as exc:
            raise with_fix(exc, req) from None


def remix_values(prompt: str, duration: str, ratio: str) -> tuple[str, int, Ratio]:
    """A remix form's text as settings; InvalidInput names each field to fix."""
    problems: list[Problem] = []
    text = prompt.strip()
    if not text:
        problems.append(Problem.keyed(Said("errors.subject.prompt"), "errors.remix.empty_prompt"))
    seconds = 0
    try:
        seconds = int(duration.strip().removesuffix("s").strip())
    except ValueError:
        problems.append(Problem.keyed(Said("errors.subject.duration"), "errors.remix.duration",
                                      given=repr(duration.strip())))
    shape = Ratio.ADAPTIVE
    try:
        shape = Ratio(ratio.strip().lower())
    except ValueError:
        problems.append(Problem.keyed(Said("errors.subject.ratio"), "errors.remix.ratio",
                                      given=repr(ratio.strip()),
                                      allowed=", ".join(r.value for r in Ratio)))
    if problems:
        raise InvalidInput(problems)
    return text, seconds, shape


def with_fix(exc: InvalidInput, earlier: GenerationRequest) -> InvalidInput:
    """`exc`, plus the way out when the earlier video's files could not be had again."""
    names = {r.name for r in earlier.references}
    if not any(p.subject in names for p in exc.problems):
        return exc
    return InvalidInput([*exc.problems, Problem.keyed(Said("errors.subject.files"),
                                                      "errors.remix.files_gone")])
