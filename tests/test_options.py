"""The gateways' optional features as a member meets them (`VideoService.make`, the path of
/video and the CLI), against the fake gateways: refused before anything is sent where the
gateway's table lacks them, and carried in the create body where it has them. Then what a
server's defaults and an event's fixed settings do to a request.
"""

from __future__ import annotations

import asyncio
import csv
import io
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from bot.config import Settings
from bot.engine import Engine
from bot.errors import InvalidInput
from bot.guild import FixedSettings
from bot.intake import RequestOptions
from bot.models import Ratio, Resolution
from bot.providers import ProviderRegistry
from bot.service import BadSetting, Requester, Services
from bot.store import Store
from tests.fakes.anyfast import FakeAnyfast
from tests.fakes.common import FakeGateway, Recorded
from tests.fakes.hiapi import FakeHiAPI
from tests.fakes.magnific import FakeMagnific
from tests.fakes.runware import FakeRunware
from tests.test_engine_fakes import FakeDelivery

GUILD = "100"
ADMIN = Requester("1", GUILD, "10", admin=True, moderator=True)
MEMBER = Requester("2", GUILD, "10")
#: Each gateway's create call, as its fake records it.
CREATES = {"anyfast": ("POST", "/v1/video/generations"), "magnific": ("POST", "/v1/ai/video/"),
           "runware": ("POST", "/v1"), "hiapi": ("POST", "/v1/tasks")}


@dataclass
class Fleet:
    fakes: dict[str, FakeGateway]
    settings: Settings
    store: Store
    engine: Engine
    services: Services

    def sent(self) -> dict[str, list[Recorded]]:
        """Every request each fake gateway received, by gateway (empty lists: none)."""
        return {name: fake.requests for name, fake in self.fakes.items() if fake.requests}

    async def nothing_spent(self) -> None:
        assert self.sent() == {}
        assert await self.store.jobs() == [] and await self.store.ledger() == []

    async def create_body(self, gateway: str) -> Any:
        """Start the engine and wait for the gateway's create call; its JSON body."""
        method, prefix = CREATES[gateway]
        fake = self.fakes[gateway]
        await self.engine.start()
        for _ in range(1500):  # a hang guard, not a timing assertion
            if fake.received(method, prefix):
                break
            await asyncio.sleep(0.02)
        body = fake.received(method, prefix)[0].body
        return body[0] if isinstance(body, list) else body


async def open_fleet(data_dir: Path, stack: AsyncExitStack) -> Fleet:
    fakes: dict[str, FakeGateway] = {
        "anyfast": FakeAnyfast(), "magnific": FakeMagnific(), "runware": FakeRunware(),
        "hiapi": FakeHiAPI(),
    }
    keys: dict[str, Any] = {}
    for name, fake in fakes.items():
        await stack.enter_async_context(fake)
        keys[f"{name}_api_key"] = fake.api_key
        keys[f"{name}_base_url"] = fake.base_url
    http = await stack.enter_async_context(httpx.AsyncClient())
    settings = Settings(_env_file=None, seedance_data_dir=data_dir,
                        seedance_private_hosts="127.0.0.1", **keys)
    store = await Store.open(settings.database_path)
    stack.push_async_callback(store.close)
    engine = Engine(settings, store, delivery=FakeDelivery(),
                    providers=ProviderRegistry(settings, client=http), http=http)
    stack.push_async_callback(engine.stop)
    return Fleet(fakes, settings, store, engine,
                 Services.build(settings, store, engine, engine.provider, http))


@pytest.fixture
async def fleet(data_dir: Path) -> AsyncIterator[Fleet]:
    async with AsyncExitStack() as stack:
        yield await open_fleet(data_dir, stack)


def opts(provider: str = "", **kw: Any) -> RequestOptions:
    kw.setdefault("duration", 5)
    kw.setdefault("resolution", Resolution.P480)
    return RequestOptions(prompt="a lighthouse in a storm", provider=provider, **kw)


async def make(fleet: Fleet, options: RequestOptions, who: Requester = MEMBER) -> Any:
    return await fleet.services.videos.make(who, [], options)


# ---- refused before spending ---------------------------------------------------------------
REFUSALS = [
    # (gateway, option, subject, words of the reason)
    ("magnific", {"web_search": True}, "web_search", "has no web search"),
    ("runware", {"web_search": True}, "web_search", "has no web search"),
    ("hiapi", {"web_search": True}, "web_search", "has no web search"),
    ("anyfast", {"camera_fixed": True}, "camera_fixed", "no fixed-camera option"),
    ("runware", {"camera_fixed": True}, "camera_fixed", "no fixed-camera option"),
    ("hiapi", {"camera_fixed": True}, "camera_fixed", "no fixed-camera option"),
    ("magnific", {"watermark": True}, "watermark", "cannot add a watermark"),
    ("runware", {"watermark": True}, "watermark", "cannot add a watermark"),
    ("hiapi", {"watermark": True}, "watermark", "cannot add a watermark"),
    ("anyfast", {"ratio": Ratio.R9_21}, "ratio", "does not take 9:21"),
    ("runware", {"ratio": Ratio.R9_21}, "ratio", "does not take 9:21"),
    ("hiapi", {"ratio": Ratio.R9_21}, "ratio", "does not take 9:21"),
    ("magnific", {"model": "seedance"}, "model", "offers only seedance-2-mini"),
    ("runware", {"model": "seedance"}, "model", "seedance"),
    ("hiapi", {"model": "seedance"}, "model", "seedance"),
    ("anyfast", {"resolution": Resolution.P1080}, "resolution", "does not make 1080p"),
]


@pytest.mark.parametrize(("gateway", "option", "subject", "words"), REFUSALS,
                         ids=[f"{g}-{s}" for g, _o, s, _w in REFUSALS])
async def test_an_option_the_gateway_lacks_is_refused_before_anything_is_sent(
        fleet: Fleet, gateway: str, option: dict[str, Any], subject: str, words: str) -> None:
    with pytest.raises(InvalidInput) as refused:
        await make(fleet, opts(gateway, **option))
    problem = next(p for p in refused.value.problems if p.subject == subject)
    assert words in problem.message
    await fleet.nothing_spent()


async def test_web_search_is_for_text_to_video_only(fleet: Fleet, tmp_path: Path) -> None:
    from bot.intake import MediaInput
    from tests.media_factory import make_image

    image = make_image(tmp_path / "cat.png", 800, 450)
    with pytest.raises(InvalidInput, match="web search works only for text-to-video"):
        await fleet.services.videos.make(MEMBER, [MediaInput(str(image), name="file1")],
                                         opts("anyfast", web_search=True))
    await fleet.nothing_spent()


# ---- carried to the gateway ----------------------------------------------------------------
async def test_anyfast_gets_web_search_and_watermark(fleet: Fleet) -> None:
    await make(fleet, opts("anyfast", web_search=True, watermark=True))
    body = await fleet.create_body("anyfast")
    assert body["tools"] == [{"type": "web_search"}] and body["watermark"] is True


async def test_seedance_2_at_1080p_on_anyfast(fleet: Fleet) -> None:
    made = await make(fleet, opts("anyfast", model="seedance", resolution=Resolution.P1080))
    assert made.job.model == "seedance"
    body = await fleet.create_body("anyfast")
    assert body["model"] == "seedance" and body["resolution"] == "1080p"


async def test_magnific_gets_a_fixed_camera_and_9_21(fleet: Fleet) -> None:
    await make(fleet, opts("magnific", camera_fixed=True, ratio=Ratio.R9_21))
    body = await fleet.create_body("magnific")
    assert body["camera_fixed"] is True and body["aspect_ratio"] == "film_vertical_9_21"


async def test_without_the_options_nothing_extra_is_asked(fleet: Fleet) -> None:
    await make(fleet, opts("anyfast"))
    body = await fleet.create_body("anyfast")
    assert "tools" not in body and body["watermark"] is False


async def test_the_model_list_is_offered_per_gateway(fleet: Fleet) -> None:
    videos = fleet.services.videos
    assert await videos.models(MEMBER, "anyfast") == ["seedance-2.0-mini", "seedance"]
    assert await videos.models(MEMBER, "magnific") == ["seedance-2-mini"]


# ---- server defaults ------------------------------------------------------------------------
async def test_server_defaults_apply_where_the_gateway_takes_them(fleet: Fleet) -> None:
    await fleet.services.admin.set_defaults(ADMIN, ratio=Ratio.R9_21, watermark=True)
    local = await make(fleet, opts("local", duration=4))
    assert local.job.request.ratio is Ratio.R9_21 and local.job.request.watermark is True
    # Anyfast has a watermark but no 9:21; Magnific 9:21 but no watermark: neither refuses.
    anyfast = await make(fleet, opts("anyfast"))
    assert anyfast.job.request.ratio is Ratio.ADAPTIVE and anyfast.job.request.watermark
    magnific = await make(fleet, opts("magnific"))
    assert magnific.job.request.ratio is Ratio.R9_21 and not magnific.job.request.watermark
    # A member's own choice wins over the default.
    mine = await make(fleet, opts("local", duration=4, ratio=Ratio.R1_1, watermark=False))
    assert mine.job.request.ratio is Ratio.R1_1 and not mine.job.request.watermark


# ---- events fix settings --------------------------------------------------------------------
async def start_event(fleet: Fleet, **fixed: Any) -> Any:
    return await fleet.services.events.start(
        ADMIN, name="Tall Jam", credits=50, channel_id=MEMBER.channel_id, seconds=3600,
        moderation=None, fixed=FixedSettings(**fixed))


async def test_an_event_fixes_settings_for_every_entry(fleet: Fleet) -> None:
    event = await start_event(fleet, ratio="9:21", audio=False, duration=5, watermark=True)
    assert event.fixed == {"ratio": "9:21", "audio": False, "duration": 5, "watermark": True}
    made = await make(fleet, RequestOptions(prompt="a tall tower", provider="local"))
    req = made.job.request
    assert (req.ratio, req.audio, req.duration, req.watermark) == (Ratio.R9_21, False, 5, True)
    assert made.job.event_id == event.id
    assert made.job.context["fixed"] == ["ratio", "duration", "audio", "watermark"]
    # The same value chosen again is no contradiction.
    await make(fleet, RequestOptions(prompt="again", provider="local", ratio=Ratio.R9_21))


async def test_a_choice_the_event_contradicts_is_refused_with_the_reason(fleet: Fleet) -> None:
    await start_event(fleet, ratio="9:21", audio=False)
    with pytest.raises(InvalidInput) as refused:
        await make(fleet, RequestOptions(prompt="wide", provider="local", ratio=Ratio.R16_9,
                                         audio=True))
    said = {p.subject: p.message for p in refused.value.problems}
    assert "this event fixes the ratio at 9:21" in said["ratio"]
    assert "this event fixes the audio at off" in said["audio"]
    await fleet.nothing_spent()


async def test_an_event_fixing_a_model_fixes_its_gateway(fleet: Fleet) -> None:
    event = await start_event(fleet, provider="anyfast", model="seedance", resolution="1080p")
    assert event.fixed == {"provider": "anyfast", "model": "seedance", "resolution": "1080p"}
    made = await make(fleet, RequestOptions(prompt="a parade", duration=5))
    assert (made.job.provider, made.job.model) == ("anyfast", "seedance")
    assert made.job.request.resolution is Resolution.P1080
    with pytest.raises(InvalidInput, match="this event fixes the provider at anyfast"):
        await make(fleet, RequestOptions(prompt="elsewhere", provider="magnific"))


async def test_an_event_cannot_fix_what_its_gateway_cannot_make(fleet: Fleet) -> None:
    await fleet.services.admin.set_provider(ADMIN, "anyfast", None)
    with pytest.raises(BadSetting, match="does not take 9:21"):
        await start_event(fleet, ratio="9:21")
    with pytest.raises(BadSetting, match="offers only seedance-2-mini"):
        await start_event(fleet, provider="magnific", model="seedance")
    assert await fleet.store.events(GUILD) == []


async def test_fixed_settings_survive_a_restart_and_are_exported(fleet: Fleet,
                                                                  data_dir: Path) -> None:
    event = await start_event(fleet, ratio="9:21", watermark=True)
    await make(fleet, RequestOptions(prompt="a tall tower", provider="local", duration=4))
    again = await Store.open(fleet.settings.database_path)  # another process, or after one
    try:
        stored = await again.get_event(event.id)
        assert stored is not None and stored.fixed == {"ratio": "9:21", "watermark": True}
    finally:
        await again.close()
    from datetime import UTC, datetime

    today = datetime.now(UTC).strftime("%Y-%m-%d")
    export = await fleet.services.admin.export(ADMIN, today, today)
    rows = list(csv.DictReader(io.StringIO(export.data.decode())))
    assert len(rows) == 1
    assert rows[0]["ratio"] == "9:21" and rows[0]["options"] == "watermark"
    assert rows[0]["event_fixed"] == "ratio 9:21 · watermark on"
