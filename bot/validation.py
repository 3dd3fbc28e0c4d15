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
from bot.models import GenerationRequest, MediaKind, Mode, Ratio, Reference, Resolution, Role
from bot.providers.base import Capabilities, MediaLimits, unreachable_reason
from bot.roles import MODE_NEEDS, fits, placeholders
from bot.words import a, kind_count, size

MAX_SEED = 4_294_967_295


def _secs(x: float) -> str:
    return f"{x:.1f} s"


def _subject(ref: Reference) -> str:
    return ref.name


def check_file(ref: Reference, limits: MediaLimits) -> list[Problem]:
    """The per-file rules for one measured reference."""
    facts = ref.facts
    if facts is None:  # asset:// — already stored at the gateway, measured there
        return []
    s = _subject(ref)
    out: list[Problem] = []
    if facts.kind is MediaKind.IMAGE:
        if facts.format not in limits.image_formats:
            out.append(Problem(s, f"is {a(facts.format.upper())} image; use JPEG, PNG, WebP, "
                                  "BMP, TIFF or GIF."))
        if facts.size_bytes >= limits.image_max_bytes:
            out.append(Problem(s, f"is {size(facts.size_bytes)}; images must be under "
                                  f"{size(limits.image_max_bytes)}, so compress or resize it."))
        if facts.width and facts.height:
            w, h = facts.width, facts.height
            if min(w, h) < limits.image_min_edge or max(w, h) > limits.image_max_edge:
                out.append(Problem(s, f"is {w}x{h} px; each side must be "
                                      f"{limits.image_min_edge}–{limits.image_max_edge} px, so "
                                      "resize it."))
            aspect = w / h
            if not limits.image_min_aspect <= aspect <= limits.image_max_aspect:
                out.append(Problem(s, f"has a width/height ratio of {aspect:.2f}; it must be "
                                      f"{limits.image_min_aspect}–{limits.image_max_aspect}, so "
                                      "crop it closer to square."))
    elif facts.kind is MediaKind.VIDEO:
        if facts.format not in limits.video_formats:
            out.append(Problem(s, f"is {a(facts.format.upper())} video; use MP4 or MOV."))
        if facts.size_bytes >= limits.video_max_bytes:
            out.append(Problem(s, f"is {size(facts.size_bytes)}; videos must be under "
                                  f"{size(limits.video_max_bytes)}, so trim or compress it."))
        d = facts.duration or 0.0
        if not limits.video_min_seconds <= d <= limits.video_max_seconds + 0.05:
            out.append(Problem(s, f"lasts {_secs(d)}; each video must last "
                                  f"{limits.video_min_seconds:g}–{limits.video_max_seconds:g} s, "
                                  "so trim or replace it."))
        if facts.width and facts.height:
            w, h = facts.width, facts.height
            px = w * h
            if not limits.video_min_pixels <= px <= limits.video_max_pixels:
                out.append(Problem(s, f"is {w}x{h} ({px:,} pixels); videos must have "
                                      f"{limits.video_min_pixels:,}–{limits.video_max_pixels:,} "
                                      "pixels (480p or 720p), so re-export it at 480p or 720p."))
            aspect = w / h
            if not limits.video_min_aspect <= aspect <= limits.video_max_aspect:
                out.append(Problem(s, f"has a width/height ratio of {aspect:.2f}; it must be "
                                      f"{limits.video_min_aspect}–{limits.video_max_aspect}."))
        fps = facts.fps or 0.0
        if not limits.video_min_fps - 0.01 <= fps <= limits.video_max_fps + 0.01:
            out.append(Problem(s, f"runs at {fps:.1f} fps; videos must be "
                                  f"{limits.video_min_fps:g}–{limits.video_max_fps:g} fps, so "
                                  "re-export it at 24, 30 or 60 fps."))
    else:
        if facts.format not in limits.audio_formats:
            out.append(Problem(s, f"is {facts.format.upper()} audio; use WAV or MP3."))
        if facts.size_bytes >= limits.audio_max_bytes:
            out.append(Problem(s, f"is {size(facts.size_bytes)}; audio must be under "
                                  f"{size(limits.audio_max_bytes)}, so trim or compress it."))
        d = facts.duration or 0.0
        if not limits.audio_min_seconds <= d <= limits.audio_max_seconds + 0.05:
            out.append(Problem(s, f"lasts {_secs(d)}; each audio clip must last "
                                  f"{limits.audio_min_seconds:g}–{limits.audio_max_seconds:g} s, "
                                  "so trim or replace it."))
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
    images, videos, audios = req.images, req.videos, req.audios
    for refs, most, word in (
        (images, limits.max_images, "images"),
        (videos, limits.max_videos, "videos"),
        (audios, limits.max_audios, "audio clips"),
    ):
        if len(refs) > most:
            out.append(Problem("files", f"{len(refs)} {word} were given; at most {most} are "
                                        f"allowed, so remove {len(refs) - most}."))
    for refs, total, word in (
        (videos, limits.video_total_seconds, "videos"),
        (audios, limits.audio_total_seconds, "audio clips"),
    ):
        seconds = sum((r.facts.duration or 0.0) for r in refs if r.facts)
        if len(refs) > 1 and seconds > total + 0.05:
            out.append(Problem("files", f"the {word} last {_secs(seconds)} together; the total "
                                        f"must be at most {total:g} s, so trim or drop one."))
    if audios and not images and not videos:
        out.append(Problem("files", "audio alone is not enough; add at least one image or video "
                                    "for the audio to go with."))
    counts = {MediaKind.IMAGE: len(images), MediaKind.VIDEO: len(videos),
              MediaKind.AUDIO: len(audios)}
    unknown = refused.get(None, 0)
    missing = sorted({f"@{k.value}{n}" for k, n in placeholders(req.prompt)
                      if n < 1 or n > counts[k] + refused.get(k, 0) + unknown})
    for tag in missing:
        kind = MediaKind(tag[1:].rstrip("0123456789"))
        have = counts[kind]
        out.append(Problem("prompt", f"{tag} points at no file: there "
                                     f"{'is' if have == 1 else 'are'} "
                                     f"{kind_count(have, kind.value)}; number them from @"
                                     f"{kind.value}1 in the order you attached them."))
    return out


def check_capabilities(req: GenerationRequest, caps: Capabilities) -> list[Problem]:
    """What the chosen provider and model can do."""
    who = f"{caps.provider} ({caps.model})"
    out: list[Problem] = []
    if req.mode not in caps.modes:
        allowed = ", ".join(m.value for m in Mode if m in caps.modes)
        why = (" (it never takes reference images together with reference videos)"
               if req.mode is Mode.EDIT and not caps.reference_images_with_videos else "")
        out.append(Problem("mode", f"{who} does not do {req.mode.value}{why}; it does "
                                   f"{allowed}."))
    else:
        out.extend(_frame_problems(req, caps, who))
        if (not caps.reference_images_with_videos and req.mode not in caps.frame_images
                and req.images and req.videos):
            out.append(Problem("files", f"{who} takes reference images or reference videos, "
                                        "not both; drop the images or the videos, or pick "
                                        "another provider."))
    if req.mode is Mode.REFERENCE and len(req.images) < caps.limits.min_reference_images:
        least = kind_count(caps.limits.min_reference_images, "image")
        out.append(Problem("files", f"{who} needs at least {least} in reference mode; add "
                                    "an image."))
    if req.results > caps.results_per_task == 1:
        out.append(Problem("count", f"{who} returns one video per request, so it cannot make "
                                    f"a set of {req.results}; set count to 1, or choose a "
                                    "gateway that returns several videos per task."))
    elif req.results > caps.results_per_task:
        most = kind_count(caps.results_per_task, "video")
        out.append(Problem("count", f"{who} makes at most {most} per request; set count to "
                                    f"{caps.results_per_task} or fewer."))
    if req.output_quality is not None and (
            caps.output_quality is None
            or not caps.output_quality[0] <= req.output_quality <= caps.output_quality[1]):
        out.append(Problem("output quality", f"{who} does not take output quality "
                                             f"{req.output_quality}; leave it to the bot."))
    out.extend(setting_problems(caps, resolution=req.resolution, duration=req.duration,
                                ratio=req.ratio, audio=req.audio))
    if req.web_search:
        if not caps.web_search:
            out.append(Problem("web_search", f"{who} has no web search; turn it off."))
        elif req.mode is not Mode.TEXT:
            out.append(Problem("web_search", "web search works only for text-to-video; remove "
                                             "the files or turn web search off."))
    if req.return_last_frame and not caps.last_frame:
        out.append(Problem("last_frame", f"{who} cannot return the last frame; turn it off."))
    if req.seed is not None:
        if not caps.seed:
            out.append(Problem("seed", f"{who} does not take a seed; leave it empty."))
        elif not 0 <= req.seed <= MAX_SEED:
            out.append(Problem("seed", f"{req.seed} is out of range; use 0–{MAX_SEED}."))
    out.extend(setting_problems(caps, camera_fixed=req.camera_fixed, watermark=req.watermark))
    prompt = req.prompt.strip()
    needs_text = caps.prompt_required or req.mode in (Mode.TEXT, Mode.EDIT, Mode.EXTEND)
    if needs_text and not prompt:
        out.append(Problem("prompt", "a prompt is needed here; describe the video you want."))
    if caps.prompt_max_chars is not None and len(req.prompt) > caps.prompt_max_chars:
        out.append(Problem("prompt", f"is {len(req.prompt):,} characters; {who} takes at most "
                                     f"{caps.prompt_max_chars:,}, so shorten it."))
    for ref in req.references:
        reason = unreachable_reason(ref, caps)
        if reason:
            out.append(Problem(_subject(ref), reason + "."))
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
        out.append(Problem("resolution", f"{who} does not make {resolution.value}; "
                                         f"choose {allowed}."))
    if duration is not None and duration not in caps.durations:
        ds = sorted(caps.durations)
        span = (f"{ds[0]}–{ds[-1]} s" if ds == list(range(ds[0], ds[-1] + 1))
                else " or ".join(f"{d} s" for d in ds))
        out.append(Problem("duration", f"{duration} s is not available on {who}; choose "
                                       f"{span}."))
    if ratio is not None and ratio not in caps.ratios:
        allowed = ", ".join(r.value for r in Ratio if r in caps.ratios)
        out.append(Problem("ratio", f"{who} does not take {ratio.value}; choose {allowed}."))
    if audio and not caps.audio_generation:
        out.append(Problem("audio", f"{who} cannot generate sound; turn audio off."))
    if camera_fixed and not caps.camera_fixed:
        out.append(Problem("camera_fixed", f"{who} has no fixed-camera option; turn it off."))
    if watermark and not caps.watermark:
        out.append(Problem("watermark", f"{who} cannot add a watermark; turn it off."))
    return out


def _frame_problems(req: GenerationRequest, caps: Capabilities, who: str) -> list[Problem]:
    """Frame roles as the table says: in a frame mode exactly its first/last frame images (all
    marked, or none marked and taken in order); in any other mode no file marked as a frame.

    When the files' kinds do not fit the mode at all, bot/roles.py has already said which modes
    they fit (intake runs it first), so nothing is added here.
    """
    want = caps.frame_images.get(req.mode)
    framed = [r for r in req.references if r.role in (Role.FIRST_FRAME, Role.LAST_FRAME)]
    if want is None:
        return [Problem(_subject(r), f"is marked as a frame image, but {req.mode.value} on "
                                     f"{who} takes no frames; use first_frame or "
                                     "first_last_frame mode, or pass it as a plain image.")
                for r in framed]
    firsts, lasts = want
    if len(req.references) != firsts + lasts or req.videos or req.audios:
        return []
    marked = (len(req.with_role(Role.FIRST_FRAME)), len(req.with_role(Role.LAST_FRAME)))
    unmarked = all(r.role is None for r in req.references)
    if unmarked or (marked == want and len(framed) == len(req.references)):
        return []
    needs = kind_count(firsts, "first-frame image") + (
        f" and {kind_count(lasts, 'last-frame image')}" if lasts else "")
    fix = ("mark the images as first and last frame, or leave both unmarked to take them in "
           "order" if lasts else "mark the image as the first frame, or leave it unmarked")
    return [Problem("files", f"{req.mode.value} on {who} takes {needs}; {fix}.")]


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
        after = f" (and {more} more after it)" if more else ""
        if "\udc80" <= char <= "\udcff":  # an undecodable byte, escaped
            byte = len(prompt[:index].encode("utf-8")) + 1
            return [Problem("prompt", f"the byte at position {byte}{after} is not UTF-8; save "
                                      "the text as UTF-8.")]
        return [Problem("prompt", f"the character at position {index + 1}{after} is half of a "
                                  "UTF-16 surrogate pair, not text; save the text as UTF-8.")]
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
        problems.append(Problem("mode", f"{request.mode.value} needs "
                                        f"{MODE_NEEDS[request.mode]}."))
    problems.extend(check_capabilities(request, caps))
    if problems:
        raise InvalidInput(problems)
