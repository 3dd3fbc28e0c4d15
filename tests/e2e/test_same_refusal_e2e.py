"""One core for every front end: the same input gets the same refusal from `/video` (through
the fake Discord, the real bot) and from `seedance-bot generate` (a subprocess), because both
go through `VideoService.make`."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.e2e.test_discord_e2e import FAST, running
from tests.fakes.discord.server import FakeDiscord
from tests.media_factory import make_audio, make_image
from tests.test_cli import run_cli

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(240)]


def problems_of(text: str) -> list[str]:
    """The problems' sentences, without the subject each front end names its way
    ("file1 (tiny.png)" in Discord, "tiny.png" at the command line)."""
    lines = [ln.strip().lstrip("•-").strip() for ln in text.splitlines()]
    out = []
    for line in lines:
        match = re.match(r"^\*{0,2}(.+?)\*{0,2}: (.+)$", line)
        if match and not line.startswith(("seedance-bot", "**That request")):
            out.append(match.group(2))
    return sorted(out)


async def test_video_and_generate_refuse_the_same_input_the_same_way(tmp_path: Path) -> None:
    tiny = make_image(tmp_path / "tiny.png", 120, 120)
    song = make_audio(tmp_path / "song.wav", seconds=20)
    prompt = "@image1 sings @audio1 with @video2"
    cli = run_cli("generate", prompt, "--image", str(tiny), "--audio", str(song),
                  "--duration", "4", "--resolution", "480p", "--out", "x.mp4", cwd=tmp_path)
    assert cli.returncode == 2, cli.stderr
    async with FakeDiscord() as fake, running(tmp_path, fake):
        inter = await fake.slash("video", {"prompt": prompt, **FAST},
                                 attachments=[("tiny.png", tiny.read_bytes(), "image/png"),
                                              ("song.wav", song.read_bytes(), "audio/wav")])
        reply = await fake.wait_for(
            lambda: next((m for m in inter.followups if m.ephemeral), None), timeout=60,
            what="the private problem list")
    from_discord = problems_of(str(reply.content))
    from_cli = problems_of(cli.stderr)
    assert len(from_cli) == 3, cli.stderr  # the image, the song, @video2
    assert from_discord == from_cli
