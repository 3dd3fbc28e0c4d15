"""The CLI as the README promises: exit codes 0/1/2, messages, and the video it writes."""

from __future__ import annotations

import os
import shlex
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import av
import numpy as np
import pytest
from PIL import Image

from bot.cli import main
from tests.media_factory import make_image, make_video


def run_cli(
    *args: str | bytes, cwd: Path, env: dict[str, str] | None = None,
    module: str = "bot", timeout: float = 120,
) -> subprocess.CompletedProcess[str]:
    """`python -m bot ARGS` (or another launcher `module`) in a clean environment."""
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("SEEDANCE_")}
    full_env.update({"SEEDANCE_DATA_DIR": str(cwd / "data")}, **(env or {}))
    return subprocess.run([sys.executable, "-m", module, *args], cwd=cwd, env=full_env,
                          capture_output=True, text=True, timeout=timeout)


def measure(path: Path) -> dict[str, Any]:
    with av.open(str(path)) as c:
        v = c.streams.video[0]
        frames = [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]
        assert v.average_rate is not None and c.duration is not None
        return {"size": (v.width, v.height), "fps": float(v.average_rate),
                "duration": c.duration / 1e6, "frames": len(frames),
                "audio": len(c.streams.audio), "first": frames[0], "last": frames[-1],
                "codec": v.codec_context.name}


def test_text_to_video_with_no_configuration(tmp_path: Path) -> None:
    result = run_cli("generate", "a red fox running through snow", "--out", "fox.mp4",
                     cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    m = measure(tmp_path / "fox.mp4")
    assert m["codec"] == "h264" and m["size"] == (1280, 720) and m["audio"] == 1


def test_resolution_ratio_duration_and_no_audio(data_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "fox.mp4"
    code = main(["generate", "a red fox", "--out", str(out), "--resolution", "480p",
                 "--ratio", "9:16", "--duration", "4", "--no-audio"])
    assert code == 0
    m = measure(out)
    assert m["size"] == (496, 864)
    assert m["fps"] == 24.0 and m["frames"] == 96
    assert abs(float(m["duration"]) - 4.0) < 0.05
    assert m["audio"] == 0


def _scaled(path: Path, size: tuple[int, int]) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB").resize(size), dtype=np.int16)


def test_first_and_last_frames_match_the_images(data_dir: Path, tmp_path: Path) -> None:
    a = make_image(tmp_path / "a.png", 800, 450, color=(220, 30, 30))
    b = make_image(tmp_path / "b.png", 800, 450, color=(20, 40, 220))
    out, last = tmp_path / "morph.mp4", tmp_path / "last.png"
    code = main(["generate", "red becomes blue", "--first-frame", str(a), "--last-frame", str(b),
                 "--out", str(out), "--resolution", "480p", "--duration", "4",
                 "--last-frame-out", str(last)])
    assert code == 0
    m = measure(out)
    assert m["size"] == (864, 496)  # adaptive follows the 16:9 first image
    first = np.asarray(m["first"], dtype=np.int16)
    final = np.asarray(m["last"], dtype=np.int16)
    assert np.abs(first - _scaled(a, (864, 496))).mean() < 12
    assert np.abs(final - _scaled(b, (864, 496))).mean() < 12
    assert np.abs(first - _scaled(b, (864, 496))).mean() > 60  # they really differ
    assert Image.open(last).size == (864, 496)


def test_reference_mode_with_image_and_video(data_dir: Path, tmp_path: Path) -> None:
    img = make_image(tmp_path / "cat.png")
    vid = make_video(tmp_path / "clip.mp4", seconds=2.5)
    out = tmp_path / "ref.mp4"
    code = main(["generate", "@image1 walks into @video1", "--image", str(img),
                 "--video", str(vid), "--out", str(out), "--resolution", "480p",
                 "--duration", "4", "--ratio", "1:1"])
    assert code == 0
    assert measure(out)["size"] == (640, 640)


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--duration", "30"], "duration: 30 s is not available"),
        (["--first-frame", "missing.png"], "no such file"),
        (["--mode", "first_frame"], "first_frame needs exactly one image"),
        (["--resolution", "1080p", "--provider", "magnific"], "MAGNIFIC_API_KEY"),
        (["--seed", "-5"], "seed: -5 is out of range"),
    ],
)
def test_invalid_input_exits_2_and_writes_nothing(
    data_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str],
    needle: str,
) -> None:
    out = tmp_path / "never.mp4"
    code = main(["generate", "a fox", "--out", str(out), *args])
    err = capsys.readouterr().err
    assert code == 2, err
    assert needle in err
    assert not out.exists()


def test_usage_errors_exit_2(tmp_path: Path) -> None:
    result = run_cli("generate", "a fox", "--out", "x.mp4", "--ratio", "5:4", cwd=tmp_path)
    assert result.returncode == 2 and "invalid choice" in result.stderr
    result = run_cli("generate", "no out flag", cwd=tmp_path)
    assert result.returncode == 2 and "--out" in result.stderr


def test_bad_configuration_exits_2_naming_the_variable(tmp_path: Path) -> None:
    result = run_cli("generate", "a fox", "--out", "x.mp4", cwd=tmp_path,
                     env={"SEEDANCE_PROVIDER": "sora"})
    assert result.returncode == 2
    assert "SEEDANCE_PROVIDER" in result.stderr and "'local'" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_dotenv_is_read(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("SEEDANCE_USER_DAILY_CREDITS=-3\n")
    result = run_cli("generate", "a fox", "--out", "x.mp4", cwd=tmp_path)
    assert result.returncode == 2 and "SEEDANCE_USER_DAILY_CREDITS" in result.stderr


def test_run_without_token_exits_2_with_how_to(tmp_path: Path) -> None:
    result = run_cli("run", cwd=tmp_path)
    assert result.returncode == 2
    assert "DISCORD_TOKEN" in result.stderr and "discord.com/developers" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_gateway_failure_exits_1_with_reason(data_dir: Path, tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "x.mp4"
    code = main(["generate", "a fox [local:fail:real_face]", "--out", str(out),
                 "--resolution", "480p", "--duration", "4"])
    err = capsys.readouterr().err
    assert code == 1 and "failed" in err
    assert not out.exists()


# ---- a prompt that is not UTF-8 -----------------------------------------------------------

def test_a_prompt_byte_that_is_not_utf8_is_named(tmp_path: Path) -> None:
    result = run_cli("generate", b"caf\xe9 au lait", "--out", "fox.mp4", cwd=tmp_path,
                     timeout=30)
    assert result.returncode == 2, result.stderr
    assert "prompt: the byte at position 4 is not UTF-8; save the text as UTF-8" in (
        result.stderr)
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "data" / "cli.sqlite3").exists()  # nothing was stored


# ---- models belong to their gateway -------------------------------------------------------

class Listener:
    """A loopback port that listens and never answers: any connection attempt is seen."""

    def __init__(self) -> None:
        import socket

        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.sock.setblocking(False)
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"

    def connected(self) -> bool:
        try:
            conn, _ = self.sock.accept()
        except BlockingIOError:
            return False
        conn.close()
        return True

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def listener() -> Any:
    server = Listener()
    yield server
    server.close()


def test_an_unknown_seedance_model_is_refused_naming_the_known_ones(
    tmp_path: Path, listener: Listener,
) -> None:
    result = run_cli("generate", "a fox", "--out", "fox.mp4", cwd=tmp_path, timeout=30, env={
        "SEEDANCE_PROVIDER": "anyfast", "SEEDANCE_MODEL": "nosuch", "ANYFAST_API_KEY": "x",
        "ANYFAST_BASE_URL": listener.url})
    assert result.returncode == 2, result.stderr
    assert "SEEDANCE_MODEL" in result.stderr and "'nosuch'" in result.stderr
    assert "seedance-2.0-mini" in result.stderr and "seedance" in result.stderr
    assert not listener.connected()


def test_the_local_renderer_runs_one_model(tmp_path: Path) -> None:
    result = run_cli("generate", "a fox", "--out", "fox.mp4", "--model", "nosuch",
                     cwd=tmp_path, timeout=30)
    assert result.returncode == 2
    assert "--model: local has no model 'nosuch'; it runs seedance-local" in result.stderr
    assert not (tmp_path / "fox.mp4").exists()


async def test_seedance_model_stays_with_seedance_provider(tmp_path: Path) -> None:
    """SEEDANCE_MODEL names an Anyfast model, but SEEDANCE_PROVIDER is another gateway: a
    --provider anyfast run uses Anyfast's own default model, not SEEDANCE_MODEL."""
    import asyncio

    from tests.fakes.anyfast import FakeAnyfast
    from tests.provider_helpers import seed_learned_durations

    async with FakeAnyfast() as fake:
        fake.pending_statuses = []  # done at the first poll
        await seed_learned_durations(tmp_path / "data" / "cli.sqlite3", "anyfast", seconds=1.0)
        env = {k: v for k, v in os.environ.items()
               if not k.startswith(("SEEDANCE_", "ANYFAST_"))}
        env.update(SEEDANCE_DATA_DIR=str(tmp_path / "data"), SEEDANCE_PROVIDER="runware",
                   SEEDANCE_MODEL="seedance", ANYFAST_API_KEY=fake.api_key,
                   ANYFAST_BASE_URL=fake.base_url,
                   SEEDANCE_PRIVATE_HOSTS="127.0.0.1")  # the fake serves results there
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "bot", "generate", "a lighthouse", "--out", "out.mp4",
            "--provider", "anyfast", cwd=tmp_path, env=env,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        _, stderr = await asyncio.wait_for(proc.communicate(), 60)
        assert proc.returncode == 0, stderr.decode()
        (create,) = fake.received("POST", "/v1/video/generations")
        assert create.body["model"] == "seedance-2.0-mini"


# ---- the data folder ----------------------------------------------------------------------

def one_line(stderr: str) -> str:
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in stderr, stderr
    return lines[0]

def test_a_data_dir_that_is_a_file_is_one_line(tmp_path: Path) -> None:
    (tmp_path / "data").write_text("not a folder")
    result = run_cli("generate", "a fox", "--out", "fox.mp4", cwd=tmp_path, timeout=30)
    assert result.returncode == 2
    line = one_line(result.stderr)
    assert f"SEEDANCE_DATA_DIR={tmp_path / 'data'} is a file" in line and "folder" in line


# ---- the output file, checked before anything is sent -------------------------------------

def _unwritable(tmp_path: Path, case: str) -> tuple[str, str]:
    """(the --out value, what the refusal must say) for one way a file cannot be written."""
    if case == "under a file":
        (tmp_path / "notes.txt").write_text("a file, not a folder")
        return "notes.txt/fox.mp4", "is a file, not a folder"
    if case == "read-only filesystem":
        return "/proc/seedance-fox.mp4", "cannot write in /proc"
    if case == "named pipe":
        os.mkfifo(tmp_path / "pipe")
        return "pipe", "is a named pipe, not a file"
    if case == "trailing slash":
        (tmp_path / "clips").mkdir()
        return "clips/fox/", "is a directory"
    assert case == "name too long for its part file"
    return "f" * 250 + ".mp4", "File name too long"


@pytest.mark.parametrize("flag", ["--out", "--last-frame-out"])
@pytest.mark.parametrize("case", ["under a file", "read-only filesystem", "named pipe",
                                  "trailing slash", "name too long for its part file"])
def test_an_output_that_cannot_be_written_is_refused_before_sending(
    tmp_path: Path, flag: str, case: str,
) -> None:
    target, needle = _unwritable(tmp_path, case)
    outs = {"--out": "ok.mp4", "--last-frame-out": "ok.png", flag: target}
    result = run_cli("generate", "a fox", "--out", outs["--out"], "--last-frame-out",
                     outs["--last-frame-out"], cwd=tmp_path, timeout=30)
    assert result.returncode == 2, result.stderr
    line = one_line(result.stderr)
    assert line.startswith(f"seedance-bot: {flag} {target}") and needle in line
    assert not (tmp_path / "data" / "cli.sqlite3").exists()  # no job was ever made
    if case == "trailing slash":
        assert not (tmp_path / "clips" / "fox").exists()  # not written as a file named fox
    if case == "named pipe":
        assert stat.S_ISFIFO((tmp_path / "pipe").lstat().st_mode)  # not replaced by a file


@pytest.mark.parametrize("flag", ["--image", "--first-frame"])
def test_an_output_that_is_an_input_is_refused(tmp_path: Path, flag: str) -> None:
    cat = make_image(tmp_path / "cat.png")
    before = cat.read_bytes()
    result = run_cli("generate", "a cat", flag, "cat.png", "--out", str(cat), cwd=tmp_path,
                     timeout=30)
    assert result.returncode == 2, result.stderr
    assert f"is also the {flag} file" in one_line(result.stderr)
    assert cat.read_bytes() == before


def test_last_frame_out_may_not_be_the_video(tmp_path: Path) -> None:
    result = run_cli("generate", "a fox", "--out", "fox.mp4", "--last-frame-out", "./fox.mp4",
                     cwd=tmp_path, timeout=30)
    assert result.returncode == 2
    assert "--last-frame-out ./fox.mp4 is also the --out file" in one_line(result.stderr)


def test_a_video_made_but_not_written_says_written_not_posted(
    data_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The disk fills up after the checks: the paid video is kept, and the words are a file's."""
    import errno

    import bot.engine.engine
    import bot.oneshot

    def full(src: Path, dest: Path) -> None:
        raise OSError(errno.ENOSPC, "No space left on device", str(dest) + ".part")

    monkeypatch.setattr(bot.oneshot, "_write_atomic", full)
    monkeypatch.setattr(bot.engine.engine, "backoff", lambda attempt, **_: 0.0)
    out = tmp_path / "fox.mp4"
    code = main(["generate", "a fox", "--out", str(out), "--resolution", "480p",
                 "--duration", "4"])
    err = capsys.readouterr().err
    assert code == 1
    final = err.strip().splitlines()[-1]
    assert f"could not be written to {out}: No space left on device" in final
    assert "posted" not in err and "kept at" in final
    assert "could not write" in err  # said at the first failed write, not only at the end


# ---- what a run says ----------------------------------------------------------------------

def test_success_prints_what_was_written_on_stdout(tmp_path: Path) -> None:
    result = run_cli("generate", "a fox", "--out", "fox.mp4", "--seed", "1234", "--duration",
                     "4", "--resolution", "480p", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "wrote fox.mp4 (seed 1234, 4 s 480p 16:9, local)\n"


def _job_state(db: Path) -> str | None:
    import sqlite3

    if not db.exists():
        return None
    try:
        with sqlite3.connect(db, timeout=5) as conn:
            row = conn.execute("SELECT state FROM jobs").fetchone()
    except sqlite3.OperationalError:
        return None
    return row[0] if row else None


def test_finishing_an_interrupted_job_is_said(tmp_path: Path) -> None:
    import signal
    import time

    env = {k: v for k, v in os.environ.items() if not k.startswith("SEEDANCE_")}
    env.update(SEEDANCE_DATA_DIR=str(tmp_path / "data"), SEEDANCE_LOCAL_DELAY="3")
    first = subprocess.Popen(
        [sys.executable, "-m", "bot", "generate", "a slow fox", "--out", "first.mp4",
         "--duration", "4", "--resolution", "480p"], cwd=tmp_path, env=env,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    db = tmp_path / "data" / "cli.sqlite3"
    try:
        deadline = time.monotonic() + 60
        while _job_state(db) != "generating" and first.poll() is None:
            assert time.monotonic() < deadline
            time.sleep(0.01)
        assert _job_state(db) == "generating"
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait()
    result = run_cli("generate", "a quick fox", "--out", "second.mp4", "--duration", "4",
                     "--resolution", "480p", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    first_out = tmp_path / "first.mp4"
    assert (f"seedance-bot: finishing an interrupted job from earlier: writing {first_out}"
            in result.stderr)
    assert (f"wrote {first_out} (the interrupted job from earlier)" in result.stderr
            or f"the earlier job for {first_out} is not finished" in result.stderr)
    assert result.stdout.startswith("wrote second.mp4 (")


# ---- the network and the gateway's key ----------------------------------------------------

REPO = Path(__file__).resolve().parents[1]
IN_REPO = {"PYTHONPATH": str(REPO)}  # for the launchers under tests/fakes

def test_an_unreachable_gateway_says_retrying_and_names_its_base_url(
    tmp_path: Path, listener: Listener,
) -> None:
    closed = listener.url
    listener.close()  # nothing listens there any more: connections are refused
    result = run_cli("generate", "a fox", "--out", "fox.mp4", "--provider", "runware",
                     cwd=tmp_path, module="tests.fakes.instant_retries", timeout=30,
                     env={**IN_REPO, "RUNWARE_API_KEY": "x", "RUNWARE_BASE_URL": closed})
    assert result.returncode == 1, result.stderr
    lines = result.stderr.strip().splitlines()
    assert "Traceback" not in result.stderr
    host = closed.removeprefix("http://")
    assert any(f"retrying runware at {host}: " in line for line in lines[:-1])
    assert "could not connect" in lines[-1] and "check the network" in lines[-1]
    assert f"RUNWARE_BASE_URL ({closed})" in lines[-1]


async def test_a_refused_key_names_the_variable(tmp_path: Path) -> None:
    import asyncio

    from tests.fakes.runware import FakeRunware

    async with FakeRunware() as fake:
        env = {k: v for k, v in os.environ.items()
               if not k.startswith(("SEEDANCE_", "RUNWARE_"))}
        env.update(SEEDANCE_DATA_DIR=str(tmp_path / "data"), RUNWARE_API_KEY="wrong-key",
                   RUNWARE_BASE_URL=fake.base_url)
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "bot", "generate", "a fox", "--out", "fox.mp4",
            "--provider", "runware", cwd=tmp_path, env=env,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        _, raw = await asyncio.wait_for(proc.communicate(), 60)
    stderr = raw.decode()
    assert proc.returncode == 1, stderr
    line = one_line(stderr)
    assert "HTTP 401" in line and "check RUNWARE_API_KEY" in line
    assert "wrong-key" not in stderr


# ---- help ---------------------------------------------------------------------------------

def test_run_help_says_what_the_bot_needs(tmp_path: Path) -> None:
    result = run_cli("run", "--help", cwd=tmp_path, timeout=30)
    assert result.returncode == 0
    for needle in ("DISCORD_TOKEN", ".env", "SEEDANCE_DATA_DIR", "exit codes"):
        assert needle in result.stdout, needle


def test_generate_help_shows_defaults_sources_and_exit_codes(tmp_path: Path) -> None:
    result = run_cli("generate", "--help", cwd=tmp_path, timeout=30)
    assert result.returncode == 0
    text = " ".join(result.stdout.split())  # argparse wraps lines where it likes
    for needle in ("default: 5", "720p where the model has it", "adaptive where the model has it",
                   "nearest", "sound on", "SEEDANCE_PROVIDER, else local", "local file path",
                   "https:// URL", "asset://ID", "exit codes:", "0 the video is written",
                   "1 the gateway or the network failed", "2 invalid input or configuration"):
        assert needle in text, needle


def test_sample_inputs_work_in_every_mode_they_name(tmp_path: Path) -> None:
    """A newcomer has no media at hand: `seedance-bot sample` writes inputs within every
    gateway's limits, and the command it suggests works as printed."""
    made = run_cli("sample", "samples", cwd=tmp_path)
    assert made.returncode == 0, made.stderr
    names = [Path(line).name for line in made.stdout.split()]
    assert names == ["image.png", "image2.png", "clip.mp4", "tune.wav"]
    suggested = made.stderr.strip().removeprefix("try: ").split()
    assert suggested[:2] == ["seedance-bot", "generate"]
    args = shlex.split(" ".join(suggested[2:]))
    first_last = run_cli("generate", *args, "--duration", "4", "--resolution", "480p",
                         cwd=tmp_path)
    assert first_last.returncode == 0, first_last.stderr
    assert measure(tmp_path / "sunset.mp4")["size"] == (864, 496)
    reference = run_cli("generate", "@video1 to the rhythm of @audio1", "--video",
                        "samples/clip.mp4", "--audio", "samples/tune.wav", "--out", "more.mp4",
                        "--duration", "4", "--resolution", "480p", cwd=tmp_path)
    assert reference.returncode == 0, reference.stderr


# ---- several generate on one data folder ---------------------------------------------------

def test_three_generate_side_by_side_each_write_their_own_video(tmp_path: Path) -> None:
    """Started together on one data folder: each exits 0 as soon as its own video is written
    (none waits for, runs, or writes another's)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SEEDANCE_")}
    env["SEEDANCE_DATA_DIR"] = str(tmp_path / "data")
    prompts = ["a red fox in snow", "a blue whale at dusk", "a green parrot in rain"]
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "bot", "generate", prompt, "--out", f"v{n}.mp4",
             "--resolution", "480p", "--duration", "4", "--seed", str(n + 1)],
            cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for n, prompt in enumerate(prompts)
    ]
    outcomes = [p.communicate(timeout=240) for p in procs]
    for n, (proc, (out, err)) in enumerate(zip(procs, outcomes, strict=True)):
        assert proc.returncode == 0, err
        assert f"v{n}.mp4" in out and "earlier" not in err, (out, err)
    firsts = [measure(tmp_path / f"v{n}.mp4")["first"] for n in range(3)]
    # Three different prompts and seeds: three different videos, each where it was asked.
    assert not (firsts[0] == firsts[1]).all() and not (firsts[1] == firsts[2]).all()


def test_count_writes_a_file_per_video_beside_out(tmp_path: Path) -> None:
    """--count 3 on the local renderer (offline): fox.mp4, fox-2.mp4, fox-3.mp4, each its own
    video (its own seed), all charged."""
    result = run_cli("generate", "a fox", "--out", "fox.mp4", "--count", "3", "--seed", "7",
                     "--duration", "4", "--resolution", "480p", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "wrote fox.mp4, fox-2.mp4, fox-3.mp4 (seed 7, 4 s 480p 16:9, local)\n"
    files = [tmp_path / name for name in ("fox.mp4", "fox-2.mp4", "fox-3.mp4")]
    assert all(measure(f)["size"] == (864, 496) for f in files)
    assert len({f.read_bytes() for f in files}) == 3  # three videos, not one copied
    import sqlite3

    with sqlite3.connect(tmp_path / "data" / "cli.sqlite3") as db:
        assert sorted(db.execute("SELECT kind, credits FROM ledger")) == [
            ("commit", 12), ("reserve", 12)]


def test_count_is_refused_before_sending_where_the_gateway_makes_one(tmp_path: Path) -> None:
    env = {"MAGNIFIC_API_KEY": "k", "MAGNIFIC_BASE_URL": "http://127.0.0.1:9"}
    result = run_cli("generate", "a fox", "--out", "fox.mp4", "--count", "2", "--provider",
                     "magnific", "--duration", "5", cwd=tmp_path, env=env)
    assert result.returncode == 2
    assert "count: magnific" in result.stderr and "one video per request" in result.stderr
    assert not (tmp_path / "fox.mp4").exists()
    too_many = run_cli("generate", "a fox", "--out", "fox.mp4", "--count", "5", cwd=tmp_path)
    assert too_many.returncode == 2 and "give 1-4" in too_many.stderr
