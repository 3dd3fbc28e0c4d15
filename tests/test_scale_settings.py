"""The settings of a scaled-out bot: where the database is, which shards this process runs,
the health port. Each bad value is one line naming the variable and the fix, never the
database password."""

from __future__ import annotations

from pathlib import Path

import pytest

from bot.config import Settings, load_settings
from bot.errors import ConfigError, scrub


def settings(**values: object) -> Settings:
    return load_settings(_env_file=None, **values)


def test_no_database_url_keeps_sqlite_in_the_data_dir(tmp_path: Path) -> None:
    config = settings(seedance_data_dir=tmp_path)
    assert config.database == tmp_path / "seedance.sqlite3" == config.database_path


@pytest.mark.parametrize("scheme", ["postgresql", "postgres"])
def test_a_postgresql_url_is_opened_and_its_password_is_a_secret(scheme: str) -> None:
    url = f"{scheme}://seedance:p%40ss-w0rd@db.internal:5432/seedance"
    config = settings(seedance_database_url=url)
    assert config.database == url
    assert "p%40ss-w0rd" in config.secrets()
    assert "p%40ss-w0rd" not in scrub(f"could not reach {url}", config.secrets())


def test_another_scheme_is_refused_naming_the_fix_without_the_password() -> None:
    with pytest.raises(ConfigError) as caught:
        settings(seedance_database_url="mysql://bot:hunter2@db/seedance")
    message = str(caught.value)
    assert message.startswith("SEEDANCE_DATABASE_URL: must be a postgresql://")
    assert "unset it" in message and "hunter2" not in message


def test_shards() -> None:
    config = settings(seedance_shard_count=4, seedance_shard_ids="3, 1")
    assert (config.seedance_shard_count, config.shard_ids) == (4, [1, 3])
    assert settings().shard_ids is None and settings().seedance_shard_count is None


@pytest.mark.parametrize(("values", "expected"), [
    ({"seedance_shard_ids": "1"}, "SEEDANCE_SHARD_IDS needs SEEDANCE_SHARD_COUNT"),
    ({"seedance_shard_count": 2, "seedance_shard_ids": "2"},
     "SEEDANCE_SHARD_IDS must each be below SEEDANCE_SHARD_COUNT=2"),
    ({"seedance_shard_count": 2, "seedance_shard_ids": "0,x"},
     "SEEDANCE_SHARD_IDS: use the form 0,1"),
    ({"seedance_shard_count": 2, "seedance_shard_ids": "1,1"},
     "SEEDANCE_SHARD_IDS: use the form 0,1"),
    ({"seedance_shard_count": 0}, "SEEDANCE_SHARD_COUNT"),
    ({"seedance_http_port": 70000}, "SEEDANCE_HTTP_PORT"),
])
def test_bad_shards_and_ports_are_one_line(values: dict[str, object], expected: str) -> None:
    with pytest.raises(ConfigError) as caught:
        settings(**values)
    assert expected in str(caught.value) and "\n" not in str(caught.value)
