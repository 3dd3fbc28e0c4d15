"""Small previews of kept files, for `/library list`: an image's own picture, a clip's first frame
as players show it (rotation applied), nothing for sound."""

from __future__ import annotations

import io
from pathlib import Path

import av
from PIL import Image

from bot.media.pictures import RenderError, load_image
from bot.media.probe import display_rotation, upright
from bot.models import MediaKind

#: The longest edge of a preview, in pixels: a list shows several side by side.
THUMB_EDGE = 160


def thumbnail(path: Path, kind: MediaKind) -> bytes | None:
    """A PNG preview of the file at `path` (blocking: decoding), None for audio or a file
    whose picture can't be read (the list shows the item without one)."""
    picture: Image.Image | None
    try:
        if kind is MediaKind.IMAGE:
            picture = load_image(path)
        elif kind is MediaKind.VIDEO:
            picture = _first_frame(path)
        else:
            return None
    except (OSError, ValueError, IndexError, av.FFmpegError, RenderError):
        # A preview is never worth failing an add: the list shows the item without one.
        return None
    if picture is None:
        return None
    picture.thumbnail((THUMB_EDGE, THUMB_EDGE))
    out = io.BytesIO()
    picture.save(out, format="PNG")
    return out.getvalue()


def _first_frame(path: Path) -> Image.Image | None:
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        stream.codec_context.thread_count = 1
        for frame in container.decode(stream):
            return upright(frame.to_image().convert("RGB"), display_rotation(stream, frame))
    return None
