"""Shared fixtures. Media are made on the fly (tests/media_factory.py)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from tests.provider_helpers import SleepLog

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
