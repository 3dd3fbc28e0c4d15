"""`seedance-bot`: run the Discord bot, or make one video from the command line.

Exit codes: 0 the video is written; 2 invalid input or configuration — nothing was sent to any
gateway; 1 the gateway or the network failed, with the gateway's reason. Every message is one
line on stderr, scrubbed of secrets; the one line on stdout says what was written.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from bot.cli_paths import check_outputs, data_dir_problem
from bot.config import DEFAULT_BASE_URLS, PROVIDER_NAMES, Settings, load_settings
from bot.errors import ConfigError, GatewayError, InvalidInput, Refusal, SeedanceError, scrub
from bot.intake import MediaInput, RequestOptions
from bot.models import MediaKind, Ratio, RequestedMode, Resolution, Role

if TYPE_CHECKING:
    from bot.oneshot import Written

EXIT_OK, EXIT_FAILED, EXIT_INVALID = 0, 1, 2

TOKEN_HELP = (
    "DISCORD_TOKEN is not set: create an application at https://discord.com/developers/"
    "applications, open Bot → Reset Token, and put DISCORD_TOKEN=... in .env or the environment."
)

RUN_DESCRIPTION = """\
Start the Discord bot and keep it running until it is stopped (Ctrl-C or SIGTERM).

It needs DISCORD_TOKEN, the bot's token (https://discord.com/developers/applications → your
application → Bot → Reset Token). Settings are read from the environment and from a .env file
in the current folder. SEEDANCE_DATA_DIR (default ./data) is the folder for the job database,
downloaded videos and the callback secret. SEEDANCE_DATABASE_URL=postgresql://... puts the jobs
in PostgreSQL instead, which several processes may share (shards chosen with
SEEDANCE_SHARD_COUNT and SEEDANCE_SHARD_IDS, and `seedance-bot worker`s): each takes over the
jobs another left. SEEDANCE_PROVIDER picks the gateway (default local: renders offline, no key),
with its <GATEWAY>_API_KEY; SEEDANCE_MODEL picks a model of that gateway."""

RUN_EPILOG = """\
exit codes:
  0  stopped normally
  1  Discord or the network failed
  2  invalid configuration (token, data folder, model, callback port) or the database can't be
     reached; nothing was started"""

WORKER_DESCRIPTION = """\
Run jobs without a gateway connection, until stopped (Ctrl-C or SIGTERM): the engine takes
jobs from the shared database (SEEDANCE_DATABASE_URL, else the SQLite file in
SEEDANCE_DATA_DIR), makes them, and posts status edits and videos through Discord's REST API
with DISCORD_TOKEN. It serves no commands: `seedance-bot run` (one process per shard or group
of shards) does. Start as many workers as you like; each takes over jobs another left. With
SEEDANCE_WEBHOOK_BASE_URL it also receives the gateways' callbacks; SEEDANCE_HTTP_PORT serves
GET /healthz. Other settings as for `seedance-bot run --help`."""

WORKER_EPILOG = """\
exit codes:
  0  stopped normally
  1  Discord or the network failed
  2  invalid configuration or the database can't be reached; nothing was started"""

MIGRATE_DESCRIPTION = """\
Copy the bot's SQLite database into an empty PostgreSQL database, once, to move to
SEEDANCE_DATABASE_URL (several shards, workers). Stop the bot first. Every table is copied with
its ids; PostgreSQL gets the same schema as the SQLite file (both are brought up to date
first). Afterwards set SEEDANCE_DATABASE_URL to the --to URL and start the bot again; the
SQLite file is left as it was."""

MIGRATE_EPILOG = """\
exit codes:
  0  copied (stdout says how many jobs and rows)
  2  refused, nothing copied: PostgreSQL can't be reached or already holds data, a bot still
     runs on the SQLite file, the schema versions differ, or there is no SQLite file"""

GENERATE_DESCRIPTION = """\
Make one video without Discord and write it to --out, through the same engine the bot runs.

SRC (--image, --video, --audio, --first-frame, --last-frame) is a local file path, an https://
URL, or asset://ID (a file already stored at the gateway). Settings are read from the
environment and from a .env file in the current folder (see `seedance-bot run --help`)."""

GENERATE_EPILOG = """\
exit codes:
  0  the video is written (stdout says where, with its seed)
  1  the gateway or the network failed; stderr gives the gateway's reason
  2  invalid input or configuration; nothing was sent to any gateway

A job interrupted half-way (Ctrl-C, a crash) is finished by the next generate, which says so."""


class _Parser(argparse.ArgumentParser):
    """argparse exits 2 on bad usage already; keep its message to one clear line."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(EXIT_INVALID, f"{self.prog}: {message}\n")


class _Help(argparse.RawDescriptionHelpFormatter):
    """Keeps the description's and epilog's line breaks (the exit code table)."""


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="seedance-bot", description=__doc__.splitlines()[0] if __doc__ else "")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("run", help="start the Discord bot", description=RUN_DESCRIPTION,
                   epilog=RUN_EPILOG, formatter_class=_Help)
    sub.add_parser("worker", help="run jobs and post results, without a gateway connection",
                   description=WORKER_DESCRIPTION, epilog=WORKER_EPILOG, formatter_class=_Help)

    migrate = sub.add_parser("migrate-db", help="copy the SQLite database into PostgreSQL",
                             description=MIGRATE_DESCRIPTION, epilog=MIGRATE_EPILOG,
                             formatter_class=_Help)
    migrate.add_argument("--to", required=True, metavar="URL",
                         help="the empty PostgreSQL database, postgresql://user:password@host"
                              ":5432/database")
    migrate.add_argument("--from", dest="source", type=Path, metavar="PATH",
                         help="the SQLite file (default: seedance.sqlite3 in SEEDANCE_DATA_DIR)")

    sample = sub.add_parser(
        "sample", help="write sample inputs to try generate with",
        description="Write two pictures, a 4 s clip and a tune (each within every gateway's "
                    "limits) to try `generate` with, e.g. --first-frame DIR/image.png "
                    "--last-frame DIR/image2.png, or --video DIR/clip.mp4.")
    sample.add_argument("folder", nargs="?", default="samples", type=Path,
                        help="where to write them (default: ./samples)")

    gen = sub.add_parser("generate", help="make one video without Discord",
                         description=GENERATE_DESCRIPTION, epilog=GENERATE_EPILOG,
                         formatter_class=_Help)
    gen.add_argument("prompt", help="what the video shows; name the files as @image1, @video1, "
                                    "@audio1 (numbered in the order given)")
    # Kept as typed (not Path): a trailing "/" says the user meant a folder.
    gen.add_argument("--out", required=True, metavar="FILE",
                     help="where to write the MP4 (its folder must exist; a file there is "
                          "replaced)")
    gen.add_argument("--provider", choices=PROVIDER_NAMES,
                     help="gateway (default: SEEDANCE_PROVIDER, else local: offline, no key)")
    gen.add_argument("--model", help="model id on that gateway (default: SEEDANCE_MODEL when "
                                     "the gateway is SEEDANCE_PROVIDER, else the gateway's own "
                                     "default)")
    gen.add_argument("--first-frame", metavar="SRC", help="image for the first frame")
    gen.add_argument("--last-frame", metavar="SRC", help="image for the last frame")
    gen.add_argument("--image", metavar="SRC", action="append", default=[],
                     help="reference image (repeatable)")
    gen.add_argument("--video", metavar="SRC", action="append", default=[],
                     help="reference video (repeatable)")
    gen.add_argument("--audio", metavar="SRC", action="append", default=[],
                     help="reference audio clip (repeatable)")
    gen.add_argument("--mode", choices=[m.value for m in RequestedMode], default="auto",
                     help="default: auto, chosen from the files given")
    gen.add_argument("--duration", type=int,
                     help="seconds (default: 5, or the model's shortest if it has no 5 s)")
    gen.add_argument("--resolution", choices=[r.value for r in Resolution],
                     help="default: 720p where the model has it, else its lowest")
    gen.add_argument("--ratio", choices=[r.value for r in Ratio],
                     help="default: adaptive where the model has it (follows the first image, "
                          "else the first video), else the fixed ratio nearest to that (16:9 "
                          "without one)")
    gen.add_argument("--no-audio", action="store_true",
                     help="no generated sound (default: sound on where the model makes it)")
    gen.add_argument("--seed", type=int,
                     help="repeat a result: the same seed and request give a similar video "
                          "(default: random; the seed used is printed)")
    gen.add_argument("--camera-fixed", action="store_true", help="keep the camera still")
    gen.add_argument("--web-search", action="store_true",
                     help="let the model search the web (text-to-video only)")
    gen.add_argument("--watermark", action="store_true", help="ask the gateway for a watermark")
    gen.add_argument("--count", type=_count, default=1, metavar="N",
                     help="N videos (1-4) from one task, where the gateway returns several "
                          "(runware, local); refused before anything is sent elsewhere. Each "
                          "is charged. Written to --out and beside it: --out fox.mp4 --count 3 "
                          "writes fox.mp4, fox-2.mp4 and fox-3.mp4")
    gen.add_argument("--last-frame-out", metavar="FILE",
                     help="also write the video's last frame as PNG")
    return parser


def _count(text: str) -> int:
    """--count: 1-4, the most any gateway returns from one task (Runware's numberResults)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number; give 1-4") from None
    if not 1 <= value <= 4:
        raise argparse.ArgumentTypeError(f"{value} videos can't come from one task; give 1-4")
    return value


def _inputs(args: argparse.Namespace) -> list[MediaInput]:
    items: list[MediaInput] = []
    if args.first_frame:
        items.append(MediaInput(args.first_frame, declared_kind=MediaKind.IMAGE,
                                role_hint=Role.FIRST_FRAME))
    if args.last_frame:
        items.append(MediaInput(args.last_frame, declared_kind=MediaKind.IMAGE,
                                role_hint=Role.LAST_FRAME))
    for flag, kind in (("image", MediaKind.IMAGE), ("video", MediaKind.VIDEO),
                       ("audio", MediaKind.AUDIO)):
        items.extend(MediaInput(src, declared_kind=kind) for src in getattr(args, flag))
    return items


def _options(args: argparse.Namespace, provider: str, model: str | None) -> RequestOptions:
    return RequestOptions(
        prompt=args.prompt,
        mode=RequestedMode(args.mode),
        duration=args.duration,
        resolution=Resolution(args.resolution) if args.resolution else None,
        ratio=Ratio(args.ratio) if args.ratio else None,
        audio=False if args.no_audio else None,
        seed=args.seed,
        camera_fixed=args.camera_fixed,
        web_search=args.web_search,
        watermark=args.watermark or None,  # absent: the default, not a choice of "off"
        return_last_frame=args.last_frame_out is not None,
        count=getattr(args, "count", 1),
        provider=provider,
        model=model,
    )


def _say(message: str, settings: Settings | None = None) -> None:
    secrets = settings.secrets() if settings else ()
    print(scrub(message, secrets), file=sys.stderr)


def failure_hint(kind: str | None, message: str, provider: str, settings: Settings) -> str:
    """What to check after a gateway failure, named by variable: the key after a refused
    key, the network and the base URL after no answer. Nothing for the offline renderer."""
    if provider not in DEFAULT_BASE_URLS:
        return ""
    prefix = provider.upper()
    if kind == "auth":
        return f"; check {prefix}_API_KEY"
    if kind == "unavailable" and "HTTP " not in message:  # no HTTP answer at all
        url = settings.base_url(provider)
        return (f"; could not reach {urlsplit(url).netloc}: check the network (a proxy or "
                f"firewall), and {prefix}_BASE_URL ({url})")
    return ""


def _done_line(written: Written) -> str:
    what = ", ".join(str(p) for p in (written.out, *written.more))
    if written.last_frame_out is not None:
        what += f" and {written.last_frame_out}"
    seed = f"seed {written.seed}, " if written.seed is not None else ""
    return (f"wrote {what} ({seed}{written.duration} s {written.resolution} {written.ratio}, "
            f"{written.provider})")


async def _generate(args: argparse.Namespace) -> int:
    from bot.oneshot import JobFailed, run_one  # the engine and providers load only when needed

    try:
        settings = load_settings()
    except ConfigError as exc:
        _say(f"seedance-bot: configuration: {exc}")
        return EXIT_INVALID
    problem = data_dir_problem(settings) or check_outputs(args)
    if problem:
        _say(f"seedance-bot: {problem}", settings)
        return EXIT_INVALID
    # SEEDANCE_PROVIDERS: the failover list decides ("" here); --provider picks one outright.
    provider = args.provider or ("" if settings.providers else settings.seedance_provider)
    model = args.model or (settings.model_for(provider) if provider else None)
    subject = "--model" if args.model else "SEEDANCE_MODEL"
    last_frame_out = Path(args.last_frame_out) if args.last_frame_out is not None else None
    try:
        written = await run_one(settings, provider, _inputs(args),
                                _options(args, provider, model), out=Path(args.out),
                                last_frame_out=last_frame_out, progress=sys.stderr.isatty(),
                                say=lambda line: _say(line, settings), model_subject=subject)
    except InvalidInput as exc:
        _say("seedance-bot: the request is not valid; nothing was sent:")
        for item in exc.problems:
            _say(f"  - {item}", settings)
        return EXIT_INVALID
    except ConfigError as exc:
        _say(f"seedance-bot: configuration: {exc}", settings)
        return EXIT_INVALID
    except Refusal as exc:  # a rule or a limit said no; nothing was sent or spent
        _say(f"seedance-bot: {exc} Nothing was sent.", settings)
        return EXIT_INVALID
    except JobFailed as exc:
        hint = failure_hint(exc.kind, str(exc), exc.provider, settings)
        verb = "" if exc.kind == "delivery" else "generation failed: "
        _say(f"seedance-bot: {verb}{exc}{hint}", settings)
        return EXIT_FAILED
    except GatewayError as exc:
        hint = failure_hint(exc.kind, str(exc), exc.provider, settings)
        _say(f"seedance-bot: generation failed: {exc}{hint}", settings)
        return EXIT_FAILED
    except SeedanceError as exc:
        _say(f"seedance-bot: generation failed: {exc}", settings)
        return EXIT_FAILED
    print(scrub(_done_line(written), settings.secrets()), flush=True)
    return EXIT_OK


def model_problem(settings: Settings) -> str | None:
    """Why SEEDANCE_MODEL is not a model of SEEDANCE_PROVIDER's gateway (None when it is)."""
    model = settings.seedance_model
    if not model:
        return None
    from bot.providers import create_provider, model_refusal

    async def check() -> str | None:
        provider = create_provider(settings.seedance_provider, settings)
        try:
            return model_refusal(provider, model)
        finally:
            await provider.aclose()

    try:
        refusal = asyncio.run(check())
    except ConfigError as exc:
        return f"SEEDANCE_MODEL={model} needs {settings.seedance_provider}: {exc}"
    if refusal:
        return (f"SEEDANCE_MODEL={model} is not a model of SEEDANCE_PROVIDER="
                f"{settings.seedance_provider}: {refusal}")
    return None


def _run_bot(*, worker: bool = False) -> int:
    try:
        settings = load_settings()
    except ConfigError as exc:
        _say(f"seedance-bot: configuration: {exc}")
        return EXIT_INVALID
    if not settings.discord_token:
        _say(TOKEN_HELP)
        return EXIT_INVALID
    # What can be checked without Discord is checked before logging in to it.
    problem = data_dir_problem(settings) or model_problem(settings)
    if problem:
        _say(f"seedance-bot: {problem}", settings)
        return EXIT_INVALID
    from cogs.app import run_bot  # the only place the core hands over to the Discord layer

    return run_bot(settings, worker=worker)


def _sample(folder: Path) -> int:
    from bot.media.samples import write_samples

    try:
        written = write_samples(folder)
    except OSError as exc:
        _say(f"seedance-bot: could not write samples to {folder}: {exc.strerror or exc}")
        return EXIT_INVALID
    for path in written:
        print(path)
    _say(f'try: seedance-bot generate "the sun sets over the hills" --first-frame '
         f'{written[0]} --last-frame {written[1]} --out sunset.mp4')
    return EXIT_OK


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    serving = args.command in ("run", "worker")
    logging.basicConfig(level=logging.INFO if serving else logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # httpx logs every URL at INFO, signed query strings (CDN signatures) included.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    if serving:
        return _run_bot(worker=args.command == "worker")
    if args.command == "sample":
        return _sample(args.folder)
    if args.command == "migrate-db":
        from bot.cli_migrate import migrate_db

        return asyncio.run(migrate_db(args.to, args.source))
    try:
        return asyncio.run(_generate(args))
    except KeyboardInterrupt:
        _say("seedance-bot: interrupted")
        return EXIT_FAILED
