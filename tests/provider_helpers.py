"""What the gateway clients' tests share: the injected sleep, fixtures serving a fake gateway and
its real client, references, polling to the end, the CLI run, and one table of the four gateways
for the cases every gateway must pass alike (tests/test_provider_gateways.py)."""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from PIL import Image

from bot.config import Settings
from bot.models import (
    GenerationRequest,
    MediaFacts,
    MediaKind,
    Ratio,
    Reference,
    Resolution,
    Role,
    TaskState,
)
from bot.providers import anyfast, hiapi, magnific, runware
from bot.providers.base import HttpGateway, Provider
from bot.store import Store
from tests.fakes.anyfast import FakeAnyfast
from tests.fakes.common import FakeGateway
from tests.fakes.hiapi import FakeHiAPI
from tests.fakes.magnific import FakeMagnific
from tests.fakes.runware import FakeRunware

#: Environment prefixes the CLI must not inherit from the developer's shell.
_GATEWAY_ENV = ("SEEDANCE_", "MAGNIFIC_", "HIAPI_", "ANYFAST_", "RUNWARE_")


class SleepLog:
    """An injected sleep that records the delays and returns at once."""

    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)


def settings_for(gateway: str, fake: FakeGateway, key: str | None = None,
                 **extra: Any) -> Settings:
    """Settings pointing `gateway` at `fake` (with its own key unless `key` is given)."""
    fields = {f"{gateway}_api_key": key or fake.api_key, f"{gateway}_base_url": fake.base_url}
    extra.setdefault("seedance_private_hosts", "127.0.0.1")  # the fake's files are on loopback
    return Settings(_env_file=None, **fields, **extra)


def fake_fixture(gateway: GatewayCase) -> Any:
    """The `fake` fixture of a gateway's test module: a fresh fake on loopback per test."""

    @pytest.fixture(name="fake")
    async def serve() -> AsyncIterator[FakeGateway]:
        server = gateway.fake()
        async with server:
            yield server

    return serve


def provider_fixture(gateway: GatewayCase, **settings: Any) -> Any:
    """The `provider` fixture: the gateway's real client against `fake`, closed after the test.

    `settings` are further Settings fields (HiAPI's callback secret)."""

    @pytest.fixture(name="provider")
    async def client(fake: FakeGateway, sleeps: SleepLog) -> AsyncIterator[HttpGateway]:
        made = gateway.client(fake, sleeps, **settings)
        yield made
        await made.aclose()

    return client


def url_ref(kind: MediaKind, url: str, role: Role) -> Reference:
    return Reference(kind=kind, source=url, name=url.rsplit("/", 1)[-1], role=role)


def image_file_ref(path: Path, role: Role) -> Reference:
    """A local PNG as a validated reference (its facts read from the file)."""
    with Image.open(path) as img:
        w, h = img.size
    facts = MediaFacts(kind=MediaKind.IMAGE, format="png", size_bytes=path.stat().st_size,
                       width=w, height=h)
    return Reference(kind=MediaKind.IMAGE, source=str(path), name=path.name, role=role,
                     facts=facts, local_path=str(path))


async def run_to_end(provider: Provider, task_id: str, limit: int = 20) -> list[TaskState]:
    """Poll until the task is done; every state seen, in order."""
    states: list[TaskState] = []
    for _ in range(limit):
        state = await provider.poll(task_id)
        states.append(state)
        if state.done:
            return states
    raise AssertionError("task never finished")


async def seed_learned_durations(db: Path, gateway: str, *, seconds: float) -> None:
    """A CLI that has used this gateway before and saw tasks take `seconds`: its engine then
    polls on that schedule instead of the gateway's typical minute (the fakes finish at once,
    and the poll schedule only moves on real polls)."""
    store = await Store.open(db)
    try:
        for resolution in Resolution:
            for duration in range(4, 16):
                await store.record_duration(gateway, resolution.value, duration, seconds, now=0)
    finally:
        await store.close()


async def cli_generate(gateway: str, fake: FakeGateway, tmp_path: Path, prompt: str,
                       *args: str, out_name: str = "out.mp4") -> Path:
    """Run `python -m bot generate` against `fake`; asserts it succeeded, returns the file."""
    out = tmp_path / out_name
    await seed_learned_durations(tmp_path / "data" / "cli.sqlite3", gateway, seconds=1.0)
    env = {k: v for k, v in os.environ.items() if not k.startswith(_GATEWAY_ENV)}
    prefix = gateway.upper()
    env.update({f"{prefix}_API_KEY": fake.api_key, f"{prefix}_BASE_URL": fake.base_url,
                "SEEDANCE_DATA_DIR": str(tmp_path / "data"),
                "SEEDANCE_PRIVATE_HOSTS": "127.0.0.1"})  # the fake serves results there
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bot", "generate", prompt, "--out", str(out),
        "--provider", gateway, *args, cwd=tmp_path, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    _, stderr = await proc.communicate()
    assert proc.returncode == 0, stderr.decode()
    return out


@dataclass(frozen=True)
class GatewayCase:
    """One gateway as the shared cases see it: its fake, its client, what it accepts."""

    name: str
    fake: type[FakeGateway]
    provider: type[HttpGateway]
    build: Callable[..., HttpGateway]
    #: The gateway's error body for (HTTP status, error code, message).
    error: Callable[[int, str, str], Any]
    #: Fields of a request the gateway and its fake accept as they are.
    request: dict[str, Any] = field(default_factory=dict)
    #: Set the fake to finish a task at the first look (for whole CLI runs).
    finish_fast: Callable[[Any], None] = lambda fake: None
    #: CLI arguments the gateway needs besides the prompt (e.g. a ratio it has).
    cli_args: tuple[str, ...] = ()

    @property
    def idempotent_submit(self) -> bool:
        return bool(getattr(self.provider, "idempotent_submit", False))

    def generation_request(self) -> GenerationRequest:
        return GenerationRequest(**self.request)

    def client(self, fake: FakeGateway, sleeps: SleepLog, *, key: str | None = None,
               client: httpx.AsyncClient | None = None, **settings: Any) -> Any:
        """The real client as `build()` makes it, pointed at `fake` (its key unless `key`)."""
        return self.build(settings_for(self.name, fake, key, **settings), client=client,
                          sleep=sleeps)


GATEWAYS = [
    GatewayCase(
        "anyfast", FakeAnyfast, anyfast.AnyfastProvider, anyfast.build,
        error=lambda status, code, message: {"code": code, "message": message, "data": None},
        request={"prompt": "a b"},
        finish_fast=lambda fake: setattr(fake, "pending_statuses", []),
    ),
    GatewayCase(
        "runware", FakeRunware, runware.RunwareProvider, runware.build,
        error=lambda status, code, message: {"errors": [{"code": code, "message": message}]},
        request={"prompt": "a cat"},
        finish_fast=lambda fake: setattr(fake, "polls_to_finish", 0),
    ),
    GatewayCase(
        "magnific", FakeMagnific, magnific.MagnificProvider, magnific.build,
        error=lambda status, code, message: {"message": message},
        request={"prompt": "a red fox runs through snow", "ratio": Ratio.R16_9, "audio": False},
        finish_fast=lambda fake: setattr(fake, "polls_to_finish", 1),
        cli_args=("--ratio", "16:9"),
    ),
    GatewayCase(
        "hiapi", FakeHiAPI, hiapi.HiApiProvider, hiapi.build,
        error=lambda status, code, message: {"code": status, "message": message, "data": None,
                                             "error_code": code.upper()},
        request={"prompt": "neon street at night", "ratio": Ratio.R16_9},
        finish_fast=lambda fake: setattr(fake, "path", ["queued", "success"]),
    ),
]


def gateway_case(name: str) -> GatewayCase:
    return next(gw for gw in GATEWAYS if gw.name == name)
