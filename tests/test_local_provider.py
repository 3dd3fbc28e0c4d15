"""The embedded local provider and its renderer, measured from the real MP4s they write.

Renders stay at 480p, 4 s so the whole file runs in seconds on a shared two-core machine.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import unquote, urlparse

import av
import numpy as np
import pytest
from PIL import Image

from bot.config import Settings
from bot.errors import (
    AudioModerationError,
    ContentRejectedError,
    GatewayError,
    RealFaceError,
    TaskFailedError,
    TaskNotFoundError,
)
from bot.intake import MediaInput, RequestOptions, prepare
from bot.media.probe import probe_file
from bot.media.render import fit_cover, render_video
from bot.models import (
    FIXED_RATIOS,
    SIZE_TABLE,
    GenerationRequest,
    MediaKind,
    Mode,
    Ratio,
    Reference,
    RequestedMode,
    Resolution,
    Role,
    SourceKind,
    TaskState,
    TaskStatus,
)
from bot.providers import create_provider
from bot.providers.base import Capabilities, Provider, unreachable_reason
from bot.providers.local import LocalProvider, default_parallel_renders, task_id_for
from tests.media_factory import make_audio, make_image, make_video

RED = (220, 30, 30)
BLUE = (20, 40, 220)
GREEN = (30, 200, 60)


# -- helpers ------------------------------------------------------------------------------------


def ref(path: Path, role: Role) -> Reference:
    facts = probe_file(path)
    return Reference(kind=facts.kind, source=str(path), name=path.name, role=role, facts=facts)


def request(**kw: object) -> GenerationRequest:
    base: dict[str, object] = {
        "prompt": "a paper boat drifting down a rainy street",
        "duration": 4,
        "resolution": Resolution.P480,
        "ratio": Ratio.R16_9,
        "audio": False,
    }
    base.update(kw)
    return GenerationRequest.model_validate(base)


def decoded(path: Path) -> Iterator[np.ndarray]:
    with av.open(str(path)) as c:
        for frame in c.decode(video=0):
            yield frame.to_ndarray(format="rgb24")


def first_and_last(path: Path) -> tuple[np.ndarray, np.ndarray, int]:
    first: np.ndarray | None = None
    last: np.ndarray | None = None
    count = 0
    for arr in decoded(path):
        if first is None:
            first = arr
        last = arr
        count += 1
    assert first is not None and last is not None
    return first, last, count


def mad(a: np.ndarray, b: np.ndarray) -> float:
    """Mean absolute difference on 0–255."""
    return float(np.abs(a.astype(np.int16) - b.astype(np.int16)).mean())


def fitted(path: Path, size: tuple[int, int]) -> np.ndarray:
    with Image.open(path) as img:
        return np.asarray(fit_cover(img, size))


def file_path(uri: str) -> Path:
    parsed = urlparse(uri)
    assert parsed.scheme == "file"
    return Path(unquote(parsed.path))


async def until_done(provider: Provider, task_id: str) -> list[TaskState]:
    """Poll through the protocol until the task ends; returns every state seen."""
    states: list[TaskState] = []
    for _ in range(20_000):
        state = await provider.poll(task_id)
        states.append(state)
        if state.done:
            return states
        await asyncio.sleep(0.01)
    raise AssertionError(f"task {task_id} never finished: last state {states[-1]}")


@pytest.fixture
def settings(data_dir: Path) -> Settings:
    return Settings(seedance_data_dir=data_dir)


# -- renderer -----------------------------------------------------------------------------------


def test_text_only_portrait_with_audio(tmp_path: Path) -> None:
    out = tmp_path / "t.mp4"
    render_video(request(ratio=Ratio.R9_16, audio=True), out, seed=7)
    with av.open(str(out)) as c:
        video = c.streams.video[0]
        audio = c.streams.audio
        assert (video.codec_context.width, video.codec_context.height) == (496, 864)
        assert video.codec_context.name == "h264"
        assert video.average_rate == 24
        assert c.duration is not None and abs(c.duration / 1_000_000 - 4.0) < 0.05
        assert len(audio) == 1 and audio[0].codec_context.name == "aac"
        a_duration, a_base = audio[0].duration, audio[0].time_base
        assert a_duration is not None and a_base is not None
        assert abs(float(a_duration * a_base) - 4.0) < 0.05
        frames = [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]
    assert len(frames) == 96
    # The gradient moves and the text patch is drawn: frames differ and are not flat.
    assert mad(frames[0], frames[-1]) > 2
    assert frames[0].std() > 10


def test_first_and_last_frame_without_audio(tmp_path: Path) -> None:
    first = make_image(tmp_path / "first.png", 800, 600, color=RED)
    last = make_image(tmp_path / "last.png", 1024, 600, color=BLUE)
    req = request(mode=Mode.FIRST_LAST_FRAME, references=[
        ref(first, Role.FIRST_FRAME), ref(last, Role.LAST_FRAME)])
    out = tmp_path / "fl.mp4"
    png = tmp_path / "fl.png"
    render_video(req, out, seed=1, last_frame_dest=png)
    with av.open(str(out)) as c:
        assert len(c.streams.audio) == 0
    head, tail, count = first_and_last(out)
    size = (864, 496)
    assert count == 96 and head.shape == (496, 864, 3)
    assert mad(head, fitted(first, size)) < 12
    assert mad(tail, fitted(last, size)) < 12
    assert mad(head, fitted(last, size)) > 100  # the check above can tell the two apart
    with Image.open(png) as img:
        assert img.size == size
        assert mad(np.asarray(img.convert("RGB")), fitted(last, size)) < 12


def test_adaptive_follows_first_image_ratio(tmp_path: Path) -> None:
    portrait = make_image(tmp_path / "p.png", 600, 800, color=GREEN)
    req = request(mode=Mode.FIRST_FRAME, ratio=Ratio.ADAPTIVE,
                  references=[ref(portrait, Role.FIRST_FRAME)])
    out = tmp_path / "a.mp4"
    render_video(req, out, seed=3)
    head, _, count = first_and_last(out)
    assert head.shape == (752, 560, 3)  # 3:4 at 480p, from the table
    assert count == 96
    assert mad(head, fitted(portrait, (560, 752))) < 12


def test_reference_video_frames_appear(tmp_path: Path) -> None:
    image = make_image(tmp_path / "r.png", 640, 480, color=RED)
    clip = make_video(tmp_path / "v.mp4", 640, 480, seconds=2.0, color=(30, 90, 200))
    req = request(mode=Mode.REFERENCE, references=[
        ref(image, Role.REFERENCE_IMAGE), ref(clip, Role.REFERENCE_VIDEO)])
    out = tmp_path / "ref.mp4"
    render_video(req, out, seed=5)
    means = [arr.reshape(-1, 3).mean(axis=0) for arr in decoded(out)]
    assert len(means) == 96
    near = [float(np.abs(m - np.array(RED)).mean()) for m in means]
    assert min(near) < 12  # the reference image is on screen
    # The video is mostly (30, 90, 200) with a moving white bar: it shows, and it moves.
    blue = [i for i, m in enumerate(means) if np.abs(m - np.array((30, 90, 200))).mean() < 20]
    assert len(blue) > 24
    assert max(blue) == 95  # the montage ends on the reference video


def test_same_seed_same_pixels_other_seed_differs(tmp_path: Path) -> None:
    req = request(prompt="neon koi fish circling a lantern")
    paths = {name: tmp_path / f"{name}.mp4" for name in ("a", "b", "c")}
    render_video(req, paths["a"], seed=11)
    render_video(req, paths["b"], seed=11)
    render_video(req, paths["c"], seed=12)
    same = list(zip(decoded(paths["a"]), decoded(paths["b"]), strict=True))
    assert len(same) == 96
    assert all(np.array_equal(x, y) for x, y in same)
    assert any(mad(x, y) > 5 for x, y in zip(decoded(paths["a"]), decoded(paths["c"]),
                                            strict=True))


def test_repeated_renders_are_byte_identical(tmp_path: Path) -> None:
    """Same request and seed, encoded four times in one process: the same MP4, byte for byte.

    This prompt at 480p made x264 (mbtree on, AVX-512) give a different file almost every time.
    """
    req = request(prompt="neon koi fish circling a lantern")
    outputs = []
    for i in range(4):
        out = tmp_path / f"{i}.mp4"
        render_video(req, out, seed=11)
        outputs.append(out.read_bytes())
    assert all(data == outputs[0] for data in outputs[1:])


def power_at(path: Path, hz: float) -> float:
    """Spectral magnitude of the left channel at `hz`, over 0.5–2.5 s."""
    with av.open(str(path)) as c:
        stream = c.streams.audio[0]
        rate = stream.codec_context.sample_rate
        left = np.concatenate([f.to_ndarray()[0] for f in c.decode(stream)])
    window = left[rate // 2 : rate * 5 // 2]
    spectrum = np.abs(np.fft.rfft(window * np.hanning(len(window))))
    freqs = np.fft.rfftfreq(len(window), 1 / rate)
    return float(spectrum[np.abs(freqs - hz) < 3].max())


def test_reference_audio_is_heard(tmp_path: Path) -> None:
    clip = make_audio(tmp_path / "tone.wav", seconds=3.0)  # 440 Hz
    plain = tmp_path / "plain.mp4"
    heard = tmp_path / "heard.mp4"
    render_video(request(audio=True), plain, seed=21)
    render_video(request(audio=True, mode=Mode.REFERENCE,
                         references=[ref(clip, Role.REFERENCE_AUDIO)]), heard, seed=21)
    assert power_at(heard, 440) > 3 * power_at(plain, 440)
    with av.open(str(heard)) as c:
        assert c.duration is not None and abs(c.duration / 1_000_000 - 4.0) < 0.05


# -- provider protocol -------------------------------------------------------------------------


def test_build_and_capabilities(settings: Settings, tmp_path: Path) -> None:
    provider = create_provider("local", settings)
    assert isinstance(provider, LocalProvider) and isinstance(provider, Provider)
    caps = provider.capabilities()
    assert caps.provider == "local" and caps.model == provider.default_model == "seedance-local"
    assert caps.resolutions == frozenset(Resolution)
    assert min(caps.durations) == 4 and max(caps.durations) == 15
    assert caps.results_per_task == 4 and not caps.webhooks
    assert all(SourceKind.PATH in caps.accepts[k] for k in MediaKind)
    image = make_image(tmp_path / "x.png")
    assert unreachable_reason(ref(image, Role.FIRST_FRAME), caps) is None
    assert provider.verify_callback({}, b"{}") is False
    with pytest.raises(GatewayError):
        provider.parse_callback({}, b"{}")


def test_one_render_per_usable_core(monkeypatch: pytest.MonkeyPatch) -> None:
    # Each render is a single encoder thread, so the cores this process may use set the count.
    monkeypatch.setattr("os.sched_getaffinity", lambda pid: {0, 1}, raising=False)
    assert default_parallel_renders() == 2
    monkeypatch.setattr("os.sched_getaffinity", lambda pid: {0, 1, 2, 3, 4, 5}, raising=False)
    assert default_parallel_renders() == 6

async def test_submit_is_idempotent_and_polls_to_success(settings: Settings) -> None:
    provider = LocalProvider(settings)
    req = request(audio=True, return_last_frame=True)
    try:
        sub = await provider.submit(req, idempotency_key="job-1")
        again = await provider.submit(req, idempotency_key="job-1")
        assert sub.task_id == again.task_id == "local-job-1"
        assert sub.state is not None and sub.state.status is TaskStatus.PENDING
        tasks = settings.data_dir / "local_tasks"
        assert [p.name for p in tasks.glob("*.json")] == ["local-job-1.json"]
        states = await until_done(provider, sub.task_id)
    finally:
        await provider.aclose()
    final = states[-1]
    assert final.status is TaskStatus.SUCCEEDED and final.result is not None
    progress = [s.progress or 0.0 for s in states]
    assert progress == sorted(progress) and progress[-1] == 100.0
    assert all(s.status in (TaskStatus.PENDING, TaskStatus.RUNNING) for s in states[:-1])
    result = final.result
    assert result.cost == 0.0 and isinstance(result.seed, int)
    assert json.loads((tasks / "local-job-1.json").read_text())["seed"] == result.seed
    video = file_path(result.video_urls[0])
    assert video == tasks / "local-job-1.mp4"
    assert result.last_frame_url is not None and file_path(result.last_frame_url).is_file()
    with av.open(str(video)) as c:
        assert len(c.streams.audio) == 1
    assert not list(tasks.glob("*.part"))
    # The seed recorded for a random-seed task reproduces the video.
    again_out = settings.data_dir / "again.mp4"
    render_video(req, again_out, seed=result.seed)
    assert all(np.array_equal(x, y)
               for x, y in zip(decoded(video), decoded(again_out), strict=True))


async def test_unknown_task_is_not_found(settings: Settings) -> None:
    provider = LocalProvider(settings)
    for task_id in ("local-nope", "../../etc/passwd", "local-../x"):
        with pytest.raises(TaskNotFoundError):
            await provider.poll(task_id)
    with pytest.raises(TaskNotFoundError):
        await provider.cancel("local-nope")
    assert task_id_for("../evil") != "local-../evil"
    assert "/" not in task_id_for("../evil")


async def test_restart_mid_render_completes(settings: Settings) -> None:
    first = LocalProvider(settings)
    req = request(seed=99)
    sub = await first.submit(req, idempotency_key="crash")
    for _ in range(20_000):
        state = await first.poll(sub.task_id)
        if state.status is TaskStatus.RUNNING and (state.progress or 0) > 0:
            break
        assert not state.done
        await asyncio.sleep(0.005)
    await first.aclose()  # the process "dies": the spec remains, the output does not
    tasks = settings.data_dir / "local_tasks"
    assert (tasks / "local-crash.json").is_file()
    assert not (tasks / "local-crash.mp4").exists()
    assert not list(tasks.glob("*.part"))

    second = LocalProvider(settings)
    try:
        resumed = await second.poll(sub.task_id)
        assert not resumed.done
        states = await until_done(second, sub.task_id)
    finally:
        await second.aclose()
    assert states[-1].status is TaskStatus.SUCCEEDED and states[-1].result is not None
    assert states[-1].result.seed == 99
    _, _, count = first_and_last(file_path(states[-1].result.video_urls[0]))
    assert count == 96


@pytest.mark.parametrize(
    ("kind", "error"),
    [
        ("audio_moderation", AudioModerationError),
        ("real_face", RealFaceError),
        ("moderation", ContentRejectedError),
        ("task_failed", TaskFailedError),
    ],
)
async def test_failure_markers(settings: Settings, kind: str, error: type[GatewayError]) -> None:
    provider = LocalProvider(settings)
    try:
        sub = await provider.submit(request(prompt=f"a dog [local:fail:{kind}]", audio=True),
                                    idempotency_key=f"fail-{kind}")
        states = await until_done(provider, sub.task_id)
    finally:
        await provider.aclose()
    final = states[-1]
    assert final.status is TaskStatus.FAILED
    assert type(final.error) is error and final.error.kind == kind
    assert final.error.provider == "local"
    assert not (settings.data_dir / "local_tasks" / f"{sub.task_id}.mp4").exists()


async def test_audio_moderation_marker_passes_without_audio(settings: Settings) -> None:
    provider = LocalProvider(settings)
    try:
        sub = await provider.submit(
            request(prompt="a dog [local:fail:audio_moderation]", audio=False),
            idempotency_key="no-audio")
        states = await until_done(provider, sub.task_id)
    finally:
        await provider.aclose()
    assert states[-1].status is TaskStatus.SUCCEEDED


async def test_delay_holds_running_until_deadline(data_dir: Path) -> None:
    provider = LocalProvider(Settings(seedance_data_dir=data_dir, seedance_local_delay=0.3))
    try:
        sub = await provider.submit(request(prompt="[local:fail:task_failed]"),
                                    idempotency_key="slow")
        states = await until_done(provider, sub.task_id)
    finally:
        await provider.aclose()
    spec = json.loads((data_dir / "local_tasks" / "local-slow.json").read_text())
    assert spec["ready_at"] == pytest.approx(spec["submitted_at"] + 0.3)
    assert states[0].status is TaskStatus.RUNNING
    assert states[-1].status is TaskStatus.FAILED


async def test_finished_video_waits_for_the_stored_deadline(data_dir: Path) -> None:
    now = [1_000_000.0]
    slow = Settings(seedance_data_dir=data_dir, seedance_local_delay=60)
    provider = LocalProvider(slow, clock=lambda: now[0])
    video = data_dir / "local_tasks" / "local-wait.mp4"
    try:
        sub = await provider.submit(request(), idempotency_key="wait")
        for _ in range(20_000):  # the render runs to the end; the clock does not move
            state = await provider.poll(sub.task_id)
            if video.exists():
                break
            await asyncio.sleep(0.01)
        state = await provider.poll(sub.task_id)
        assert video.exists() and state.status is TaskStatus.RUNNING
        assert state.progress is not None and state.progress < 100
        # A restarted process with no delay configured still honours the stored deadline.
        restarted = LocalProvider(Settings(seedance_data_dir=data_dir), clock=lambda: now[0])
        assert (await restarted.poll(sub.task_id)).status is TaskStatus.RUNNING
        now[0] += 60
        done = await restarted.poll(sub.task_id)
        assert done.status is TaskStatus.SUCCEEDED
    finally:
        await provider.aclose()


async def test_cancel_stops_the_render(settings: Settings) -> None:
    provider = LocalProvider(settings)
    sub = await provider.submit(request(), idempotency_key="stop")
    for _ in range(20_000):
        state = await provider.poll(sub.task_id)
        if (state.progress or 0) > 0:
            break
        await asyncio.sleep(0.005)
    assert await provider.cancel(sub.task_id) is True
    await provider.aclose()  # waits for the worker thread to notice
    state = await provider.poll(sub.task_id)
    assert state.status is TaskStatus.FAILED and isinstance(state.error, TaskFailedError)
    tasks = settings.data_dir / "local_tasks"
    assert not (tasks / "local-stop.mp4").exists()
    assert not list(tasks.glob("*.part"))
    # A new process does not resurrect a cancelled task.
    again = LocalProvider(settings)
    assert (await again.poll(sub.task_id)).status is TaskStatus.FAILED
    await again.aclose()


# -- portrait clips (phones store them landscape with a display rotation) -----------------------

YELLOW = (250, 200, 0)


def portrait_clip(tmp_path: Path, rotated: bool) -> Path:
    """A clip shown 720x1280 with a yellow band on top: stored so by a phone, or upright."""
    if rotated:
        return make_video(tmp_path / "phone.mp4", 1280, 720, seconds=2.5, rotation=90,
                          top_color=YELLOW)
    return make_video(tmp_path / "upright.mp4", 720, 1280, seconds=2.5, top_color=YELLOW)


async def extend(clip: Path, caps: Capabilities, resolution: Resolution | None = None,
                 duration: int | None = None, audio: bool | None = None) -> GenerationRequest:
    options = RequestOptions(prompt="continue", mode=RequestedMode.EXTEND,
                             resolution=resolution, duration=duration, audio=audio)
    return await prepare([MediaInput(str(clip), name=clip.name)], options, caps,
                         cache_dir=clip.parent / "cache")


@pytest.mark.parametrize("rotated", [True, False])
async def test_extending_a_portrait_clip_is_portrait(settings: Settings, tmp_path: Path,
                                                     rotated: bool) -> None:
    caps = LocalProvider(settings).capabilities()
    req = await extend(portrait_clip(tmp_path, rotated), caps)
    assert req.mode is Mode.EXTEND and req.ratio is Ratio.ADAPTIVE
    assert req.output_size() == SIZE_TABLE[Resolution.P720][Ratio.R9_16] == (720, 1280)
    # A gateway without `adaptive` gets the nearest fixed ratio to the clip, not 16:9.
    fixed = dataclasses.replace(caps, ratios=frozenset(FIXED_RATIOS))
    assert (await extend(portrait_clip(tmp_path, rotated), fixed)).ratio is Ratio.R9_16


async def test_local_provider_renders_a_rotated_clip_upright(settings: Settings,
                                                             tmp_path: Path) -> None:
    provider = LocalProvider(settings)
    req = await extend(portrait_clip(tmp_path, rotated=True), provider.capabilities(),
                       resolution=Resolution.P480, duration=4, audio=False)
    try:
        sub = await provider.submit(req, idempotency_key="phone-1")
        final = (await until_done(provider, sub.task_id))[-1]
    finally:
        await provider.aclose()
    assert final.status is TaskStatus.SUCCEEDED and final.result is not None
    video = file_path(final.result.video_urls[0])
    facts = probe_file(video)
    assert (facts.width, facts.height, facts.rotation) == (496, 864, 0)
    head, _, count = first_and_last(video)
    assert count == 96
    # The clip's frames were turned upright: its band is across the top, not down a side.
    assert mad(head[:40], np.full_like(head[:40], YELLOW)) < 16
    assert mad(head[400:460, :40], np.full_like(head[400:460, :40], YELLOW)) > 60
