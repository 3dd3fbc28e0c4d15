"""The one protocol every gateway module implements, and the capability table validation reads.

A provider turns a validated `GenerationRequest` into a gateway task (`submit`), looks at that
task (`poll`), and reads the gateway's callbacks (`parse_callback`). Everything a gateway can and
cannot do is declared in its `Capabilities`, so no code outside the provider's own module needs
to know which gateway it talks to.
"""

from __future__ import annotations

import base64
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Protocol, TypedDict, runtime_checkable

import httpx

from bot.config import Settings
from bot.errors import ConfigError
from bot.i18n import Said
from bot.models import (
    GenerationRequest,
    MediaKind,
    Mode,
    Ratio,
    Reference,
    Resolution,
    Role,
    SafetyCheck,
    SourceKind,
    TaskState,
)
from bot.providers.http import HttpTransport, Sleep

ALL_MODES = frozenset(Mode)
ALL_RATIOS = frozenset(Ratio)
#: What every Seedance page lists (six fixed ratios and adaptive): the default table. 9:21 is
#: Magnific's alone (`film_vertical_9_21`), so only a table that names it takes it.
SEEDANCE_RATIOS = ALL_RATIOS - {Ratio.R9_21}
#: (first-frame, last-frame) images each frame mode takes, with nothing else beside them: what
#: every Seedance page says ("first frame, first + last frame and reference never mix").
FRAME_IMAGES: Mapping[Mode, tuple[int, int]] = MappingProxyType(
    {Mode.FIRST_FRAME: (1, 0), Mode.FIRST_LAST_FRAME: (1, 1)}
)


@dataclass(frozen=True)
class MediaLimits:
    """Per-file and per-kind limits. Defaults are HiAPI's page, the strictest one
    (docs/GATEWAYS.md#media-limits)."""

    image_formats: frozenset[str] = frozenset({"jpeg", "png", "webp", "bmp", "tiff", "gif"})
    image_min_aspect: float = 0.4
    image_max_aspect: float = 2.5
    image_min_edge: int = 300
    image_max_edge: int = 6000
    image_max_bytes: int = 30 * 1024 * 1024  # "< 30 MB"

    video_formats: frozenset[str] = frozenset({"mp4", "mov"})
    video_min_seconds: float = 2.0
    video_max_seconds: float = 15.0
    video_total_seconds: float = 15.0
    video_min_pixels: int = 409_600
    video_max_pixels: int = 927_408
    video_min_fps: float = 24.0
    video_max_fps: float = 60.0
    video_min_aspect: float = 0.4
    video_max_aspect: float = 2.5
    video_max_bytes: int = 50 * 1024 * 1024

    audio_formats: frozenset[str] = frozenset({"wav", "mp3"})
    audio_min_seconds: float = 2.0
    audio_max_seconds: float = 15.0
    audio_total_seconds: float = 15.0
    audio_max_bytes: int = 15 * 1024 * 1024

    max_images: int = 9
    max_videos: int = 3
    max_audios: int = 3
    #: Fewest images multimodal reference mode takes (Anyfast's Seedance 2.0 says 1–9).
    min_reference_images: int = 0

    def max_bytes(self, kind: MediaKind) -> int:
        return {
            MediaKind.IMAGE: self.image_max_bytes,
            MediaKind.VIDEO: self.video_max_bytes,
            MediaKind.AUDIO: self.audio_max_bytes,
        }[kind]


@dataclass(frozen=True)
class Capabilities:
    """What one model on one gateway accepts. Validation reads this and nothing else."""

    provider: str
    model: str
    #: Every model this gateway runs (empty: `model` alone), for front ends to offer.
    models: tuple[str, ...] = ()
    resolutions: frozenset[Resolution] = frozenset({Resolution.P480, Resolution.P720})
    durations: frozenset[int] = frozenset(range(4, 16))
    ratios: frozenset[Ratio] = SEEDANCE_RATIOS
    modes: frozenset[Mode] = ALL_MODES
    limits: MediaLimits = field(default_factory=MediaLimits)
    audio_generation: bool = True
    web_search: bool = True
    last_frame: bool = True
    seed: bool = True
    camera_fixed: bool = False
    watermark: bool = True
    #: Frame images per frame mode (see FRAME_IMAGES); a mode missing here takes no frames.
    frame_images: Mapping[Mode, tuple[int, int]] = field(default_factory=lambda: FRAME_IMAGES)
    #: False where reference images and reference videos exclude each other in one request
    #: (HiAPI's page), which also rules out editing (images with a video).
    reference_images_with_videos: bool = True
    webhooks: bool = False
    #: The gateway calls back only HTTPS URLs (HiAPI's page), so SEEDANCE_WEBHOOK_BASE_URL
    #: must be https:// when this gateway is configured.
    callbacks_need_https: bool = False
    results_per_task: int = 1
    #: The gateway lists its recent tasks (`TaskLister.list_tasks`), so a create whose answer
    #: was lost can be found there instead of failing (bot/engine/recovery.py).
    task_list: bool = False
    #: The gateway's own checks of finished videos it can be asked for (and whose verdict it
    #: reports); empty: it checks nothing we can choose or read.
    safety_modes: frozenset[SafetyCheck] = frozenset()
    #: (lowest, highest, default) compression quality the gateway takes; None: none.
    output_quality: tuple[int, int, int] | None = None
    prompt_max_chars: int | None = 2000
    prompt_required: bool = False
    #: How each media kind may reach the gateway. A local file needs DATA_URI (base64) or ASSET.
    accepts: Mapping[MediaKind, frozenset[SourceKind]] = field(
        default_factory=lambda: {
            MediaKind.IMAGE: frozenset({SourceKind.URL, SourceKind.DATA_URI}),
            MediaKind.VIDEO: frozenset({SourceKind.URL}),
            MediaKind.AUDIO: frozenset({SourceKind.URL, SourceKind.DATA_URI}),
        }
    )
    #: The gateway keeps files as assets (`AssetRegistry`): a server's library item is
    #: registered once, by URL, and sent as `asset://ID` afterwards (bot/service/library.py).
    assets: bool = False
    #: Typical seconds from submit to success, for the first poll and ETAs before history exists.
    typical_seconds: float = 90.0
    #: Hosts result files may be downloaded from (suffix match); empty = any public https host
    #: (SEEDANCE_RESULT_HOSTS narrows it per gateway). Private addresses never, unless listed
    #: in SEEDANCE_PRIVATE_HOSTS.
    result_hosts: tuple[str, ...] = ()
    #: Only the embedded provider sets this: the folder its `file://` results live in. Results
    #: of every other provider must come over the network, so a `file://` URL in a gateway's
    #: answer (or in a forged callback) can never read the bot's own files.
    result_files: Path | None = None


@dataclass(frozen=True)
class SubmitResult:
    """The gateway accepted a task. `state` is set when the create answer already says more."""

    task_id: str
    state: TaskState | None = None


@runtime_checkable
class Provider(Protocol):
    """A gateway (or the embedded local renderer) behind one interface."""

    name: str

    def capabilities(self, model: str | None = None) -> Capabilities:
        """The capability table of `model` (the provider's default model when None)."""
        ...

    @property
    def default_model(self) -> str: ...

    async def submit(
        self,
        request: GenerationRequest,
        *,
        idempotency_key: str,
        callback_url: str | None = None,
    ) -> SubmitResult:
        """Create the task, in one try: the engine's requeue is the only retry of a create
        (bot/providers/http.py). A `GatewayError` says whether resending is safe.

        `idempotency_key` is stable for one job (Runware uses it as `taskUUID`).
        """
        ...

    async def poll(self, task_id: str) -> TaskState:
        """Look at a task once. Raises `GatewayError` for transport or HTTP errors."""
        ...

    async def cancel(self, task_id: str) -> bool:
        """Ask the gateway to stop a task. False when it cannot (the work is still billed)."""
        ...

    def parse_callback(self, headers: Mapping[str, str], body: bytes) -> TaskState:
        """Read a callback's body (after the receiver authenticated it)."""
        ...

    def verify_callback(self, headers: Mapping[str, str], body: bytes) -> bool:
        """Check a callback's signature where the gateway signs them."""
        ...

    async def discard(self, task_id: str) -> None:
        """The job is done with this task's results: drop any copy this process keeps (the
        embedded provider's files). Idempotent; gateways keep nothing here."""
        ...

    async def aclose(self) -> None: ...


@runtime_checkable
class TaskLister(Protocol):
    """A provider whose capability table says `task_list`: it can show the tasks it has."""

    async def list_tasks(self) -> list[TaskState]:
        """One look at the gateway's task list (its first page), as it lists them."""
        ...

    async def list_task_ids(self) -> list[str]:
        """The ids `list_tasks` would give, without reading each task: what a snapshot
        before every create needs (bot/engine/recovery.py), at a fraction of the cost."""
        ...


@runtime_checkable
class AssetRegistry(Protocol):
    """A provider whose capability table says `assets`: files registered once, by a public
    URL the gateway fetches, used as `asset://<id>` in later requests."""

    async def create_asset_group(self, name: str) -> str:
        """A new group to hold one server's assets; its id."""
        ...

    async def register_asset(self, group_id: str, name: str, url: str, kind: MediaKind) -> str:
        """Register the file at `url` in the group; its asset id. A `ContentRejectedError`
        (e.g. `RealFaceError`) when the gateway's review refuses the file."""
        ...


_MIME = {
    "jpeg": "image/jpeg", "png": "image/png", "webp": "image/webp", "bmp": "image/bmp",
    "tiff": "image/tiff", "gif": "image/gif", "mp4": "video/mp4", "mov": "video/quicktime",
    "wav": "audio/wav", "mp3": "audio/mpeg",
}


def unreachable_reason(ref: Reference, caps: Capabilities) -> Said | None:
    """Why `ref` cannot reach this gateway as it is (None when it can), said in the reader's
    language (bot/i18n)."""
    allowed = caps.accepts.get(ref.kind, frozenset())
    kind = ref.source_kind
    if kind is SourceKind.PATH:
        # A file on disk goes up as base64, or is read in place by a provider that takes paths
        # (the embedded local renderer).
        if SourceKind.DATA_URI in allowed or SourceKind.PATH in allowed:
            return None
        return Said(f"errors.file.url_only.{ref.kind.value}", provider=caps.provider)
    if kind not in allowed:
        how = " or ".join(sorted(k.value for k in allowed)) or "nothing"
        return Said(f"errors.file.takes_only.{ref.kind.value}", provider=caps.provider,
                    how=how, given=kind.value)
    return None


def media_source(ref: Reference, caps: Capabilities) -> str:
    """The string a gateway receives for `ref`: its URL, its asset id, or a base64 data URI.

    Validation has already refused what `unreachable_reason` reports, so this does not fail
    on a validated request.
    """
    if ref.source_kind is not SourceKind.PATH:
        return ref.source
    path = ref.local_path or ref.source
    fmt = ref.facts.format if ref.facts else "octet-stream"
    mime = _MIME.get(fmt, "application/octet-stream")
    with open(path, "rb") as fh:
        data = base64.b64encode(fh.read()).decode("ascii")
    return f"data:{mime};base64,{data}"


def require_api_key(settings: Settings, provider: str, where: str) -> str:
    """The gateway's key, or a one-line configuration error saying where to get one."""
    key = settings.api_key(provider)
    if not key:
        raise ConfigError(
            f"{provider.upper()}_API_KEY is not set; create a key {where} and put it in the "
            "environment or .env"
        )
    return key


def frame_images(request: GenerationRequest) -> tuple[Reference | None, Reference | None]:
    """The first and the last frame of a request, None where it has none.

    By role; a request built without frame roles (a test, a hand-made request) in a frame mode
    gets the ones its mode implies, as the pages do: the first image, then the second.
    """
    firsts = request.with_role(Role.FIRST_FRAME)
    lasts = request.with_role(Role.LAST_FRAME)
    if not firsts and not lasts and request.mode in FRAME_IMAGES:
        images = [r for r in request.images if r.role is None]
        firsts, lasts = images[:1], images[1:2]
    return (firsts[0] if firsts else None), (lasts[0] if lasts else None)


def single_model_capabilities(
    caps: Capabilities, model: str | None, refusal: Callable[[str], Exception]
) -> Capabilities:
    """`caps` when `model` is the gateway's one model (or None); else raises `refusal(model)`.

    For gateways that run a single model: each still words its own refusal.
    """
    if model not in (None, caps.model):
        raise refusal(str(model))
    return caps


class TransportOptions(TypedDict, total=False):
    """What `build()` and the gateway constructors pass through to `HttpTransport` unchanged."""

    client: httpx.AsyncClient | None
    sleep: Sleep


class HttpGateway(ABC):
    """The parts of `Provider` every HTTP gateway module implements the same way.

    A subclass builds its own `HttpTransport` (auth headers, error parser) and implements
    `capabilities`, `submit`, `poll` and `parse_callback`; the default model, cancelling, the
    callback check and closing are the same for all of them, so they live here once.
    """

    name: str

    def __init__(self, http: HttpTransport) -> None:
        self.http = http

    @abstractmethod
    def capabilities(self, model: str | None = None) -> Capabilities:
        """The gateway's capability table for `model` (its default when None)."""

    @property
    def default_model(self) -> str:
        """The model of the capability table asked for without a model."""
        return self.capabilities().model

    async def cancel(self, task_id: str) -> bool:
        """No gateway documents a way to cancel a video task: it runs on and is still billed."""
        return False

    def verify_callback(self, headers: Mapping[str, str], body: bytes) -> bool:
        """Unsigned (or unverifiable) callbacks: the receiver's unguessable per-job URL is the
        authentication. A gateway that signs its callbacks overrides this."""
        return True

    async def discard(self, task_id: str) -> None:  # noqa: B027 - a deliberate no-op default
        """Gateways host results themselves and expire them; nothing is kept here."""

    async def aclose(self) -> None:
        await self.http.aclose()
