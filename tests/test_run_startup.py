"""`seedance-bot run` before and at its login: every way it cannot start is one line, and what
needs no Discord is refused before Discord is contacted.

The bot runs as a subprocess through tests/fakes/discord/run_bot.py, pointed at a loopback port
nothing listens on: reaching the login at all shows up as "could not reach Discord".
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
LOGIN = "logging in using static token"  # discord.py's INFO line as the login starts


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def run_bot(tmp_path: Path, env: dict[str, str] | None = None,
            port: int | None = None, command: str = "run") -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items()
             if not k.startswith(("SEEDANCE_", "ANYFAST_", "RUNWARE_", "MAGNIFIC_", "HIAPI_",
                                  "DISCORD_", "FAKE_DISCORD_"))}
    clean.update({
        "FAKE_DISCORD_API": f"http://127.0.0.1:{port or closed_port()}/api/v10",
        "DISCORD_TOKEN": "x",
        "SEEDANCE_DATA_DIR": str(tmp_path / "data"),
        "PYTHONPATH": str(REPO),
    })
    clean.update(env or {})
    return subprocess.run([sys.executable, "-m", "tests.fakes.discord.run_bot", command],
                          cwd=tmp_path, env=clean, capture_output=True, text=True, timeout=30)


def failure(result: subprocess.CompletedProcess[str]) -> str:
    """The one `seedance-bot:` line; no traceback anywhere."""
    assert "Traceback" not in result.stderr, result.stderr
    mine = [ln for ln in result.stderr.splitlines() if ln.startswith("seedance-bot:")]
    assert len(mine) == 1, result.stderr
    return mine[0]


def test_discord_unreachable_is_one_line_naming_the_host(tmp_path: Path) -> None:
    port = closed_port()
    result = run_bot(tmp_path, port=port)
    assert result.returncode == 1
    line = failure(result)
    assert f"could not reach Discord at 127.0.0.1:{port}" in line and "check the network" in line


def test_no_voice_warnings_but_other_logging_stays(tmp_path: Path) -> None:
    result = run_bot(tmp_path)
    assert "PyNaCl" not in result.stderr and "davey" not in result.stderr
    assert f"INFO discord.client: {LOGIN}" in result.stderr  # discord.py's log still shows


@pytest.fixture
def taken_port() -> Iterator[int]:
    with socket.socket() as sock:
        sock.bind(("0.0.0.0", 0))
        sock.listen()
        yield int(sock.getsockname()[1])


def test_a_taken_callback_port_is_refused_before_login(tmp_path: Path, taken_port: int) -> None:
    result = run_bot(tmp_path, {"SEEDANCE_WEBHOOK_BASE_URL": "https://example.test",
                                "SEEDANCE_WEBHOOK_PORT": str(taken_port)})
    assert result.returncode == 2
    line = failure(result)
    assert f"SEEDANCE_WEBHOOK_PORT={taken_port} is already in use" in line
    assert LOGIN not in result.stderr


@pytest.mark.parametrize("command", ["run", "worker"])
def test_an_unreachable_postgresql_is_one_line_with_the_password_masked(
        tmp_path: Path, command: str) -> None:
    """Nothing listens on the port: exit 2 before any login, naming the URL without its
    password and what to check."""
    port = closed_port()
    result = run_bot(tmp_path, {"SEEDANCE_DATABASE_URL":
                                f"postgresql://seedance:s3cret@127.0.0.1:{port}/seedance"},
                     command=command)
    assert result.returncode == 2
    line = failure(result)
    assert f"postgresql://seedance:***@127.0.0.1:{port}/seedance" in line
    assert "s3cret" not in result.stderr
    for what in ("server runs", "host and port", "user and password", "database exists"):
        assert what in line
    assert LOGIN not in result.stderr


def test_another_database_scheme_is_refused_naming_the_fix(tmp_path: Path) -> None:
    result = run_bot(tmp_path, {"SEEDANCE_DATABASE_URL": "mysql://bot:s3cret@db/seedance"})
    assert result.returncode == 2
    line = failure(result)
    assert "SEEDANCE_DATABASE_URL" in line and "postgresql://" in line
    assert "s3cret" not in result.stderr and LOGIN not in result.stderr


@pytest.mark.parametrize("command", ["run", "worker"])
def test_a_taken_health_port_is_refused_before_login(tmp_path: Path, taken_port: int,
                                                     command: str) -> None:
    result = run_bot(tmp_path, {"SEEDANCE_HTTP_PORT": str(taken_port)}, command=command)
    assert result.returncode == 2
    line = failure(result)
    assert f"SEEDANCE_HTTP_PORT={taken_port} is already in use" in line
    assert LOGIN not in result.stderr


def test_a_worker_that_cannot_reach_discord_is_one_line(tmp_path: Path) -> None:
    port = closed_port()
    result = run_bot(tmp_path, port=port, command="worker")
    assert result.returncode == 1
    assert f"could not reach Discord at 127.0.0.1:{port}" in failure(result)


def test_a_data_dir_that_is_a_file_is_refused_before_login(tmp_path: Path) -> None:
    (tmp_path / "data").write_text("not a folder")
    result = run_bot(tmp_path)
    assert result.returncode == 2
    line = failure(result)
    assert f"SEEDANCE_DATA_DIR={tmp_path / 'data'} is a file, not a folder" in line
    assert LOGIN not in result.stderr


def test_an_unknown_model_is_refused_before_login(tmp_path: Path) -> None:
    result = run_bot(tmp_path, {"SEEDANCE_PROVIDER": "anyfast", "SEEDANCE_MODEL": "nosuch",
                                "ANYFAST_API_KEY": "x",
                                "ANYFAST_BASE_URL": f"http://127.0.0.1:{closed_port()}"})
    assert result.returncode == 2
    line = failure(result)
    assert "SEEDANCE_MODEL=nosuch is not a model of SEEDANCE_PROVIDER=anyfast" in line
    assert "seedance-2.0-mini or seedance" in line
    assert LOGIN not in result.stderr


def test_an_http_callback_url_is_refused_before_login_when_hiapi_needs_https(
        tmp_path: Path) -> None:
    """HiAPI calls back HTTPS URLs only: an http:// receiver would silently never hear from it
    (issue 11, item 21)."""
    result = run_bot(tmp_path, {"HIAPI_API_KEY": "k",
                                "SEEDANCE_WEBHOOK_BASE_URL": "http://bot.example.com:8080",
                                "SEEDANCE_WEBHOOK_PORT": str(closed_port())})
    assert result.returncode == 2
    line = failure(result)
    assert "SEEDANCE_WEBHOOK_BASE_URL" in line and "https://" in line and "hiapi" in line
    assert LOGIN not in result.stderr
