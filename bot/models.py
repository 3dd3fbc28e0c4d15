"""The request and result vocabulary shared by the CLI, the engine, the providers and the cogs.

Names follow the gateways' own pages (docs/GATEWAYS.md says what each page calls them) so a
reader can hold a request next to a gateway's page and compare them field by field.
"""

from __future__ import annotations

import re
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class MediaKind(StrEnum):
    IMAGE = "image"
    VIDEO = "video"
    AUDIO = "audio"


class Role(StrEnum):
    FIRST_FRAME = "first_frame"
    LAST_FRAME = "last_frame"
    REFERENCE_IMAGE = "reference_image"
    REFERENCE_VIDEO = "reference_video"
    REFERENCE_AUDIO = "reference_audio"


class Mode(StrEnum):
    """A resolved input mode. Edit and extend are reference mode with their own checks."""

    TEXT = "text"
    FIRST_FRAME = "first_frame"
    FIRST_LAST_FRAME = "first_last_frame"
    REFERENCE = "reference"
    EDIT = "edit"
    EXTEND = "extend"


class RequestedMode(StrEnum):
    """What a user may ask for: a mode, or `auto` to let the role mapper decide."""

    AUTO = "auto"
    TEXT = "text"
    FIRST_FRAME = "first_frame"
    FIRST_LAST_FRAME = "first_last_frame"
    REFERENCE = "reference"
    EDIT = "edit"
    EXTEND = "extend"


class Resolution(StrEnum):
    P480 = "480p"
    P720 = "720p"
    P1080 = "1080p"


class Ratio(StrEnum):
    R16_9 = "16:9"
    R4_3 = "4:3"
    R1_1 = "1:1"
    R3_4 = "3:4"
    R9_16 = "9:16"
    R21_9 = "21:9"
    #: Ultra-tall; only Magnific's page offers it (`film_vertical_9_21`).
    R9_21 = "9:21"
    ADAPTIVE = "adaptive"


class SafetyCheck(StrEnum):
    """How a gateway's own safety check looks at a finished video (a server setting, see
    bot/guild.py); each gateway maps it to its own field in its module."""

    NONE = "none"
    KEY_FRAMES = "key_frames"
    ALL_FRAMES = "all_frames"


#: Exact output sizes from the seeds' resolution table (width, height). The seeds list no 9:21
#: row: it is 21:9 turned on its side, as 9:16 is 16:9's.
SIZE_TABLE: dict[Resolution, dict[Ratio, tuple[int, int]]] = {
    Resolution.P480: {
        Ratio.R16_9: (864, 496),
        Ratio.R4_3: (752, 560),
        Ratio.R1_1: (640, 640),
        Ratio.R3_4: (560, 752),
        Ratio.R9_16: (496, 864),
        Ratio.R21_9: (992, 432),
        Ratio.R9_21: (432, 992),
    },
    Resolution.P720: {
        Ratio.R16_9: (1280, 720),
        Ratio.R4_3: (1112, 834),
        Ratio.R1_1: (960, 960),
        Ratio.R3_4: (834, 1112),
        Ratio.R9_16: (720, 1280),
        Ratio.R21_9: (1470, 630),
        Ratio.R9_21: (630, 1470),
    },
    Resolution.P1080: {
        Ratio.R16_9: (1920, 1080),
        Ratio.R4_3: (1664, 1248),
        Ratio.R1_1: (1440, 1440),
        Ratio.R3_4: (1248, 1664),
        Ratio.R9_16: (1080, 1920),
        Ratio.R21_9: (2208, 944),
        Ratio.R9_21: (944, 2208),
    },
}

FIXED_RATIOS: tuple[Ratio, ...] = tuple(r for r in Ratio if r is not Ratio.ADAPTIVE)
#: The fixed ratios Seedance's own `adaptive` chooses among (every page but Magnific's lists
#: these six; 9:21 is Magnific's alone).
SEEDANCE_FIXED_RATIOS: tuple[Ratio, ...] = tuple(r for r in FIXED_RATIOS if r is not Ratio.R9_21)


def nearest_ratio(width: int, height: int,
                  among: tuple[Ratio, ...] | frozenset[Ratio] = SEEDANCE_FIXED_RATIOS) -> Ratio:
    """The ratio of `among` closest to a picture's shape (used for `adaptive`)."""
    target = width / height

    def distance(r: Ratio) -> float:
        w, h = (int(x) for x in r.value.split(":"))
        return abs(w / h - target)

    return min((r for r in FIXED_RATIOS if r in among), key=distance)


def output_size(resolution: Resolution, ratio: Ratio, picture: tuple[int, int] | None) -> (
    tuple[int, int]
):
    """Pixel size for a resolution and ratio; adaptive follows `picture` (the input that sets
    the shape, see `GenerationRequest.shape_size`), else 16:9."""
    if ratio is Ratio.ADAPTIVE:
        ratio = nearest_ratio(*picture) if picture else Ratio.R16_9
    return SIZE_TABLE[resolution][ratio]


class SourceKind(StrEnum):
    PATH = "path"
    URL = "url"
    ASSET = "asset"
    DATA_URI = "data_uri"


def source_kind(source: str) -> SourceKind:
    if source.startswith("asset://"):
        return SourceKind.ASSET
    if source.startswith("data:"):
        return SourceKind.DATA_URI
    if re.match(r"^https?://", source, re.IGNORECASE):
        return SourceKind.URL
    return SourceKind.PATH


class MediaFacts(BaseModel):
    """What was measured from the real bytes (never from a name or a declared type)."""

    model_config = ConfigDict(frozen=True)

    kind: MediaKind
    format: str  # e.g. "png", "jpeg", "mp4", "mov", "wav", "mp3"
    size_bytes: int
    #: As shown: a video stored landscape with a 90° display rotation is measured portrait.
    width: int | None = None
    height: int | None = None
    #: Clockwise degrees (0/90/180/270) a player turns a video's stored pictures to show them.
    rotation: int = 0
    duration: float | None = None  # seconds (video/audio)
    fps: float | None = None
    has_audio: bool = False  # a video with an audio track


class Reference(BaseModel):
    """One input file, in the order the user gave it, with the role it was mapped to."""

    kind: MediaKind
    source: str  # local path, https URL, asset://ID
    name: str  # what a person calls it: a filename or a short URL
    role: Role | None = None
    facts: MediaFacts | None = None  # None only for asset:// sources (already at the gateway)
    local_path: str | None = None  # cached bytes, for base64 or the local provider

    @property
    def source_kind(self) -> SourceKind:
        return source_kind(self.source)


class GenerationRequest(BaseModel):
    """A validated request: roles assigned, media ordered images → videos → audios."""

    prompt: str = ""
    references: list[Reference] = Field(default_factory=list)
    mode: Mode = Mode.TEXT
    duration: int = 5
    resolution: Resolution = Resolution.P720
    ratio: Ratio = Ratio.ADAPTIVE
    audio: bool = True
    seed: int | None = None
    camera_fixed: bool = False
    web_search: bool = False
    watermark: bool = False
    return_last_frame: bool = False
    #: Videos wanted from one task (gateways with `results_per_task` > 1, e.g. Runware's
    #: numberResults); validation checks it against the capability table.
    results: int = Field(default=1, ge=1)
    #: The gateway's own check of the finished video; None: the gateway account's default.
    safety: SafetyCheck | None = None
    #: Compression quality asked of gateways that take one (`Capabilities.output_quality`),
    #: chosen so the file fits where it is posted (bot/engine/sizing.py); None: theirs.
    output_quality: int | None = None
    provider: str = "local"
    model: str | None = None

    def of_kind(self, kind: MediaKind) -> list[Reference]:
        return [r for r in self.references if r.kind is kind]

    def with_role(self, role: Role) -> list[Reference]:
        return [r for r in self.references if r.role is role]

    @property
    def images(self) -> list[Reference]:
        return self.of_kind(MediaKind.IMAGE)

    @property
    def videos(self) -> list[Reference]:
        return self.of_kind(MediaKind.VIDEO)

    @property
    def audios(self) -> list[Reference]:
        return self.of_kind(MediaKind.AUDIO)

    def first_image_size(self) -> tuple[int, int] | None:
        for ref in self.images:
            if ref.facts and ref.facts.width and ref.facts.height:
                return ref.facts.width, ref.facts.height
        return None

    def first_video_size(self) -> tuple[int, int] | None:
        """As displayed: a phone's portrait clip is portrait whatever its stored pictures are."""
        for ref in self.videos:
            if ref.facts and ref.facts.width and ref.facts.height:
                return ref.facts.width, ref.facts.height
        return None

    def shape_size(self) -> tuple[int, int] | None:
        """The input whose shape the output follows: the first image, else the first video.

        Extending or editing a clip keeps its shape (a portrait clip stays portrait) instead of
        falling back to 16:9.
        """
        return self.first_image_size() or self.first_video_size()

    def output_size(self) -> tuple[int, int]:
        return output_size(self.resolution, self.ratio, self.shape_size())


class TaskStatus(StrEnum):
    PENDING = "pending"  # accepted, not started
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


class ProviderResult(BaseModel):
    """What a finished task gave back, the same for every gateway."""

    video_urls: list[str] = Field(default_factory=list)
    last_frame_url: str | None = None
    seed: int | None = None
    cost: float | None = None  # the gateway's own unit (USD for Runware)
    #: Indexes into `video_urls` of the videos the gateway's safety check flagged.
    flagged: list[int] = Field(default_factory=list)
    expires_at: float | None = None  # unix time when the URLs stop working, if known


class TaskState(BaseModel):
    """One look at a task: from a poll, a create answer or a callback."""

    task_id: str
    status: TaskStatus
    progress: float | None = None  # 0–100
    result: ProviderResult | None = None
    error: Any = None  # a GatewayError when status is FAILED
    retry_after: float | None = None  # the gateway's hint for the next poll, seconds
    gateway: str | None = None  # the gateway a callback came from (bot/webhooks.py)

    model_config = ConfigDict(arbitrary_types_allowed=True)

    @property
    def done(self) -> bool:
        return self.status in (TaskStatus.SUCCEEDED, TaskStatus.FAILED)
