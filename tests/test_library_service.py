"""The server library's use cases (bot/service/library.py, library_use.py) against a real store,
engine and the embedded renderer or the fake Anyfast: names and limits refused with reasons,
files checked like /video inputs, `@name` numbered after the attachments and rewritten to the
placeholders the gateway documents, moderation, who may remove, assets registered once per
server, a real face refused at `add`, and a queued job that keeps its copy."""

from __future__ import annotations

import io
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from PIL import Image
from PIL.PngImagePlugin import PngInfo

from bot.engine import JobState
from bot.errors import InvalidInput
from bot.guild import ReviewMode
from bot.intake import MediaInput
from bot.library_links import library_token, library_url
from bot.media.thumbs import thumbnail
from bot.models import MediaKind, Mode, Role, SourceKind
from bot.service import NotAllowed, NothingThere, Requester, ReviewUnavailable
from bot.service.library import LibraryRefused
from bot.service.library_use import LibraryNotUsable
from bot.webhooks import CallbackReceiver
from tests.fakes.anyfast import REAL_PERSON_MARKER, FakeAnyfast
from tests.fakes.common import Recorded
from tests.media_factory import make_audio, make_image, make_video
from tests.test_service import ADMIN, GUILD, MEMBER, World, build, running_world, text

OTHER = Requester("3", GUILD, "10")
MOD = Requester("4", GUILD, "10", moderator=True)


@pytest.fixture
async def world(data_dir: Path) -> AsyncIterator[World]:
    async with running_world(data_dir) as w:
        yield w


def image(tmp: Path, name: str = "hero.png", color: tuple[int, int, int] = (200, 40, 40)
          ) -> Path:
    return make_image(tmp / name, 800, 450, color=color)


async def add(world: World, name: str, path: Path, who: Requester = MEMBER) -> object:
    return await world.services.library.add(who, name, str(path), filename=path.name)


# ---- adding ---------------------------------------------------------------------------------
async def test_names_are_one_word_never_a_placeholder_and_unique_per_server(
        world: World, tmp_path: Path) -> None:
    hero = image(tmp_path)
    refused = {
        "two words": "not a single word",
        "image1": "looks like the `@image1`",
        "Video2x": "looks like the `@image1`",
        "audio": "looks like the `@image1`",
        "everyone": "Discord mention",
        "9lives": "starting with a letter",
        "x": "2–32 characters",
    }
    for name, why in refused.items():
        with pytest.raises(LibraryRefused, match=why):
            await add(world, name, hero)
    await add(world, "Hero", hero)
    with pytest.raises(LibraryRefused, match="has an item called `HERO` already"):
        await add(world, "HERO", hero, OTHER)
    assert [i.name for i in (await world.services.library.shelf(MEMBER)).items] == ["Hero"]


async def test_files_are_checked_like_video_inputs(world: World, tmp_path: Path) -> None:
    liar = tmp_path / "cat.png"
    liar.write_bytes(b"a text file pretending to be a picture")
    with pytest.raises(InvalidInput, match="not an image, video or audio"):
        await add(world, "cat", liar)
    tiny = make_image(tmp_path / "tiny.png", 120, 120)
    with pytest.raises(InvalidInput, match="300–6000 px"):
        await add(world, "tiny", tiny)
    assert (await world.services.library.shelf(MEMBER)).items == []


async def test_limits_are_refused_with_the_numbers(data_dir: Path, tmp_path: Path) -> None:
    async with httpx.AsyncClient() as http:
        w = await build(data_dir, http, seedance_library_max_items=2,
                        seedance_library_max_bytes=30_000)
        try:
            await add(w, "red", image(tmp_path))
            with pytest.raises(LibraryRefused,
                               match=r"past its 30,000 bytes \([\d,]+ bytes are used\)"):
                await add(w, "noise", make_video(tmp_path / "clip.mp4", seconds=3.0))
            await add(w, "green", image(tmp_path, "g.png", (10, 200, 10)))
            with pytest.raises(LibraryRefused, match="full: 2 of 2 items"):
                await add(w, "blue", image(tmp_path, "b.png", (10, 10, 200)))
        finally:
            await w.engine.stop()
            await w.store.close()


async def test_an_item_in_a_reviewing_server_waits_for_a_moderator(world: World,
                                                                   tmp_path: Path) -> None:
    await world.store.update_guild_settings(
        GUILD, lambda s: s.changed(moderation=ReviewMode.PROMPTS))
    with pytest.raises(ReviewUnavailable):  # fails closed without a moderators' channel
        await add(world, "hero", image(tmp_path))
    await world.store.update_guild_settings(GUILD, lambda s: s.changed(mod_channel="77"))
    added = await world.services.library.add(MEMBER, "hero", str(image(tmp_path)),
                                             filename="hero.png")
    assert added.item.pending and added.mod_channel == "77"
    with pytest.raises(LibraryNotUsable, match="waits for a moderator's approval"):
        await world.services.videos.make(MEMBER, [], text("@hero waves"))
    with pytest.raises(NotAllowed, match="Only moderators"):
        await world.services.library.approve(MEMBER, "hero")
    await world.services.library.approve(MOD, "hero")
    with pytest.raises(NothingThere, match="not waiting"):
        await world.services.library.approve(MOD, "hero")
    made = await world.services.videos.make(MEMBER, [], text("@hero waves"))
    assert made.job.state is JobState.AWAITING_APPROVAL  # the prompt is reviewed as ever
    await world.services.library.add(MEMBER, "villain", str(image(tmp_path, "v.png")),
                                     filename="v.png")
    await world.services.library.reject(MOD, "villain")
    assert await world.store.library_item(GUILD, "villain") is None


# ---- using ----------------------------------------------------------------------------------
async def test_at_name_comes_after_the_attachments_and_the_job_keeps_its_copy(
        world: World, tmp_path: Path) -> None:
    await add(world, "hero", image(tmp_path))
    await add(world, "theme", make_audio(tmp_path / "theme.mp3", seconds=3.0, fmt="mp3"))
    attached = MediaInput(str(image(tmp_path, "castle.png", (10, 10, 200))), name="file1")
    made = await world.services.videos.make(
        MEMBER, [attached], text("@Hero enters @image1 to @theme, then @hero bows"))
    request = made.job.request
    assert request.prompt == "@image2 enters @image1 to @audio1, then @image2 bows"
    assert request.mode is Mode.REFERENCE
    assert [(r.name, r.role) for r in request.references] == [
        ("file1", Role.REFERENCE_IMAGE), ("library: hero", Role.REFERENCE_IMAGE),
        ("library: theme", Role.REFERENCE_AUDIO)]
    hero = request.references[1]
    item = await world.store.library_item(GUILD, "hero")
    assert item is not None and item.uses == 1
    assert hero.source_kind is SourceKind.PATH and hero.local_path
    copy = Path(hero.local_path)
    assert copy.read_bytes() == await world.store.library_blob(item.blob_id)

    # Removed while the job waits: the job keeps its bytes and is made all the same.
    await world.services.library.remove(MEMBER, "hero")
    assert await world.store.library_blob(item.blob_id) is not None
    copy.unlink()  # as on another host: the runner writes it again from the database
    await world.engine.start()
    done = await world.engine.wait(made.job.id)
    assert done.state is JobState.DELIVERED
    await world.engine.cleanup()  # retention's pass drops the bytes nobody needs now
    assert await world.store.library_blob(item.blob_id) is None


async def test_an_unknown_name_is_refused_with_the_near_ones(world: World,
                                                             tmp_path: Path) -> None:
    await add(world, "hero", image(tmp_path))
    await add(world, "heroine", image(tmp_path, "h2.png"))
    with pytest.raises(LibraryNotUsable, match=r"`@hedro` is not .*did you mean @hero"):
        await world.services.videos.make(MEMBER, [], text("@hedro runs"))
    await world.nothing_written()
    # Mentions and addresses are not names.
    made = await world.services.videos.make(MEMBER, [], text("mail me@home.org, <@123> hi"))
    assert made.job.request.prompt == "mail me@home.org, <@123> hi"


async def test_only_the_owner_or_manage_server_removes(world: World, tmp_path: Path) -> None:
    await add(world, "hero", image(tmp_path))
    await add(world, "hat", image(tmp_path, "hat.png"))
    with pytest.raises(NotAllowed, match="Only the member who added `hero`"):
        await world.services.library.remove(OTHER, "hero")
    with pytest.raises(NotAllowed):
        await world.services.library.remove(MOD, "hero")  # Manage Messages is not enough
    await world.services.library.remove(MEMBER, "@HERO")
    await world.services.library.remove(ADMIN, "hat")
    with pytest.raises(NothingThere, match="no item called `hero`"):
        await world.services.library.remove(MEMBER, "hero")


async def test_forget_me_deletes_a_members_items(world: World, tmp_path: Path) -> None:
    await add(world, "hero", image(tmp_path))
    await add(world, "hat", image(tmp_path, "hat.png"), OTHER)
    await world.services.privacy.forget(MEMBER.user_id, MEMBER)
    assert [i.name for i in (await world.services.library.shelf(OTHER)).items] == ["hat"]


# ---- a gateway with assets ------------------------------------------------------------------
def face(tmp: Path) -> Path:
    """An image the fake's asset review takes for a real person."""
    path = tmp / "selfie.png"
    info = PngInfo()
    info.add_text("Comment", REAL_PERSON_MARKER.decode())
    Image.new("RGB", (800, 450), (220, 180, 160)).save(path, format="PNG", pnginfo=info)
    return path


def calls(anyfast: FakeAnyfast, what: str) -> list[Recorded]:
    return [r for r in anyfast.received("POST") if r.path == f"/volc/asset/{what}"]


async def test_anyfast_registers_each_item_once_and_refuses_a_face_at_add(
        data_dir: Path, tmp_path: Path) -> None:
    async with FakeAnyfast() as anyfast, httpx.AsyncClient() as http:
        w = await build(data_dir, http, anyfast_api_key=anyfast.api_key,
                        anyfast_base_url=anyfast.base_url, seedance_provider="anyfast",
                        seedance_model="seedance", seedance_private_hosts="127.0.0.1")
        try:
            url = anyfast.add_file("hero.png", image(tmp_path).read_bytes())
            added = await w.services.library.add(MEMBER, "hero", url, filename="hero.png")
            assert added.registered_on == "anyfast"
            for _ in range(2):
                made = await w.services.videos.make(MEMBER, [], text("@hero waves"))
                assert made.job.request.references[0].source.startswith("asset://asset-")
            assert len(calls(anyfast, "CreateAsset")) == 1
            clip = anyfast.add_file("clip.mp4", make_video(tmp_path / "c.mp4").read_bytes())
            await w.services.library.add(MEMBER, "street", clip, filename="clip.mp4")
            assert len(calls(anyfast, "CreateAssetGroup")) == 1
            assert calls(anyfast, "CreateAsset")[-1].body[
                "AssetType"] == "Video"

            selfie = anyfast.add_file("selfie.png", face(tmp_path).read_bytes())
            with pytest.raises(LibraryRefused, match="may show a real person"):
                await w.services.library.add(MEMBER, "me", selfie, filename="selfie.png")
            assert await w.store.library_item(GUILD, "me") is None
            assert (await w.store.library_usage(GUILD))[0] == 2

            # Seedance 2.0 Mini keeps no assets: an image goes as a data URI, a video (links
            # only there) is refused with the fix.
            mini = text("@hero waves", model="seedance-2.0-mini")
            made = await w.services.videos.make(MEMBER, [], mini)
            assert made.job.request.references[0].source_kind is SourceKind.PATH
            with pytest.raises(InvalidInput, match="Attach the file to `/video` instead"):
                await w.services.videos.make(MEMBER, [], text("@street", model="seedance-2.0-mini"))

            # Added while the server used another gateway: not registered on Anyfast, so a
            # clip can't go there; the refusal says how to register it.
            await w.store.update_guild_settings(GUILD, lambda s: s.changed(provider="local"))
            added = await w.services.library.add(MEMBER, "alley", clip, filename="alley.mp4")
            assert added.registered_on is None
            assert len(calls(anyfast, "CreateAsset")) == 3  # hero, street, the refused face
            with pytest.raises(InvalidInput, match="remove it and add it again"):
                await w.services.videos.make(MEMBER, [], text("@alley", provider="anyfast",
                                                              model="seedance"))
        finally:
            await w.engine.stop()
            await w.store.close()


def test_previews_are_small_pictures_of_images_and_first_frames_of_clips(tmp_path: Path
                                                                          ) -> None:
    wide = thumbnail(make_image(tmp_path / "wide.png", 1600, 900), MediaKind.IMAGE)
    assert wide is not None and Image.open(io.BytesIO(wide)).size == (160, 90)
    clip = thumbnail(make_video(tmp_path / "clip.mp4", seconds=2.0), MediaKind.VIDEO)
    assert clip is not None and max(Image.open(io.BytesIO(clip)).size) == 160
    assert thumbnail(make_audio(tmp_path / "a.wav"), MediaKind.AUDIO) is None
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"not a video")
    assert thumbnail(broken, MediaKind.VIDEO) is None  # listed without a preview


# ---- a gateway that takes files only as links -----------------------------------------------
async def test_a_link_only_gateway_gets_a_link_the_bot_serves(data_dir: Path,
                                                              tmp_path: Path) -> None:
    """HiAPI takes images only as URLs: with SEEDANCE_WEBHOOK_BASE_URL the request carries a
    link to this bot's receiver, which serves the bytes from the database to anyone holding
    the link (any process: the bytes are rows); without it the request is refused with the
    fix."""
    async with httpx.AsyncClient() as http:
        w = await build(data_dir, http, hiapi_api_key="hiapi-key", seedance_provider="hiapi",
                        seedance_webhook_base_url="https://bot.example.org/hooks",
                        seedance_webhook_secret="s" * 32)
        receiver = CallbackReceiver({}, _no_callbacks, base_url="http://placeholder",
                                    secret="s" * 32, host="127.0.0.1", port=0,
                                    library=w.store.library_blob)
        await receiver.start()
        try:
            await add(w, "hero", image(tmp_path))
            made = await w.services.videos.make(MEMBER, [], text("@hero waves", duration=5))
            ref = made.job.request.references[0]
            item = await w.store.library_item(GUILD, "hero")
            assert item is not None
            assert ref.source == library_url("https://bot.example.org/hooks", "s" * 32,
                                             item.blob_id, "hero.png")
            local = ref.source.replace("https://bot.example.org/hooks",
                                       f"http://127.0.0.1:{receiver.bound_port}")
            served = await http.get(local)
            assert served.status_code == 200 and served.headers["content-type"] == "image/png"
            assert served.content == await w.store.library_blob(item.blob_id)
            forged = local.replace(library_token("s" * 32, item.blob_id), "0" * 32)
            assert (await http.get(forged)).status_code == 404
        finally:
            await receiver.stop()
            await w.engine.stop()
            await w.store.close()

    async with httpx.AsyncClient() as http:  # the same server, no public receiver
        w = await build(data_dir, http, hiapi_api_key="hiapi-key", seedance_provider="hiapi")
        try:
            with pytest.raises(InvalidInput, match="takes images only as public links"):
                await w.services.videos.make(MEMBER, [], text("@hero waves", duration=5))
        finally:
            await w.engine.stop()
            await w.store.close()


async def _no_callbacks(job_id: str, state: object) -> None:
    raise AssertionError("no callback expected")
