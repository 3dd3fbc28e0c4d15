"""Launch the real bot against the fake Discord, with the bot's code unaware of it.

    FAKE_DISCORD_API=http://127.0.0.1:PORT/api/v10 DISCORD_TOKEN=... \\
        python -m tests.fakes.discord.run_bot run

`FAKE_DISCORD_GATEWAY` may override the websocket URL (default ws://host:port/gateway).
Every other argument goes to `bot.cli.main` as if typed after `seedance-bot`.
"""

from __future__ import annotations

import os
import sys

from tests.fakes.discord.patching import point_discord_at


def main(argv: list[str] | None = None) -> int:
    api = os.environ.get("FAKE_DISCORD_API")
    if not api:
        print("run_bot: set FAKE_DISCORD_API (e.g. http://127.0.0.1:PORT/api/v10)",
              file=sys.stderr)
        return 2
    point_discord_at(api, os.environ.get("FAKE_DISCORD_GATEWAY"))
    from bot.cli import main as cli_main

    sys.argv = ["seedance-bot", *(sys.argv[1:] if argv is None else argv)]
    result = cli_main()
    return int(result or 0)


if __name__ == "__main__":
    raise SystemExit(main())
