"""Measure a file from its real bytes: kind, format, size, dimensions, duration, fps, audio.

Names and declared content types lie (a PNG renamed `.jpg`, a text file renamed `.mp4`), and
the gateways refuse by real format, so every fact here comes from Pillow or PyAV reading the
bytes. Only headers and the first decodable frame are read; a video is never held in memory.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import warnings
from pathlib import Path
from typing import Any

import av
from PIL import Image

from bot.errors import SeedanceError
from bot.i18n import Said
from bot.models import MediaFacts, MediaKind


class UnreadableMedia(SeedanceError):
    """The bytes are not an image, video or audio file we can read (or are damaged).

    `hint` is set when the probe knows what the file is and what to do about it (an SVG, a
    JPEG cut short): bot/intake.py shows it instead of its general "not a file we can read".
    """

    def __init__(self, message: str, *, hint: Said | None = None) -> None:
        super().__init__(message)
        self.hint = hint


#: Pillow formats with a strong signature. Weak-signature plugins (TGA, MPEG, …) are left out so
#: that a video's first bytes can never be mistaken for an image.
_PILLOW_FORMATS = (
    "AVIF", "BMP", "DDS", "GIF", "ICNS", "ICO", "JPEG", "JPEG2000", "MPO", "PNG", "PPM", "PSD",
    "QOI", "TIFF", "WEBP",
)
#: Pillow names that are another format in disguise. MPO is the multi-picture JPEG phones write.
_PILLOW_ALIASES = {"mpo": "jpeg"}

#: FFmpeg demuxers that read images (Pillow failed on them, but they are still images).
_IMAGE_DEMUXERS = {"image2", "gif", "apng", "webp_pipe", "jpegxl_anim"}
#: Demuxers/codecs that "open" plain text; such a file is not media.
_TEXT_DEMUXERS = {"tty", "txt"}
_TEXT_CODECS = {"ansi", "bintext", "xbin", "idf"}

#: `ftyp` major brands that mean QuickTime or 3GPP rather than MP4.
_MOV_BRANDS = {b"qt  "}
_3GP_PREFIX = b"3g"
#: `ftyp` brands of still pictures in the same box format (AVIF, HEIF): Pillow reads AVIF.
_IMAGE_BRANDS = {b"avif", b"avis", b"heic", b"heix", b"heim", b"heis", b"mif1", b"msf1"}
_WEBM_CODECS = {"vp8", "vp9", "av1", "vorbis", "opus"}
#: Bytes read once for the signatures (`ftyp`, SVG markup).
_HEAD = 4096
#: FFmpeg's stream search cut to the least it allows (bytes read; `_probe_av`).
_QUICK_SEARCH = {"probesize": "32"}
#: The quick open's demuxer, named rather than guessed from the bytes, and its address: FFmpeg's
#: plain-file protocol, so neither the name nor a pattern in it is read as anything else.
_ISO_BMFF_DEMUXER = "mov,mp4,m4a,3gp,3g2,mj2"
_FILE = "file:"

_NOT_MEDIA = "is not an image, video or audio file we can read"
_SVG = "is not an image we can read (SVG is not supported; export PNG)"
#: Images up to this many pixels are decoded in full at probe time, because only decoding finds
#: a JPEG cut short. Bigger ones are refused by validation by their edges (6000 px a side, see
#: bot/providers/base.py) and decoding them could take hundreds of MB, so they are not.
_MAX_DECODE_PIXELS = 50_000_000


def probe_file(path: Path) -> MediaFacts:
    """Facts about `path` from its bytes; raises `UnreadableMedia` when nothing can read it."""
    path = Path(path)
    try:
        with path.open("rb") as fh:
            size = os.fstat(fh.fileno()).st_size
            head = fh.read(_HEAD)
    except OSError as exc:
        raise UnreadableMedia(f"{path.name} cannot be opened ({exc.strerror or exc})") from exc
    if size == 0:
        raise UnreadableMedia(f"{path.name} is empty")
    brand = _iso_bmff_brand(head)
    if brand is None or brand in _IMAGE_BRANDS:
        facts = _probe_image(path, size)
        if facts is not None:
            return facts
    return _probe_av(path, size, head, quick=brand is not None)


async def probe_file_async(path: Path) -> MediaFacts:
    """`probe_file` off the event loop: decoding headers can take tens of milliseconds."""
    return await asyncio.to_thread(probe_file, path)


def _probe_image(path: Path, size: int) -> MediaFacts | None:
    """Image facts via Pillow, or None when Pillow does not recognise the bytes."""
    with warnings.catch_warnings():
        # Probing reads headers only, so a huge image is not a memory risk here; validation
        # refuses it by its edges instead.
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        try:
            img = Image.open(path, formats=_pillow_formats())
        except Image.DecompressionBombError as exc:
            raise UnreadableMedia(f"{path.name} is an image too large to read") from exc
        except (OSError, SyntaxError, ValueError):
            return None
        with img:
            fmt = (img.format or "").lower()
            width, height = img.size
            try:
                img.verify()  # cheap integrity checks (PNG CRCs) without decoding
            except Exception as exc:
                raise _damaged(path, fmt) from exc
        if width * height <= _MAX_DECODE_PIXELS:
            _decode_image(path, fmt)
    fmt = _PILLOW_ALIASES.get(fmt, fmt)
    return MediaFacts(kind=MediaKind.IMAGE, format=fmt, size_bytes=size, width=width,
                      height=height)


def _decode_image(path: Path, fmt: str) -> None:
    """Decode every byte of the picture: `verify()` checks nothing in a JPEG, so a truncated one
    would pass here and fail at render, after a paid gateway had it.

    A JPEG is decoded at 1/8 scale (`draft`): every byte is still read, in a 64th of the memory.
    Truncation is an error as long as `ImageFile.LOAD_TRUNCATED_IMAGES` stays false, which it
    does everywhere in this repository.
    """
    try:
        with Image.open(path, formats=_pillow_formats()) as img:
            img.draft(img.mode, (max(1, img.width // 8), max(1, img.height // 8)))
            img.load()
    except Exception as exc:
        raise _damaged(path, fmt) from exc


def _damaged(path: Path, fmt: str) -> UnreadableMedia:
    name = _PILLOW_ALIASES.get(fmt, fmt)
    return UnreadableMedia(
        f"{path.name} is a damaged {name} image",
        hint=Said("errors.file.damaged", format=name.upper()),
    )


def _pillow_formats() -> list[str]:
    Image.init()
    return [f for f in _PILLOW_FORMATS if f in Image.OPEN]


def _probe_av(path: Path, size: int, head: bytes, *, quick: bool = False) -> MediaFacts:
    """Video/audio facts via PyAV, opened from a file object so no name or protocol is used.

    `quick` (an ISO-BMFF file: MP4, MOV, 3GP, M4A) first opens it with FFmpeg's stream search
    cut to one read. That search decodes frames to fill in what a header left out; an MP4's
    `moov` box states every stream, size and duration, so the search only repeats the first
    frame's decode that `_first_frame` makes anyway: ~0.3 ms of a 1.4 ms probe of every result
    (bench/README.md, seventh pass). The quick open names its demuxer (the `ftyp` box already
    said which) and lets FFmpeg read the file itself, by `file:` and its absolute path, instead
    of calling back into Python, under the GIL, for each read: a probe's CPU on a busy engine
    falls by a fifth or more (bench/README.md, eighth pass). When the header left anything out
    (`_search_needed`), or the quick open fails in any way, the full search runs after all
    from the file object and has the last word: a quick answer is only ever the same answer.
    """
    if _looks_like_svg(head):  # FFmpeg has no SVG decoder here; say what the file is
        raise _svg(path)
    if quick:
        try:
            return _open_and_measure(path, size, head, _QUICK_SEARCH)
        except (UnreadableMedia, _SearchNeeded):
            pass
    return _open_and_measure(path, size, head, None)


def _open_and_measure(path: Path, size: int, head: bytes,
                      options: dict[str, str] | None) -> MediaFacts:
    try:
        with contextlib.ExitStack() as stack:
            if options is None:
                container = stack.enter_context(
                    av.open(stack.enter_context(path.open("rb")), mode="r"))
            else:
                container = stack.enter_context(av.open(
                    _FILE + _absolute(path), mode="r", format=_ISO_BMFF_DEMUXER,
                    options=options))
            return _facts_from_container(container, path, size, head,
                                         complete=options is None)
    except (UnreadableMedia, _SearchNeeded):
        raise
    except (av.FFmpegError, OSError, ValueError, EOFError, IndexError) as exc:
        raise UnreadableMedia(f"{path.name} {_NOT_MEDIA}") from exc


def _absolute(path: Path) -> str:
    """`path` made absolute without resolving it: FFmpeg opens it as the kernel finds it, as
    `open` would, and `Path.resolve` costs a system call per folder of the path."""
    text = os.fspath(path)
    return text if os.path.isabs(text) else os.path.join(os.getcwd(), text)


class _SearchNeeded(Exception):
    """A quick open left a fact unknown: open again with FFmpeg's full stream search."""


def _facts_from_container(container: Any, path: Path, size: int, head: bytes, *,
                          complete: bool = True) -> MediaFacts:
    """`complete`: FFmpeg's full stream search ran. Without it, a stream the header did not
    describe in full raises `_SearchNeeded` (`_search_needed`)."""
    demuxer = container.format.name
    if demuxer == "svg_pipe":
        raise _svg(path)
    if demuxer in _TEXT_DEMUXERS:
        raise UnreadableMedia(f"{path.name} {_NOT_MEDIA}")
    # A stream without a codec context has no decoder in this FFmpeg build (SVG, some data
    # streams): nothing can be measured or decoded from it, so it does not count.
    pictures = [
        s for s in container.streams.video
        if s.codec_context is not None
        and not s.disposition & av.stream.Disposition.attached_pic  # cover art is not a video
        and s.codec_context.name not in _TEXT_CODECS
    ]
    videos = [s for s in pictures if s.codec_context.width and s.codec_context.height]
    audios = [s for s in container.streams.audio if s.codec_context is not None]
    if not complete and _search_needed(container, pictures, videos, audios):
        raise _SearchNeeded
    if demuxer in _IMAGE_DEMUXERS or demuxer.endswith("_pipe"):
        if not videos:
            raise UnreadableMedia(f"{path.name} {_NOT_MEDIA}")
        _first_frame(container, videos[0], path)
        fmt = demuxer.removesuffix("_pipe")
        return MediaFacts(kind=MediaKind.IMAGE, format=fmt, size_bytes=size,
                          width=videos[0].codec_context.width,
                          height=videos[0].codec_context.height)
    if videos:
        stream = videos[0]
        rotation = display_rotation(stream, _first_frame(container, stream, path))
        width, height = stream.codec_context.width, stream.codec_context.height
        if rotation in (90, 270):  # a phone's portrait clip is stored landscape
            width, height = height, width
        codecs = {s.codec_context.name for s in (*videos, *audios)}
        return MediaFacts(
            kind=MediaKind.VIDEO,
            format=_container_name(demuxer, head, audio_only=False, codecs=codecs),
            size_bytes=size,
            width=width,
            height=height,
            rotation=rotation,
            duration=_duration(stream, container),
            fps=_fps(stream),
            has_audio=bool(audios),
        )
    if audios:
        stream = audios[0]
        _first_frame(container, stream, path)
        codecs = {s.codec_context.name for s in audios}
        return MediaFacts(
            kind=MediaKind.AUDIO,
            format=_container_name(demuxer, head, audio_only=True, codecs=codecs),
            size_bytes=size,
            duration=_duration(stream, container),
        )
    raise UnreadableMedia(f"{path.name} {_NOT_MEDIA}")


def _svg(path: Path) -> UnreadableMedia:
    return UnreadableMedia(f"{path.name} {_SVG}", hint=Said("errors.file.svg"))


def _looks_like_svg(head: bytes) -> bool:
    """An `<svg` element in the first 4 KB of a markup file (after a BOM, comments, DOCTYPE).

    FFmpeg calls only some SVGs `svg_pipe` (others `image2` or `tty`) and can decode none.
    """
    head = head.removeprefix(b"\xef\xbb\xbf").lstrip()
    return head.startswith(b"<") and b"<svg" in head


def _search_needed(container: Any, pictures: list[Any], videos: list[Any],
                   audios: list[Any]) -> bool:
    """True when a quick open (`_QUICK_SEARCH`) may have left out what the full search fills
    in: a picture stream's size, an audio stream's sample rate, the duration, the frame rate,
    or any stream at all."""
    if len(videos) < len(pictures) or any(not s.codec_context.sample_rate for s in audios):
        return True
    if not (videos or audios):
        return True
    main = videos[0] if videos else audios[0]
    return _duration(main, container) is None or (bool(videos) and _fps(main) is None)


def display_rotation(stream: Any, frame: Any) -> int:
    """Clockwise degrees (0, 90, 180 or 270) a player turns `stream`'s pictures to show them.

    Phones store a portrait clip as landscape pictures plus a display matrix. FFmpeg hands the
    matrix to every decoded frame (`frame.rotation`, counter-clockwise); older files may carry
    only a `rotate` tag (clockwise), which FFmpeg leaves in the stream's metadata. Flips and
    angles between quarter turns are ignored: phones do not write them.
    """
    ccw = getattr(frame, "rotation", 0) if frame is not None else 0
    if ccw:
        return _quarter_turns(-float(ccw))
    tags = {k.lower(): v for k, v in (stream.metadata or {}).items()}
    try:
        return _quarter_turns(float(tags.get("rotate", 0)))
    except ValueError:
        return 0


def _quarter_turns(degrees: float) -> int:
    return round(degrees / 90) % 4 * 90


def upright(image: Image.Image, rotation: int) -> Image.Image:
    """`image` (a decoded video picture) turned `rotation` degrees clockwise, as players show it."""
    turn = _CLOCKWISE.get(rotation % 360)
    return image.transpose(turn) if turn is not None else image


#: Pillow names its turns counter-clockwise.
_CLOCKWISE = {
    90: Image.Transpose.ROTATE_270,
    180: Image.Transpose.ROTATE_180,
    270: Image.Transpose.ROTATE_90,
}


def _first_frame(container: Any, stream: Any, path: Path) -> Any:
    """Decode one frame: a header alone does not prove the stream is readable. On one thread:
    FFmpeg's frame threads cost more to start than one frame takes to decode."""
    try:
        stream.codec_context.thread_count = 1
        for frame in container.decode(stream):
            return frame
    except av.FFmpegError as exc:
        raise UnreadableMedia(f"{path.name} is damaged: its {stream.type} cannot be decoded") from (
            exc
        )
    raise UnreadableMedia(f"{path.name} has no {stream.type} frames we can decode")


def _container_name(demuxer: str, head: bytes, *, audio_only: bool, codecs: set[str]) -> str:
    """A short, honest format name ("mp4", "mov", "m4a", "wav", "mp3", "webm", …)."""
    if demuxer.startswith("mov,mp4"):
        if audio_only:
            return "m4a"
        return _iso_bmff_name(head)
    if demuxer == "matroska,webm":
        return "webm" if codecs <= _WEBM_CODECS else "mkv"
    return demuxer.split(",")[0]


def _iso_bmff_brand(head: bytes) -> bytes | None:
    """The `ftyp` box's major brand when the file opens with one (MP4, MOV, 3GP, M4A, AVIF)."""
    if len(head) < 12 or head[4:8] != b"ftyp":
        return None
    return head[8:12]


def _iso_bmff_name(head: bytes) -> str:
    """mp4 vs mov vs 3gp by the `ftyp` major brand; QuickTime files may have no `ftyp` at all."""
    brand = _iso_bmff_brand(head)
    if brand is None or brand in _MOV_BRANDS:
        return "mov"
    if brand.startswith(_3GP_PREFIX):
        return "3gp"
    return "mp4"


def _duration(stream: Any, container: Any) -> float | None:
    """Stream duration when the container states it, else the container's own."""
    if stream.duration is not None and stream.time_base is not None and stream.duration > 0:
        return float(stream.duration * stream.time_base)
    if container.duration is not None and container.duration > 0:
        return float(container.duration / av.time_base)
    return None


def _fps(stream: Any) -> float | None:
    rate = stream.average_rate or stream.guessed_rate or stream.base_rate
    return float(rate) if rate else None
