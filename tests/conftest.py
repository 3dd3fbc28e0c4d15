"""Shared fixtures. Media are made on the fly (tests/media_factory.py)."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from bot.store.database import is_postgres_url
from tests import pgserver

if TYPE_CHECKING:
    from tests.provider_helpers import SleepLog

#: The test run's own switches, read before the loop below removes every SEEDANCE_* variable:
#: SEEDANCE_TEST_POSTGRES_URL (a server .ci/run started for the whole run),
#: SEEDANCE_TEST_NO_POSTGRES=1 and SEEDANCE_TEST_NO_COMPOSE=1 (skip those tests on purpose).
TEST_SWITCHES = {k: v for k, v in os.environ.items() if k.startswith("SEEDANCE_TEST_")}

# No test may read the developer's own .env or keys.
for _var in list(os.environ):
    if _var.startswith(("SEEDANCE_", "ANYFAST_", "RUNWARE_", "MAGNIFIC_", "HIAPI_", "DISCORD_")):
        del os.environ[_var]


@pytest.fixture
def data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A fresh SEEDANCE_DATA_DIR, and a cwd without a .env file."""
    d = tmp_path / "data"
    d.mkdir()
    monkeypatch.setenv("SEEDANCE_DATA_DIR", str(d))
    monkeypatch.chdir(tmp_path)
    yield d


@pytest.fixture
def sleeps() -> SleepLog:
    """An injected sleep that records the delays and returns at once (gateway client tests)."""
    from tests.provider_helpers import SleepLog  # imported here: it loads every gateway's fake

    return SleepLog()


@pytest.fixture(scope="session")
def run_switches() -> dict[str, str]:
    """The SEEDANCE_TEST_* variables this run was started with (see TEST_SWITCHES)."""
    return dict(TEST_SWITCHES)


# ---- PostgreSQL: the store's second backend ----------------------------------------------------
@pytest.fixture(scope="session")
def postgres_server() -> Iterator[pgserver.PgServer]:
    """The run's PostgreSQL server: the one SEEDANCE_TEST_POSTGRES_URL names, else a throwaway
    one (tests/pgserver.py) stopped at the end. Without server binaries the PostgreSQL tests
    fail, so a CI that lost PostgreSQL can't pass by skipping them; SEEDANCE_TEST_NO_POSTGRES=1
    skips them on purpose."""
    if TEST_SWITCHES.get("SEEDANCE_TEST_NO_POSTGRES") == "1":
        pytest.skip("SEEDANCE_TEST_NO_POSTGRES=1")
    url = TEST_SWITCHES.get("SEEDANCE_TEST_POSTGRES_URL")
    if url:
        yield pgserver.attach(url)
        return
    if pgserver.bindir() is None:
        pytest.fail("PostgreSQL server binaries not found: install them (Debian: apt-get install "
                    "postgresql) or set SEEDANCE_TEST_NO_POSTGRES=1 to skip the PostgreSQL tests",
                    pytrace=False)
    try:
        server = pgserver.start()
    except pgserver.PgServerError as exc:
        pytest.fail(f"could not start PostgreSQL for the tests: {exc}", pytrace=False)
    yield server
    server.stop()


@pytest.fixture
def postgres_url(postgres_server: pgserver.PgServer) -> Iterator[str]:
    """A fresh, empty database for one test, dropped afterwards."""
    url = postgres_server.create_database()
    yield url
    postgres_server.drop_database(url)


@pytest.fixture(params=["sqlite", "postgres"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """What `Store.open` takes, once per backend (test ids `[sqlite]` and `[postgres]`): a new
    SQLite file's path, or a fresh PostgreSQL database's URL."""
    if request.param == "sqlite":
        return str(tmp_path / "store" / "seedance.sqlite3")
    url: str = request.getfixturevalue("postgres_url")
    return url


@pytest.fixture
def more_store_urls(store_url: str, tmp_path: Path,
                    request: pytest.FixtureRequest) -> Iterator[Callable[[], str]]:
    """More fresh databases of `store_url`'s backend, for a test that needs one per example
    (hypothesis) or several side by side; dropped afterwards."""
    server: pgserver.PgServer | None = (
        request.getfixturevalue("postgres_server") if is_postgres_url(store_url) else None)
    made: list[str] = []

    def make() -> str:
        if server is None:
            made.append(str(tmp_path / f"more-{len(made)}" / "seedance.sqlite3"))
        else:
            made.append(server.create_database())
        return made[-1]

    yield make
    if server is not None:
        for url in made:
            server.drop_database(url)
