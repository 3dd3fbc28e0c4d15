"""`seedance-bot migrate-db`: the command around bot/store/copy.py (the copy itself), which
says in one line what was copied, or why nothing was and what to do."""

from __future__ import annotations

import sys
from pathlib import Path

from bot.config import database_password, load_settings
from bot.errors import ConfigError, scrub
from bot.store import Store
from bot.store.copy import CopyRefused, copy_database
from bot.store.database import DatabaseUnavailable, is_postgres_url, masked


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


async def migrate_db(target_url: str, source_path: Path | None) -> int:
    """The command: 0 copied, 2 refused or unreachable (one line on stderr)."""
    try:
        settings = load_settings()
    except ConfigError as exc:
        _say(f"seedance-bot: configuration: {exc}")
        return 2
    secrets = (*settings.secrets(), *filter(None, [database_password(target_url)]))
    if not is_postgres_url(target_url):
        _say(f"seedance-bot: --to must be a postgresql://user:password@host:5432/database URL, "
             f"got {masked(target_url)}")
        return 2
    path = source_path or settings.database_path
    if not path.is_file():
        _say(f"seedance-bot: there is no SQLite database at {path}; name it with --from, or "
             "set SEEDANCE_DATA_DIR to the bot's data folder")
        return 2
    try:
        target = await Store.open(target_url)
    except DatabaseUnavailable as exc:
        _say(f"seedance-bot: {scrub(str(exc), secrets)}")
        return 2
    source = await Store.open(path)
    try:
        copied = await copy_database(source, target)
    except CopyRefused as exc:
        _say(f"seedance-bot: nothing copied: {scrub(str(exc), secrets)}")
        return 2
    finally:
        await source.close()
        await target.close()
    print(f"copied {copied.get('jobs', 0)} jobs ({sum(copied.values())} rows in "
          f"{len(copied)} tables) from {path} to {masked(target_url)}; now set "
          "SEEDANCE_DATABASE_URL to that URL and start the bot", flush=True)
    return 0
