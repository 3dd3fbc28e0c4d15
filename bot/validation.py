"""Every rule checked before a credit or a cent is spent.

Rules come from two places: the media limits all gateways share
(docs/GATEWAYS.md#media-limits, HiAPI's page being the strictest) and the chosen model's
capability table. Facts come from the real bytes (bot.media.probe), never from names or
declared types. Every problem is collected, each a sentence a Discord user understands: what
is wrong, the rule, and the fix.
"""

from __future__ import annotations

from collections.abc import Mapping

from bot.errors import InvalidInput, Problem
from bot.i18n import Said
from bot.models import GenerationRequest, MediaKind, Mode, Ratio, Reference, Resolution, Role
from bot.providers.base import Capabilities, MediaLimits, unreachable_reason
from bot.roles import fits, mode_needs, placeholders
from bot.words import a, kind_said, size

MAX_SEED = 4_294_967_295


def _secs(x: float) -> str:
    return f"{x:.1f} s"


def _subject(ref: Reference) -> str:
    return ref.name


def _article(fmt: str) -> str:
    """"a" or "an" before a format's name, choosing the English key of a family."""
    return a(fmt).split()[0]


def check_file(ref: Reference, limits: MediaLimits) -> list[Problem]:
    """The per-file rules for one measured reference."""
    facts = ref.facts
    if facts is None:  # asset:// — already stored at the gateway, measured there
        return []
    s = _subject(ref)
    out: list[Problem] = []
    fmt = facts.format.upper()
    if facts.kind is MediaKind.IMAGE:
        if facts.format not in limits.image_formats:
            out.append(Problem.keyed(s, f"errors.file.image_format.{_article(fmt)}", format=fmt))
        if facts.size_bytes >= limits.image_max_bytes:
            out.append(Problem.keyed(s, "errors.file.image_size", size=size(facts.size_bytes),
                                     most=size(limits.image_max_bytes)))
        if facts.width and facts.height:
            w, h = facts.width, facts.height
            if min(w, h) < limits.image_min_edge or max(w, h) > limits.image_max_edge:
                out.append(Problem.keyed(s, "errors.file.image_edges", width=w, height=h,
                                         least=limits.image_min_edge,
                                         most=limits.image_max_edge))
            aspect = w / h
            if not limits.image_min_aspect <= aspect <= limits.image_max_aspect:
                out.append(Problem.keyed(s, "errors.file.image_aspect", aspect=f"{aspect:.2f}",
                                         least=limits.image_min_aspect,
                                         most=limits.image_max_aspect))
    elif facts.kind is MediaKind.VIDEO:
        if facts.format not in limits.video_formats:
            out.append(Problem.keyed(s, f"errors.file.video_format.{_article(fmt)}", format=fmt))
        if facts.size_bytes >= limits.video_max_bytes:
            out.append(Problem.keyed(s, "errors.file.video_size", size=size(facts.size_bytes),
                                     most=size(limits.video_max_bytes)))
        d = facts.duration or 0.0
        if not limits.video_min_seconds <= d <= limits.video_max_seconds + 0.05:
            out.append(Problem.keyed(s, "errors.file.video_length", seconds=_secs(d),
                                     least=f"{limits.video_min_seconds:g}",
                                     most=f"{limits.video_max_seconds:g}"))
        if facts.width and facts.height:
            w, h = facts.width, facts.height
            px = w * h
            if not limits.video_min_pixels <= px <= limits.video_max_pixels:
                out.append(Problem.keyed(s, "errors.file.video_pixels", width=w, height=h,
                                         pixels=f"{px:,}", least=f"{limits.video_min_pixels:,}",
                                         most=f"{limits.video_max_pixels:,}"))
            aspect = w / h
            if not limits.video_min_aspect <= aspect <= limits.video_max_aspect:
                out.append(Problem.keyed(s, "errors.file.video_aspect", aspect=f"{aspect:.2f}",
                                         least=limits.video_min_aspect,
                                         most=limits.video_max_aspect))
        fps = facts.fps or 0.0
        if not limits.video_min_fps - 0.01 <= fps <= limits.video_max_fps + 0.01:
            out.append(Problem.keyed(s, "errors.file.video_fps", fps=f"{fps:.1f}",
                                     least=f"{limits.video_min_fps:g}",
                                     most=f"{limits.video_max_fps:g}"))
    else:
        if facts.format not in limits.audio_formats:
            out.append(Problem.keyed(s, "errors.file.audio_format", format=fmt))
        if facts.size_bytes >= limits.audio_max_bytes:
            out.append(Problem.keyed(s, "errors.file.audio_size", size=size(facts.size_bytes),
                                     most=size(limits.audio_max_bytes)))
        d = facts.duration or 0.0
        if not limits.audio_min_seconds <= d <= limits.audio_max_seconds + 0.05:
            out.append(Problem.keyed(s, "errors.file.audio_length", seconds=_secs(d),
                                     least=f"{limits.audio_min_seconds:g}",
                                     most=f"{limits.audio_max_seconds:g}"))
    return out


def check_collection(
    req: GenerationRequest, limits: MediaLimits,
    refused: Mapping[MediaKind | None, int] | None = None,
) -> list[Problem]:
    """Counts, totals, placeholders, and combinations across all files.

    `refused` counts the files already refused on their own, by kind (None: a file whose kind
    is unknown, e.g. unreadable): a placeholder that would point at one of them is not a
    second problem, the file's own problem says what to fix.
    """
    refused = refused or {}
    out: list[Problem] = []
    files = Said("errors.subject.files")
    images, videos, audios = req.images, req.videos, req.audios
    for refs, most, kind in (
        (images, limits.max_images, "image"),
        (videos, limits.max_videos, "video"),
        (audios, limits.max_audios, "audio"),
    ):
        if len(refs) > most:
            out.append(Problem.keyed(files, f"errors.files.too_many.{kind}", count=len(refs),
                                     most=most, extra=len(refs) - most))
    for refs, total, kind in (
        (videos, limits.video_total_seconds, "video"),
        (audios, limits.audio_total_seconds, "audio"),
    ):
        seconds = sum((r.facts.duration or 0.0) for r in refs if r.facts)
        if len(refs) > 1 and seconds > total + 0.05:
            out.append(Problem.keyed(files, f"errors.files.too_long.{kind}",
                                     seconds=_secs(seconds), most=f"{total:g}"))
    if audios and not images and not videos:
        out.append(Problem.keyed(files, "errors.files.audio_alone"))
    counts = {MediaKind.IMAGE: len(images), MediaKind.VIDEO: len(videos),
              MediaKind.AUDIO: len(audios)}
    unknown = refused.get(None, 0)
    missing = sorted({f"@{k.value}{n}" for k, n in placeholders(req.prompt)
                      if n < 1 or n > counts[k] + refused.get(k, 0) + unknown})
    for tag in missing:
        kind = MediaKind(tag[1:].rstrip("0123456789"))
        have = counts[kind]
        out.append(Problem.keyed(Said("errors.subject.prompt"),
                                 "errors.prompt.no_file", count=have, tag=tag,
                                 have=kind_said(have, kind.value), kind=kind.value))
    return out


def check_capabilities(req: GenerationRequest, caps: Capabilities) -> list[Problem]:
    """What the chosen provider and model can do."""
    who = f"{caps.provider} ({caps.model})"
    out: list[Problem] = []
    if req.mode not in caps.modes:
        allowed = ", ".join(m.value for m in Mode if m in caps.modes)
        edit_mix = req.mode is Mode.EDIT and not caps.reference_images_with_videos
        out.append(Problem.keyed(Said("errors.subject.mode"),
                                 "errors.caps.mode_mixed" if edit_mix else "errors.caps.mode",
                                 who=who, mode=req.mode.value, allowed=allowed))
    else:
        out.extend(_frame_problems(req, caps, who))
        if (not caps.reference_images_with_videos and req.mode not in caps.frame_images
                and req.images and req.videos):
            out.append(Problem.keyed(Said("errors.subject.files"), "errors.caps.images_or_videos",
                                     who=who))
    if req.mode is Mode.REFERENCE and len(req.images) < caps.limits.min_reference_images:
        least = kind_said(caps.limits.min_reference_images, "image")
        out.append(Problem.keyed(Said("errors.subject.files"), "errors.caps.reference_images",
                                 who=who, least=least))
    if req.results > caps.results_per_task == 1:
        out.append(Problem.keyed(Said("errors.subject.count"), "errors.caps.one_per_task",
                                 who=who, count=req.results))
    elif req.results > caps.results_per_task:
        most = kind_said(caps.results_per_task, "video")
        out.append(Problem.keyed(Said("errors.subject.count"), "errors.caps.per_task",
                                 who=who, most=most, limit=caps.results_per_task))
    if req.output_quality is not None and (
            caps.output_quality is None
            or not caps.output_quality[0] <= req.output_quality <= caps.output_quality[1]):
        out.append(Problem.keyed(Said("errors.subject.output_quality"),
                                 "errors.caps.output_quality", who=who,
                                 quality=req.output_quality))
    out.extend(setting_problems(caps, resolution=req.resolution, duration=req.duration,
                                ratio=req.ratio, audio=req.audio))
    if req.web_search:
        if not caps.web_search:
            out.append(Problem.keyed(Said("errors.subject.web_search"),
                                     "errors.caps.no_web_search", who=who))
        elif req.mode is not Mode.TEXT:
            out.append(Problem.keyed(Said("errors.subject.web_search"),
                                     "errors.caps.web_search_text_only"))
    if req.return_last_frame and not caps.last_frame:
        out.append(Problem.keyed(Said("errors.subject.last_frame"), "errors.caps.no_last_frame",
                                 who=who))
    if req.seed is not None:
        if not caps.seed:
            out.append(Problem.keyed(Said("errors.subject.seed"), "errors.caps.no_seed", who=who))
        elif not 0 <= req.seed <= MAX_SEED:
            out.append(Problem.keyed(Said("errors.subject.seed"), "errors.caps.seed_range",
                                     seed=req.seed, most=MAX_SEED))
    out.extend(setting_problems(caps, camera_fixed=req.camera_fixed, watermark=req.watermark))
    prompt = req.prompt.strip()
    needs_text = caps.prompt_required or req.mode in (Mode.TEXT, Mode.EDIT, Mode.EXTEND)
    if needs_text and not prompt:
        out.append(Problem.keyed(Said("errors.subject.prompt"), "errors.prompt.needed"))
    if caps.prompt_max_chars is not None and len(req.prompt) > caps.prompt_max_chars:
        out.append(Problem.keyed(Said("errors.subject.prompt"), "errors.prompt.too_long",
                                 length=f"{len(req.prompt):,}", who=who,
                                 most=f"{caps.prompt_max_chars:,}"))
    for ref in req.references:
        reason = unreachable_reason(ref, caps)
        if reason:
            out.append(Problem.keyed(_subject(ref), "errors.file.unreachable", reason=reason))
    return out


def setting_problems(
    caps: Capabilities, *, resolution: Resolution | None = None, duration: int | None = None,
    ratio: Ratio | None = None, audio: bool | None = None, camera_fixed: bool | None = None,
    watermark: bool | None = None,
) -> list[Problem]:
    """The single settings the capability table rules on (None: not asked); shared by a request
    and by what an event fixes (bot/service/options.py), so both are refused in the same words.
    """
    who = f"{caps.provider} ({caps.model})"
    out: list[Problem] = []
    if resolution is not None and resolution not in caps.resolutions:
        allowed = ", ".join(sorted(r.value for r in caps.resolutions))
        out.append(Problem.keyed(Said("errors.subject.resolution"), "errors.caps.resolution",
                                 who=who, resolution=resolution.value, allowed=allowed))
    if duration is not None and duration not in caps.durations:
        ds = sorted(caps.durations)
        span = (Said("errors.caps.seconds_span", least=ds[0], most=ds[-1])
                if ds == list(range(ds[0], ds[-1] + 1)) else _either_seconds(ds))
        out.append(Problem.keyed(Said("errors.subject.duration"), "errors.caps.duration",
                                 duration=duration, who=who, span=span))
    if ratio is not None and ratio not in caps.ratios:
        allowed = ", ".join(r.value for r in Ratio if r in caps.ratios)
        out.append(Problem.keyed(Said("errors.subject.ratio"), "errors.caps.ratio", who=who,
                                 ratio=ratio.value, allowed=allowed))
    if audio and not caps.audio_generation:
        out.append(Problem.keyed(Said("errors.subject.audio"), "errors.caps.no_audio", who=who))
    if camera_fixed and not caps.camera_fixed:
        out.append(Problem.keyed(Said("errors.subject.camera_fixed"),
                                 "errors.caps.no_camera_fixed", who=who))
    if watermark and not caps.watermark:
        out.append(Problem.keyed(Said("errors.subject.watermark"), "errors.caps.no_watermark",
                                 who=who))
    return out


def _either_seconds(ds: list[int]) -> Said:
    """ "4 s or 8 s or 12 s", each "or" in the reader's language."""
    if len(ds) == 1:
        return Said("errors.caps.seconds", seconds=ds[0])
    return Said("errors.caps.seconds_or", seconds=ds[0], rest=_either_seconds(ds[1:]))


def _frame_problems(req: GenerationRequest, caps: Capabilities, who: str) -> list[Problem]:
    """Frame roles as the table says: in a frame mode exactly its first/last frame images (all
    marked, or none marked and taken in order); in any other mode no file marked as a frame.

    When the files' kinds do not fit the mode at all, bot/roles.py has already said which modes
    they fit (intake runs it first), so nothing is added here.
    """
    want = caps.frame_images.get(req.mode)
    framed = [r for r in req.references if r.role in (Role.FIRST_FRAME, Role.LAST_FRAME)]
    if want is None:
        return [Problem.keyed(_subject(r), "errors.caps.no_frames", mode=req.mode.value, who=who)
                for r in framed]
    firsts, lasts = want
    if len(req.references) != firsts + lasts or req.videos or req.audios:
        return []
    marked = (len(req.with_role(Role.FIRST_FRAME)), len(req.with_role(Role.LAST_FRAME)))
    unmarked = all(r.role is None for r in req.references)
    if unmarked or (marked == want and len(framed) == len(req.references)):
        return []
    firsts_said = kind_said(firsts, "first_frame_image")
    if lasts:
        return [Problem.keyed(Said("errors.subject.files"), "errors.caps.frames_first_last",
                              mode=req.mode.value, who=who, firsts=firsts_said,
                              lasts=kind_said(lasts, "last_frame_image"))]
    return [Problem.keyed(Said("errors.subject.files"), "errors.caps.frames_first",
                          mode=req.mode.value, who=who, firsts=firsts_said)]


def check_prompt_encoding(prompt: str) -> list[Problem]:
    """Text that is not UTF-8 cannot be stored or sent (JSON bodies and the job store need it).

    On Linux, argv bytes that are not UTF-8 reach Python as surrogate escapes (PEP 383: byte 0xE9
    becomes U+DCE9); the position given is that byte's, counted from 1, so an editor finds it.
    """
    try:
        prompt.encode("utf-8")
    except UnicodeEncodeError as exc:
        index, char = exc.start, prompt[exc.start]
        more = sum(1 for c in prompt[index + 1:] if "\ud800" <= c <= "\udfff")
        after = Said("errors.prompt.more_after", count=more) if more else ""
        subject = Said("errors.subject.prompt")
        if "\udc80" <= char <= "\udcff":  # an undecodable byte, escaped
            byte = len(prompt[:index].encode("utf-8")) + 1
            return [Problem.keyed(subject, "errors.prompt.not_utf8", position=byte, after=after)]
        return [Problem.keyed(subject, "errors.prompt.surrogate", position=index + 1,
                              after=after)]
    return []


def validate(
    req: GenerationRequest, caps: Capabilities,
    refused: Mapping[MediaKind | None, int] | None = None,
) -> list[Problem]:
    """All problems with a request whose roles are assigned; empty means it may be sent.

    `refused`: files refused before they could become references (see `check_collection`).
    """
    problems: list[Problem] = check_prompt_encoding(req.prompt)
    for ref in req.references:
        problems.extend(check_file(ref, caps.limits))
    problems.extend(check_collection(req, caps.limits, refused))
    problems.extend(check_capabilities(req, caps))
    return problems


def refuse_invalid(request: GenerationRequest, caps: Capabilities) -> None:
    """Raise InvalidInput for a request validation would refuse, before anything is sent.

    For gateways whose bodies cannot carry a request outside their table at all (Magnific's
    resolution path and aspect names, HiAPI's URL-only media): the same rules as intake (the
    mode's files, bot/roles.py; the capability table, below), never a copy of them.
    """
    problems: list[Problem] = []
    if not fits(request.mode, request.references, request.prompt):
        problems.append(Problem.keyed(Said("errors.subject.mode"), "errors.mode.needs",
                                      mode=request.mode.value, needs=mode_needs(request.mode)))
    problems.extend(check_capabilities(request, caps))
    if problems:
        raise InvalidInput(problems)
