"""tests/pgserver.py: a throwaway server starts, serves fresh databases, and leaves no process
or folder behind, whether stopped, stopped twice, or orphaned by a SIGKILL."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests import pgserver

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def _needs_postgres(postgres_server: pgserver.PgServer) -> None:
    """Fail (or skip on purpose) as every PostgreSQL test does when there is no server."""


def _postmaster(root: Path) -> int:
    return int(json.loads((root / pgserver.STATE_FILE).read_text())["pid"])


def _gone(root: Path, pid: int, seconds: float = 60) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if not root.exists() and not pgserver._alive(pid):
            return True
        time.sleep(0.1)
    return False


def test_start_create_drop_and_stop() -> None:
    server = pgserver.start()
    assert server.root is not None
    root, pid = server.root, _postmaster(server.root)
    try:
        assert server.url.startswith("postgresql://postgres@127.0.0.1:")
        url = server.create_database()
        assert url.rsplit("/", 1)[1].startswith("seedance_test_")
        with pytest.raises(pgserver.PgServerError, match="didn't create"):
            server.drop_database(server.url)  # the server's own database stays
        server.drop_database(url)
    finally:
        server.stop()
    assert _gone(root, pid, seconds=0.1)
    server.stop()  # twice is fine


def test_attached_servers_are_left_running(postgres_server: pgserver.PgServer) -> None:
    attached = pgserver.attach(postgres_server.url)
    url = attached.create_database()
    attached.drop_database(url)
    attached.stop()
    again = attached.create_database()  # still serving
    attached.drop_database(again)


def test_the_watchdog_stops_the_server_of_a_killed_process() -> None:
    script = ("import os, signal; from tests import pgserver; s = pgserver.start();"
              " print(s.root, flush=True); os.kill(os.getpid(), signal.SIGKILL)")
    done = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True,
                          text=True, timeout=120, check=False)
    assert done.returncode == -9, done.stderr
    root = Path(done.stdout.strip())
    pid = _postmaster(root) if root.exists() else 0
    assert _gone(root, pid), f"{root} still there after its starter died"


def test_command_line_start_and_stop(tmp_path: Path) -> None:
    env_file = tmp_path / "pg.env"
    cli = [sys.executable, "-m", "tests.pgserver"]
    started = subprocess.run([*cli, "start", "--env-file", str(env_file)], cwd=REPO,
                             capture_output=True, text=True, timeout=120, check=False)
    assert started.returncode == 0, started.stderr
    values = dict(line.split("=", 1) for line in env_file.read_text().splitlines())
    root = Path(values["SEEDANCE_TEST_POSTGRES_DIR"])
    assert values["SEEDANCE_TEST_POSTGRES_URL"].startswith("postgresql://postgres@127.0.0.1:")
    pid = _postmaster(root)
    assert pgserver._alive(pid)
    refused = subprocess.run([*cli, "stop", str(tmp_path)], cwd=REPO, capture_output=True,
                             text=True, timeout=60, check=False)
    assert refused.returncode == 1 and "refusing" in refused.stderr and tmp_path.exists()
    for _ in range(2):  # stopping twice is fine
        stopped = subprocess.run([*cli, "stop", str(root)], cwd=REPO, capture_output=True,
                                 text=True, timeout=120, check=False)
        assert stopped.returncode == 0, stopped.stderr
    assert _gone(root, pid, seconds=0.1)
    found = subprocess.run([*cli, "bindir"], cwd=REPO, capture_output=True, text=True,
                           timeout=60, check=False)
    assert found.returncode == 0 and Path(found.stdout.strip(), "initdb").is_file()
