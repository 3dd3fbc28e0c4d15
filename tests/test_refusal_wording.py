"""Refusals read as sentences: right articles and plurals, one unit for sizes, and one problem per
mistake (a refused file does not also make its placeholder "point at no file")."""

from __future__ import annotations

from pathlib import Path

import pytest

from bot.errors import InvalidInput
from bot.intake import MediaInput, RequestOptions, prepare
from bot.models import MediaKind, SourceKind
from bot.providers.base import Capabilities, MediaLimits
from bot.words import a, kind_count, size
from tests.media_factory import make_audio, make_image

CAPS = Capabilities(provider="test", model="m", accepts={k: frozenset(SourceKind)
                                                         for k in MediaKind})


async def problems(tmp: Path, inputs: list[MediaInput], prompt: str,
                   caps: Capabilities = CAPS) -> list[str]:
    try:
        await prepare(inputs, RequestOptions(prompt=prompt), caps, cache_dir=tmp / "cache")
    except InvalidInput as exc:
        return [str(p) for p in exc.problems]
    return []


async def test_a_refused_file_is_one_problem_not_two(tmp_path: Path) -> None:
    """A song too long used to add "@audio1 points at no file" on top of its own problem."""
    img = make_image(tmp_path / "cat.png")
    long_song = make_audio(tmp_path / "song.wav", seconds=20)
    junk = tmp_path / "clip.mp4"
    junk.write_text("not a video")
    found = await problems(tmp_path, [MediaInput(str(img), name="cat.png"),
                                      MediaInput(str(long_song), name="song.wav"),
                                      MediaInput(str(junk), name="clip.mp4")],
                           "@image1 dances in @video1 to @audio1")
    assert any(p.startswith("song.wav") for p in found)
    assert any(p.startswith("clip.mp4") for p in found)
    assert not any("points at no file" in p for p in found), found


async def test_a_placeholder_beyond_every_file_is_still_reported(tmp_path: Path) -> None:
    img = make_image(tmp_path / "cat.png")
    found = await problems(tmp_path, [MediaInput(str(img), name="cat.png")],
                           "@image1 listens to @audio1")
    assert ("prompt: @audio1 points at no file: there are no audio clips; number them from "
            "@audio1 in the order you attached them.") in found


async def test_counts_read_as_words(tmp_path: Path) -> None:
    images = [make_image(tmp_path / f"c{i}.png") for i in range(2)]
    found = await problems(tmp_path, [MediaInput(str(p), name=p.name) for p in images],
                           "@image3 and @image1")
    assert any("there are 2 images" in p for p in found), found
    found = await problems(tmp_path, [MediaInput(str(images[0]), name="c0.png")], "@image2")
    assert any("there is 1 image;" in p for p in found), found


async def test_a_gateway_that_takes_urls_only_says_an_image(tmp_path: Path) -> None:
    caps = Capabilities(provider="hiapi", model="m",
                        accepts={k: frozenset({SourceKind.URL}) for k in MediaKind})
    img = make_image(tmp_path / "cat.png")
    found = await problems(tmp_path, [MediaInput(str(img), name="cat.png")], "a cat", caps)
    assert any("hiapi only takes an image as a public https URL" in p for p in found), found
    assert not any(" a image" in p or " a audio" in p for p in found)


async def test_sizes_use_one_unit(tmp_path: Path) -> None:
    img = make_image(tmp_path / "cat.png", 2000, 2000, fmt="BMP")
    caps = Capabilities(provider="test", model="m",
                        accepts={k: frozenset(SourceKind) for k in MediaKind},
                        limits=MediaLimits(image_max_bytes=1024 * 1024))
    found = await problems(tmp_path, [MediaInput(str(img), name="cat.bmp")], "a cat", caps)
    assert any("is 11 MiB; images must be under 1 MiB" in p for p in found), found
    assert not any(" MB" in p for p in found)


@pytest.mark.parametrize(("word", "expected"), [
    ("image", "an image"), ("video", "a video"), ("audio clip", "an audio clip"),
    ("MP4 video", "an MP4 video"), ("PNG image", "a PNG image"), ("SVG file", "an SVG file"),
])
def test_articles(word: str, expected: str) -> None:
    assert a(word) == expected


def test_counts_and_sizes() -> None:
    assert [kind_count(n, "audio") for n in (0, 1, 2)] == [
        "no audio clips", "1 audio clip", "2 audio clips"]
    assert size(30 * 1024 * 1024) == "30 MiB" and size(1536 * 1024) == "1.5 MiB"
    assert size(1000) == "1,000 bytes"
