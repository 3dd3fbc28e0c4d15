"""docker-compose.yml as compose itself reads it: valid, PostgreSQL with a healthcheck, two
gateway shards and a worker on it. Needs `docker compose` or `docker-compose` (.ci/run
installs Debian's); without either the test fails, unless SEEDANCE_TEST_NO_COMPOSE=1."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
SECRETS = {"POSTGRES_PASSWORD": "dummy-password", "DISCORD_TOKEN": "dummy-token"}


@pytest.fixture(scope="module")
def compose(run_switches: dict[str, str]) -> list[str]:
    """The compose command this machine has."""
    docker = shutil.which("docker")
    if docker and subprocess.run([docker, "compose", "version"], capture_output=True,
                                 check=False).returncode == 0:
        return [docker, "compose"]
    legacy = shutil.which("docker-compose")
    if legacy:
        return [legacy]
    if run_switches.get("SEEDANCE_TEST_NO_COMPOSE") == "1":
        pytest.skip("SEEDANCE_TEST_NO_COMPOSE=1")
    pytest.fail("neither `docker compose` nor `docker-compose` is installed (Debian: apt-get "
                "install docker-compose); SEEDANCE_TEST_NO_COMPOSE=1 skips this test",
                pytrace=False)


def run(compose: list[str], *args: str, env: dict[str, str] | None = None,
        ) -> subprocess.CompletedProcess[str]:
    base = {k: os.environ[k] for k in ("PATH", "HOME", "LANG") if k in os.environ}
    return subprocess.run([*compose, "-f", str(REPO / "docker-compose.yml"), *args],
                          cwd=REPO, env={**base, **(env or {})}, capture_output=True,
                          text=True, timeout=120, check=False)


@pytest.fixture(scope="module")
def config(compose: list[str]) -> dict[str, Any]:
    quiet = run(compose, "config", "-q", env=SECRETS)
    assert quiet.returncode == 0, quiet.stderr
    full = run(compose, "config", env=SECRETS)
    assert full.returncode == 0, full.stderr
    resolved: dict[str, Any] = yaml.safe_load(full.stdout)
    return resolved


def test_the_secrets_must_be_given(compose: list[str]) -> None:
    for missing in SECRETS:
        given = {k: v for k, v in SECRETS.items() if k != missing}
        result = run(compose, "config", "-q", env=given)
        assert result.returncode != 0 and f"set {missing}" in result.stderr + result.stdout


def test_postgres_is_checked_and_kept(config: dict[str, Any]) -> None:
    postgres = config["services"]["postgres"]
    assert postgres["image"].startswith("postgres:15")
    assert "pg_isready" in " ".join(postgres["healthcheck"]["test"])
    assert "--locale=C" in postgres["environment"]["POSTGRES_INITDB_ARGS"]
    assert postgres["environment"]["POSTGRES_PASSWORD"] == "dummy-password"
    assert any("/var/lib/postgresql/data" in str(v) for v in postgres["volumes"])


def test_two_shards_and_a_worker_share_the_database(config: dict[str, Any]) -> None:
    services = config["services"]
    assert set(services) == {"postgres", "shard0", "shard1", "worker"}
    expected = {"shard0": (["run"], "0"), "shard1": (["run"], "1"), "worker": (["worker"], None)}
    for name, (command, shard) in expected.items():
        bot = services[name]
        env = bot["environment"]
        assert Path(bot["build"]["context"]).resolve() == REPO, name
        assert bot["command"] == command, name
        assert env["SEEDANCE_DATABASE_URL"] == (
            "postgresql://seedance:dummy-password@postgres:5432/seedance"), name
        assert env["DISCORD_TOKEN"] == "dummy-token" and str(env["SEEDANCE_HTTP_PORT"]) == "8080"
        assert env.get("SEEDANCE_SHARD_IDS") == shard, name
        assert (env.get("SEEDANCE_SHARD_COUNT") == "2") is (shard is not None), name
        assert bot["depends_on"]["postgres"]["condition"] == "service_healthy", name
        assert "http://localhost:8080/healthz" in " ".join(bot["healthcheck"]["test"]), name
