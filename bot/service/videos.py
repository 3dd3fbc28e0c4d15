"""Making videos, for every front end: the CLI and the Discord layer call these and only render.

`make` is the one path a new job takes: the gate (blocks, channels, roles, blocklist, event,
review), the server's defaults, the gateway and model, the files (fetched, measured, mapped,
validated), then the engine writes the job with its credits, queued caps and per-minute rate
checked in one transaction. Reroll, Extend and Animate build a request from an earlier job and
take the same path, so a button can never skip a rule a command would meet.
"""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import httpx

from bot.config import Settings
from bot.engine import Engine, QueueEntry, QuotaStatus, RateLimited
from bot.engine import NotAllowed as EngineNotAllowed
from bot.engine.sets import FLAGGED_KEY, FLAGGED_TO_REVIEW
from bot.engine.sizing import UPLOAD_LIMIT_KEY, choose_quality
from bot.errors import ConfigError, InvalidInput
from bot.guild import GuildLimits, GuildSettings, ReviewMode
from bot.i18n import Said
from bot.intake import MediaInput, RequestOptions, prepare
from bot.models import GenerationRequest, MediaKind, RequestedMode, Role, SafetyCheck
from bot.providers.base import Capabilities, Provider
from bot.store import EventRow, JobView, Store
from bot.store.library import LibraryItem

from .admin import effective_limits
from .draft_rules import carried_mark, draft_mark, draft_settings
from .failover import failover_order, fleet_for, usable
from .gate import Admitted, admit
from .library_use import LibraryInputs, LibraryUse, linker_of
from .options import apply_fixed, capabilities_of, fixed_keys, fixed_of, server_defaults
from .people import CLI_GUILD, Requester
from .purchased import enqueue_paying
from .refusals import GatewayUnavailable, NotAllowed, NothingThere


@dataclass(frozen=True)
class QueueView:
    """A server's queue as a member sees it, with the caps that shape it."""

    entries: list[QueueEntry]
    limits: GuildLimits


@dataclass(frozen=True)
class Made:
    """A job written and its credits reserved; the front end shows it from here on."""

    job: JobView
    review: ReviewMode
    event: EventRow | None


def resolve_options(options: RequestOptions, guild: GuildSettings,
                    settings: Settings) -> RequestOptions:
    """The request's options with the server's defaults filled in (a copy; the caller's
    options stay as given).

    A model belongs to its gateway: the server's model only on the server's gateway,
    SEEDANCE_MODEL only on SEEDANCE_PROVIDER's; any other gateway runs its own default.
    """
    provider = options.provider or guild.provider or settings.seedance_provider
    model = options.model
    if not model:
        model = (guild.model if provider == guild.provider else None) or settings.model_for(
            provider)
    return replace(
        options, provider=provider, model=model,
        duration=options.duration if options.duration is not None else guild.duration,
        resolution=options.resolution or guild.resolution,
        audio=options.audio if options.audio is not None else guild.audio,
    )  # ratio and watermark defaults need the gateway's table: options.server_defaults


class VideoService:
    """The use cases of making a video. Raises `Refusal`s and `InvalidInput`, never decides
    anything about Discord."""

    def __init__(
        self,
        settings: Settings,
        store: Store,
        engine: Engine,
        providers: Callable[[str], Provider],
        http: httpx.AsyncClient,
        *,
        member_hosts: Sequence[str] = (),
    ) -> None:
        """`member_hosts`: where a member's files may come from (the front end's file host,
        e.g. Discord's CDN); the operator's own files (the CLI) may come from anywhere."""
        self.settings = settings
        self.store = store
        self.engine = engine
        self.providers = providers
        self.http = http
        self.member_hosts = tuple(member_hosts)
        self._policy = settings.network_policy()
        # `@name`s of the server library (library_use.py)
        self.library = LibraryUse(store, linker_of(settings))

    # ---- a new video ------------------------------------------------------------------------
    async def make(
        self,
        who: Requester,
        inputs: Sequence[MediaInput],
        options: RequestOptions,
        *,
        context: Mapping[str, Any] | None = None,
        job_id: str | None = None,
    ) -> Made:
        """Check, fetch, validate and queue one video; raises the first reason it can't be.
        `job_id`: the new job's id when the caller derives it (one job per confirmation)."""
        admitted = await admit(self.store, who, options.prompt)
        per_minute = admitted.settings.rate_per_minute
        if not per_minute:
            return await self._make(who, inputs, options, admitted, context, job_id)
        # The request holds its place in the member's rate from now on (files may take a
        # while to download), in the database, so a second quick request is refused in any
        # process; the job's own transaction counts it again.
        launch = uuid.uuid4().hex
        if not await self.store.claim_launch(who.guild_id, who.user_id, per_minute=per_minute,
                                             now=time.time(), launch_id=launch):
            raise RateLimited(per_minute)
        try:
            return await self._make(who, inputs, options, admitted, context, job_id)
        finally:
            await self.store.drop_launch(launch)

    async def _make(self, who: Requester, inputs: Sequence[MediaInput], options: RequestOptions,
                    admitted: Admitted, context: Mapping[str, Any] | None,
                    job_id: str | None) -> Made:
        fixed = fixed_of(admitted.event)
        chosen = apply_fixed(options, fixed)  # refuses a choice the event contradicts
        picked = await self.library.pick(who, chosen.prompt)
        wanted = failover_order(chosen, admitted.settings, self.settings)
        order = usable(wanted, self.providers)
        if wanted and not order:
            raise GatewayUnavailable(", ".join(wanted), Said("errors.refusal.no_api_key"))
        gateways: list[str] = []
        if not order:
            request, caps, lib = await self._request(who, inputs, chosen, admitted, picked)
        for n, name in enumerate(order):  # the first gateway that accepts it, then its fallbacks
            try:
                request, caps, lib = await self._request(
                    who, inputs, replace(chosen, provider=name), admitted, picked)
            except InvalidInput:
                if n == len(order) - 1:
                    raise
                continue
            gateways = fleet_for(request, order[n + 1:], self.providers)
            break
        review = admitted.review
        request = await self._gateway_options(request, caps, admitted, context)
        # A result the gateway's safety check flags waits for the moderators where there are
        # some to see it; elsewhere it is refused and refunded (bot/engine/sets.py).
        flagged = FLAGGED_TO_REVIEW if admitted.settings.mod_channel else "refuse"
        try:
            job = await enqueue_paying(
                self.engine, request,
                guild_id=who.guild_id,
                channel_id=who.channel_id,
                user_id=who.user_id,
                role_ids=who.role_ids,
                context={**(context or {}), "review": review.value, FLAGGED_KEY: flagged,
                         **draft_mark(options),
                         **({"fixed": fixed_keys(fixed)} if fixed_keys(fixed) else {})},
                needs_approval=review.prompts,
                hold_result=review.results,
                event_id=admitted.event.id if admitted.event else None,
                enforce_quota=who.guild_id != CLI_GUILD,
                per_minute=admitted.settings.rate_per_minute,
                gateways=gateways, job_id=job_id,
            )
        except BaseException:
            lib.discard()  # nothing was written: the library copies go
            raise
        await self.library.record(job.id, lib)
        return Made(job, review, admitted.event)

    async def _request(self, who: Requester, inputs: Sequence[MediaInput],
                       chosen: RequestOptions, admitted: Admitted,
                       picked: Sequence[LibraryItem] = ()
                       ) -> tuple[GenerationRequest, Capabilities, LibraryInputs]:
        """Fetch, measure and validate the request for the gateway the options lead to, with
        the server's defaults where that gateway takes them; that gateway's table; and the
        files the prompt's library items became for it (after the attachments)."""
        resolved = resolve_options(chosen, admitted.settings, self.settings)
        caps = self._capabilities(resolved)
        resolved = server_defaults(resolved, chosen, admitted.settings, caps)
        if chosen.draft:
            resolved = draft_settings(resolved, chosen, fixed_of(admitted.event), caps)
        operator = who.guild_id == CLI_GUILD
        lib = await self.library.inputs(picked, caps, self.engine.inputs_dir)
        try:
            request = await prepare(
                [*inputs, *lib.inputs], resolved, caps, http=self.http,
                cache_dir=self.engine.inputs_dir,
                max_bytes=self.settings.seedance_max_download_bytes,
                allowed_hosts=() if operator else self.member_hosts,
                policy=self._policy.trusting() if operator else self._policy,
                rewrite=lib.rewrite if picked else None,
            )
        except BaseException:
            lib.discard()
            raise
        return request, caps, lib

    async def _gateway_options(self, request: GenerationRequest, caps: Capabilities,
                               admitted: Admitted,
                               context: Mapping[str, Any] | None) -> GenerationRequest:
        """The server's safety check (key frames when its results are reviewed, unless it
        chose otherwise) and a quality that fits its upload limit, where the gateway takes
        them (its capability table says)."""
        safety = admitted.settings.safety
        if safety is None and admitted.review.results:
            safety = SafetyCheck.KEY_FRAMES
        limit = (context or {}).get(UPLOAD_LIMIT_KEY)
        quality = await choose_quality(self.store, request, caps,
                                       int(limit) if isinstance(limit, int | float) else None)
        return request.model_copy(update={
            "safety": safety if safety in caps.safety_modes else None,
            "output_quality": quality,
        })

    def _capabilities(self, options: RequestOptions) -> Capabilities:
        return capabilities_of(self.providers, options.provider, options.model)

    async def models(self, who: Requester, provider: str | None) -> list[str]:
        """The models `provider` (else the server's gateway) runs, for a front end to offer."""
        guild = await self.store.guild_settings(who.guild_id)
        name = provider or guild.provider or self.settings.seedance_provider
        try:
            caps = self.providers(name).capabilities()
        except (ConfigError, KeyError, ValueError):
            return []
        return list(caps.models or (caps.model,))

    # ---- where things stand ----------------------------------------------------------------
    async def queue(self, who: Requester) -> QueueView:
        entries = await self.engine.queue(who.guild_id)
        settings = await self.store.guild_settings(who.guild_id)
        return QueueView(entries, effective_limits(settings, self.engine.limits))

    async def quota(self, who: Requester) -> QuotaStatus:
        return await self.engine.remaining(who.user_id, who.guild_id, who.role_ids)

    # ---- from an earlier video --------------------------------------------------------------
    async def reroll(self, job_id: str, who: Requester, *,
                     context: Mapping[str, Any] | None = None) -> Made:
        """The same request again, with a new seed when the first one had a fixed seed; one
        video, also when it is pressed under one video of a set (each has its own button)."""
        job = await self._own_or_moderated(job_id, who)
        req = job.request
        seed = random.randrange(0, 2**32) if req.seed is not None else None
        return await self.make(who, job_inputs(req),
                               options_like(req, RequestedMode(req.mode.value), seed),
                               context={**(context or {}), **carried_mark(job)})

    async def extend(self, job_id: str, who: Requester, *, posted_url: str | None = None,
                     context: Mapping[str, Any] | None = None, index: int = 1) -> Made:
        """Continue the finished video (the `index`-th of its set). `posted_url` is where the
        front end published it (a gateway that takes only URLs fetches it there); our own copy
        is what is measured."""
        job = await self._own_or_moderated(job_id, who)
        path = video_of(job, index)
        if path is None:
            raise NothingThere(key="errors.job.file_gone")
        video = MediaInput(posted_url or str(path), name="the posted video",
                           declared_kind=MediaKind.VIDEO, local_path=path)
        return await self.make(who, [video],
                               options_like(job.request, RequestedMode.EXTEND, None),
                               context=context)

    async def animate(self, job_id: str, who: Requester, *,
                      context: Mapping[str, Any] | None = None, index: int = 1) -> Made:
        """A new video whose first frame is this one's last (the `index`-th of its set)."""
        job = await self._own_or_moderated(job_id, who)
        frame = await self.last_frame(job, index)
        if frame is None:
            raise NothingThere(key="errors.job.file_gone")
        item = MediaInput(str(frame), name="last frame", declared_kind=MediaKind.IMAGE,
                          role_hint=Role.FIRST_FRAME)
        return await self.make(who, [item],
                               options_like(job.request, RequestedMode.FIRST_FRAME, None),
                               context=context)

    @staticmethod
    async def last_frame(job: JobView, index: int = 1) -> Path | None:
        """The gateway's last frame (of the first video), else one taken from the video (kept
        beside it)."""
        if index == 1 and job.last_frame_path and Path(job.last_frame_path).exists():
            return Path(job.last_frame_path)
        video = video_of(job, index)
        if video is None:
            return None
        from bot.media.transcode import extract_last_frame

        dest = video.with_name("last_frame.png" if index == 1 else f"last_frame_{index}.png")
        return await asyncio.to_thread(extract_last_frame, video, dest)

    # ---- deciding on a job ------------------------------------------------------------------
    async def job(self, job_id: str) -> JobView:
        job = await self.engine.job(job_id)
        if job is None:
            raise NothingThere(key="errors.job.unknown")
        return job

    async def _own_or_moderated(self, job_id: str, who: Requester) -> JobView:
        job = await self.job(job_id)
        if who.user_id != job.user_id and not (who.moderator and who.guild_id == job.guild_id):
            raise NotAllowed(key="errors.job.not_yours")
        return job

    async def cancel(self, job_id: str, who: Requester) -> str:
        """Cancel as far as possible; the answer says what is still billed."""
        job = await self._own_or_moderated(job_id, who)
        try:
            return await self.engine.cancel(job.id, who.user_id,
                                            moderator=who.user_id != job.user_id)
        except EngineNotAllowed as exc:
            raise NotAllowed(key=exc.key, **exc.params) from None

    async def may_act(self, job_id: str, who: Requester) -> JobView:
        """The job, if `who` may act on it (reroll, extend, animate, cancel, delete its post):
        the person who asked for it, or a moderator of its server."""
        return await self._own_or_moderated(job_id, who)

    async def may_decide(self, job_id: str, who: Requester) -> JobView:
        """The job, if `who` may approve or reject it: a moderator of its server."""
        return await self._moderated(job_id, who)

    async def approve(self, job_id: str, who: Requester) -> JobView:
        """Let a prompt into the queue, or a held video out; moderators of its server only."""
        job = await self._moderated(job_id, who)
        try:
            return await self.engine.approve(job.id, who.user_id)
        except EngineNotAllowed as exc:  # decided already (another moderator, a cancel)
            raise NotAllowed(key=exc.key, **exc.params) from None

    async def reject(self, job_id: str, who: Requester, reason: str) -> JobView:
        job = await self._moderated(job_id, who)
        try:
            return await self.engine.reject(job.id, who.user_id,
                                            reason.strip() or "No reason given.")
        except EngineNotAllowed as exc:
            raise NotAllowed(key=exc.key, **exc.params) from None

    async def _moderated(self, job_id: str, who: Requester) -> JobView:
        job = await self.job(job_id)
        if job.guild_id != who.guild_id:
            raise NothingThere(key="errors.job.unknown")
        if not who.moderator:
            raise NotAllowed(key="errors.job.moderators_only")
        return job


def job_inputs(req: GenerationRequest) -> list[MediaInput]:
    """An earlier request's files, for a new job: our copy while it is kept, else fetched
    again from where they came from (a link may have expired by then: that is reported)."""
    return [MediaInput(r.source, name=r.name, declared_kind=r.kind,
                       local_path=Path(r.local_path)
                       if r.local_path and Path(r.local_path).exists() else None)
            for r in req.references]


def video_of(job: JobView, index: int = 1) -> Path | None:
    """The `index`-th video of a job's set on disk (1: the first), None when it is gone.
    Named as bot/engine/results.py stores them: video.mp4, video_2.mp4, …"""
    if not job.result_path or index < 1:
        return None
    first = Path(job.result_path)
    path = first if index == 1 else first.with_name(f"video_{index}.mp4")
    return path if path.exists() else None


def options_like(req: GenerationRequest, mode: RequestedMode,
                 seed: int | None) -> RequestOptions:
    """The settings of an earlier request, for a new job made from it (a button's)."""
    return RequestOptions(prompt=req.prompt, mode=mode, duration=req.duration,
                          resolution=req.resolution, ratio=req.ratio, audio=req.audio, seed=seed,
                          camera_fixed=req.camera_fixed, watermark=req.watermark,
                          web_search=req.web_search and mode is RequestedMode.TEXT,
                          provider=req.provider, model=req.model)
