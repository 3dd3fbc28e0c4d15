"""Where the CLI may write, checked before anything is sent or spent: a data folder that is a
folder and writable, and --out / --last-frame-out that are new or regular files in a writable
folder, never a folder, a device or one of the inputs."""

from __future__ import annotations

import argparse
import os
import stat
import tempfile
from pathlib import Path

from bot.config import Settings


def _write_probe(folder: Path, name: str = "seedance") -> str | None:
    """Create, fill and remove a small file in `folder`: the only test of "can a file be
    written here" that a read-only mount, a full disk and /proc all fail (root ignores the
    permission bits that os.access reads). Named like the `.NAME.PID.part` file the video is
    first copied to, so a name too long for that is caught here too."""
    try:
        fd, probe = tempfile.mkstemp(dir=folder, prefix=f".{name}.", suffix=".part")
    except OSError as exc:
        return exc.strerror or str(exc)
    try:
        os.write(fd, b"\0" * 4096)
        os.fsync(fd)  # a full disk fails here, not at the write into the page cache
    except OSError as exc:
        return exc.strerror or str(exc)
    finally:
        os.close(fd)
        Path(probe).unlink(missing_ok=True)
    return None


def data_dir_problem(settings: Settings) -> str | None:
    """Why SEEDANCE_DATA_DIR cannot hold the database and files (None when it can).

    Checked by `generate` and `run` before anything else: otherwise a file in its place is a
    FileExistsError traceback, found (by `run`) only after logging in to Discord.
    """
    folder = settings.data_dir
    shown = f"SEEDANCE_DATA_DIR={folder}"
    if folder.exists() and not folder.is_dir():
        return (f"{shown} is a file, not a folder; point SEEDANCE_DATA_DIR at a folder (it is "
                "created if missing) or move that file away.")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        return (f"{shown} cannot be created ({exc.strerror or exc}); point SEEDANCE_DATA_DIR at "
                "a folder this user can write.")
    reason = _write_probe(folder)
    if reason:
        return (f"{shown} is not writable ({reason}); point SEEDANCE_DATA_DIR at a folder this "
                "user can write.")
    return None


_NOT_REGULAR = ((stat.S_ISFIFO, "a named pipe"), (stat.S_ISCHR, "a character device"),
                (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"))


def _out_problem(raw: str, flag: str) -> str | None:
    """Why a file cannot be written at `raw`, found before anything is sent and paid for."""
    path = Path(raw)
    if raw.endswith(("/", os.sep)) or path.name in ("", ".", ".."):
        return (f"{flag} {raw} is a directory; give a file name, e.g. "
                f"{path / 'video.mp4'}.")
    try:
        info = path.stat()
    except FileNotFoundError:
        info = None
    except NotADirectoryError:
        info = None  # a parent is a file: said below, about the folder
    except OSError as exc:
        return f"{flag} {raw}: {exc.strerror or exc}."
    if info is not None:
        if stat.S_ISDIR(info.st_mode):
            return f"{flag} {raw} is a directory; give a file name."
        for test, what in _NOT_REGULAR:
            if test(info.st_mode):
                return f"{flag} {raw} is {what}, not a file; give the path of a file to write."
    folder = path.absolute().parent
    if not folder.exists():
        return f"{flag} {raw}: the folder {folder} does not exist."
    if not folder.is_dir():
        return f"{flag} {raw}: {folder} is a file, not a folder."
    reason = _write_probe(folder, path.name)
    if reason:
        return f"{flag} {raw}: cannot write in {folder} ({reason})."
    return None


def _is_local(src: str) -> bool:
    return "://" not in src


def _same_file(a: Path, b: Path) -> bool:
    if a.resolve() == b.resolve():
        return True
    try:
        return os.path.samefile(a, b)  # hard links, bind mounts
    except OSError:
        return False


def set_outputs(out: str | Path, count: int) -> list[Path]:
    """Where the videos of a set go: --out, then beside it with -2, -3 … before the suffix
    (fox.mp4, fox-2.mp4, fox-3.mp4), in the order the gateway returned them."""
    first = Path(out)
    return [first, *(first.with_name(f"{first.stem}-{n}{first.suffix}")
                     for n in range(2, count + 1))]


def check_outputs(args: argparse.Namespace) -> str | None:
    """--out and --last-frame-out: writable, regular, and none of the inputs."""
    outputs = [("--out", args.out)]  # as typed: a trailing "/" says a folder was meant
    outputs += [("--out", str(p)) for p in set_outputs(args.out, getattr(args, "count", 1))[1:]]
    if args.last_frame_out is not None:
        outputs.append(("--last-frame-out", args.last_frame_out))
    for flag, raw in outputs:
        problem = _out_problem(raw, flag)
        if problem:
            return problem
    inputs = [(flag, src) for flag, values in (
        ("--first-frame", [args.first_frame] if args.first_frame else []),
        ("--last-frame", [args.last_frame] if args.last_frame else []),
        ("--image", args.image), ("--video", args.video), ("--audio", args.audio),
    ) for src in values if _is_local(src)]
    if args.last_frame_out is not None:
        inputs.extend(o for o in outputs if o[0] == "--out")
    for flag, raw in reversed(outputs):
        for other_flag, src in inputs:
            if other_flag != flag and _same_file(Path(raw), Path(src)):
                return (f"{flag} {raw} is also the {other_flag} file; writing there would "
                        "replace it. Give another file name.")
    return None


