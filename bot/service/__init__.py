"""The use cases, for every front end (the Discord layer, the CLI): each takes plain values and
returns typed outcomes or raises typed refusals (`bot.errors.Refusal`, `InvalidInput`). Every
rule a person can be refused by lives here or below (the engine's admission, validation), never
in a front end. See docs/ARCHITECTURE.md."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import httpx

from bot.config import Settings
from bot.engine import Engine
from bot.providers.base import Provider
from bot.store import Store

from .admin import AdminService, Export, Overview
from .drafts import AlreadyConfirmed, DraftService, FinalQuote, PriceChanged, RemixForm
from .events import Closing, EventService, EventStatus, intake_closed_at
from .fleet import FleetService, FleetStatus, GatewayState, GatewayStatus, engine_states
from .library import LibraryService
from .my_videos import Fetch, Fetched, MyVideosService, VideoPage
from .people import CLI_GUILD, DM_GUILD, Requester
from .privacy import Holdings, PrivacyService
from .refusals import (
    BadSetting,
    Blocked,
    BlockedWords,
    EventClosed,
    GatewayUnavailable,
    NotAllowed,
    NothingThere,
    NotInThisChannel,
    ReviewedServer,
    ReviewUnavailable,
    RoleRequired,
    UnfinishedJobs,
    VotingClosed,
)
from .videos import Made, VideoService, resolve_options
from .votes import Ballot, Standing, VoteService


@dataclass(frozen=True)
class Services:
    """Every use case, built once per process over one store and one engine."""

    videos: VideoService
    admin: AdminService
    events: EventService
    privacy: PrivacyService
    fleet: FleetService
    votes: VoteService
    library: LibraryService
    drafts: DraftService
    my_videos: MyVideosService

    @classmethod
    def build(cls, settings: Settings, store: Store, engine: Engine,
              providers: Callable[[str], Provider], http: httpx.AsyncClient, *,
              member_hosts: Sequence[str] = ()) -> Services:
        videos = VideoService(settings, store, engine, providers, http, member_hosts=member_hosts)
        return cls(
            videos=videos,
            admin=AdminService(settings, store, providers, limits=engine.limits),
            events=EventService(store, engine, settings=settings, providers=providers),
            privacy=PrivacyService(store, engine, settings.data_dir),
            fleet=FleetService(settings, store, limits=engine.limits,
                               states=engine_states(engine.fleet.health)),
            votes=VoteService(store),
            library=LibraryService(settings, store, providers, http,
                                   cache_dir=engine.inputs_dir, member_hosts=member_hosts),
            drafts=DraftService(settings, store, videos),
            my_videos=MyVideosService(settings, store),
        )


__all__ = [
    "CLI_GUILD",
    "DM_GUILD",
    "AdminService",
    "AlreadyConfirmed",
    "BadSetting",
    "Ballot",
    "Blocked",
    "BlockedWords",
    "Closing",
    "DraftService",
    "EventClosed",
    "EventService",
    "EventStatus",
    "Export",
    "Fetch",
    "Fetched",
    "FinalQuote",
    "FleetService",
    "FleetStatus",
    "GatewayState",
    "GatewayStatus",
    "GatewayUnavailable",
    "Holdings",
    "LibraryService",
    "Made",
    "MyVideosService",
    "NotAllowed",
    "NotInThisChannel",
    "NothingThere",
    "Overview",
    "PriceChanged",
    "PrivacyService",
    "RemixForm",
    "Requester",
    "ReviewUnavailable",
    "ReviewedServer",
    "RoleRequired",
    "Services",
    "Standing",
    "UnfinishedJobs",
    "VideoPage",
    "VideoService",
    "VoteService",
    "VotingClosed",
    "intake_closed_at",
    "resolve_options",
]
