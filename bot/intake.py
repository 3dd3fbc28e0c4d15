"""From what a person gave (prompt, files, options) to a validated `GenerationRequest`.

The CLI and the Discord layer both come through here, so both get the same rules and the
same messages. Files are fetched with a size cap, measured from their real bytes, mapped to
roles, then every rule is checked; all problems are raised together as one `InvalidInput`
before anything reaches a gateway.
"""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import httpx

from bot.errors import DownloadError, InvalidInput, Problem, ResultExpiredError
from bot.i18n import Said
from bot.media.fetch import STRICT, NetworkPolicy, download
from bot.media.probe import UnreadableMedia, probe_file_async
from bot.models import (
    GenerationRequest,
    MediaKind,
    Mode,
    Ratio,
    Reference,
    RequestedMode,
    Resolution,
    Role,
    SourceKind,
    nearest_ratio,
    source_kind,
)
from bot.providers.base import Capabilities, MediaLimits
from bot.roles import assign_roles
from bot.validation import check_file, validate
from bot.words import size


@dataclass
class MediaInput:
    """One file as the user gave it."""

    source: str  # local path, https URL, or asset://ID
    name: str | None = None  # how the user knows it, e.g. "file2 (cat.png)"
    declared_kind: MediaKind | None = None  # from a CLI flag; required for asset://
    role_hint: Role | None = None  # --first-frame / --last-frame
    local_path: Path | None = None  # bytes already fetched (the Discord layer does this)
    declared_size: int | None = None  # what the sender says (Discord does); checked pre-fetch

    @property
    def label(self) -> str:
        if self.name:
            return self.name
        if source_kind(self.source) is SourceKind.URL:
            return self.source.split("?", 1)[0].rsplit("/", 1)[-1] or self.source
        return self.source


@dataclass
class RequestOptions:
    """Settings a person may give; None means "the provider's default"."""

    prompt: str = ""
    mode: RequestedMode = RequestedMode.AUTO
    duration: int | None = None
    resolution: Resolution | None = None
    ratio: Ratio | None = None  # None: adaptive where the model has it, else the nearest fixed
    audio: bool | None = None
    seed: int | None = None
    camera_fixed: bool = False
    web_search: bool = False
    watermark: bool | None = None  # None: the server's default, else off
    #: The caller wants the last frame as an image (from the gateway where it offers one).
    return_last_frame: bool = False
    #: Videos wanted from one task (a result set), where the gateway returns several.
    count: int = 1
    provider: str = ""  # "": the server's gateway, else SEEDANCE_PROVIDER (bot/service)
    model: str | None = None
    #: The cheapest version the gateway allows (bot/service/draft_rules.py).
    draft: bool = False
    extra: dict[str, object] = field(default_factory=dict)


#: (prompt, the measured references in the order given) → the prompt the gateway gets.
PromptRewrite = Callable[[str, Sequence[Reference]], str]


async def fetch_one(
    item: MediaInput,
    limits: MediaLimits,
    *,
    http: httpx.AsyncClient | None,
    cache_dir: Path,
    max_bytes: int,
    allowed_hosts: Sequence[str] = (),
    policy: NetworkPolicy = STRICT,
) -> tuple[Reference, Path]:
    """One file fetched (capped, under the address rules), measured from its bytes and checked
    against the per-file rules of /video inputs; raises `InvalidInput` (its download deleted)
    when it can't be used. For files kept for later (the server library)."""
    fetched: list[Path] = []
    cap = min(max_bytes, max(limits.image_max_bytes, limits.video_max_bytes,
                             limits.audio_max_bytes))
    try:
        path, problem = await _materialize(
            item, http=http, cache_dir=cache_dir, max_bytes=cap, allowed_hosts=allowed_hosts,
            policy=policy, fetched=fetched)
        if problem is None and path is None:
            problem = Problem.keyed(item.label, "errors.input.not_an_asset")
        if problem is not None or path is None:
            raise InvalidInput([problem] if problem else [])
        try:
            facts = await probe_file_async(path)
        except UnreadableMedia as exc:
            raise InvalidInput([unreadable(item.label, exc)]) from None
        ref = Reference(kind=facts.kind, source=item.source, name=item.label, facts=facts,
                        local_path=str(path))
        problems = check_file(ref, limits)
        if problems:
            raise InvalidInput(problems)
        return ref, path
    except BaseException:
        for done in fetched:
            done.unlink(missing_ok=True)
        raise


def unreadable(label: str, exc: UnreadableMedia) -> Problem:
    """A file the probe can't read: its own hint when it knows what the file is (an SVG, a JPEG
    cut short), otherwise what we can read."""
    if exc.hint is not None:
        return Problem.keyed(label, exc.hint.key, **exc.hint.params)
    return Problem.keyed(label, "errors.file.unreadable")


def default_duration(caps: Capabilities) -> int:
    """A request's length when nobody chose one: 5 s where the model makes it."""
    return 5 if 5 in caps.durations else min(caps.durations)


def _defaults(options: RequestOptions, caps: Capabilities) -> tuple[int, Resolution, bool]:
    duration = options.duration
    if duration is None:
        duration = default_duration(caps)
    resolution = options.resolution
    if resolution is None:
        resolution = Resolution.P720 if Resolution.P720 in caps.resolutions else min(
            caps.resolutions, key=lambda r: r.value
        )
    audio = caps.audio_generation if options.audio is None else options.audio
    return duration, resolution, audio


def _default_ratio(refs: Sequence[Reference], caps: Capabilities) -> Ratio:
    """Adaptive where the model has it; otherwise the fixed ratio closest to the input that sets
    the shape: the first image, else the first video (as displayed), as adaptive would."""
    if Ratio.ADAPTIVE in caps.ratios:
        return Ratio.ADAPTIVE
    for kind in (MediaKind.IMAGE, MediaKind.VIDEO):
        first = next((r.facts for r in refs if r.kind is kind and r.facts), None)
        if first and first.width and first.height:
            nearest = nearest_ratio(first.width, first.height)
            if nearest in caps.ratios:
                return nearest
            break
    return Ratio.R16_9 if Ratio.R16_9 in caps.ratios else next(iter(sorted(caps.ratios)))


async def _materialize(
    item: MediaInput,
    *,
    http: httpx.AsyncClient | None,
    cache_dir: Path,
    max_bytes: int,
    allowed_hosts: Sequence[str],
    policy: NetworkPolicy,
    fetched: list[Path],
) -> tuple[Path | None, Problem | None]:
    """Where the bytes of `item` are on disk (None for asset://), or why they cannot be had.

    A download gets a name of its own under `cache_dir` (two requests never share a copy, so
    retention can delete one job's inputs safely) and is recorded in `fetched`.
    """
    label = item.label
    if item.local_path is not None:
        return item.local_path, None
    if item.declared_size is not None and item.declared_size > max_bytes:
        return None, Problem.keyed(label, "errors.input.declared_too_big",
                                   size=size(item.declared_size), most=size(max_bytes))
    kind = source_kind(item.source)
    if kind is SourceKind.ASSET:
        if item.declared_kind is None:
            return None, Problem.keyed(label, "errors.input.asset_kind")
        return None, None
    if kind is SourceKind.DATA_URI:
        return None, Problem.keyed(label, "errors.input.data_uri")
    if kind is SourceKind.PATH:
        path = Path(item.source).expanduser()
        if not path.is_file():
            return None, Problem.keyed(label, "errors.input.no_such_file")
        if path.stat().st_size > max_bytes:
            return None, Problem.keyed(label, "errors.input.too_big", most=size(max_bytes))
        return path, None
    if http is None:
        return None, Problem.keyed(label, "errors.input.no_urls")
    cache_dir.mkdir(parents=True, exist_ok=True)
    dest = cache_dir / uuid.uuid4().hex
    fetched.append(dest)
    try:
        await download(http, item.source, dest, max_bytes=max_bytes, policy=policy,
                       allowed_hosts=allowed_hosts)
    except ResultExpiredError:
        return None, Problem.keyed(label, "errors.input.link_expired")
    except DownloadError as exc:
        return None, Problem.keyed(label, "errors.input.download_failed", reason=str(exc))
    return dest, None


async def prepare(
    inputs: Sequence[MediaInput],
    options: RequestOptions,
    caps: Capabilities,
    *,
    http: httpx.AsyncClient | None = None,
    cache_dir: Path,
    max_bytes: int | None = None,
    allowed_hosts: Sequence[str] = (),
    policy: NetworkPolicy = STRICT,
    rewrite: PromptRewrite | None = None,
) -> GenerationRequest:
    """Fetch, measure, map and validate. Raises `InvalidInput` with every problem found.

    `rewrite` turns the prompt into the one the gateway gets once the files are measured
    (their kinds number the placeholders): the server library's `@name`s become `@imageN`…
    (bot/service/library_use.py) before roles are mapped and the prompt is checked.

    No input may be larger than `max_bytes` (SEEDANCE_MAX_DOWNLOAD_BYTES) nor than the largest
    file the model takes. URLs are fetched under `policy` (bot/media/fetch.py): a member's URL
    never reaches a private address; the CLI passes the operator's trusting policy. Files this
    call downloaded are deleted again when the request is refused.
    """
    fetched: list[Path] = []
    try:
        return await _prepare(inputs, options, caps, http=http, cache_dir=cache_dir,
                              max_bytes=max_bytes, allowed_hosts=allowed_hosts, policy=policy,
                              fetched=fetched, rewrite=rewrite)
    except BaseException:
        for path in fetched:
            path.unlink(missing_ok=True)
        raise


async def _prepare(
    inputs: Sequence[MediaInput],
    options: RequestOptions,
    caps: Capabilities,
    *,
    http: httpx.AsyncClient | None,
    cache_dir: Path,
    max_bytes: int | None,
    allowed_hosts: Sequence[str],
    policy: NetworkPolicy,
    fetched: list[Path],
    rewrite: PromptRewrite | None = None,
) -> GenerationRequest:
    limits = caps.limits
    cap = max(limits.image_max_bytes, limits.video_max_bytes, limits.audio_max_bytes)
    if max_bytes is not None:
        cap = min(cap, max_bytes)
    problems: list[Problem] = []
    refused: Counter[MediaKind | None] = Counter()
    refs: list[Reference] = []
    hints: dict[int, Role] = {}
    for item in inputs:
        path, problem = await _materialize(
            item, http=http, cache_dir=cache_dir, max_bytes=cap, allowed_hosts=allowed_hosts,
            policy=policy, fetched=fetched,
        )
        if problem:
            problems.append(problem)
            refused[item.declared_kind] += 1
            continue
        facts = None
        if path is not None:
            try:
                facts = await probe_file_async(path)
            except UnreadableMedia as exc:
                # The probe's own hint when it knows what the file is (an SVG, a JPEG cut
                # short); otherwise what we can read.
                problems.append(unreadable(item.label, exc))
                refused[item.declared_kind] += 1
                continue
            if item.declared_kind and facts.kind is not item.declared_kind:
                flag = {"image": "--image", "video": "--video", "audio": "--audio"}
                problems.append(Problem.keyed(item.label, "errors.input.wrong_kind",
                                              declared=item.declared_kind.value,
                                              kind=facts.kind.value, flag=flag[facts.kind.value]))
                refused[item.declared_kind] += 1
                continue
        kind = facts.kind if facts else item.declared_kind
        assert kind is not None
        ref = Reference(kind=kind, source=item.source, name=item.label, facts=facts,
                        local_path=str(path) if path else None)
        if item.role_hint:
            hints[id(ref)] = item.role_hint
        refs.append(ref)

    if rewrite is not None:
        options = replace(options, prompt=rewrite(options.prompt, refs))
    requested: RequestedMode | Mode = options.mode
    if hints:
        roles = set(hints.values())
        if Role.LAST_FRAME in roles and Role.FIRST_FRAME not in roles:
            problems.append(Problem.keyed(Said("errors.subject.last_frame_image"),
                                          "errors.input.last_without_first"))
        if requested == RequestedMode.AUTO:
            requested = Mode.FIRST_LAST_FRAME if Role.LAST_FRAME in roles else Mode.FIRST_FRAME
        # The first-frame image goes before the last-frame image whatever the argument order.
        rank = {Role.FIRST_FRAME: 0, Role.LAST_FRAME: 1}
        refs.sort(key=lambda r: rank.get(hints.get(id(r), Role.REFERENCE_IMAGE), 2))

    mode, assigned, role_problems = assign_roles(options.prompt, refs, requested)
    problems.extend(role_problems)
    duration, resolution, audio = _defaults(options, caps)
    ratio = options.ratio or _default_ratio(assigned, caps)
    request = GenerationRequest(
        prompt=options.prompt,
        references=assigned,
        mode=mode,
        duration=duration,
        resolution=resolution,
        ratio=ratio,
        audio=audio,
        seed=options.seed,
        camera_fixed=options.camera_fixed,
        web_search=options.web_search,
        watermark=bool(options.watermark),
        # Asked of the gateway only where it returns one; elsewhere the front end takes the
        # frame from the finished video itself (bot/media/transcode.py).
        return_last_frame=options.return_last_frame and caps.last_frame,
        results=max(1, options.count),
        provider=caps.provider,
        model=caps.model,
    )
    problems.extend(validate(request, caps, refused))
    if problems:
        raise InvalidInput(problems)
    return request
