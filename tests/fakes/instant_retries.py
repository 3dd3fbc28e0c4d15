"""Run `seedance-bot` with every retry wait cut to zero, the CLI's code unaware of it.

    python -m tests.fakes.instant_retries generate "a fox" --out x.mp4 --provider runware

A subprocess cannot be handed the injected `sleep` the in-process tests use, and a run against
an unreachable gateway otherwise waits about 40 s through the gateway client's retries and the
engine's resubmits. Like tests/fakes/discord/run_bot.py, this launcher patches from the outside
(the two backoff functions) and then runs `bot.cli.main`; what is retried, how often, and every
message the CLI prints stay as they are, only the waits are gone.
"""

from __future__ import annotations

import sys


def make_retries_instant() -> None:
    import bot.engine.engine
    from bot.providers.http import Backoff

    Backoff.delay = lambda self, attempt, hint=None: 0.0  # type: ignore[method-assign]
    bot.engine.engine.backoff = lambda attempt, **_: 0.0  # type: ignore[assignment]


def main() -> int:
    make_retries_instant()
    from bot.cli import main as cli_main

    return cli_main(sys.argv[1:])


if __name__ == "__main__":
    raise SystemExit(main())
