"""`/seedance-admin status`'s embed (cogs/utils/status.py) stays within Discord's embed limits
however many gateways and however long their errors, checked by the fake Discord's own rules
(tests/fakes/discord/world.py `check_embeds`); unknown figures are dashes."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from bot.service import FleetStatus, GatewayStatus
from bot.service.fleet import LastError
from cogs.utils.status import DASH, gateway_text, status_embed
from tests.fakes.discord.world import check_embeds


def gateway(name: str, **kw: Any) -> GatewayStatus:
    base = GatewayStatus(
        name=name, in_flight=2, queued=5, ceiling=4, tasks_last_hour=0, p50=None, p95=None,
        last_error=None, credits_today=0, cost_today=None)
    return replace(base, **kw)


def test_unknown_figures_are_dashes_and_the_ceiling_is_shown() -> None:
    text = gateway_text(gateway("hiapi"))
    assert f"**Circuit** {DASH}" in text and f"**concurrency** {DASH} (ceiling 4)" in text
    assert f"p50 {DASH} · p95 {DASH}" in text and f"gateway cost {DASH}" in text
    assert "**In flight** 2 · **queued** 5" in text and "**Last error** none" in text


def test_known_figures_are_shown() -> None:
    text = gateway_text(gateway(
        "runware", circuit="open", concurrency=(3, 8), tasks_last_hour=12, p50=75.0, p95=250.0,
        credits_today=40, cost_today=1.44,
        last_error=LastError("rate_limited", "429 too many requests", 1_750_000_000.0)))
    assert "**Circuit** open · **concurrency** 3 of 8" in text
    assert "(last hour, 12 done) p50 1 min 15 s · p95 4 min 10 s" in text
    assert "40 credits · gateway cost 1.44" in text
    assert "`rate_limited` <t:1750000000:R>: 429 too many requests" in text


def test_many_gateways_with_long_errors_fit_one_embed() -> None:
    long = LastError("task_failed", "x" * 300, 1_750_000_000.0)
    status = FleetStatus(1_750_000_000.0, tuple(
        gateway(f"gateway-{n}-" + "n" * 200, last_error=long) for n in range(30)))
    embed = status_embed(status)
    check_embeds([embed.to_dict()])  # raises as Discord would
    assert 0 < len(embed.fields) <= 25 and len(embed) <= 6000
    assert embed.footer.text == f"{30 - len(embed.fields)} more gateways not shown"


def test_no_gateway_at_all_says_so() -> None:
    embed = status_embed(FleetStatus(1_750_000_000.0, ()))
    check_embeds([embed.to_dict()])
    assert embed.fields[0].name == "No gateways"
